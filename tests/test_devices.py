"""The device config shape: every entry validated, one bad entry rejected with a message that
names it and the field, the others kept; keys the bridge does not know are refused."""

from __future__ import annotations

from typing import Any

import pytest

from iot_bridge.devices import (
    DEVICE_KEYS,
    PARSER_KEYS,
    SESSION_KEYS,
    SessionConfig,
    device_from_json,
    device_set_from_json,
)
from iot_bridge.errors import ConfigError


def entry(device_id: str = "laser-1", **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "device_id": device_id,
        "mqtt_topic": f"{device_id}/status/pm1:0",
        "parser_type": "shelly_pm_mini_g3",
        "machine_name": "Laser",
        "session_config": {"strategy": "power_threshold", "standby_threshold_w": 10},
        "parser_config": {"channel": 0},
        "badge_reader": {"mqtt_topic": f"tele/{device_id}-reader/SENSOR", "format": "tasmota"},
    }
    doc.update(extra)
    return doc


def rejected(doc: dict[str, Any]) -> str:
    """The one message for ``doc`` when it is the bad entry beside a good one."""
    devices = device_set_from_json({"devices": [entry("good"), doc]})
    assert [d.device_id for d in devices.devices] == ["good"]  # the other one keeps running
    (message,) = devices.errors
    return message


def test_every_known_key_is_accepted() -> None:
    device = device_from_json(entry())
    assert device.session.standby_threshold_w == 10.0
    assert device.reader is not None
    assert device.reader.mqtt_topic == "tele/laser-1-reader/SENSOR"
    assert set(entry()) == DEVICE_KEYS  # the helper above uses every key a device entry has


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["session_config"].update(standby_treshold_w=5),
            "device 'laser-1': session_config: unknown key 'standby_treshold_w' "
            "(did you mean 'standby_threshold_w'?)",
        ),
        (
            lambda d: d.update(sesion_config=d.pop("session_config")),
            "device 'laser-1': unknown key 'sesion_config' (did you mean 'session_config'?)",
        ),
        (
            lambda d: d.update(mqtt_topc=d.pop("mqtt_topic")),
            "device 'laser-1': unknown key 'mqtt_topc' (did you mean 'mqtt_topic'?)",
        ),
        (
            lambda d: d["parser_config"].update(chanel=1),
            "device 'laser-1': parser_config: unknown key 'chanel' (did you mean 'channel'?)",
        ),
        (
            lambda d: d.update(colour="red"),
            "device 'laser-1': unknown key 'colour' (known: badge_reader, device_id, "
            "machine_name, mqtt_topic, parser_config, parser_type, session_config)",
        ),
        (
            lambda d: d["parser_config"].update(chanel=1, zzz=2),
            "device 'laser-1': parser_config: unknown keys 'chanel' (did you mean 'channel'?), "
            "'zzz' (known: channel, energy_path, energy_unit, max_power_w, power_path)",
        ),
    ],
)
def test_unknown_key_rejects_the_entry_naming_it(mutate: Any, message: str) -> None:
    doc = entry()
    mutate(doc)
    assert rejected(doc) == message


def test_a_typo_in_device_id_is_named_as_such() -> None:
    doc = entry()
    doc["devce_id"] = doc.pop("device_id")
    assert rejected(doc) == "device entry 2: unknown key 'devce_id' (did you mean 'device_id'?)"


def test_missing_field_is_named_once() -> None:
    """Not ``mqtt_topic.mqtt_topic must be ...``: the field, then what is wrong with it."""
    doc = entry()
    del doc["mqtt_topic"]
    assert rejected(doc) == "device 'laser-1': mqtt_topic must be a non-empty string, got None"
    doc = entry()
    doc["session_config"]["working_threshold_w"] = "100"
    assert rejected(doc) == (
        "device 'laser-1': session_config.working_threshold_w must be a number, got '100'"
    )
    doc = entry()
    del doc["device_id"]
    assert rejected(doc) == "device entry 2: device_id must be a non-empty string, got None"


def test_known_keys_are_what_the_readers_read() -> None:
    """Each set of known keys is defined once, beside its reader; the session keys follow the
    thresholds and timers of SessionConfig, so adding one there is the only edit needed."""
    assert {"strategy", "standby_threshold_w", "message_timeout_s"} <= SESSION_KEYS
    assert SESSION_KEYS - {"strategy"} == set(SessionConfig.__dataclass_fields__)
    values = {k: 1.0 for k in SESSION_KEYS - {"strategy"}}
    values["working_threshold_w"] = 2.0
    doc = entry(session_config=values)
    assert device_from_json(doc).session == SessionConfig(**values)
    doc = entry(parser_config={"channel": 1, "power_path": "a.b", "energy_path": "c",
                               "energy_unit": "kWh", "max_power_w": 5000})  # fmt: skip
    assert set(doc["parser_config"]) == PARSER_KEYS
    parser = device_from_json(doc).parser
    assert parser.energy_unit == "kWh"
    assert parser.max_power_w == 5000.0


def test_replay_device_is_checked_the_same_way() -> None:
    doc = entry()
    doc["session_config"]["stop_debounce"] = 3
    with pytest.raises(ConfigError, match=r"did you mean 'stop_debounce_s'\?"):
        device_from_json(doc)


def test_top_level_keys_other_than_devices_are_not_refused() -> None:
    """Only device entries are held to their keys; the document may carry more (Odoo's
    answer is an object the contract may extend)."""
    devices = device_set_from_json({"config_version": "3", "devices": [entry()], "note": "x"})
    assert devices.errors == ()
    assert len(devices.devices) == 1


@pytest.mark.parametrize(
    ("reader", "message"),
    [
        ({"mqtt_topic": "tele/r/SENSOR", "format": "nfc"}, "badge_reader.format must be one of"),
        ({"mqtt_topic": "tele/+/SENSOR", "format": "tasmota"}, "has a wildcard"),
        ({"mqtt_topic": "r/scan", "format": "generic"}, "uid_path must be a non-empty string"),
        ({"mqtt_topic": "r", "format": "tasmota", "uid_path": "a"}, "for generic readers only"),
        ({"mqtt_topic": "r", "format": "tasmota", "topic": "x"}, "unknown key 'topic'"),
        ("tele/r/SENSOR", "badge_reader must be an object"),
    ],
)
def test_a_bad_badge_reader_rejects_its_device(reader: object, message: str) -> None:
    assert message in rejected(entry(badge_reader=reader))
