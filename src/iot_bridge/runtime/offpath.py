"""Messages off the pipeline's hot path: everything but a live power reading. Pure.

Split from ``pipeline.py``, whose :meth:`~iot_bridge.runtime.pipeline.Pipeline.handle` keeps the
common case (a live power reading) inline and hands the rest here: signs of life, online
states (LWT, ``online`` topics: they feed the device's ``online`` field, the one path for it),
readings that arrive while the bridge catches up (placed at their event time), and the
broker's retained values (state, never readings).
"""

from __future__ import annotations

from typing import Protocol

from iot_bridge.events import Event, event_uid, format_ts
from iot_bridge.parsers import Reading
from iot_bridge.runtime.hearing import Hearing
from iot_bridge.runtime.tracked import Stats, TrackedDevice, implausible
from iot_bridge.sessions.detector import SessionDetector

_NO_EVENTS: tuple[Event, ...] = ()


class Effects(Protocol):
    """What these messages read and change of the pipeline."""

    stats: Stats
    forward_measurements: bool
    _hear: Hearing

    def _set_online(self, device: TrackedDevice, online: bool) -> None: ...

    def _after(
        self, device: TrackedDevice, det: SessionDetector, transitions: int, arrival: float
    ) -> None: ...


def other_message(
    p: Effects, device: TrackedDevice, topic: str, reading: Reading | None, arrival: float
) -> tuple[Event, ...]:
    """Everything but a live power reading: signs of life, online states, and readings
    that arrive while the bridge catches up."""
    det = device.detector
    window = p._hear.window
    transitions = det.transitions
    # a message without a time of its own is placed with the device's last one while
    # catching up (it must not move the device's order), else at its arrival
    t = arrival if window is None or det.last_seen is None else det.last_seen
    if reading is None or reading.power_w is None:
        if reading is not None and reading.online is not None:
            p._set_online(device, reading.online)
            if reading.online is False:
                more = det.handle_offline(t)
                p._after(device, det, transitions, arrival)
                return more
        # a well-formed frame without power: a sign of life
        if reading is None:
            p.stats.not_readings += 1
        energy = None if reading is None else reading.energy_wh
        more = det.handle_reading(t, None, energy)
        p._after(device, det, transitions, arrival)
        return more
    power = reading.power_w
    if not -device.max_power_w <= power <= device.max_power_w:
        raise implausible(power, device.max_power_w)
    p._set_online(device, True)
    estimated = False
    if window is None:
        device.timeline.live(arrival, reading.device_ts, reading.coarse)
        t = arrival
    else:
        placed = device.timeline.place(
            arrival,
            reading.device_ts,
            reading.coarse,
            last=det.last_seen,
            window=window,
            untimed_late=p._hear.untimed_late,
        )
        if placed is None:
            p.stats.duplicates += 1
            return _NO_EVENTS
        t, estimated = placed.t, placed.estimated
    more = det.handle_reading(t, power, reading.energy_wh, estimated)
    if p.forward_measurements:
        more = (*more, measurement(device.device_id, topic, reading, t))
    p._after(device, det, transitions, arrival)
    return more


def retained(
    p: Effects, device: TrackedDevice, reading: Reading | None, arrival: float
) -> tuple[Event, ...]:
    """The broker's stored value: only an online state counts (an LWT 'offline' ends the
    device's open session at its last reading, as a live one would)."""
    p.stats.retained += 1
    if reading is None or reading.online is None:
        return _NO_EVENTS
    p._set_online(device, reading.online)
    if reading.online:
        return _NO_EVENTS
    det = device.detector
    transitions = det.transitions
    more = det.handle_offline(max(arrival, det.last_seen or arrival))
    p._after(device, det, transitions, arrival)
    return more


def measurement(device_id: str, topic: str, r: Reading, t: float) -> Event:
    payload = {
        "apower": r.power_w,
        "voltage": r.voltage_v,
        "current": r.current_a,
        "total_energy_kwh": None if r.energy_wh is None else r.energy_wh / 1000.0,
    }
    uid = event_uid(device_id, "power_measurement", f"{topic}|{format_ts(t)}")
    return Event(uid, t, device_id, "power_measurement", payload)


def power_in(targets: list[TrackedDevice], topic: str, payload: bytes) -> float | None:
    """The power a message carries for the first device behind its topic (the DEBUG log
    line; parses again, so it stays off the hot path)."""
    if not targets:
        return None
    device = targets[0]
    try:
        reading = device.parse(topic, payload, device.options)
    except Exception:  # the message's error was counted when it was handled
        return None
    return None if reading is None else reading.power_w
