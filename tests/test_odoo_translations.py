"""The German of the Odoo addons, checked without Odoo: every addon has ``i18n/<addon>.pot`` and
``i18n/de.po`` with the same terms, every term translated, and the placeholders of each
translation those of its term.

``odoo/run_addon_tests.sh`` checks, in a real Odoo, that the committed templates are the ones
Odoo exports from the current code.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ODOO = Path(__file__).resolve().parents[1] / "odoo"
CORE = "open_workshop_mqtt"
ADDONS = sorted(p.parent.name for p in ODOO.glob("*/__manifest__.py"))
PLACEHOLDER = re.compile(r"%(?:\([a-z_]+\))?[sdrf]")
MODEL_NAME = re.compile(r"^model:ir\.model,name:[a-z0-9_]+\.model_(?P<model>[a-z0-9_]+)$")
DEFINED = re.compile(r"^\s+_name = \"(?P<name>[a-z0-9_.]+)\"", re.MULTILINE)


@dataclass
class Entry:
    msgid: str
    msgstr: str
    references: list[str]


def read_po(path: Path) -> list[Entry]:
    """The entries of a PO file (enough of the format for Odoo's exports)."""
    entries: list[Entry] = []
    references: list[str] = []
    field: str | None = None
    parts: dict[str, list[str]] = {}

    def flush() -> None:
        if "msgid" in parts:
            entries.append(
                Entry("".join(parts["msgid"]), "".join(parts.get("msgstr", [])), references)
            )

    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#:"):
            if "msgstr" in parts:
                flush()
                parts, references = {}, []
            references.extend(line[2:].split())
        elif line.startswith(("msgid ", "msgstr ")):
            field, _, literal = line.partition(" ")
            if field == "msgid" and "msgstr" in parts:
                flush()
                parts, references = {}, []
            parts[field] = [ast.literal_eval(literal)]
        elif line.startswith('"') and field:
            parts[field].append(ast.literal_eval(line))
    flush()
    return [e for e in entries if e.msgid]


def own_models(addon: str) -> set[str]:
    """The models the addon defines (``_name``), as ir.model xml ids spell them."""
    return {
        m.group("name").replace(".", "_")
        for path in (ODOO / addon).rglob("*.py")
        for m in DEFINED.finditer(path.read_text(encoding="utf-8"))
    }


def foreign(entry: Entry, models: set[str]) -> bool:
    """The description of a model the addon extends but does not define: the module that
    defines it translates it."""
    found = [m.group("model") for r in entry.references if (m := MODEL_NAME.match(r))]
    return bool(found) and len(found) == len(entry.references) and not set(found) & models


def test_every_addon_is_checked() -> None:
    assert {CORE, "open_workshop_mqtt_badge", "open_workshop_mqtt_billing"} <= set(ADDONS)


@pytest.mark.parametrize("addon", ADDONS)
def test_german_matches_the_template(addon: str) -> None:
    template = read_po(ODOO / addon / "i18n" / f"{addon}.pot")
    german = read_po(ODOO / addon / "i18n" / "de.po")
    assert template, "empty template"
    assert [e.msgid for e in german] == [e.msgid for e in template]
    assert all(not e.msgstr for e in template)


@pytest.mark.parametrize("addon", ADDONS)
def test_every_term_is_translated(addon: str) -> None:
    models = own_models(addon)
    untranslated = [
        e.msgid
        for e in read_po(ODOO / addon / "i18n" / "de.po")
        if not e.msgstr and not foreign(e, models)
    ]
    assert untranslated == []


@pytest.mark.parametrize("addon", ADDONS)
def test_placeholders_are_kept(addon: str) -> None:
    for entry in read_po(ODOO / addon / "i18n" / "de.po"):
        if entry.msgstr:
            assert sorted(PLACEHOLDER.findall(entry.msgstr)) == sorted(
                PLACEHOLDER.findall(entry.msgid)
            ), entry.msgid


def test_the_reader_reads_multiline_entries(tmp_path: Path) -> None:
    po = tmp_path / "x.po"
    po.write_text(
        'msgid ""\nmsgstr ""\n"Language: de\\n"\n\n'
        "#: model:ir.model,name:x.model_res_partner\n"
        'msgid ""\n"Two "\n"lines"\nmsgstr "Zwei Zeilen"\n\n'
        "#: code:addons/x/models/y.py:0\n"
        'msgid "%(n)s left"\nmsgstr ""\n',
        encoding="utf-8",
    )
    entries = read_po(po)
    assert [(e.msgid, e.msgstr) for e in entries] == [
        ("Two lines", "Zwei Zeilen"),
        ("%(n)s left", ""),
    ]
    assert foreign(entries[0], {"x_thing"})
    assert not foreign(entries[0], {"res_partner"})
    assert not foreign(entries[1], {"x_thing"})
