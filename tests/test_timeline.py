"""Event time (``sessions/timeline.py``): the rules one by one, then invariants for any input."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from iot_bridge.sessions.timeline import (
    DEFAULT_CADENCE_S,
    Placement,
    Timeline,
)

T0 = 1_800_000_000.0


def learned(skew: float = 3.0, n: int = 3) -> Timeline:
    """A timeline that heard ``n`` live fine readings a second apart; device clock ``skew`` s
    behind the bridge's."""
    tl = Timeline()
    for i in range(n):
        tl.live(T0 + i, T0 + i - skew)
    return tl


def test_live_readings_are_timed_by_arrival_and_teach_offset_and_cadence() -> None:
    tl = learned(skew=3.0)
    assert tl.offset == 3.0
    assert tl.last_t == T0 + 2
    assert tl.cadence == 1.0  # three arrivals one second apart
    assert tl.live(T0 + 2.5) == T0 + 2.5


def test_event_times_never_go_backwards_even_if_the_wall_clock_does() -> None:
    tl = Timeline()
    assert tl.live(T0 + 10) == T0 + 10
    stepped_back = tl.live(T0 + 5)  # NTP stepped the bridge's clock back
    assert stepped_back > T0 + 10


def test_a_late_fine_reading_is_placed_at_its_device_time() -> None:
    tl = learned(skew=3.0)
    window = (T0 + 2, T0 + 100)
    placed = tl.place(T0 + 100, T0 + 50 - 3.0, False, window=window, untimed_late=True)
    assert placed == Placement(T0 + 50, False)


def test_a_reading_that_arrives_on_time_while_catching_up_is_live() -> None:
    tl = learned(skew=3.0)
    placed = tl.place(T0 + 100, T0 + 99.5 - 3.0, False, window=(T0 + 2, T0 + 99), untimed_late=True)
    assert placed == Placement(T0 + 100, False)


def test_a_redelivered_reading_is_recognised() -> None:
    tl = learned(skew=0.0)
    window = (T0 + 3, T0 + 5)
    assert tl.place(T0 + 5, T0 + 2, False, window=window, untimed_late=True) is None
    assert tl.place(T0 + 5, T0 + 1, False, window=window, untimed_late=True) is None


def test_a_clock_that_jumped_during_the_outage_makes_an_estimate() -> None:
    tl = learned(skew=0.0)
    window = (T0 + 3, T0 + 600)
    # the device rebooted without NTP: its ts counts seconds since boot
    placed = tl.place(T0 + 600, 12.5, False, window=window, untimed_late=True)
    assert placed is not None
    assert placed.estimated
    assert T0 + 2 < placed.t < T0 + 600


def test_untimed_late_readings_follow_each_other_one_cadence_apart_inside_the_window() -> None:
    tl = Timeline()
    for i in range(4):
        tl.live(T0 + i * 2.0)  # cadence drifts towards 2 s
    window = (T0 + 6, T0 + 20)
    times = []
    for _ in range(12):
        placed = tl.place(T0 + 20, None, False, window=window, untimed_late=True)
        assert placed is not None
        assert placed.estimated
        times.append(placed.t)
    assert times == sorted(times)
    assert times[0] == T0 + 6 + tl.cadence
    assert all(t < T0 + 20 for t in times)  # squeezed towards the reconnection, never past it


def test_untimed_readings_count_as_live_when_the_broker_gives_no_marker() -> None:
    tl = learned()
    placed = tl.place(T0 + 50, None, False, window=(T0 + 2, T0 + 49), untimed_late=False)
    assert placed == Placement(T0 + 50, False)


def test_a_coarse_time_next_to_a_fine_one_is_the_same_moment() -> None:
    """Shelly sends one change on events/rpc (fine ts) and on status/<comp> (minute_ts)."""
    tl = learned(skew=0.0)
    window = (T0 + 2, T0 + 300)
    fine = tl.place(T0 + 300, T0 + 100, False, window=window, untimed_late=True)
    coarse = tl.place(T0 + 300, T0 + 60, True, window=window, untimed_late=True)
    assert fine is not None
    assert coarse is not None
    assert coarse.t - fine.t < 0.01


def test_a_coarse_time_alone_bounds_the_estimate_to_its_minute() -> None:
    tl = Timeline()
    tl.live(T0)
    minute = T0 + 600
    placed = tl.place(T0 + 900, minute, True, window=(T0, T0 + 900), untimed_late=True)
    assert placed is not None
    assert placed.estimated
    assert minute <= placed.t <= minute + 60


def test_nothing_known_of_a_device_means_live() -> None:
    tl = Timeline()
    placed = tl.place(T0 + 5, None, False, window=(None, T0 + 4), untimed_late=True)
    assert placed == Placement(T0 + 5, False)
    assert tl.cadence == DEFAULT_CADENCE_S


def test_state_round_trips() -> None:
    tl = learned()
    again = Timeline.from_state(tl.to_state())
    assert again.to_state() == tl.to_state()
    assert Timeline.from_state(None).to_state() == Timeline().to_state()


step = st.tuples(
    st.floats(min_value=0.0, max_value=30.0),  # seconds since the previous arrival
    st.one_of(st.none(), st.floats(min_value=-1e6, max_value=2e9)),  # device ts
    st.booleans(),  # coarse
    st.one_of(st.none(), st.floats(min_value=0.0, max_value=600.0)),  # outage length, if any
    st.booleans(),  # untimed late
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=60))
def test_event_times_are_increasing_and_never_after_their_arrival(steps: list[Any]) -> None:
    tl = Timeline()
    arrival = T0
    last: float | None = None
    for gap, ts, coarse, outage, untimed_late in steps:
        arrival += gap
        window = None if outage is None else (arrival - outage, arrival)
        placed = tl.place(arrival, ts, coarse, window=window, untimed_late=untimed_late)
        if placed is None:
            continue
        if last is not None:
            assert placed.t > last
        # never after its arrival, unless ordering forced it (by at most a millisecond a step)
        assert placed.t <= max(arrival, (last or arrival) + 0.001) + 1e-9
        last = placed.t
