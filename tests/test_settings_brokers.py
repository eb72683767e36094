"""``MQTT_URL`` with several brokers (the nodes of a cluster): parsed and validated with the other
settings, and handed to the MQTT client as one endpoint per node, in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from iot_bridge.errors import SettingsError
from iot_bridge.runtime.service import Bridge
from iot_bridge.settings import Broker, load

BASE = {"DEVICES_FILE": "/etc/devices.json"}
PASSWORD = "pw-Cl0ster-s3cret"


def brokers(url: str, **env: str) -> tuple[Broker, ...]:
    return load({**BASE, "MQTT_URL": url, **env}).mqtt_brokers


def error(url: str, **env: str) -> str:
    with pytest.raises(SettingsError) as info:
        load({**BASE, "MQTT_URL": url, **env})
    message = str(info.value)
    assert "\n" not in message
    return message


def test_several_urls_in_order_with_default_ports() -> None:
    got = brokers("mqtt://n1:1883, mqtt://n2 ,mqtt://[::1]:1884")
    assert got == (Broker("n1", 1883), Broker("n2", 1883), Broker("::1", 1884))
    settings = load({**BASE, "MQTT_URL": "mqtts://n1,mqtts://n2:8884"})
    assert settings.mqtt_tls is True
    assert settings.mqtt_url == "mqtts://n1:8883,mqtts://n2:8884"
    assert load({**BASE, "MQTT_URL": "mqtt://[::1]:1884"}).mqtt_url == "mqtt://[::1]:1884"


def test_each_url_keeps_its_own_login_unless_the_variables_set_one() -> None:
    got = brokers(f"mqtt://a:{PASSWORD}@n1,mqtt://b:pw%2Cwith%2Ccommas@n2,mqtt://n3")
    assert got == (
        Broker("n1", 1883, "a", PASSWORD),
        Broker("n2", 1883, "b", "pw,with,commas"),  # a comma in a password is %2C
        Broker("n3", 1883),
    )
    both = brokers("mqtt://a:x@n1,mqtt://n2", MQTT_USERNAME="bridge", MQTT_PASSWORD=PASSWORD)
    assert both == (Broker("n1", 1883, "bridge", PASSWORD), Broker("n2", 1883, "bridge", PASSWORD))


def test_no_password_is_shown() -> None:
    settings = load({**BASE, "MQTT_URL": f"mqtt://a:{PASSWORD}@n1,mqtt://a:{PASSWORD}@n2"})
    for text in (repr(settings), str(settings), settings.mqtt_url):
        assert PASSWORD not in text
    assert PASSWORD not in error(f"mqtt://a:{PASSWORD}@n1,http://a:{PASSWORD}@n2")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://n1,,mqtt://n2", "MQTT_URL has an empty entry (two commas, or one at an end)"),
        ("mqtt://n1,", "MQTT_URL has an empty entry (two commas, or one at an end)"),
        ("mqtt://n1,n2:1883", "MQTT_URL must start with mqtt:// or mqtts://, got 'n2:1883'"),
        ("mqtt://n1,mqtt://N1:1883", "MQTT_URL names mqtt://n1:1883 twice"),
        ("mqtt://n1,mqtt://n2:0", "MQTT_URL port must be 1..65535, got 0"),
        ("mqtt://n1,mqtt://n2:99999", "MQTT_URL 'mqtt://n2:99999' is not a valid URL: "),
        ("mqtt://n1,mqtt://:1883", "MQTT_URL needs a host, e.g. mqtt://mosquitto:1883"),
        ("mqtt://n1/topic", "MQTT_URL 'mqtt://n1/topic' has a path or query; only "),
    ],
)
def test_every_url_is_checked(url: str, expected: str) -> None:
    assert error(url).startswith(expected)


def test_one_scheme_for_every_node() -> None:
    """A cluster whose TLS node fails must not send the bridge to a plain-text node."""
    assert error("mqtts://n1,mqtt://n2").startswith(
        "MQTT_URL mixes mqtt:// and mqtts:// URLs; use one scheme for every node"
    )
    assert load({**BASE, "MQTT_URL": "mqtts://n1,ssl://n2"}).mqtt_tls is True


@pytest.mark.parametrize("url", ["ws://broker:8080/mqtt", "mqtt://n1,wss://n2/mqtt"])
def test_websockets_are_refused_with_the_reason(url: str) -> None:
    assert "MQTT over WebSockets is not supported" in error(url)


def test_credentials_of_every_url_are_length_checked() -> None:
    long = "u" * 65536
    assert error(f"mqtt://n1,mqtt://{long}:pw@n2") == (
        "MQTT_USERNAME is 65536 bytes in UTF-8; MQTT allows at most 65535"
    )


def test_the_service_gives_the_client_every_node_in_order(tmp_path: Path) -> None:
    settings = load(
        {
            **BASE,
            "MQTT_URL": "mqtt://u1:p1@n1:1883,mqtt://n2:1884,mqtt://n3:1885",
            "MQTT_CLIENT_ID": "bridge-7",
            "MQTT_KEEPALIVE": "12",
            "DATA_DIR": str(tmp_path),
        }
    )
    bridge = Bridge(settings)
    try:
        endpoints = bridge.mqtt.endpoints
        assert [(e.host, e.port) for e in endpoints] == [("n1", 1883), ("n2", 1884), ("n3", 1885)]
        assert {e.client_id for e in endpoints} == {"bridge-7"}  # one session, wherever it lives
        assert {e.keepalive for e in endpoints} == {12}
        assert (endpoints[0].username, endpoints[0].password) == ("u1", "p1")
        assert (endpoints[1].username, endpoints[1].password) == (None, None)
        assert [e.url for e in endpoints] == ["mqtt://n1:1883", "mqtt://n2:1884", "mqtt://n3:1885"]
    finally:
        bridge.db.close()
        bridge.store.close()
