"""The operator commands ``replay`` and ``parse``, run as the console script an operator runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from iot_bridge.cli import main, sample_path

DAY = sample_path("shaper_origin_day.jsonl")
DEVICE = sample_path("shaper_origin_device.json")


def run_cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "iot_bridge", *args], input=stdin, capture_output=True, check=False
    )


def test_replay_bundled_day_json() -> None:
    proc = run_cli("replay", str(DAY), "--device", str(DEVICE), "--json")
    assert proc.returncode == 0, proc.stderr
    sessions = [json.loads(line) for line in proc.stdout.splitlines()]
    # four cutting sessions; the 2 s spindle test is a false start, not a session
    assert [s["reason"] for s in sessions] == ["normal", "normal", "timeout", "normal"]
    for s in sessions:
        assert s["working_s"] + s["standby_s"] == pytest.approx(s["duration_s"], abs=0.001)
        assert s["energy_source"] == "counter"
        assert s["energy_wh"] > 0
    # the Wi-Fi drop: the session ends at the plug's last frame before it fell silent
    lines = [json.loads(x) for x in DAY.read_text().splitlines()]
    gap_index = max(range(1, len(lines)), key=lambda i: lines[i]["t"] - lines[i - 1]["t"])
    last_before_gap = lines[gap_index - 1]["t"]
    from iot_bridge.events import format_ts

    assert sessions[2]["stopped_at"] == format_ts(last_before_gap)
    assert sessions[2]["standby_s"] == 0.0  # cut the whole time


def test_replay_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(DAY), "--device", str(DEVICE)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["#", "started_at", "stopped_at"]
    assert out.rstrip().endswith("4 session(s)")


def test_replay_reports_open_session(tmp_path: Path) -> None:
    rec = tmp_path / "open.jsonl"
    frames = [{"t": 1000 + i, "topic": "shaperorigin/status/pm1:0",
               "payload": json.dumps({"id": 0, "apower": 400.0})} for i in range(10)]  # fmt: skip
    rec.write_text("\n".join(json.dumps(f) for f in frames))
    proc = run_cli("replay", str(rec), "--device", str(DEVICE), "--json")
    assert proc.returncode == 0, proc.stderr
    (session,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert session["reason"] == "open"
    assert session["duration_s"] == 9.0
    assert session["energy_source"] == "integrated"


def test_replay_bad_recording_and_bad_device(tmp_path: Path) -> None:
    rec = tmp_path / "bad.jsonl"
    rec.write_text('{"t": 1, "topic": "x", "payload": "1"}\nnot json\n')
    proc = run_cli("replay", str(rec), "--device", str(DEVICE))
    assert proc.returncode == 1
    assert b"line 2: invalid JSON" in proc.stderr
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps({"device_id": "x", "mqtt_topic": "t", "parser_type": "nope"}))
    proc = run_cli("replay", str(DAY), "--device", str(dev))
    assert proc.returncode == 2
    assert b"parser_type 'nope' is unknown" in proc.stderr


def test_parse_prints_normalised_reading() -> None:
    payload = b'{"id":0,"voltage":234.7,"current":0.289,"apower":120.5,"aenergy":{"total":256.325}}'
    proc = run_cli("parse", "--parser", "shelly_pm_mini_g3",
                   "--topic", "shaperorigin/status/pm1:0", stdin=payload)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "power_w": 120.5, "energy_wh": 256.325, "voltage_v": 234.7, "current_a": 0.289,
        "online": None, "device_ts": None, "coarse": False,
    }  # fmt: skip


def test_parse_not_a_reading_and_errors() -> None:
    proc = run_cli("parse", "--parser", "tasmota", "--topic", "tele/t/SENSOR",
                   stdin=b'{"Time":"2024-01-01T00:00:00","Switch1":"ON"}')  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"reading": None}
    proc = run_cli("parse", "--parser", "shelly_gen2", "--topic", "p/status/switch:0",
                   stdin=b'{"apower": NaN}')  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith(b"parse error:")
    proc = run_cli("parse", "--parser", "nope", "--topic", "x")
    assert proc.returncode == 2


def test_module_without_arguments_runs_the_service() -> None:
    """``python -m iot_bridge`` is the service, like the original's ``python main.py``."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("MQTT_URL", "DEVICES_FILE")}
    proc = subprocess.run(
        [sys.executable, "-m", "iot_bridge"], env=env, capture_output=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith(b"iot-bridge: configuration error: MQTT_URL is required")
