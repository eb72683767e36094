"""Every addon follows the conventions a workshop's Odoo integrator expects of OCA-style
modules: the manifest keys that the apps list and OCA tooling read, the ``readme/`` fragments
its README is made of, and its German (``i18n/``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ODOO = Path(__file__).resolve().parents[1] / "odoo"
ADDONS = sorted(p.parent for p in ODOO.glob("*/__manifest__.py"))
KEYS = {"name", "summary", "version", "author", "website", "maintainers", "license",
        "development_status", "depends", "installable"}  # fmt: skip


def test_there_are_addons() -> None:
    assert len(ADDONS) >= 5


@pytest.mark.parametrize("addon", ADDONS, ids=lambda p: p.name)
def test_manifest_readme_and_german(addon: Path) -> None:
    manifest = ast.literal_eval((addon / "__manifest__.py").read_text(encoding="utf-8"))
    assert manifest.keys() >= KEYS, sorted(KEYS - manifest.keys())
    assert manifest["version"].startswith("18.0.")
    assert manifest["development_status"] in {"Alpha", "Beta", "Production/Stable", "Mature"}
    for fragment in ("DESCRIPTION.md", "USAGE.md", "CONFIGURE.md", "CONTRIBUTORS.md"):
        assert (addon / "readme" / fragment).read_text(encoding="utf-8").strip(), fragment
    assert (addon / "i18n" / "de.po").is_file()
    assert (addon / "i18n" / f"{addon.name}.pot").is_file()
