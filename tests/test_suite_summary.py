"""The suite summary reads what the runners really print: a runner whose last line changes
shape must not turn a passing suite into "FAILED" (or a failing one into "passed") in CI.

The lines fed here are rendered from the runners' own ``echo`` templates, not copied, so a
change of wording in ``odoo/run_addon_tests.sh`` reaches this test."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _describe(function: str, log: str, tmp_path: Path) -> str:
    """Run one describe function of scripts/suites.sh on ``log`` and return what it prints."""
    path = tmp_path / "suite.log"
    path.write_text(log)
    script = f'. scripts/suites.sh; {function} "$1"; suites_cleanup'
    done = subprocess.run(
        ["bash", "-c", script, "describe", str(path)],
        cwd=ROOT, capture_output=True, text=True, check=True,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)},
    )  # fmt: skip
    return done.stdout.strip()


def _runner_summary_line(ran: int, skipped: int) -> str:
    """The addon runner's summary line, rendered by bash from the runner's own echo."""
    runner = (ROOT / "odoo" / "run_addon_tests.sh").read_text()
    match = re.search(r'^echo "odoo addon tests .*"$', runner, re.M)
    assert match, "run_addon_tests.sh no longer prints its 'odoo addon tests' line"
    addons = "open_workshop_mqtt,open_workshop_mqtt_badge"
    script = f"ADDONS={addons}; ran={ran}; skipped={skipped}; {match.group(0)}"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout


def test_the_addon_runners_summary_line_is_read_as_passed(tmp_path: Path) -> None:
    log = (
        "odoo.tests.result: 0 failed, 0 error(s) of 206 tests when loading database 'x'\n"
        + _runner_summary_line(206, 0)
        + "browser tours passed: ows_units\n"
    )
    assert _describe("describe_odoo_addons", log, tmp_path) == "206 passed, 0 skipped, 0 failed"


def test_a_runner_that_stopped_before_its_summary_reads_as_not_passed(tmp_path: Path) -> None:
    log = "odoo.tests.result: 2 failed, 0 error(s) of 206 tests when loading database 'x'\n"
    assert _describe("describe_odoo_addons", log, tmp_path) == ""


def test_pytests_last_line_is_kept(tmp_path: Path) -> None:
    log = "....\n1167 passed in 411.39s (0:06:51)\n"
    assert _describe("describe_pytest", log, tmp_path) == "1167 passed in 411.39s (0:06:51)"
