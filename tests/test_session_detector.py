"""The session detector against ``docs/sessions.md``: one test per table row, the
original's scenarios, the awkward cases, and hypothesis over random reading streams."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_bridge.devices import SessionConfig
from iot_bridge.errors import ConfigError
from iot_bridge.events import Event, format_ts, parse_ts
from iot_bridge.sessions.detector import TRANSITIONS, Input, SessionDetector, State

# standby 20 W, working 100 W, start debounce 3 s, stop debounce 15 s, timeout 20 s
CFG = SessionConfig(20, 100, 3, 15, 20)
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z

Step = tuple[float, float | None] | tuple[float, float | None, float | None]


def feed(det: SessionDetector, steps: Iterable[Step]) -> list[Event]:
    """Readings at T0 + offset: ``(offset, power)`` or ``(offset, power, energy_counter)``."""
    out: list[Event] = []
    for step in steps:
        energy = step[2] if len(step) == 3 else None
        out += det.handle_reading(T0 + step[0], step[1], energy)
    return out


def ts(offset: float) -> str:
    return format_ts(T0 + offset)


def det_in(state: State, cfg: SessionConfig = CFG) -> tuple[SessionDetector, list[Event]]:
    """A detector driven into ``state`` at offset 10 with ``CFG``, then switched to ``cfg``."""
    det = SessionDetector("dev-1", CFG)
    steps: dict[State, list[Step]] = {
        State.IDLE: [(0, 5)],
        State.STARTING: [(0, 5), (10, 150)],
        State.WORKING: [(0, 5), (5, 150), (8, 150), (10, 150)],
        State.STANDBY: [(0, 5), (5, 150), (8, 150), (9, 50), (10, 50)],
        State.STOPPING: [(0, 5), (5, 150), (8, 150), (10, 5)],
    }
    events = feed(det, steps[state])
    if state is State.STANDBY:
        events += det.advance(T0 + 24)  # stop debounce of the 50 W level: STOPPING -> STANDBY
    assert det.state is state
    det.update_config(cfg)
    return det, events


def state_of(det: SessionDetector) -> State:
    """Read the state through a call, so type checkers do not carry narrowing across inputs."""
    return det.state


def kinds(events: Sequence[Event]) -> list[str]:
    return [e.event_type for e in events]


# -- one test per row of the transition table ---------------------------------------------------


@pytest.mark.parametrize("power", [5.0, 50.0])
def test_idle_stays_idle_below_working(power: float) -> None:
    det, _ = det_in(State.IDLE)
    assert feed(det, [(11, power)]) == []
    assert det.state is State.IDLE
    assert det.next_deadline() is None  # an idle device has no timers


def test_idle_to_starting_on_working() -> None:
    det, _ = det_in(State.IDLE)
    assert feed(det, [(11, 150)]) == []
    assert det.state is State.STARTING
    assert det.next_deadline() == T0 + 11 + 3


@pytest.mark.parametrize("power", [5.0, 50.0])
def test_starting_false_start(power: float) -> None:
    det, _ = det_in(State.STARTING)
    assert feed(det, [(12, power)]) == []
    assert det.state is State.IDLE
    assert det.session_id is None
    assert det.advance(T0 + 1000) == ()


def test_starting_confirmed_by_deadline_emits_run_start() -> None:
    det, _ = det_in(State.STARTING)
    events = det.advance(T0 + 13)
    assert kinds(events) == ["run_start"]
    start = events[0]
    assert start.ts == T0 + 13  # the moment of confirmation
    assert start.payload["started_at"] == ts(10)  # the debounce's beginning
    assert start.payload["reason"] == "power_threshold"
    assert start.payload["power_w"] == 150
    assert start.payload["session_id"] == det.session_id
    assert det.state is State.WORKING


def test_starting_deadline_not_yet() -> None:
    det, _ = det_in(State.STARTING)
    assert det.advance(T0 + 12.999) == ()
    assert det.state is State.STARTING


@pytest.mark.parametrize("power", [5.0, 50.0])
def test_working_to_stopping(power: float) -> None:
    det, _ = det_in(State.WORKING)
    assert feed(det, [(12, power)]) == []
    assert det.state is State.STOPPING
    assert det.next_deadline() == T0 + 12 + 15


def test_standby_to_working() -> None:
    det, _ = det_in(State.STANDBY)
    assert feed(det, [(25, 150)]) == []
    assert det.state is State.WORKING


def test_standby_to_stopping_on_off() -> None:
    det, _ = det_in(State.STANDBY)
    assert feed(det, [(25, 5)]) == []
    assert det.state is State.STOPPING
    assert det.next_deadline() == T0 + 25 + 15


def test_stopping_back_to_working() -> None:
    det, _ = det_in(State.STOPPING)
    assert feed(det, [(12, 150)]) == []
    assert det.state is State.WORKING
    assert det.advance(T0 + 28) == ()  # the old stop deadline is gone


def test_stopping_level_change_restarts_debounce() -> None:
    det, _ = det_in(State.STOPPING)  # OFF since 10
    feed(det, [(12, 50)])  # STANDBY now: the new level must persist
    assert det.state is State.STOPPING
    assert det.next_deadline() == T0 + 12 + 15
    feed(det, [(14, 50)])  # same level: the debounce keeps running
    assert det.next_deadline() == T0 + 12 + 15


def test_stopping_deadline_off_emits_run_stop_normal() -> None:
    det, _ = det_in(State.STOPPING)
    session = det.session_id
    feed(det, [(18, 5)])  # keep the device alive; same level
    events = det.advance(T0 + 25)
    assert kinds(events) == ["run_stop"]
    stop = events[0]
    assert stop.ts == T0 + 25
    assert stop.payload["reason"] == "normal"
    assert stop.payload["stopped_at"] == ts(10)  # when the power fell, not when decided
    assert stop.payload["started_at"] == ts(5)
    assert stop.payload["duration_s"] == 5.0
    assert stop.payload["session_id"] == session
    assert det.state is State.IDLE


def test_stopping_deadline_standby_goes_to_standby() -> None:
    det, _ = det_in(State.WORKING)
    feed(det, [(12, 50), (20, 50)])
    assert det.advance(T0 + 27) == ()
    assert det.state is State.STANDBY
    assert det.session_open


def test_starting_timeout_and_offline_go_idle() -> None:
    det, _ = det_in(State.STARTING)
    cfg = SessionConfig(20, 100, 60, 15, 20)  # start debounce longer than the timeout
    det.update_config(cfg)
    assert det.advance(T0 + 31) == ()
    assert det.state is State.IDLE
    det2, _ = det_in(State.STARTING)
    assert det2.handle_offline(T0 + 11) == ()
    assert det2.state is State.IDLE


@pytest.mark.parametrize("state", [State.WORKING, State.STANDBY, State.STOPPING])
def test_open_state_timeout_closes_at_last_message(state: State) -> None:
    cfg = SessionConfig(20, 100, 3, 100, 20)  # stop debounce longer than the timeout
    det, _ = det_in(state, cfg)
    last = det.last_seen
    assert last is not None
    assert det.advance(last + 19.9) == ()
    events = det.advance(last + 20)
    assert kinds(events) == ["run_stop"]
    assert events[0].payload["reason"] == "timeout"
    assert events[0].payload["stopped_at"] == format_ts(last)
    assert events[0].ts == last + 20
    assert det.state is State.IDLE


@pytest.mark.parametrize("state", [State.WORKING, State.STANDBY, State.STOPPING])
def test_open_state_offline_closes_at_last_message(state: State) -> None:
    det, _ = det_in(state)
    last = det.last_seen
    assert last is not None
    events = det.handle_offline(last + 2)
    assert kinds(events) == ["run_stop"]
    assert events[0].payload["reason"] == "offline"
    assert events[0].payload["stopped_at"] == format_ts(last)
    assert det.state is State.IDLE


@pytest.mark.parametrize("state", [State.STARTING, State.WORKING, State.STANDBY, State.STOPPING])
def test_device_removed(state: State) -> None:
    det, _ = det_in(state)
    events = det.remove(T0 + 11)
    if state is State.STARTING:
        assert events == ()
    else:
        assert kinds(events) == ["run_stop"]
        assert events[0].payload["reason"] == "device_removed"
        assert events[0].payload["stopped_at"] == ts(11)
    assert det.state is State.IDLE


def test_table_has_a_row_for_every_deadline_input_of_timed_states() -> None:
    # advance() relies on this: a deadline always leaves its state
    for state in (State.STARTING, State.WORKING, State.STANDBY, State.STOPPING):
        assert (state, Input.TIMEOUT) in TRANSITIONS
    assert (State.STARTING, Input.DEBOUNCE_WORKING) in TRANSITIONS
    assert (State.STOPPING, Input.DEBOUNCE_OFF) in TRANSITIONS
    assert (State.STOPPING, Input.DEBOUNCE_STANDBY) in TRANSITIONS


def test_zero_debounces_start_and_stop_on_first_reading() -> None:
    det = SessionDetector("dev-1", SessionConfig(20, 100, 0, 0, 20))
    start = feed(det, [(0, 150)])
    assert kinds(start) == ["run_start"]
    assert start[0].ts == T0
    stop = feed(det, [(4, 5)])
    assert kinds(stop) == ["run_stop"]
    assert stop[0].payload["duration_s"] == 4.0
    assert stop[0].payload["working_s"] == 4.0


# -- the original's scenarios -----------------------------------------------------------------


def test_full_session_scenario() -> None:
    """Idle, machine starts, works, pauses in standby, works again, stops."""
    det = SessionDetector("shellypmminig3-48f6eeb73a1c", CFG)
    steps: list[Step] = [(0, 0.0, 100.0), (5, 3.0, 100.0)]
    steps += [(10 + i, 120.5, 100.0 + i * 0.0335) for i in range(0, 31)]  # 10..40 at 120.5 W
    steps += [(41 + i, 45.0, 101.0 + i * 0.0125) for i in range(0, 20)]  # standby 41..60
    steps += [(61 + i, 300.0, 101.3 + i * 0.0833) for i in range(0, 10)]  # work 61..70
    steps += [(71 + i, 2.0, 102.2) for i in range(0, 30)]  # off from 71
    events = feed(det, steps)
    assert kinds(events) == ["run_start", "run_stop"]
    start, stop = events
    assert start.payload["started_at"] == ts(10)
    assert start.ts == T0 + 13
    p = stop.payload
    assert p["reason"] == "normal"
    assert p["stopped_at"] == ts(71)
    assert stop.ts == T0 + 86
    assert p["duration_s"] == 61.0
    # working 10..41 and 61..71; the 41..56 standby level was debounced into STANDBY
    assert p["working_s"] == 41.0
    assert p["standby_s"] == 20.0
    assert p["energy_source"] == "counter"
    assert p["energy_wh"] == pytest.approx(102.2 - 100.0 - 0.0, abs=0.01)
    assert p["max_power_w"] == 300.0
    integral = 31 * 120.5 + 20 * 45.0 + 10 * 300.0
    assert p["avg_power_w"] == pytest.approx(integral / 61.0, abs=0.01)


def test_session_end_scenario_matches_original_numbers() -> None:
    """The original's run_stop example: power falls to 8.2 W, reason normal."""
    det, _ = det_in(State.WORKING)
    events = feed(det, [(18, 8.2), (28, 8.2), (33, 8.2)])
    assert kinds(events) == ["run_stop"]
    assert events[0].ts == T0 + 33
    assert events[0].payload["power_w"] == 8.2
    assert events[0].payload["reason"] == "normal"
    assert events[0].payload["duration_s"] == 13.0


def test_timeout_scenario_device_falls_silent() -> None:
    """Silent device: the deadline fires on the clock without any further message."""
    det, _ = det_in(State.WORKING)
    deadline = det.next_deadline()
    assert deadline == T0 + 10 + 20
    events = det.advance(deadline)
    assert kinds(events) == ["run_stop"]
    assert events[0].payload["reason"] == "timeout"
    assert events[0].payload["stopped_at"] == ts(10)
    assert events[0].payload["working_s"] == 5.0
    assert det.next_deadline() is None


def test_sign_of_life_keeps_power_and_resets_timeout() -> None:
    det, _ = det_in(State.WORKING)
    feed(det, [(25, None), (40, None, 5.0)])  # voltage-only / aenergy-only frames
    assert det.state is State.WORKING  # not 0 W
    assert det.next_deadline() == T0 + 60
    events = det.advance(T0 + 60)
    assert events[0].payload["stopped_at"] == ts(40)
    assert events[0].payload["working_s"] == 35.0


# -- flapping, counters, config changes, restarts, pauses -------------------------------------


def test_flapping_around_working_threshold_never_starts() -> None:
    det = SessionDetector("dev-1", CFG)
    steps: list[Step] = [(i * 1.0, 101.0 if i % 2 else 99.0) for i in range(60)]
    assert feed(det, steps) == []
    assert det.state in (State.IDLE, State.STARTING)


def test_flapping_around_standby_threshold_stops_once() -> None:
    det, _ = det_in(State.WORKING)
    steps: list[Step] = [(11 + i, 21.0 if i % 2 else 19.0) for i in range(40)]
    steps += [(60 + i, 5.0) for i in range(20)]
    events = feed(det, steps)
    assert kinds(events) == ["run_stop"]
    assert events[0].payload["stopped_at"] == ts(60)  # OFF had to persist for 15 s


def test_counter_reset_starts_new_baseline() -> None:
    det = SessionDetector("dev-1", CFG)
    steps: list[Step] = [(0, 150, 500.0), (5, 150, 510.0), (10, 150, 2.0), (20, 150, 7.0)]
    steps += [(30, 5, 8.0), (50, 5, 8.0)]
    events = feed(det, steps)
    assert kinds(events) == ["run_start", "run_stop"]
    stop = events[1].payload
    assert stop["energy_source"] == "counter"
    assert stop["energy_wh"] == pytest.approx(10.0 + 5.0 + 1.0)  # 500->510, reset to 2, 2->8


def test_integrated_energy_without_counter() -> None:
    det = SessionDetector("dev-1", CFG)
    events = feed(det, [(0, 360.0), (10, 360.0), (20, 0.0), (36, 0.0)])
    stop = events[-1].payload
    assert stop["energy_source"] == "integrated"
    assert stop["energy_wh"] == pytest.approx(2.0)  # 360 W for 20 s


def test_threshold_change_mid_session_keeps_the_session() -> None:
    det, _ = det_in(State.WORKING)
    session = det.session_id
    det.update_config(SessionConfig(20, 200, 3, 15, 20))
    assert det.state is State.WORKING  # nothing happens until the next reading
    feed(det, [(12, 150)])  # 150 W is now below working: STANDBY level -> STOPPING
    assert state_of(det) is State.STOPPING
    assert det.session_id == session
    events = feed(det, [(14, 250), (40, 5), (56, 5)])
    assert kinds(events) == ["run_stop"]
    assert events[0].payload["session_id"] == session


def test_invalid_configs_are_rejected() -> None:
    for bad in [(100, 20, 3, 15, 20), (20, 20, 3, 15, 20), (-1, 10, 0, 0, 1)]:
        with pytest.raises(ConfigError):
            SessionConfig(*bad)
    with pytest.raises(ConfigError):
        SessionConfig(20, 100, -1, 15, 20)
    with pytest.raises(ConfigError):
        SessionConfig(20, 100, 3, 15, 0)


def test_restart_restores_session_under_same_id() -> None:
    det, _ = det_in(State.WORKING)
    saved = json.loads(json.dumps(det.to_state()))
    restored = SessionDetector.from_state("dev-1", CFG, saved)
    assert restored.session_id == det.session_id
    assert restored.state is State.WORKING
    # the runtime advances a restored detector once it hears the device again; a device
    # silent for longer than T meanwhile closes at its last reading
    events = restored.advance(T0 + 520)
    assert kinds(events) == ["run_stop"]
    assert events[0].payload["stopped_at"] == ts(10)
    assert events[0].payload["session_id"] == det.session_id


def test_a_forgiven_outage_is_not_the_devices_silence() -> None:
    """Time the bridge could not hear (the broker was gone) stops the message timeout."""
    det, _ = det_in(State.WORKING)
    assert det.next_deadline() == T0 + 30  # last reading at 10, T = 20
    det.forgive(T0 + 15, T0 + 300)
    assert det.next_deadline() == T0 + 315  # 5 s of silence before, 15 s left after
    assert det.advance(T0 + 314) == ()
    assert det.session_open
    feed(det, [(310, 150)])
    assert det.advance(T0 + 329) == ()
    assert det.state is State.WORKING


def test_forgiveness_never_shortens_a_timeout_and_ignores_idle_devices() -> None:
    det, _ = det_in(State.WORKING)
    det.forgive(T0 + 5, T0 + 12)  # the last reading (10) lies inside: the clock starts at 12
    assert det.next_deadline() == T0 + 32
    det.forgive(T0 + 40, T0 + 20)  # an empty span changes nothing
    assert det.next_deadline() == T0 + 32
    idle = SessionDetector("dev-2", CFG)
    idle.forgive(T0, T0 + 100)
    assert idle.next_deadline() is None


def test_readings_placed_without_a_device_time_mark_the_session_estimated() -> None:
    det = SessionDetector("dev-1", CFG)
    events: list[Event] = []
    plan = [(0, 150, False), (5, 150, True), (10, 5, False), (30, 5, False)]
    for t_rel, power, estimated in plan:
        events += det.handle_reading(T0 + t_rel, power, None, estimated)
    start, stop = events
    # the start was decided at 3 s from the measured reading at 0 s; the estimated one at 5 s
    # lies inside the session, so its end and figures are estimates
    assert start.payload["timing"] == "measured"
    assert stop.payload["timing"] == "estimated"
    det2 = SessionDetector("dev-3", CFG)
    first = det2.handle_reading(T0, 150, None, True) + det2.advance(T0 + 3)
    assert [e.payload["timing"] for e in first] == ["estimated"]
    again = feed(det, [(100, 150), (105, 150), (110, 5), (130, 5)])
    assert [e.payload["timing"] for e in again] == ["measured", "measured"]


def test_uids_are_deterministic() -> None:
    def run() -> list[Event]:
        det = SessionDetector("dev-1", CFG)
        return feed(det, [(0, 150), (5, 150), (10, 5), (30, 5)])

    first, second = run(), run()
    assert [e.event_uid for e in first] == [e.event_uid for e in second]
    assert first[0].event_uid != first[1].event_uid
    assert first[0].payload["session_id"] == first[1].payload["session_id"]


def test_event_round_trips_through_json() -> None:
    det = SessionDetector("dev-1", CFG)
    events = feed(det, [(0.123, 150), (5, 150), (10, 5), (30, 5)])
    for event in events:
        doc = json.loads(event.to_json())
        assert doc["schema_version"] == "v1"
        assert doc["ts"].endswith("Z")
        assert len(doc["ts"]) == len("2026-01-01T00:00:03.123Z")
        assert Event.from_dict(doc) == event
    assert parse_ts(ts(0.123)) == pytest.approx(T0 + 0.123)


# -- invariants over random streams ----------------------------------------------------------

levels = st.sampled_from([0.0, 5.0, 19.9, 20.0, 50.0, 99.9, 100.0, 150.0, 2000.0])
gaps = st.sampled_from([0.0, 0.5, 1.0, 2.9, 3.0, 5.0, 14.9, 15.0, 19.9, 20.0, 25.0])
step_st = st.tuples(
    gaps,
    st.one_of(st.none(), levels),
    st.one_of(st.none(), st.floats(0, 1e6, allow_nan=False)),
    st.sampled_from(["reading", "reading", "reading", "offline", "advance"]),
)
cfg_st = st.builds(
    SessionConfig,
    st.sampled_from([0.0, 20.0]),
    st.sampled_from([50.0, 100.0]),
    st.sampled_from([0.0, 3.0]),
    st.sampled_from([0.0, 15.0]),
    st.sampled_from([5.0, 20.0]),
)


def run_stream(
    det: SessionDetector, stream: Sequence[tuple[float, Any, Any, str]], t: float
) -> tuple[list[Event], float]:
    out: list[Event] = []
    for gap, power, energy, kind in stream:
        t += gap
        if kind == "offline":
            out += det.handle_offline(t)
        elif kind == "advance":
            out += det.advance(t)
        else:
            out += det.handle_reading(t, power, energy)
    return out, t


def check_invariants(events: Sequence[Event]) -> None:
    open_session: str | None = None
    for event in events:
        p = event.payload
        if event.event_type == "run_start":
            assert open_session is None, "run_start while a session is open"
            open_session = p["session_id"]
        else:
            assert p["session_id"] == open_session, "run_stop without its run_start"
            open_session = None
            assert p["duration_s"] >= 0
            assert p["working_s"] >= 0
            assert p["standby_s"] >= 0
            assert abs(p["working_s"] + p["standby_s"] - p["duration_s"]) <= 0.001
            assert p["energy_wh"] is None or p["energy_wh"] >= 0
            assert parse_ts(p["stopped_at"]) >= parse_ts(p["started_at"])
            assert parse_ts(p["stopped_at"]) <= event.ts + 1e-6


@settings(max_examples=300, deadline=None)
@given(cfg=cfg_st, stream=st.lists(step_st, max_size=80))
def test_invariants_hold_for_random_streams(
    cfg: SessionConfig, stream: list[tuple[float, Any, Any, str]]
) -> None:
    det = SessionDetector("dev-r", cfg)
    events, t = run_stream(det, stream, T0)
    events += det.advance(t + 10_000)  # every session ends by timeout at the latest
    check_invariants(events)
    assert not det.session_open


@settings(max_examples=200, deadline=None)
@given(
    cfg=cfg_st,
    before=st.lists(step_st, max_size=40),
    after=st.lists(step_st, max_size=40),
)
def test_persisted_state_continues_identically(
    cfg: SessionConfig,
    before: list[tuple[float, Any, Any, str]],
    after: list[tuple[float, Any, Any, str]],
) -> None:
    """Persist + restore + reconnect at the last message time behaves like no restart at all."""
    plain = SessionDetector("dev-r", cfg)
    expected, _ = run_stream(plain, before + after, T0)

    first = SessionDetector("dev-r", cfg)
    got, t_mid = run_stream(first, before, T0)
    doc = json.loads(json.dumps(first.to_state()))
    second = SessionDetector.from_state("dev-r", cfg, doc)
    rest, _ = run_stream(second, after, t_mid)
    assert [e.to_dict() for e in got + rest] == [e.to_dict() for e in expected]
