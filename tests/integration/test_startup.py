"""Start-up failures: each is one line on standard error naming the cause, and exit code 2, for
``run`` and ``check-config`` alike; ``check-config``'s exit codes; a bridge whose every device
entry was rejected is not "ok"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from iot_bridge.settings import VARIABLES
from iot_bridge.tools.broker import Mosquitto, free_port
from tests.integration.conftest import BridgeFactory, device

SETTINGS = tuple(v.name for v in VARIABLES)


def iot_bridge(command: str, tmp_path: Path, **env: str) -> tuple[int, list[str], str]:
    """Run ``iot-bridge <command>``; return its exit code, its stderr lines and its stdout."""
    base = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    base |= {"MQTT_URL": "mqtt://127.0.0.1:1", "DATA_DIR": str(tmp_path / "data"),
             "HEALTH_HOST": "127.0.0.1", "HEALTH_PORT": "0"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "iot_bridge", command],
        env=base | env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc.returncode, proc.stderr.splitlines(), proc.stdout


@pytest.fixture
def devices_file(tmp_path: Path) -> Path:
    path = tmp_path / "devices.json"
    path.write_text(json.dumps({"devices": [device("alpha")]}))
    return path


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process listens on (a second bridge, say)."""
    port = free_port()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import socket, sys, time\n"
         f"s = socket.create_server(('127.0.0.1', {port})); print('up', flush=True)\n"
         "time.sleep(60)"], stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"up\n"
        yield port
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_busy_health_port_is_one_line_and_exit_2(
    command: str, tmp_path: Path, devices_file: Path, busy_port: int
) -> None:
    code, err, out = iot_bridge(
        command, tmp_path, DEVICES_FILE=str(devices_file), HEALTH_PORT=str(busy_port)
    )
    assert (code, err) == (2, [
        f"iot-bridge: cannot start: HEALTH_PORT {busy_port} on 127.0.0.1 is already in use"
        " (another bridge running here?)"
    ])  # fmt: skip
    assert out == ""


@pytest.mark.parametrize("command", ["run", "check-config"])
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file or directory"),
        ("{not json", "invalid JSON: "),
        ('{"device": []}', 'config must be an object with a "devices" list'),
    ],
)
def test_unusable_devices_file_is_one_line_and_exit_2(
    command: str, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "devices.json"
    if content is not None:
        path.write_text(content)
    code, err, _ = iot_bridge(command, tmp_path, DEVICES_FILE=str(path))
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"iot-bridge: cannot start: DEVICES_FILE {path}: {message}")


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_unusable_data_dir_is_one_line_and_exit_2(
    command: str, tmp_path: Path, devices_file: Path
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    code, err, _ = iot_bridge(command, tmp_path, DEVICES_FILE=str(devices_file),
                              DATA_DIR=str(a_file))  # fmt: skip
    assert (code, err) == (2, [f"iot-bridge: cannot start: DATA_DIR {a_file} is not a directory"])
    below = a_file / "data"
    code, err, _ = iot_bridge(command, tmp_path, DEVICES_FILE=str(devices_file),
                              DATA_DIR=str(below))  # fmt: skip
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"iot-bridge: cannot start: DATA_DIR {below} ")


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_read_only_data_dir_is_one_line_and_exit_2(
    command: str, tmp_path: Path, devices_file: Path
) -> None:
    """A read-only mount refuses even root (mounting one needs root, which CI has)."""
    data = tmp_path / "data"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(data)], check=True)
    try:
        code, err, _ = iot_bridge(command, tmp_path, DEVICES_FILE=str(devices_file))
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)
    assert (code, err) == (
        2, [f"iot-bridge: cannot start: DATA_DIR {data} is not writable: read-only file system"]
    )  # fmt: skip


def test_corrupt_store_is_one_line_and_exit_2(tmp_path: Path, devices_file: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "bridge.db").write_bytes(b"this is not a database" * 100)
    code, err, _ = iot_bridge("run", tmp_path, DEVICES_FILE=str(devices_file))
    assert code == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"iot-bridge: cannot start: cannot open the store {data}/bridge.db")


def test_check_config_exit_codes(tmp_path: Path) -> None:
    """0 all usable; 1 one entry rejected, or none usable; 2 shown above."""
    good, typo = device("alpha"), device("beta")
    typo["session_config"]["standby_treshold_w"] = 5
    path = tmp_path / "devices.json"
    outputs = []
    for devices, expected in (([good], 0), ([good, typo], 1), ([typo], 1), ([], 1)):
        path.write_text(json.dumps({"devices": devices}))
        code, err, out = iot_bridge("check-config", tmp_path, DEVICES_FILE=str(path))
        assert code == expected, (devices, err, out)
        assert err == []
        outputs.append(out.splitlines())
    assert "Devices: 1 usable, 1 rejected" in outputs[1]
    assert (
        "  rejected: device 'shellypmminig3-beta': session_config: unknown key "
        "'standby_treshold_w' (did you mean 'standby_threshold_w'?)"
    ) in outputs[1]
    assert "Devices: 0 usable, 0 rejected" in outputs[3]
    assert not (tmp_path / "data").exists()  # check-config only looks


def test_every_device_rejected_is_not_ok(
    tmp_path: Path, broker: Mosquitto, bridge_factory: BridgeFactory
) -> None:
    typo = device("alpha")
    typo["sesion_config"] = typo.pop("session_config")
    path = tmp_path / "devices.json"
    path.write_text(json.dumps({"devices": [typo]}))
    bridge = bridge_factory(broker, DEVICES_FILE=str(path)).start()
    bridge.wait_health(lambda h: h["mqtt_connected"] and h["config_errors"])
    health = bridge.health()
    assert health is not None
    assert health["http_status"] == 503
    assert health["problems"] == ["no_usable_device"]
    assert health["config_errors"] == [
        "device 'shellypmminig3-alpha': unknown key 'sesion_config'"
        " (did you mean 'session_config'?)"
    ]
    assert "Device config rejected: device 'shellypmminig3-alpha'" in bridge.log()


def test_startup_error_inside_the_service_is_one_line_and_exit_2(
    tmp_path: Path,
    devices_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What only the running service can find (the port taken between the check and the bind)
    it raises as StartupError, also from inside its TaskGroup; the command line prints it."""
    from iot_bridge import cli
    from iot_bridge.errors import StartupError
    from iot_bridge.runtime.service import Bridge

    async def fails(self: Bridge) -> None:
        raise ExceptionGroup("task group", [StartupError("HEALTH_PORT 1 on x is in use")])

    monkeypatch.setattr(Bridge, "run", fails)
    for key in [k for k in os.environ if k in SETTINGS]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("MQTT_URL", "mqtt://127.0.0.1:1")
    monkeypatch.setenv("DEVICES_FILE", str(devices_file))
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEALTH_PORT", "0")
    assert cli.main(["run"]) == 2
    assert capsys.readouterr().err == "iot-bridge: cannot start: HEALTH_PORT 1 on x is in use\n"

    async def breaks(self: Bridge) -> None:
        raise ExceptionGroup("task group", [ValueError("a bug")])

    monkeypatch.setattr(Bridge, "run", breaks)
    with pytest.raises(ExceptionGroup):  # anything else is a bug and keeps its traceback
        cli.main(["run"])
