"""Event time (``sessions/timeline.py``): the rules one by one, then invariants for any input."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from iot_bridge.sessions.timeline import CADENCE_SAMPLE, DEFAULT_CADENCE_S, Placement, Timeline

T0 = 1_800_000_000.0
W = (T0, T0 + 1000)  # an outage window for the tests that need one


def learned(skew: float = 3.0, n: int = 3, every: float = 1.0) -> Timeline:
    """``n`` live fine readings ``every`` s apart; the device's clock ``skew`` s behind."""
    tl = Timeline()
    for i in range(n):
        tl.live(T0 + i * every, T0 + i * every - skew, False)
    return tl


def test_live_readings_teach_the_newest_device_time_and_the_cadence() -> None:
    tl = learned(skew=3.0, n=CADENCE_SAMPLE * 2 + 1, every=2.0)
    assert tl.fine_ts == T0 + CADENCE_SAMPLE * 4.0 - 3.0
    assert tl.fine_at == T0 + CADENCE_SAMPLE * 4.0
    assert tl.cadence == 2.0  # two samples of eight readings, two seconds apart


def test_a_late_fine_reading_is_placed_at_its_device_time() -> None:
    tl = learned(skew=3.0)
    placed = tl.place(T0 + 100, T0 + 50 - 3.0, False, last=T0 + 2, window=W, untimed_late=True)
    assert placed == Placement(T0 + 50, False)


def test_a_late_tasmota_time_is_translated_with_its_zone_absorbed() -> None:
    tl = Timeline()
    # a plug on CET: its local time reads one hour ahead when taken as UTC
    tl.live(1_800_000_000.0, "2027-01-15T09:00:00", False)  # = 08:00:00Z, read as 09:00
    placed = tl.place(
        1_800_000_600.0, "2027-01-15T09:05:00", False, last=1_800_000_000.0, window=W,
        untimed_late=True,
    )  # fmt: skip
    assert placed == Placement(1_800_000_300.0, False)


def test_a_reading_that_arrives_almost_on_time_while_catching_up_keeps_its_own_time() -> None:
    # held by the broker while the bridge was away, delivered 0.5 s after it was measured: its
    # arrival would move the start or stop of a session by that much
    tl = learned(skew=3.0)
    placed = tl.place(T0 + 100, T0 + 99.5 - 3.0, False, last=T0 + 2, window=W, untimed_late=True)
    assert placed == Placement(T0 + 99.5, False)
    # a device clock ahead of the bridge's never places a reading after its arrival
    ahead = tl.place(T0 + 101, T0 + 102 - 3.0, False, last=T0 + 99.5, window=W, untimed_late=True)
    assert ahead == Placement(T0 + 101, False)


def test_a_redelivered_reading_is_recognised() -> None:
    tl = learned(skew=0.0)
    for ts in (T0 + 2, T0 + 1):
        assert tl.place(T0 + 5, ts, False, last=T0 + 2, window=W, untimed_late=True) is None


def test_a_clock_that_jumped_during_the_outage_makes_an_estimate() -> None:
    tl = learned(skew=0.0)
    # the device rebooted without NTP: its ts counts seconds since boot
    placed = tl.place(T0 + 600, 12.5, False, last=T0 + 2, window=W, untimed_late=True)
    assert placed is not None
    assert placed.estimated
    assert T0 + 2 < placed.t < T0 + 600


def test_untimed_late_readings_follow_each_other_one_cadence_apart_inside_the_window() -> None:
    tl = learned(skew=0.0, n=CADENCE_SAMPLE * 2 + 1, every=2.0)
    last = T0 + CADENCE_SAMPLE * 4.0
    end = last + 14
    times = []
    for _ in range(12):
        placed = tl.place(end, None, False, last=last, window=(last, end), untimed_late=True)
        assert placed is not None
        assert placed.estimated
        times.append(placed.t)
        last = placed.t  # what the detector remembers as the device's last message
    assert times == sorted(times)
    assert times[0] == T0 + CADENCE_SAMPLE * 4.0 + 2.0
    assert all(t < end for t in times)  # squeezed towards the reconnection, never past it


def test_untimed_readings_count_as_live_when_the_broker_gives_no_marker() -> None:
    tl = learned()
    placed = tl.place(T0 + 50, None, False, last=T0 + 2, window=W, untimed_late=False)
    assert placed == Placement(T0 + 50, False)


def test_a_coarse_time_next_to_a_fine_one_is_the_same_moment() -> None:
    """Shelly sends one change on events/rpc (fine ts) and on status/<comp> (minute_ts)."""
    tl = learned(skew=0.0)
    fine = tl.place(T0 + 300, T0 + 100, False, last=T0 + 2, window=W, untimed_late=True)
    assert fine is not None
    coarse = tl.place(T0 + 300, T0 + 60, True, last=fine.t, window=W, untimed_late=True)
    assert coarse is not None
    assert coarse.t - fine.t < 0.01


def test_a_coarse_time_alone_bounds_the_estimate_to_its_minute() -> None:
    tl = Timeline()
    minute = T0 + 600
    placed = tl.place(T0 + 900, minute, True, last=T0, window=(T0, T0 + 900), untimed_late=True)
    assert placed is not None
    assert placed.estimated
    assert minute <= placed.t <= minute + 60


def test_nothing_known_of_a_device_means_live() -> None:
    tl = Timeline()
    placed = tl.place(T0 + 5, None, False, last=None, window=(None, T0 + 4), untimed_late=True)
    assert placed == Placement(T0 + 5, False)
    assert tl.cadence == DEFAULT_CADENCE_S


def test_state_round_trips() -> None:
    tl = learned(n=CADENCE_SAMPLE * 3)
    again = Timeline.from_state(tl.to_state())
    assert again.to_state() == tl.to_state()
    assert Timeline.from_state(None).to_state() == Timeline().to_state()


step = st.tuples(
    st.floats(min_value=0.0, max_value=30.0),  # seconds since the previous arrival
    st.one_of(st.none(), st.floats(min_value=-1e6, max_value=2e9), st.just("2027-01-15T09:00:00")),
    st.booleans(),  # coarse
    st.one_of(st.none(), st.floats(min_value=0.0, max_value=600.0)),  # outage length, if any
    st.booleans(),  # untimed late
)


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=60))
def test_late_placements_are_increasing_and_never_after_their_arrival(steps: list[Any]) -> None:
    tl = Timeline()
    arrival = T0
    last: float | None = None
    for gap, ts, coarse, outage, untimed_late in steps:
        arrival += gap
        if outage is None:
            tl.live(arrival, ts, coarse)
            last = arrival if last is None else max(last, arrival)
            continue
        window = (arrival - outage, arrival)
        placed = tl.place(arrival, ts, coarse, last=last, window=window, untimed_late=untimed_late)
        if placed is None:
            continue
        if last is not None:
            assert placed.t > last if placed.estimated else placed.t >= last
        assert placed.t <= max(arrival, (last or arrival) + 0.001) + 1e-9
        last = placed.t if last is None else max(last, placed.t)
