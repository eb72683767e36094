"""The Prometheus alert rules (``deploy/prometheus/alerts.yml``) against their unit tests
(``alerts_test.yml``): every /health problem and warning has a rule, and each rule a test."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from iot_bridge.runtime.report import PROBLEMS, WARNINGS

RULES = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_promtool_checks_and_tests_the_rules() -> None:
    assert PROMTOOL is not None
    check = subprocess.run([PROMTOOL, "check", "rules", "alerts.yml"], cwd=RULES,
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=RULES,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout


def test_every_rule_has_a_test_and_the_named_findings_have_rules() -> None:
    rules = (RULES / "alerts.yml").read_text()
    tests = (RULES / "alerts_test.yml").read_text()
    names = re.findall(r"- alert: (\w+)", rules)
    tested = set(re.findall(r"alertname: (\w+)", tests))
    older = {
        "IotBridgeDown",
        "IotBridgeMqttReconnecting",
        "IotBridgeOdooRefusing",
        "IotBridgeParseErrors",
    }  # fmt: skip  (rules from before the tests were asked for)
    untested = sorted(set(names) - tested - older)
    assert untested == []
    for warning in ("new_dead_letters", "subscriptions_refused", "subscriptions_silent",
                    "config_errors"):  # fmt: skip
        assert warning in WARNINGS
        assert f'warning="{warning}"' in rules
    assert 'problem="odoo_unreachable"' in rules
    assert "odoo_unreachable" in PROBLEMS
    assert "iot_bridge_health_problem{" in rules  # the catch-all names any other problem
