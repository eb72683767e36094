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


# -- run and check-config: the environment in --help, one line and exit 2 for a bad start -----


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_help_lists_every_environment_variable_with_its_default(command: str) -> None:
    from iot_bridge.settings import VARIABLES

    proc = run_cli(command, "--help")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    assert "exit status:" in text
    env_part = text.split("environment variables:\n", 1)[1]
    # one entry per variable, in order, each starting its line with the name
    starts = [line.split()[0] for line in env_part.splitlines() if line.startswith("  ") and
              not line.startswith("   ")]  # fmt: skip
    assert starts == [v.name for v in VARIABLES]
    flat = " ".join(env_part.split())
    assert (
        "MQTT_URL mqtt://host:1883 or mqtts://host:8883; a cluster: its nodes' URLs,"
        " comma-separated (required)" in flat
    )
    assert "(default: 30)" in flat.split("MQTT_KEEPALIVE", 1)[1].split("MQTT_RECONNECT_MAX")[0]
    assert "(default: 8080)" in flat.split("HEALTH_PORT", 1)[1].split("HEALTH_MAX_QUEUE_AGE")[0]


def test_check_config_help_documents_its_exit_codes() -> None:
    text = " ".join(run_cli("check-config", "--help").stdout.decode().split())
    assert "0 the bridge would start and every device entry is usable" in text
    assert "1 the bridge would start, but a device entry is rejected" in text
    assert "2 the bridge would not start" in text


def test_mqtt_url_without_scheme_names_the_value() -> None:
    import os

    env = dict(os.environ, MQTT_URL="foo", DEVICES_FILE=str(DEVICE))
    proc = subprocess.run(
        [sys.executable, "-m", "iot_bridge", "run"], env=env, capture_output=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.decode() == (
        "iot-bridge: configuration error: MQTT_URL must start with mqtt:// or mqtts://, got 'foo'\n"
    )


def test_without_devices_file_the_sample_is_suggested(tmp_path: Path) -> None:
    """``./scripts/start`` with only MQTT_URL: the one line says what would do."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DEVICES_FILE", "ODOO_URL")}
    env["MQTT_URL"] = "mqtt://127.0.0.1:1883"
    proc = subprocess.run(
        [sys.executable, "-m", "iot_bridge", "run"], env=env, capture_output=True, check=False
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.decode().splitlines()
    suggested = line.rsplit("DEVICES_FILE=", 1)[1].rstrip(")")
    assert Path(suggested).resolve() == sample_path("devices.json").resolve()
    env["DEVICES_FILE"] = suggested  # and it does: check-config accepts it
    env["DATA_DIR"] = str(tmp_path / "data")
    proc = subprocess.run(
        [sys.executable, "-m", "iot_bridge", "check-config"],
        env=env,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


# -- dead-letters ---------------------------------------------------------------------------------


def test_dead_letters_replay_takes_data_dir_before_or_after_the_uids(tmp_path: Path) -> None:
    from iot_bridge.events import Event
    from iot_bridge.outbox.store import Store

    store = Store(tmp_path / "bridge.db")
    store.commit([Event(f"uid-{i}", 1.0, "dev", "run_start", {"session_id": f"s{i}"})
                  for i in range(3)], {})  # fmt: skip
    store.dead_letter([(p.seq, 404, "unknown_device") for p in store.pending(10)])
    store.close()

    proc = run_cli("dead-letters", "list", "--data-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().splitlines()[-1] == "3 dead letter(s)"
    proc = run_cli("dead-letters", "replay", "--data-dir", str(tmp_path), "uid-0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"1 event(s) queued again")
    proc = run_cli("dead-letters", "replay", "uid-1", "--data-dir", str(tmp_path))
    assert proc.stdout.startswith(b"1 event(s) queued again")
    proc = run_cli("dead-letters", "--data-dir", str(tmp_path), "replay")
    assert proc.stdout.startswith(b"1 event(s) queued again")
    proc = run_cli("dead-letters", "list", "--data-dir", str(tmp_path))
    assert proc.stdout.decode().splitlines() == ["0 dead letter(s)"]


def test_dead_letters_of_a_wrong_data_dir_make_no_store(tmp_path: Path) -> None:
    proc = run_cli("dead-letters", "list", "--data-dir", str(tmp_path / "nope"))
    assert proc.returncode == 2
    assert proc.stderr.decode() == (
        f"iot-bridge: no store at {tmp_path / 'nope' / 'bridge.db'} (give the bridge's DATA_DIR)\n"
    )
    assert not (tmp_path / "nope").exists()


def test_start_script_with_only_mqtt_url_hints_at_the_sample() -> None:
    """``MQTT_URL=... ./scripts/start``: standalone mode needs a device list; the one line says
    which file would do, as a path the operator can paste where the script runs."""
    import os

    root = Path(__file__).resolve().parents[1]
    if (root / ".env").exists():
        pytest.skip("./.env exists here and configures ./scripts/start")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MQTT_", "ODOO_", "DEVICES_FILE", "DATA_DIR"))}  # fmt: skip
    env["MQTT_URL"] = "mqtt://127.0.0.1:1"
    proc = subprocess.run(
        [str(root / "scripts" / "start")], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        "iot-bridge: configuration error: DEVICES_FILE is required without ODOO_URL (standalone"
        " mode needs a device list; to try the sample one:"
        " DEVICES_FILE=src/iot_bridge/samples/devices.json)"
    )
