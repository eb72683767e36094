"""What every parser shares: the normalised reading, the one error type, and input guards.

A parser is pure: ``(topic, payload bytes, options) -> Reading | None``. ``None`` means "not a
reading" (a frame of a component we do not meter, an announce, a relay state without power).
Anything malformed raises :class:`ParseError` so the caller can count it and move on; a parser
never lets another exception type escape for bad input.

Fields a frame does not carry stay ``None``: a Shelly delta frame with only ``voltage`` is a sign
of life, not a 0 W reading. The session detector keeps the last known power for such frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import orjson

from iot_bridge.errors import ParseError

MAX_PAYLOAD_BYTES = 64 * 1024
"""Larger payloads are rejected before decoding: plugs send a few KiB at most."""

EnergyUnit = Literal["Wh", "kWh", "Wmin"]
ENERGY_TO_WH: dict[str, float] = {"Wh": 1.0, "kWh": 1000.0, "Wmin": 1.0 / 60.0}


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

    def as_dict(self) -> dict[str, float | bool | None]:
        return {
            "power_w": self.power_w,
            "energy_wh": self.energy_wh,
            "voltage_v": self.voltage_v,
            "current_a": self.current_a,
            "online": self.online,
        }


@dataclass(frozen=True, slots=True)
class ParserOptions:
    """Per-device parser settings, from the device entry's optional ``parser_config`` object.

    ``channel`` picks the component (``switch:N``, ``pm1:N``, ``em1:N``, Gen1 ``relay/N``) or the
    array index of a multi-channel Tasmota ``ENERGY`` block. ``power_path`` / ``energy_path`` are
    dotted paths for the generic parser (``ENERGY.Power``; a numeric segment indexes a list).
    """

    channel: int = 0
    power_path: str = "power"
    energy_path: str | None = None
    energy_unit: EnergyUnit = "Wh"


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


def check_size(payload: bytes) -> None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ParseError(
            f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES} byte limit"
        )


def load_json(payload: bytes) -> Any:
    """Decode JSON, rejecting oversize payloads; orjson already refuses NaN and Infinity."""
    check_size(payload)
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc}") from None


def number(value: object, field: str) -> float:
    """A finite JSON number (bools and strings are not numbers here)."""
    if type(value) is float:
        if math.isfinite(value):
            return value
        raise ParseError(f"{field} is not finite")
    if type(value) is int:
        return float(value)
    if value is None:
        raise ParseError(f"{field} is null, expected a number")
    raise ParseError(f"{field} must be a number, got {type(value).__name__}")


def optional_number(obj: dict[str, Any], key: str, field: str | None = None) -> float | None:
    """``obj[key]`` as a finite number, ``None`` if absent; present-but-wrong is an error."""
    if key not in obj:
        return None
    return number(obj[key], field or key)


def text_number(payload: bytes, field: str) -> float:
    """A bare numeric text payload such as ``20.58`` (Shelly Gen1, generic)."""
    check_size(payload)
    try:
        value = float(payload)
    except ValueError:
        raise ParseError(f"{field} payload is not a number: {payload[:40]!r}") from None
    if not math.isfinite(value):
        raise ParseError(f"{field} is not finite")
    return value
