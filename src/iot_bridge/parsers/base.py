"""What every parser shares: the normalised reading, the one error type, and input guards.

A parser is pure: ``(topic, payload bytes, options) -> Reading | None``. ``None`` means "not a
reading" (a frame of a component we do not meter, an announce, a relay state without power).
Anything malformed raises :class:`ParseError` so the caller can count it and move on; a parser
never lets another exception type escape for bad input.

Fields a frame does not carry stay ``None``: a Shelly delta frame with only ``voltage`` is a sign
of life, not a 0 W reading. The session detector keeps the last known power for such frames.

``device_ts`` is the time the device put in the message, as it put it, in *its* clock: Unix-like
seconds (possibly since boot) or an ISO local time without a zone (Tasmota). It is kept as sent
and turned into seconds (:func:`device_seconds`) only when the bridge needs it, to time readings
that arrive late (``sessions/timeline.py``): live readings, nearly all of them, never pay for
the conversion. ``coarse`` marks a time that only names the minute the reading fell in (Shelly
``aenergy.minute_ts``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

from iot_bridge.errors import ParseError

MAX_PAYLOAD_BYTES = 64 * 1024
"""Larger payloads are rejected before decoding: plugs send a few KiB at most."""

DEFAULT_MAX_POWER_W = 1_000_000.0
"""No plug meters a megawatt: beyond this a reading is broken or hostile, not a machine."""

EnergyUnit = Literal["Wh", "kWh", "Wmin"]
ENERGY_TO_WH: dict[str, float] = {"Wh": 1.0, "kWh": 1000.0, "Wmin": 1.0 / 60.0}


DeviceTime = float | str
_EPOCH = datetime(1970, 1, 1)


def device_seconds(value: DeviceTime) -> float | None:
    """A device time as seconds: numbers as they are, an ISO time without a zone as if it were
    UTC (the device's offset absorbs its zone), one with a zone as what it says; anything
    unusable is ``None`` (no time, the reading still counts)."""
    if type(value) is float or type(value) is int:
        return float(value) if math.isfinite(value) else None
    if type(value) is not str or len(value) < 19:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        try:
            dt = datetime.fromisoformat(value[:19])
        except ValueError:
            return None
    if dt.tzinfo is not None:
        return dt.timestamp()
    return (dt - _EPOCH).total_seconds()


class Reading(NamedTuple):
    """A device message normalised to SI-ish units; ``None`` = the message did not say.

    A named tuple rather than a frozen dataclass: one is built for every message, and a tuple
    is built in C (about 0.15 µs here, against 0.6 µs for a frozen dataclass's ``__init__``).
    """

    power_w: float | None = None
    energy_wh: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    online: bool | None = None
    device_ts: DeviceTime | None = None
    coarse: bool = False

    def as_dict(self) -> dict[str, float | str | bool | None]:
        return {
            "power_w": self.power_w,
            "energy_wh": self.energy_wh,
            "voltage_v": self.voltage_v,
            "current_a": self.current_a,
            "online": self.online,
            "device_ts": self.device_ts,
            "coarse": self.coarse,
        }


@dataclass(frozen=True, slots=True)
class ParserOptions:
    """Per-device parser settings, from the device entry's optional ``parser_config`` object.

    ``channel`` picks the component (``switch:N``, ``pm1:N``, ``em1:N``, Gen1 ``relay/N``) or the
    array index of a multi-channel Tasmota ``ENERGY`` block. ``power_path`` / ``energy_path`` are
    dotted paths for the generic parser (``ENERGY.Power``; a numeric segment indexes a list).
    ``max_power_w`` is the plausibility bound: a reading of more (or less than minus it) is
    an error of that message, never a billed watt.
    """

    channel: int = 0
    power_path: str = "power"
    energy_path: str | None = None
    energy_unit: EnergyUnit = "Wh"
    max_power_w: float = DEFAULT_MAX_POWER_W


ParseFn = Callable[[str, bytes, ParserOptions], "Reading | None"]
SubscriptionsFn = Callable[[str], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Parser:
    """One registry entry: how to parse, and which topics a device of this family needs.

    ``subscriptions(mqtt_topic)`` returns the topic filters to subscribe for a device configured
    with ``mqtt_topic`` (for example the status topic plus the device's ``online`` LWT topic).
    """

    parse: ParseFn
    subscriptions: SubscriptionsFn


def in_wh(value: float, factor: float, field: str) -> float:
    """An energy counter converted to Wh; a value that overflows doing so is no counter."""
    wh = value * factor
    if not math.isfinite(wh):
        raise ParseError(f"{field} is out of range")
    return wh


def number(value: object, field: str) -> float:
    """A finite JSON number (bools and strings are not numbers here)."""
    if type(value) is float:
        if math.isfinite(value):
            return value
        raise ParseError(f"{field} is not finite")
    if type(value) is int:
        try:
            return float(value)
        except OverflowError:
            raise ParseError(f"{field} is out of range") from None
    if value is None:
        raise ParseError(f"{field} is null, expected a number")
    raise ParseError(f"{field} must be a number, got {type(value).__name__}")
