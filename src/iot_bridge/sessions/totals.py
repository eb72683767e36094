"""The running figures of one session: working time, power integral, counter energy, peak.

Kept apart from the state machine so that the machine stays a table plus bookkeeping calls.
Energy follows ``sessions.md``: the device's cumulative counter when it gave one (a counter that
goes down is a device reset and starts a new baseline, keeping what came before), otherwise the
power integrated over time; missing data becomes ``None``, never zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Totals:
    t0: float  # when the candidate session began (the first WORKING reading)
    t: float  # power is integrated up to here
    integral_ws: float = 0.0  # watt-seconds, from the last known power held until the next reading
    max_power_w: float | None = None
    working_s: float = 0.0
    counter_last: float | None = None  # last cumulative counter value (Wh)
    counter_wh: float = 0.0  # energy summed over counter increments, across resets
    counter_readings: int = 0

    def to_state(self) -> dict[str, float | int | None]:
        return {
            "t0": self.t0,
            "t": self.t,
            "integral_ws": self.integral_ws,
            "max_power_w": self.max_power_w,
            "working_s": self.working_s,
            "counter_last": self.counter_last,
            "counter_wh": self.counter_wh,
            "counter_readings": self.counter_readings,
        }

    @classmethod
    def from_state(cls, doc: dict[str, Any]) -> Totals:
        return cls(
            t0=float(doc["t0"]),
            t=float(doc["t"]),
            integral_ws=float(doc["integral_ws"]),
            max_power_w=doc["max_power_w"],
            working_s=float(doc["working_s"]),
            counter_last=doc["counter_last"],
            counter_wh=float(doc["counter_wh"]),
            counter_readings=int(doc["counter_readings"]),
        )

    @classmethod
    def begin(cls, t: float, power_w: float, energy_wh: float | None) -> Totals:
        totals = cls(t0=t, t=t, max_power_w=power_w)
        if energy_wh is not None:
            totals.counter_last = energy_wh
            totals.counter_readings = 1
        return totals

    def add(
        self, t: float, held_power_w: float | None, power_w: float | None, energy_wh: float | None
    ) -> None:
        """A message at ``t``: ``held_power_w`` applied since the previous one."""
        if t > self.t:  # extend_to(), inlined: this runs for every message in a session
            if held_power_w is not None:
                self.integral_ws += held_power_w * (t - self.t)
            self.t = t
        if power_w is not None and (self.max_power_w is None or power_w > self.max_power_w):
            self.max_power_w = power_w
        if energy_wh is not None:
            last = self.counter_last
            if last is not None and energy_wh >= last:
                self.counter_wh += energy_wh - last
            self.counter_last = energy_wh  # a lower value is a reset: it becomes the new baseline
            self.counter_readings += 1

    def extend_to(self, t: float, held_power_w: float | None) -> None:
        if t > self.t:
            if held_power_w is not None:
                self.integral_ws += held_power_w * (t - self.t)
            self.t = t

    def energy(self) -> tuple[float | None, str | None]:
        """(Wh, source): two counter values make a counter figure, else the integral."""
        if self.counter_readings >= 2:
            return self.counter_wh, "counter"
        if self.t > self.t0:
            return self.integral_ws / 3600.0, "integrated"
        return None, None

    def avg_power(self, duration_s: float) -> float | None:
        if duration_s <= 0 or self.t <= self.t0:
            return None
        return round(self.integral_ws / duration_s, 3)
