"""Event time: when a device measured a reading, on the bridge's clock. Pure, one per device.

A reading received live is timed by its arrival. A reading that arrives *late* — from the
broker's backlog after the bridge was away, stopped or not acknowledging — is placed in time
from what its payload carries, translated to the bridge's clock with an offset learned from
the device's live readings (device clocks drift, Shelly counts seconds since boot until it
has NTP, Tasmota reports local time without a zone: the offset absorbs all of it). A late
reading with no usable time is placed in order inside the outage window and marked
*estimated*. Whatever happens, one device's event times never go backwards and never lie in
the future. ``docs/sessions.md`` states the rules; this module is them.

Device times come in two precisions: *fine* (Shelly ``params.ts``, Tasmota ``Time``: within a
second) and *coarse* (Shelly ``aenergy.minute_ts``: the minute the reading fell in). A coarse
time bounds a late reading to its minute but cannot order readings within it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LIVE_TOLERANCE_S = 2.0
"""A reading whose device time, translated, is within this of its arrival is live."""
OFFSET_JUMP_S = 30.0
"""A late reading that translates to no later than the last one applied was seen before (the
broker redelivers what was not acknowledged); this much earlier, it is not a reading seen
twice but a clock that jumped (a reboot without NTP, a time-zone change)."""
COARSE_STEP_S = 60.0  # Shelly minute_ts: the reading lies in [minute_ts, minute_ts + 60)
DEFAULT_CADENCE_S = 1.0
"""Spacing for late readings without a time before the device's own cadence is known."""
CADENCE_MIN_GAP_S = 0.05  # closer arrivals are one change seen on two topics, not a cadence
CADENCE_MAX_GAP_S = 600.0  # longer gaps are pauses, not a cadence
_EPSILON = 0.001  # readings placed at one instant still get distinct, ordered times


@dataclass(slots=True)
class Placement:
    t: float  # the event time
    estimated: bool  # placed without a usable device time


@dataclass(slots=True)
class Timeline:
    """What the bridge knows of one device's clock and rhythm; persisted with its detector."""

    offset: float | None = None  # bridge time - device time, from live fine readings
    last_t: float | None = None  # the last event time given out
    last_fine: float | None = None  # the translated time of the last fine reading applied
    cadence: float = DEFAULT_CADENCE_S  # typical seconds between live readings
    cadence_n: int = 0  # gaps it was learned from
    last_arrival: float | None = None  # arrival of the last live reading
    fine_in_backlog: bool = False  # this catch-up has placed a fine reading of this device

    def place(
        self,
        arrival: float,
        device_ts: float | None,
        coarse: bool,
        *,
        window: tuple[float | None, float] | None,
        untimed_late: bool,
    ) -> Placement | None:
        """The event time of a reading that arrived at ``arrival``; ``None`` for a reading this
        timeline has already placed (a redelivery after a crash between commit and PUBACK).

        ``window`` is the outage the broker's backlog covers, ``(start, end)``, while the
        bridge is catching up after a reconnect, else ``None`` (every reading is live).
        ``untimed_late``: whether a reading without a usable time that arrives while catching
        up is part of the backlog (the broker returned our marker last time) or, as far as we
        can tell, live."""
        if window is None:
            return Placement(self.live(arrival, device_ts, coarse), False)
        if device_ts is not None and not coarse and self.offset is not None:
            t = device_ts + self.offset
            last = self.last_fine
            if last is not None and last - OFFSET_JUMP_S <= t <= last:
                return None  # measured no later than the last one applied: seen before
            if last is None or t > last:
                if t >= arrival - LIVE_TOLERANCE_S:
                    return Placement(self.live(arrival, device_ts, coarse), False)
                self.fine_in_backlog = True
                self.last_fine = t
                return Placement(self._give(t, arrival), False)
            # far earlier than anything applied: the device's clock jumped during the outage
        if not untimed_late or (self.last_t is None and window[0] is None):
            return Placement(self.live(arrival), False)  # no outage known to place it in
        return Placement(self._estimate(arrival, device_ts if coarse else None, window), True)

    def end_catch_up(self) -> None:
        self.fine_in_backlog = False

    # -- the rules ------------------------------------------------------------------------------

    def live(self, arrival: float, device_ts: float | None = None, coarse: bool = False) -> float:
        """A live reading: timed by its arrival; it teaches the device's offset and cadence."""
        if device_ts is not None and not coarse:
            # follows drift and clock jumps alike: a live reading is the reference, and with
            # it the newest reading applied maps exactly onto its own arrival
            self.offset = arrival - device_ts
            self.last_fine = arrival
        last = self.last_arrival
        if last is not None:
            gap = arrival - last
            if CADENCE_MIN_GAP_S <= gap <= CADENCE_MAX_GAP_S:
                # a mean of the first gaps, then a moving average that follows changes
                self.cadence_n += 1
                self.cadence += (gap - self.cadence) / min(self.cadence_n, 5)
        self.last_arrival = arrival
        return self._give(arrival, arrival)

    def now(self, arrival: float) -> float:
        """The event time of a live message that is not a reading (a sign of life, an LWT):
        its arrival, kept in order, teaching nothing."""
        return self._give(arrival, arrival)

    def _estimate(
        self, arrival: float, minute_ts: float | None, window: tuple[float | None, float]
    ) -> float:
        """In order inside the outage window, one cadence after the previous reading: a guess
        that keeps a periodic publisher's durations roughly right."""
        start, end = window
        last = self.last_t if self.last_t is not None else start
        if last is None:  # nothing known of this device before the outage: take it as live
            return self.live(arrival)
        if self.fine_in_backlog:
            # the same change seen on a second topic, next to a fine reading: same moment
            t = last
        else:
            t = last + self.cadence
            if minute_ts is not None:
                lo = minute_ts + (self.offset or 0.0)
                t = min(max(t, lo), lo + COARSE_STEP_S)
            if t >= end:
                t = last + (end - last) / 2  # never at or past the reconnection
        return self._give(t, arrival)

    def _give(self, t: float, arrival: float) -> float:
        """Never in the future (after its arrival), never backwards: order wins if the wall
        clock itself stepped back."""
        t = min(t, arrival)
        last = self.last_t
        if last is not None and t <= last:
            t = last + _EPSILON
        self.last_t = t
        return t

    # -- persistence ----------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "offset": self.offset,
            "last_t": self.last_t,
            "last_fine": self.last_fine,
            "cadence": self.cadence,
            "cadence_n": self.cadence_n,
            "last_arrival": self.last_arrival,
        }

    @classmethod
    def from_state(cls, doc: dict[str, Any] | None) -> Timeline:
        if not doc:
            return cls()
        return cls(
            offset=doc.get("offset"),
            last_t=doc.get("last_t"),
            last_fine=doc.get("last_fine"),
            cadence=float(doc.get("cadence") or DEFAULT_CADENCE_S),
            cadence_n=int(doc.get("cadence_n") or 0),
            last_arrival=doc.get("last_arrival"),
        )
