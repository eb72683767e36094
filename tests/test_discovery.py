"""Discovery (``runtime/discovery.py``): real announcement payloads (``tests/fixtures/payloads``,
expected results side by side in ``expected_discovery.json``), the list's rules (configured
plugs skipped, capped, merged, forgotten), hostile input, and the pipeline's side: an
announcement never touches the session path, a configured plug's LWT stays the pipeline's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from iot_bridge.devices import device_set_from_json
from iot_bridge.events import format_ts
from iot_bridge.runtime.discovery import (
    DEFAULT_TOPICS,
    FORGET_AFTER_S,
    MAX_DETAILS_JSON,
    MAX_ENTRIES,
    Discovery,
    infer,
)
from iot_bridge.runtime.pipeline import Pipeline
from iot_bridge.topics import matches

FIXTURES = Path(__file__).parent / "fixtures"
PAYLOADS = FIXTURES / "payloads"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected_discovery.json").read_text())
T0 = 1_800_000_000.0


def _payload(name: str) -> bytes:
    raw = (PAYLOADS / name).read_bytes()
    try:
        doc = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(doc, dict) and "_envelope" in doc:
        return str(doc["payload_text"]).encode()
    return raw


CASES = [
    pytest.param(name, case, id=f"{name}:{i}")
    for name, cases in EXPECTED.items()
    if not name.startswith("_")
    for i, case in enumerate(cases)
]


@pytest.mark.parametrize(("name", "case"), CASES)
def test_real_announcements(name: str, case: dict[str, Any]) -> None:
    found = infer(case["topic"], _payload(name))
    if case["expect"] is None:
        assert found is None, case["note"]
        return
    assert found is not None, case["note"]
    got = {
        "topic": found.topic,
        "device_id": found.device_id,
        "model": found.model,
        "parser_type": found.parser_type,
        "source": found.source,
        "details": found.details,
    }
    assert got == case["expect"], case["note"]


def test_every_fixture_file_named_exists() -> None:
    for name in EXPECTED:
        if not name.startswith("_"):
            assert (PAYLOADS / name).is_file(), name


def test_tasmota_discovery_config() -> None:
    """No captured ``tasmota/discovery/<mac>/config`` payload is in the fixtures; this one is
    written here from the key names of Tasmota's discovery message (``t`` topic, ``ft`` full
    topic, ``tp`` prefixes, ``md`` module, ``sw`` version, ``hn`` host name …)."""
    payload = orjson.dumps(
        {
            "ip": "192.168.1.50",
            "dn": "Laser Plug",
            "fn": ["Laser", None],
            "hn": "laser-plug",
            "mac": "A4CF12345678",
            "md": "Gosund SP1",
            "ty": 0,
            "if": 0,
            "ofln": "Offline",
            "onln": "Online",
            "state": ["OFF", "ON", "TOGGLE", "HOLD"],
            "sw": "13.2.0",
            "t": "tasmota_345678",
            "ft": "%prefix%/%topic%/",
            "tp": ["cmnd", "stat", "tele"],
        }
    )
    found = infer("tasmota/discovery/A4CF12345678/config", payload)
    assert found is not None
    assert found.topic == "tele/tasmota_345678/SENSOR"
    assert (found.device_id, found.model, found.parser_type, found.source) == (
        "tasmota_345678",
        "Gosund SP1",
        "tasmota",
        "tasmota_discovery",
    )
    assert found.details == {
        "ip": "192.168.1.50",
        "mac": "A4CF12345678",
        "sw": "13.2.0",
        "hn": "laser-plug",
        "dn": "Laser Plug",
    }
    custom = orjson.dumps({"t": "pow", "ft": "%topic%/%prefix%/", "tp": ["c", "s", "t"]})
    assert infer("tasmota/discovery/X/config", custom).topic == "pow/t/SENSOR"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("shellies/announce", b"not json"),
        ("shellies/announce", b'{"id": "a/b"}'),  # would make another topic
        ("shellies/announce", b"[1, 2]"),
        ("shellies/announce", b'{"model": "SHSW-1"}'),  # no id
        ("x/online", b"maybe"),
        ("x/events/rpc", b'{"src": "x"}'),  # no method: not JSON-RPC
        ("tele/t/LWT", b"online"),  # Tasmota says Online
        ("tasmota/discovery/X/config", b'{"t": "a/b"}'),
        ("tasmota/discovery/X/config", b"{}"),
        ("shellies/announce", b'{"id": "' + b"x" * 20_000 + b'"}'),  # too large to be one
        ("some/other/topic", b"{}"),
    ],
)
def test_what_is_not_an_announcement(topic: str, payload: bytes) -> None:
    assert infer(topic, payload) is None


def _config(*devices: dict[str, Any]) -> Any:
    return device_set_from_json({"config_version": "1", "devices": list(devices)})


ALPHA = {
    "device_id": "shellypmminig3-alpha",
    "mqtt_topic": "alpha/status/pm1:0",
    "parser_type": "shelly_pm_mini_g3",
}


def test_the_list_skips_configured_plugs_and_keeps_first_and_last_seen() -> None:
    d = Discovery()
    assert d.handle("tele/pow1/LWT", b"Online", T0)
    assert d.handle("alpha/online", b"true", T0 + 1)  # configured (by topic stem)
    assert d.handle("x/events/rpc", b'{"src": "shellypmminig3-alpha", "method": "N"}', T0)
    assert d.handle("tele/pow1/LWT", b"Offline", T0 + 5)
    entries = d.entries(_config(ALPHA), T0 + 10)
    assert [e["topic"] for e in entries] == ["tele/pow1/SENSOR"]
    assert entries[0]["first_seen"] == format_ts(T0)
    assert entries[0]["last_seen"] == format_ts(T0 + 5)
    assert entries[0]["details"] == {"online": False}
    # without that config every plug is listed
    assert len(d.entries(None, T0 + 10)) == 3


def test_a_later_announcement_keeps_what_it_does_not_say() -> None:
    d = Discovery()
    d.handle(
        "x/events/rpc",
        b'{"src": "shellyplus1pm-aabbccddeeff", "method": "NotifyFullStatus",'
        b' "params": {"sys": {"mac": "AABBCCDDEEFF"}}}',
        T0,
    )
    d.handle("x/online", b"true", T0 + 1)  # same topic x/events/rpc; knows no mac
    (entry,) = d.entries(None, T0 + 2)
    assert entry["device_id"] == "shellyplus1pm-aabbccddeeff"
    assert entry["details"] == {"mac": "AABBCCDDEEFF", "online": True}
    assert entry["source"] == "shelly_gen2_rpc"  # what the plug said itself


def test_the_list_is_capped_and_forgets_plugs_silent_for_a_day() -> None:
    d = Discovery()
    for i in range(MAX_ENTRIES + 50):
        d.handle(f"tele/t{i}/LWT", b"Online", T0)
    assert len(d) == MAX_ENTRIES
    assert d.dropped == 50
    d.handle("tele/t0/LWT", b"Online", T0 + FORGET_AFTER_S)  # t0 is heard again
    d.handle("tele/new/LWT", b"Online", T0 + FORGET_AFTER_S + 1)  # the rest is forgotten
    topics = {e["topic"] for e in d.entries(None, T0 + FORGET_AFTER_S + 1)}
    assert topics == {"tele/t0/SENSOR", "tele/new/SENSOR"}


def test_hostile_strings_are_cut_and_never_carry_nul() -> None:
    d = Discovery()
    big = {
        "id": "plug\x00" + "p" * 200,
        "model": "\x00" * 10 + "M" * 300,
        "ip": "1" * 400,
        "mac": "m" * 400,
        "fw_ver": "f" * 4000,
        "new_fw": "x" * 4000,
    }
    d.handle("shellies/announce", orjson.dumps(big), T0)
    (entry,) = d.entries(None, T0)
    text = orjson.dumps(entry).decode()
    assert "\\u0000" not in text
    assert len(entry["topic"]) <= 255
    assert len(entry["device_id"]) <= 255
    assert len(entry["model"]) <= 255
    assert len(orjson.dumps(entry["details"])) <= MAX_DETAILS_JSON
    long_topic = "tele/" + "t" * 300 + "/LWT"
    assert not d.handle(long_topic, b"Online", T0)  # its topic would not fit: not listed


def test_the_default_filters_are_few_and_never_everything() -> None:
    assert "#" not in DEFAULT_TOPICS
    assert len(DEFAULT_TOPICS) == 5
    for topic in (
        "shellies/announce",
        "shellyplus1-08b61fd141e8/online",
        "shellyplus1-08b61fd141e8/events/rpc",
        "tele/tasmota_9CF9D1/LWT",
        "tasmota/discovery/A4CF12345678/config",
    ):
        assert any(matches(f, topic) for f in DEFAULT_TOPICS), topic


# -- the pipeline's side ------------------------------------------------------------------------


def test_an_announcement_never_touches_the_session_path() -> None:
    p = Pipeline(discovery=Discovery())
    p.apply(_config(ALPHA), T0)
    p.handle("tele/pow1/LWT", b"Online", T0 + 1)
    p.handle(
        "bravo/events/rpc",
        b'{"src": "shellypmminig3-bravo", "method": "NotifyStatus",'
        b' "params": {"pm1:0": {"apower": 500.0}}}',
        T0 + 1,
    )
    assert p.stats.announcements == 2
    assert p.stats.unrouted == 0
    assert [v.device_id for v in p.views()] == ["shellypmminig3-alpha"]
    assert p.open_sessions() == 0
    for f in DEFAULT_TOPICS:
        assert f in p.subscriptions()


def test_a_configured_plugs_lwt_feeds_its_online_state_not_discovery() -> None:
    d = Discovery()
    p = Pipeline(discovery=d)
    p.apply(_config(ALPHA), T0)
    p.live_changed = False
    p.handle("alpha/online", b"false", T0 + 1)
    assert p.views()[0].online is False
    assert p.live_changed
    assert len(d) == 0
    p.live_changed = False
    p.handle("alpha/online", b"false", T0 + 2)  # no change: no prompt status
    assert not p.live_changed
    p.handle("alpha/online", b"true", T0 + 3)
    assert p.views()[0].online is True
    assert p.live_changed


def test_without_discovery_nothing_more_is_subscribed() -> None:
    p = Pipeline()
    p.apply(_config(ALPHA), T0)
    assert not set(DEFAULT_TOPICS) & set(p.subscriptions())
    p.handle("tele/pow1/LWT", b"Online", T0)
    assert p.stats.unrouted == 1


def test_a_known_gen2_plugs_readings_are_not_decoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    d = Discovery()
    frame = b'{"src": "shellyplus1pm-aabbccddeeff", "method": "NotifyStatus", "params": {}}'
    assert d.handle("shellyplus1pm-aabbccddeeff/events/rpc", frame, T0)
    calls: list[str] = []
    monkeypatch.setattr(
        "iot_bridge.runtime.discovery.infer", lambda topic, payload: calls.append(topic)
    )
    assert d.handle("shellyplus1pm-aabbccddeeff/events/rpc", frame, T0 + 60)
    assert calls == []
    (entry,) = d.entries(None, T0 + 60)
    assert entry["last_seen"] == format_ts(T0 + 60)
    assert entry["first_seen"] == format_ts(T0)
