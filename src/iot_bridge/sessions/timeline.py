"""Event time: when a device measured a reading, on the bridge's clock. Pure, one per device.

A reading received live is timed by its arrival. A reading that arrives *late* — from the
broker's backlog after the bridge was away, stopped or not acknowledging — is placed in time
from what its payload carries, translated to the bridge's clock with the offset between the
device's clock and the bridge's, as the device's newest live reading showed it (device clocks
drift, Shelly counts seconds since boot until it has NTP, Tasmota reports local time without a
zone: the offset absorbs all of it). A late reading with no usable time is placed in order
inside the outage window and marked *estimated*. ``docs/sessions.md`` states the rules; this
module is them.

Device times come in two precisions: *fine* (Shelly ``params.ts``, Tasmota ``Time``: within a
second) and *coarse* (Shelly ``aenergy.minute_ts``: the minute the reading fell in). A coarse
time bounds a late reading to its minute but cannot order readings within it.

Live readings only leave a note here (the newest fine device time and when it arrived; every
eighth arrival for the cadence): this runs for every message, and the arithmetic is only
needed while the bridge catches up. The time of the device's last message, which keeps event
times in order, is the detector's (``SessionDetector.last_seen``): it is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iot_bridge.parsers.base import DeviceTime, device_seconds

LIVE_TOLERANCE_S = 2.0
"""A reading whose device time, translated, lies more than this before its arrival is late
(the untimed readings next to it then take its time, see ``_estimate``)."""
OFFSET_JUMP_S = 30.0
"""A late reading up to this much older than the newest one applied was seen before (the
broker redelivers what was not acknowledged); older still, it is not a reading seen twice but a
clock that jumped (a reboot without NTP, a time-zone change)."""
COARSE_STEP_S = 60.0  # Shelly minute_ts: the reading lies in [minute_ts, minute_ts + 60)
DEFAULT_CADENCE_S = 1.0
"""Spacing for late readings without a time before the device's own cadence is known."""
CADENCE_SAMPLE = 8  # the cadence is learned from the time eight live readings take
CADENCE_MIN_S = 0.05  # closer is one change seen on two topics, not a cadence
CADENCE_MAX_S = 600.0  # longer is a pause, not a cadence
_EPSILON = 0.001  # readings placed at one instant still get distinct, ordered times


@dataclass(slots=True)
class Placement:
    t: float  # the event time
    estimated: bool  # placed without a usable device time


@dataclass(slots=True)
class Timeline:
    """What the bridge knows of one device's clock and rhythm; persisted with its detector."""

    fine_ts: DeviceTime | None = None  # the device time of the newest fine reading applied ...
    fine_at: float | None = None  # ... and when, on the bridge's clock, it was measured
    cadence: float = DEFAULT_CADENCE_S  # typical seconds between live readings
    cadence_n: int = 0  # samples it was learned from
    count: int = 0  # live readings since ``mark``
    mark: float | None = None  # arrival that began the current cadence sample
    fine_in_backlog: bool = False  # this catch-up has placed a fine reading of this device

    def live(self, arrival: float, device_ts: DeviceTime | None, coarse: bool) -> bool:
        """A live reading: it is timed by its arrival, and it teaches offset and cadence.
        True when it took a cadence sample: then what was learned is worth keeping."""
        if device_ts is not None and not coarse:
            self.fine_ts = device_ts
            self.fine_at = arrival
        count = self.count = self.count + 1
        # samples of 2, 2, 4, then 8 readings: a plug heard only briefly has a cadence too
        if count >= CADENCE_SAMPLE or count >= 2 << self.cadence_n:
            self._sample(arrival)
            return True
        return False

    def _sample(self, arrival: float) -> None:
        mark = self.mark
        if mark is not None:
            gap = (arrival - mark) / self.count
            if CADENCE_MIN_S <= gap <= CADENCE_MAX_S:
                # a mean of the first samples, then a moving average that follows changes
                n = self.cadence_n = self.cadence_n + 1
                self.cadence += (gap - self.cadence) / (n if n < 5 else 5)
        self.mark = arrival
        self.count = 0

    def place(
        self,
        arrival: float,
        device_ts: DeviceTime | None,
        coarse: bool,
        *,
        last: float | None,
        window: tuple[float | None, float],
        untimed_late: bool,
    ) -> Placement | None:
        """The event time of a reading that arrives at ``arrival`` while the bridge catches up
        after the outage ``window`` = ``(start or None, end)``; ``None`` for a reading already
        applied (a redelivery after a crash between commit and PUBACK). ``last`` is the time of
        the device's last message. ``untimed_late``: whether a reading without a usable time is
        part of the backlog (the broker returned our marker last time) or, as far as we can
        tell, live."""
        if device_ts is not None and not coarse:
            ts = device_seconds(device_ts)
            ref = None if self.fine_ts is None else device_seconds(self.fine_ts)
            if ts is not None and ref is not None and self.fine_at is not None:
                if ref - OFFSET_JUMP_S <= ts <= ref:
                    return None  # measured no later than the newest applied: seen before
                if ts > ref:
                    # placed by its own time even when it arrives almost on time: a reading
                    # the broker held while the bridge was away can arrive a second after it
                    # was measured, and its arrival would move a session's start or stop
                    t = self.fine_at + (ts - ref)
                    if t < arrival - LIVE_TOLERANCE_S:
                        self.fine_in_backlog = True
                    placed = _give(t, arrival, last)
                    self.fine_ts, self.fine_at = device_ts, placed
                    return Placement(placed, False)
                # far older than anything applied: the device's clock jumped in the outage
        if not untimed_late or (last is None and window[0] is None):
            self.live(arrival, None, False)  # no outage known to place it in
            # a burst of them (a backlog taken as live) still gets distinct, ordered times
            return Placement(_give(arrival, arrival, last), False)
        minute = device_seconds(device_ts) if coarse and device_ts is not None else None
        return Placement(self._estimate(arrival, minute, last, window), True)

    def end_catch_up(self) -> None:
        self.fine_in_backlog = False

    def _estimate(
        self,
        arrival: float,
        minute_ts: float | None,
        last: float | None,
        window: tuple[float | None, float],
    ) -> float:
        """In order inside the outage window, one cadence after the previous reading: a guess
        that keeps a periodic publisher's durations roughly right."""
        start, end = window
        prev = last if last is not None else start
        assert prev is not None  # place() took the reading as live otherwise
        if self.fine_in_backlog:
            # the same change seen on a second topic, next to a fine reading: same moment
            t = prev
        else:
            t = prev + self.cadence
            if minute_ts is not None:
                lo = minute_ts + self._offset()
                t = min(max(t, lo), lo + COARSE_STEP_S)
            if t >= end:
                t = prev + (end - prev) / 2  # never at or past the reconnection
        return _give(t, arrival, last)

    def _offset(self) -> float:
        """Bridge time minus device time, as the newest fine reading showed it (0 without)."""
        ref = None if self.fine_ts is None else device_seconds(self.fine_ts)
        return 0.0 if ref is None or self.fine_at is None else self.fine_at - ref

    # -- persistence ----------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "fine_ts": self.fine_ts,
            "fine_at": self.fine_at,
            "cadence": self.cadence,
            "cadence_n": self.cadence_n,
            "count": self.count,
            "mark": self.mark,
        }

    @classmethod
    def from_state(cls, doc: dict[str, Any] | None) -> Timeline:
        if not doc:
            return cls()
        return cls(
            fine_ts=doc.get("fine_ts"),
            fine_at=doc.get("fine_at"),
            cadence=float(doc.get("cadence") or DEFAULT_CADENCE_S),
            cadence_n=int(doc.get("cadence_n") or 0),
            count=int(doc.get("count") or 0),
            mark=doc.get("mark"),
        )


def _give(t: float, arrival: float, last: float | None) -> float:
    """Never after its arrival, never before the device's last message: order wins if the wall
    clock itself stepped back."""
    t = min(t, arrival)
    if last is not None and t <= last:
        t = last + _EPSILON
    return t
