"""Service settings from the environment, and the ``run`` / ``check-config`` commands."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from iot_bridge.cli import sample_path
from iot_bridge.errors import SettingsError
from iot_bridge.settings import VARIABLES, Broker, Settings, load

PASSWORD = "pw-Sup3rS3cret-mqtt"
TOKEN = "tok-Sup3rS3cret-odoo"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

BASE = {"MQTT_URL": "mqtt://broker.local:1883", "DEVICES_FILE": "/etc/devices.json"}


def env(**overrides: str) -> dict[str, str]:
    out = dict(BASE)
    out.update(overrides)
    return out


def test_defaults() -> None:
    s = load(dict(BASE))
    assert s.mqtt_brokers == (Broker("broker.local", 1883),)
    assert s.mqtt_tls is False
    assert s.mqtt_client_id == f"iot-bridge-{socket.gethostname()}"[:64]
    assert s.mqtt_ca_file is None
    assert s.mqtt_keepalive == 30
    assert s.odoo_url is None
    assert s.odoo_token is None
    assert s.standalone is True
    assert s.odoo_timeout == 10.0
    assert s.devices_file == Path("/etc/devices.json")
    assert s.data_dir == Path("data")
    assert (s.health_host, s.health_port) == ("127.0.0.1", 8080)
    assert s.log_level == "INFO"
    assert s.config_refresh_interval == 300.0
    assert s.forward_measurements is False
    assert s.mqtt_url == "mqtt://broker.local:1883"
    assert s.ssl_context() is None


def test_default_port_without_port_in_url() -> None:
    assert load(env(MQTT_URL="mqtt://broker.local")).mqtt_brokers[0].port == 1883


def test_full_odoo_configuration() -> None:
    s = load(
        {
            "MQTT_URL": "mqtt://b:1884",
            "ODOO_URL": "https://odoo.example.com/",
            "ODOO_TOKEN": TOKEN,
            "ODOO_TIMEOUT": "2.5",
            "LOG_LEVEL": "debug",
            "HEALTH_PORT": "9090",
            "CONFIG_REFRESH_INTERVAL": "60",
            "FORWARD_MEASUREMENTS": "yes",
            "MQTT_CLIENT_ID": "bridge-1",
            "DATA_DIR": "/var/lib/bridge",
        }
    )
    assert s.standalone is False
    assert s.odoo_url == "https://odoo.example.com"  # trailing slash removed
    assert s.odoo_token == TOKEN
    assert s.odoo_timeout == 2.5
    assert s.log_level == "DEBUG"
    assert s.health_port == 9090
    assert s.config_refresh_interval == 60.0
    assert s.forward_measurements is True
    assert s.mqtt_client_id == "bridge-1"
    assert s.data_dir == Path("/var/lib/bridge")
    assert s.devices_file is None
    assert s.mqtt_brokers[0].port == 1884


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"MQTT_URL": ""}, "MQTT_URL"),
        ({"MQTT_URL": "   "}, "MQTT_URL"),
        ({"MQTT_URL": "http://broker:1883"}, "MQTT_URL"),
        ({"MQTT_URL": "broker:1883"}, "MQTT_URL"),
        ({"MQTT_URL": "mqtt://"}, "MQTT_URL"),
        ({"MQTT_URL": "mqtt://:1883"}, "MQTT_URL"),
        ({"MQTT_URL": "mqtt://broker:99999"}, "MQTT_URL"),
        ({"MQTT_URL": "mqtt://broker:port"}, "MQTT_URL"),
        ({"ODOO_URL": "ftp://odoo", "ODOO_TOKEN": TOKEN}, "ODOO_URL"),
        ({"ODOO_URL": "odoo.example.com", "ODOO_TOKEN": TOKEN}, "ODOO_URL"),
        ({"ODOO_URL": "https://", "ODOO_TOKEN": TOKEN}, "ODOO_URL"),
        ({"ODOO_URL": "https://odoo.example.com"}, "ODOO_TOKEN"),
        ({"ODOO_URL": "https://odoo.example.com", "ODOO_TOKEN": " "}, "ODOO_TOKEN"),
        ({"DEVICES_FILE": ""}, "DEVICES_FILE"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
        ({"LOG_LEVEL": "CRITICAL"}, "LOG_LEVEL"),
        ({"HEALTH_PORT": "http"}, "HEALTH_PORT"),
        ({"HEALTH_PORT": "70000"}, "HEALTH_PORT"),
        ({"HEALTH_PORT": "-1"}, "HEALTH_PORT"),
        ({"HEALTH_PORT": "80.5"}, "HEALTH_PORT"),
        ({"ODOO_TIMEOUT": "soon"}, "ODOO_TIMEOUT"),
        ({"ODOO_TIMEOUT": "0"}, "ODOO_TIMEOUT"),
        ({"ODOO_TIMEOUT": "-5"}, "ODOO_TIMEOUT"),
        ({"ODOO_TIMEOUT": "nan"}, "ODOO_TIMEOUT"),
        ({"CONFIG_REFRESH_INTERVAL": "0.5"}, "CONFIG_REFRESH_INTERVAL"),
        ({"CONFIG_REFRESH_INTERVAL": "5m"}, "CONFIG_REFRESH_INTERVAL"),
        ({"MQTT_CA_FILE": "/nonexistent/ca.pem"}, "MQTT_CA_FILE"),
        ({"MQTT_CA_FILE": "/"}, "MQTT_CA_FILE"),  # a directory is not a file
        ({"FORWARD_MEASUREMENTS": "maybe"}, "FORWARD_MEASUREMENTS"),
        ({"FORWARD_MEASUREMENTS": "2"}, "FORWARD_MEASUREMENTS"),
    ],
)
def test_invalid_variable_is_named(overrides: dict[str, str], variable: str) -> None:
    e = env(**overrides)
    with pytest.raises(SettingsError) as info:
        load(e)
    message = str(info.value)
    assert message.startswith(variable), message
    assert PASSWORD not in message
    assert TOKEN not in message


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        # float("inf") passes the ">= 0" check and then int() raises OverflowError
        ({"HEALTH_PORT": "inf"}, "HEALTH_PORT"),
        ({"HEALTH_PORT": "1e400"}, "HEALTH_PORT"),
        ({"MQTT_KEEPALIVE": "inf"}, "MQTT_KEEPALIVE"),
        # ODOO_URL is checked for a netloc, not for a host or a valid port
        ({"ODOO_URL": "https://:8069", "ODOO_TOKEN": TOKEN}, "ODOO_URL"),
        ({"ODOO_URL": "http://odoo:port", "ODOO_TOKEN": TOKEN}, "ODOO_URL"),
        ({"ODOO_URL": "http://odoo:99999", "ODOO_TOKEN": TOKEN}, "ODOO_URL"),
    ],
)
def test_invalid_variable_edge_cases_are_named(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as info:
        load(env(**overrides))
    assert str(info.value).startswith(variable), str(info.value)


def test_mqtt_url_missing_entirely() -> None:
    with pytest.raises(SettingsError, match=r"^MQTT_URL is required"):
        load({"DEVICES_FILE": "/etc/devices.json"})


def test_devices_file_required_only_without_odoo() -> None:
    with pytest.raises(SettingsError, match=r"^DEVICES_FILE is required without ODOO_URL"):
        load({"MQTT_URL": "mqtt://b"})
    s = load({"MQTT_URL": "mqtt://b", "ODOO_URL": "http://odoo:8069", "ODOO_TOKEN": TOKEN})
    assert s.devices_file is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("ON", True), (" yes ", True), ("0", False), ("off", False)],
)
def test_forward_measurements_flag(value: str, expected: bool) -> None:
    assert load(env(FORWARD_MEASUREMENTS=value)).forward_measurements is expected


def test_mqtts_default_port_and_ssl_context() -> None:
    s = load(env(MQTT_URL="mqtts://broker.example.com"))
    assert (s.mqtt_brokers[0].port, s.mqtt_tls) == (8883, True)
    assert s.mqtt_url == "mqtts://broker.example.com:8883"
    ctx = s.ssl_context()
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is True
    assert load(env(MQTT_URL="mqtts://b:9999")).mqtt_brokers[0].port == 9999
    assert load(env(MQTT_URL="ssl://b")).mqtt_tls is True
    assert load(env(MQTT_URL="tcp://b")).mqtt_brokers[0].port == 1883


def test_ssl_context_with_ca_file() -> None:
    assert CA_BUNDLE.is_file(), "the Debian CA bundle is part of the test environment"
    s = load(env(MQTT_URL="mqtts://b", MQTT_CA_FILE=str(CA_BUNDLE)))
    assert s.mqtt_ca_file == CA_BUNDLE
    ctx = s.ssl_context()
    assert ctx is not None
    assert ctx.cert_store_stats()["x509_ca"] > 10  # the bundle was loaded


def test_credentials_from_url_and_overrides() -> None:
    s = load(env(MQTT_URL=f"mqtt://bridge%40shop:{PASSWORD}@broker:1883"))
    assert s.mqtt_brokers == (Broker("broker", 1883, "bridge@shop", PASSWORD),)  # decoded
    assert PASSWORD not in s.mqtt_url
    s2 = load(
        env(
            MQTT_URL=f"mqtt://urluser:{PASSWORD}@broker",
            MQTT_USERNAME="envuser",
            MQTT_PASSWORD="envpass",
        )
    )
    assert s2.mqtt_brokers == (Broker("broker", 1883, "envuser", "envpass"),)


def test_repr_hides_secrets() -> None:
    s = load(
        {
            "MQTT_URL": f"mqtts://user:{PASSWORD}@broker",
            "ODOO_URL": "https://odoo.example.com",
            "ODOO_TOKEN": TOKEN,
        }
    )
    for text in (repr(s), str(s)):
        assert PASSWORD not in text
        assert TOKEN not in text
        assert "broker" in text  # the rest is shown
    s2 = load(env(MQTT_PASSWORD=PASSWORD))
    assert PASSWORD not in repr(s2)
    assert isinstance(s2, Settings)


def test_load_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MQTT_URL", "mqtt://from-environ:1999")
    monkeypatch.setenv("DEVICES_FILE", "/x.json")
    assert load().mqtt_brokers[0].port == 1999


def test_readme_configuration_table_is_the_variables() -> None:
    """README, ``--help`` and :func:`load` share :data:`VARIABLES`; the README is held to it."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    expected = [f"| `{v.name}` | {v.shown_default} | {v.meaning} |" for v in VARIABLES]
    assert rows == expected, "README's table must read:\n" + "\n".join(expected)


def test_defaults_of_variables_are_the_settings_defaults() -> None:
    """``Settings`` built in code (the demo) gets the same defaults as ``load`` gives."""
    loaded = load(dict(BASE))
    built = Settings(mqtt_brokers=(Broker("broker.local", 1883),), mqtt_tls=False)
    for name in ("mqtt_keepalive", "odoo_timeout", "data_dir", "health_host", "health_port",
                 "log_level", "config_refresh_interval", "forward_measurements",
                 "max_queue_age_s", "reconnect_max_s"):  # fmt: skip
        assert getattr(loaded, name) == getattr(built, name), name


def test_names_of_variables_are_the_ones_load_reads() -> None:
    """The list names exactly what ``load`` reads: a variable read but not listed would be
    missing from ``--help`` and the README, one listed but not read would be a lie."""

    seen: set[str] = set()

    class Recording(dict[str, str]):
        def get(self, key: str, default: object = None) -> Any:
            seen.add(key)
            return super().get(key, default)

    load(Recording(MQTT_URL="mqtt://b", ODOO_URL="http://odoo", ODOO_TOKEN=TOKEN))
    assert seen == {v.name for v in VARIABLES}


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("foo", "'foo'"),
        ("broker:1883", "'broker:1883'"),
        (f"http://u:{PASSWORD}@broker:1883", "'http://u:***@broker:1883'"),
    ],
)
def test_bad_mqtt_url_scheme_shows_the_value(raw: str, shown: str) -> None:
    with pytest.raises(SettingsError) as info:
        load(env(MQTT_URL=raw))
    assert str(info.value) == f"MQTT_URL must start with mqtt:// or mqtts://, got {shown}"


# -- the CLI ------------------------------------------------------------------------------------

SETTINGS_VARS = tuple(v.name for v in VARIABLES)


def run_cli(
    args: list[str], extra_env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARS}
    e.update(extra_env)
    return subprocess.run(
        [sys.executable, "-m", "iot_bridge", *args],
        env=e,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


BAD_ENVS = [
    ({}, "MQTT_URL"),
    ({"MQTT_URL": f"http://u:{PASSWORD}@broker"}, "MQTT_URL"),
    ({"MQTT_URL": f"mqtt://u:{PASSWORD}@broker", "ODOO_URL": "ftp://x", "ODOO_TOKEN": TOKEN},
     "ODOO_URL"),
    ({"MQTT_URL": f"mqtt://u:{PASSWORD}@broker", "ODOO_URL": "https://odoo"}, "ODOO_TOKEN"),
    ({"MQTT_URL": f"mqtt://u:{PASSWORD}@broker", "ODOO_URL": "https://odoo",
      "ODOO_TOKEN": TOKEN, "HEALTH_PORT": "99999"}, "HEALTH_PORT"),
    ({"MQTT_URL": "mqtt://broker", "DEVICES_FILE": "/d.json", "LOG_LEVEL": "LOUD",
      "MQTT_PASSWORD": PASSWORD}, "LOG_LEVEL"),
    ({"MQTT_URL": f"mqtt://u:{PASSWORD}@broker", "DEVICES_FILE": "/d.json",
      "HEALTH_PORT": "inf"}, "HEALTH_PORT"),
]  # fmt: skip


@pytest.mark.parametrize("command", ["run", "check-config"])
@pytest.mark.parametrize(("bad_env", "variable"), BAD_ENVS)
def test_cli_bad_env_exits_2_naming_the_variable(
    command: str, bad_env: dict[str, str], variable: str, tmp_path: Path
) -> None:
    proc = run_cli([command], bad_env, tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert variable in lines[0]
    assert lines[0].startswith("iot-bridge: configuration error: " + variable)
    for secret in (PASSWORD, TOKEN):
        assert secret not in proc.stdout
        assert secret not in proc.stderr
    assert not (tmp_path / "data").exists()  # nothing was started


def test_check_config_good_devices_file(tmp_path: Path) -> None:
    proc = run_cli(
        ["check-config"],
        {
            "MQTT_URL": f"mqtt://bridge:{PASSWORD}@broker.local:1884",
            "DEVICES_FILE": str(sample_path("devices.json")),
            "MQTT_CLIENT_ID": "shop-bridge",
        },
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "mqtt://broker.local:1884 (client id shop-bridge)" in out
    assert "none (standalone mode)" in out
    assert "Devices: 1 usable, 0 rejected" in out
    assert (
        "  shellypmminig3-48f6eeb73a1c (shelly_pm_mini_g3): "
        "shaperorigin/status/pm1:0, shaperorigin/events/rpc, shaperorigin/online"
    ) in out.splitlines()
    assert PASSWORD not in out + proc.stderr


def test_check_config_rejects_one_bad_device(tmp_path: Path) -> None:
    good = json.loads(sample_path("devices.json").read_text())["devices"][0]
    bad = {
        "device_id": "laser-1",
        "mqtt_topic": "laser/status",
        "parser_type": "no_such_parser",
    }
    inverted = dict(good, device_id="cnc-1", mqtt_topic="cnc/status/pm1:0")
    inverted["session_config"] = dict(
        good["session_config"], standby_threshold_w=200, working_threshold_w=100
    )
    devices = tmp_path / "devices.json"
    devices.write_text(json.dumps({"config_version": "7", "devices": [good, bad, inverted]}))
    proc = run_cli(
        ["check-config"], {"MQTT_URL": "mqtt://broker", "DEVICES_FILE": str(devices)}, tmp_path
    )
    assert proc.returncode == 1, proc.stderr
    out = proc.stdout.splitlines()
    assert "Devices: 1 usable, 2 rejected" in out
    rejected = [line for line in out if line.startswith("  rejected: ")]
    assert len(rejected) == 2
    assert "laser-1" in rejected[0]
    assert "no_such_parser" in rejected[0]
    assert "cnc-1" in rejected[1]
    assert "threshold" in rejected[1]
    assert any(line.startswith("  shellypmminig3-48f6eeb73a1c ") for line in out)


def test_check_config_missing_devices_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    proc = run_cli(
        ["check-config"], {"MQTT_URL": "mqtt://broker", "DEVICES_FILE": str(missing)}, tmp_path
    )
    assert proc.returncode == 2
    assert (
        proc.stderr
        == f"iot-bridge: cannot start: DEVICES_FILE {missing}: No such file or directory\n"
    )


def test_check_config_against_odoo_only_looks(tmp_path: Path) -> None:
    """check-config fetches the config but writes nothing: no cache, and never over a device
    file (a regression: it once cached to os.devnull and, as root, replaced /dev/null)."""
    import stat

    from tests.support.fake_odoo import FakeOdoo

    device = json.loads(sample_path("shaper_origin_device.json").read_text())
    with FakeOdoo(token=TOKEN, devices=[device]) as odoo:
        proc = run_cli(
            ["check-config"],
            {"MQTT_URL": "mqtt://broker", "ODOO_URL": odoo.url, "ODOO_TOKEN": TOKEN,
             "DATA_DIR": str(tmp_path / "data")},
            tmp_path,
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Devices: 1 usable, 0 rejected" in proc.stdout
    assert TOKEN not in proc.stdout + proc.stderr
    assert not (tmp_path / "data").exists()
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
