"""The pure pipeline: topic routing, config changes, deadlines on a heap, rollback."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_bridge.devices import DeviceSet, device_set_from_json
from iot_bridge.events import Event, format_ts
from iot_bridge.runtime.pipeline import Pipeline

T0 = 1_767_225_600.0
FAST = {"standby_threshold_w": 20, "working_threshold_w": 100, "start_debounce_s": 1,
        "stop_debounce_s": 2, "message_timeout_s": 10}  # fmt: skip


def devices(*entries: dict[str, Any]) -> DeviceSet:
    return device_set_from_json({"config_version": "t", "devices": list(entries)})


def shelly(name: str, channel: int = 0, **session: float) -> dict[str, Any]:
    return {
        "device_id": f"{name}-{channel}",
        "mqtt_topic": f"{name}/status/switch:{channel}",
        "parser_type": "shelly_gen2",
        "parser_config": {"channel": channel},
        "session_config": {**FAST, **session},
    }


def status(watts: float) -> bytes:
    return json.dumps({"id": 0, "apower": watts, "voltage": 230.0}).encode()


def kinds(events: tuple[Event, ...] | list[Event]) -> list[tuple[str, str]]:
    return [(e.event_type, e.device_id) for e in events]


def start(p: Pipeline, topic: str, t: float = T0) -> list[Event]:
    out = list(p.handle(topic, status(500), t))
    out += p.handle(topic, status(500), t + 1.5)
    return out


def test_apply_subscribes_and_unsubscribes() -> None:
    p = Pipeline()
    change = p.apply(devices(shelly("saw"), shelly("lathe")), T0)
    assert change.subscribe == (
        "lathe/events/rpc", "lathe/online", "lathe/status/switch:0",
        "saw/events/rpc", "saw/online", "saw/status/switch:0",
    )  # fmt: skip
    assert change.unsubscribe == ()
    assert change.events == ()
    change = p.apply(devices(shelly("saw")), T0 + 1)
    assert change.unsubscribe == ("lathe/events/rpc", "lathe/online", "lathe/status/switch:0")
    assert change.subscribe == ()


def test_removed_device_closes_its_session_and_changed_one_keeps_it() -> None:
    p = Pipeline()
    p.apply(devices(shelly("saw"), shelly("lathe")), T0)
    events = start(p, "saw/status/switch:0") + start(p, "lathe/status/switch:0")
    assert kinds(events) == [("run_start", "saw-0"), ("run_start", "lathe-0")]
    session = p.detector("lathe-0").session_id
    change = p.apply(devices(shelly("lathe", stop_debounce_s=30)), T0 + 5)
    assert kinds(change.events) == [("run_stop", "saw-0")]
    assert change.events[0].payload["reason"] == "device_removed"
    assert p.detector("lathe-0").session_id == session
    assert p.detector("lathe-0").config.stop_debounce_s == 30


def test_one_topic_reaches_every_channel_of_a_device() -> None:
    """Two channels of one Shelly share its online topic: going offline ends both sessions."""
    p = Pipeline()
    p.apply(devices(shelly("pro4", 0), shelly("pro4", 1)), T0)
    events = start(p, "pro4/status/switch:0") + start(p, "pro4/status/switch:1")
    assert len(events) == 2
    stops = p.handle("pro4/online", b"false", T0 + 3)
    assert sorted(kinds(stops)) == [("run_stop", "pro4-0"), ("run_stop", "pro4-1")]
    assert {e.payload["reason"] for e in stops} == {"offline"}


def test_wildcard_topics_are_routed() -> None:
    p = Pipeline()
    p.apply(devices({"device_id": "meter", "mqtt_topic": "shop/+/power",
                     "parser_type": "generic", "session_config": FAST}), T0)  # fmt: skip
    assert p.subscriptions() == ("shop/+/power",)
    events = list(p.handle("shop/cnc/power", b"900", T0))
    events += p.handle("shop/cnc/power", b"900", T0 + 1.5)
    assert kinds(events) == [("run_start", "meter")]
    assert p.handle("shop/cnc/voltage", b"230", T0 + 2) == ()
    assert p.stats.unrouted == 1


def test_bad_payloads_are_counted_not_raised() -> None:
    p = Pipeline()
    p.apply(devices(shelly("saw")), T0)
    assert p.handle("saw/status/switch:0", b"{broken", T0) == ()
    assert p.handle("saw/status/switch:0", b'{"apower": "9"}', T0) == ()
    assert p.stats.parse_errors["shelly_gen2"] == 2
    assert "saw/status/switch:0" in p.stats.last_error["saw-0"]
    assert p.stats.messages == 2


def test_a_power_beyond_the_plausibility_bound_is_an_error_live_and_late() -> None:
    """1.8e19 W is a broken meter or a hostile publisher, never a machine: not billed."""
    p = Pipeline()
    p.apply(devices(shelly("saw")), T0)
    assert p.handle("saw/status/switch:0", status(1.8e19), T0) == ()
    assert p.handle("saw/status/switch:0", status(-2e6), T0 + 1) == ()
    p.disconnected(T0 + 2, observed=True)
    p.connected_at(T0 + 10, session_present=True)
    assert p.handle("saw/status/switch:0", status(1.8e19), T0 + 10) == ()  # from the backlog
    p.caught_up(echoed=True)
    assert p.stats.device_errors["saw-0"] == 3
    assert "beyond the plausibility bound of 1e+06 W" in p.stats.last_error["saw-0"]
    assert start(p, "saw/status/switch:0", T0 + 20) != []  # a true reading still counts
    assert p.detector("saw-0").session_open


def test_the_plausibility_bound_is_the_devices_own_when_it_sets_one() -> None:
    small = {**shelly("saw"), "parser_config": {"channel": 0, "max_power_w": 3000}}
    p = Pipeline()
    p.apply(devices(small), T0)
    assert p.handle("saw/status/switch:0", status(3500), T0) == ()
    assert p.stats.device_errors["saw-0"] == 1
    assert kinds(start(p, "saw/status/switch:0", T0 + 5)) == [("run_start", "saw-0")]


def test_silent_device_times_out_on_the_clock() -> None:
    p = Pipeline()
    p.apply(devices(shelly("saw")), T0)
    start(p, "saw/status/switch:0")
    assert p.next_deadline() == T0 + 1.5 + 10
    assert p.advance(T0 + 11) == ()
    (stop,) = p.advance(T0 + 11.5)
    assert stop.payload["reason"] == "timeout"
    assert p.next_deadline() is None


def test_a_stream_of_readings_does_not_grow_the_deadline_heap() -> None:
    """Message timeouts move later with every reading; they are not pushed each time."""
    p = Pipeline()
    p.apply(devices(shelly("saw")), T0)
    for i in range(5000):
        p.handle("saw/status/switch:0", status(500), T0 + i * 0.5)
    assert len(p._deadlines._heap) <= 3
    assert p.next_deadline() is not None


def test_restore_rolls_back_to_saved_states_and_closes_orphans() -> None:
    p = Pipeline()
    p.apply(devices(shelly("saw")), T0)
    start(p, "saw/status/switch:0")
    saved = dict(p.take_dirty_states())  # as committed
    session = p.detector("saw-0").session_id
    p.handle("saw/status/switch:0", status(0), T0 + 3)  # computed, then the commit fails
    orphan_state = dict(saved["saw-0"] or {})
    events = p.restore({"saw-0": saved["saw-0"] or {}, "gone-0": orphan_state}, T0 + 4)
    assert kinds(events) == [("run_stop", "gone-0")]
    assert events[0].payload["reason"] == "device_removed"
    det = p.detector("saw-0")
    assert det.session_id == session
    assert det.session_open  # the OFF reading was rolled back; the broker will redeliver it


def test_first_apply_closes_sessions_of_devices_removed_while_down() -> None:
    first = Pipeline()
    first.apply(devices(shelly("saw"), shelly("lathe")), T0)
    start(first, "lathe/status/switch:0")
    saved = {k: v for k, v in first.take_dirty_states().items() if v is not None}
    second = Pipeline()
    second.disconnected(None, observed=False)  # as the intake starts it: nothing heard yet
    change = second.apply(devices(shelly("saw")), T0 + 60, saved)
    assert kinds(change.events) == [("run_stop", "lathe-0")]
    assert change.events[0].payload["reason"] == "device_removed"
    # the bridge heard nothing since the last reading: the session ends there, not at T0 + 60
    assert change.events[0].payload["stopped_at"] == format_ts(T0 + 1.5)


# -- nothing escapes, whatever arrives ----------------------------------------------------------

FAMILIES = devices(
    shelly("sg2"),
    {"device_id": "g1", "mqtt_topic": "shellies/g1/relay/0/power", "parser_type": "shelly_gen1",
     "session_config": FAST},
    {"device_id": "tas", "mqtt_topic": "tele/tas/SENSOR", "parser_type": "tasmota",
     "session_config": FAST},
    {"device_id": "gen", "mqtt_topic": "gen/power", "parser_type": "generic",
     "parser_config": {"power_path": "a.0.p", "energy_path": "a.0.e", "max_power_w": 5000},
     "session_config": FAST},
)  # fmt: skip
_TOPICS = [*sorted({t for d in FAMILIES.devices for t in d.subscriptions()}), "x/y", "sg2/rpc"]
_KEYS = st.sampled_from(
    [
        "apower",
        "aenergy",
        "total",
        "ts",
        "params",
        "method",
        "pm1:0",
        "switch:0",
        "ENERGY",
        "Power",
        "Total",
        "Time",
        "a",
        "p",
        "e",
        "0",
    ]
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=20,
)
_payload = (
    st.binary(max_size=80)
    | _json.map(orjson.dumps)
    | st.sampled_from([b"true", b"false", b"Online", b"Offline", b"500", b"-1e308", b"[" * 3000])
    | st.builds(
        lambda w, ts: orjson.dumps(
            {"method": "NotifyStatus", "params": {"ts": ts, "switch:0": {"apower": w}}}
        ),
        st.floats(-1e7, 1e7),
        st.floats(0, 2e9),
    )
)
_step = st.tuples(
    st.sampled_from(_TOPICS),
    _payload,
    st.booleans(),  # retain
    st.floats(0, 40),  # seconds since the previous input
    st.sampled_from(["msg"] * 6 + ["advance", "down", "down_seen", "up", "up_lost", "caught"]),
)


@settings(max_examples=250, deadline=None)
@given(st.lists(_step, max_size=60))
def test_any_input_stream_never_raises_and_keeps_sessions_whole(steps: list[Any]) -> None:
    p = Pipeline()
    p.apply(FAMILIES, T0)
    t = T0
    events: list[Event] = []
    for topic, payload, retain, gap, action in steps:
        t += gap
        if action == "msg":
            events += p.handle(topic, payload, t, retain)
        elif action == "advance" and p.hearing:
            events += p.advance(t)
        elif action in ("down", "down_seen"):
            p.disconnected(t, observed=action == "down_seen")
        elif action in ("up", "up_lost"):
            p.connected_at(t, session_present=action == "up")
        elif action == "caught":
            p.caught_up(echoed=True)
        p.take_dirty_states()
    open_by_device: dict[str, str] = {}
    for e in events:
        if e.event_type == "run_start":
            assert e.device_id not in open_by_device
            open_by_device[e.device_id] = e.payload["session_id"]
        elif e.event_type == "run_stop":
            assert open_by_device.pop(e.device_id) == e.payload["session_id"]
            pl = e.payload
            assert pl["duration_s"] >= 0
            assert abs(pl["working_s"] + pl["standby_s"] - pl["duration_s"]) < 1e-3
            assert pl["energy_wh"] is None or pl["energy_wh"] >= 0
            assert pl["timing"] in ("measured", "estimated")
    assert p.stats.messages == sum(1 for s in steps if s[4] == "msg")


def test_only_changes_a_restart_must_keep_make_the_store_write() -> None:
    """An idle plug's chatter is written only when it taught the bridge its rhythm (a cadence
    sample every eight readings); a level change, a candidate session and every reading of an
    open session are written each time."""
    p = Pipeline()
    p.apply(devices(shelly("saw")), T0)
    topic = "saw/status/switch:0"
    p.handle(topic, status(1.0), T0)  # the first level the detector learns is kept
    assert set(p.take_dirty_states()) == {"saw-0"}
    written = 0
    for i in range(1, 41):
        p.handle(topic, status(1.0 + i / 100), T0 + i)
        written += len(p.take_dirty_states())
    assert written == 7  # samples at readings 2, 4, 8, 16, 24, 32 and 40 of the plug
    p.handle(topic, status(50), T0 + 50)  # OFF -> STANDBY
    assert set(p.take_dirty_states()) == {"saw-0"}
    start(p, topic, T0 + 60)
    p.take_dirty_states()
    p.handle(topic, status(500), T0 + 62)  # inside the open session: its figures move
    assert set(p.take_dirty_states()) == {"saw-0"}


# -- badge readers ------------------------------------------------------------------------------

READER = "tele/reader1/SENSOR"


def with_reader(entry: dict[str, Any], topic: str = READER) -> dict[str, Any]:
    return entry | {"badge_reader": {"mqtt_topic": topic, "format": "tasmota"}}


def pn532(uid: str, time: str = "2027-01-15T09:00:00") -> bytes:
    return json.dumps({"Time": time, "PN532": {"UID": uid}}).encode()


def test_a_scan_at_the_reader_is_a_badge_scan_event_of_the_machine() -> None:
    p = Pipeline()
    p.apply(devices(with_reader(shelly("laser"))), T0)
    assert READER in p.subscriptions()
    (scan,) = p.handle(READER, pn532("94:d8:fc:5f"), T0 + 1)
    assert (scan.event_type, scan.device_id) == ("badge_scan", "laser-0")
    assert scan.payload == {"badge_uid": "94D8FC5F", "scanned_at": format_ts(T0 + 1),
                            "reader": "PN532"}  # fmt: skip
    assert scan.ts == T0 + 1
    again = p.handle(READER, pn532("94D8FC5F"), T0 + 5)  # the same badge later: another scan
    assert again[0].event_uid != scan.event_uid
    assert p.handle(READER, b'{"Time":"2027-01-15T09:00:10"}', T0 + 10) == ()  # no card
    assert p.stats.unrouted == 0


def test_one_tasmota_that_meters_and_reads_badges_on_one_topic() -> None:
    tasmota = {"device_id": "cnc", "mqtt_topic": "tele/cnc/SENSOR", "parser_type": "tasmota",
               "session_config": FAST}  # fmt: skip
    p = Pipeline()
    p.apply(devices(with_reader(tasmota, "tele/cnc/SENSOR")), T0)
    both = b'{"Time":"2027-01-15T09:00:00","ENERGY":{"Power":500,"Total":1.0},"RDM6300":{"UID":"0043202D"}}'  # noqa: E501
    events = p.handle("tele/cnc/SENSOR", both, T0)
    assert [e.event_type for e in events] == ["badge_scan"]
    assert p.detector("cnc").power_w == 500.0  # the same message was a reading too


def test_retained_and_broken_reader_messages_are_no_scans() -> None:
    p = Pipeline()
    p.apply(devices(with_reader(shelly("laser"))), T0)
    assert p.handle(READER, pn532("94D8FC5F"), T0, retain=True) == ()
    assert p.handle(READER, b'{"PN532":{"UID":7}}', T0 + 1) == ()
    assert p.stats.device_errors["laser-0"] == 1
    assert "badge reader: PN532.UID must be a string" in p.stats.last_error["laser-0"]


def test_a_scan_from_the_backlog_keeps_the_readers_own_time() -> None:
    p = Pipeline()
    p.apply(devices(with_reader(shelly("laser"))), T0)
    # live: the reader's teleperiod (no card) teaches its clock, local time one hour ahead
    p.handle(READER, b'{"Time":"2027-01-15T09:00:00"}', 1_800_000_000.0)
    p.disconnected(1_800_000_100.0, observed=False)
    p.connected_at(1_800_000_900.0, session_present=True)
    (scan,) = p.handle(READER, pn532("94D8FC5F", "2027-01-15T09:05:00"), 1_800_000_901.0)
    assert scan.payload["scanned_at"] == format_ts(1_800_000_300.0)  # when it was badged
    state = p.take_dirty_states()["laser-0"]
    assert state is not None
    assert state["reader"]["last_seen"] == 1_800_000_300.0  # persisted with the device
