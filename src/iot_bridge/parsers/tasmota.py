"""Tasmota energy-monitoring plugs (Sonoff POW, Gosund, Nous, Athom, Sonoff Dual R3 ...).

A topic belongs to Tasmota if it has a ``tele``, ``stat`` or ``cmnd`` segment anywhere (the
FullTopic may put the device topic first: ``tele/<t>/SENSOR`` and ``<t>/tele/SENSOR`` both work);
its last segment says what it is:

=============== ====================================================================================
``SENSOR``      ``ENERGY`` block -> reading; a SENSOR without ``ENERGY`` (a switch, a thermometer)
                is ``None``.
``STATUS8``     ``{"StatusSNS": {... "ENERGY": {...}}}`` (reply to ``Status 8``); same for
``STATUS10``    ``STATUS10``. A missing ``StatusSNS`` is an error; no ``ENERGY`` inside is ``None``.
``RESULT``      read like SENSOR / STATUS if it carries ``ENERGY`` or ``StatusSNS``; a command echo
                such as ``{"POWER":"ON"}`` is ``None`` (relay state only).
``STATE``       sign of life ``Reading()``: Tasmota's own heartbeat, sent every TelePeriod whatever
                sensors the device has (the payload is not decoded).
``LWT``         ``Online`` / ``Offline`` -> ``Reading(online=...)``.
anything else   ``None`` (``POWER``, ``INFO1``, ``RESULT`` of other commands, ``cmnd/...``).
=============== ====================================================================================

Analog current-transformer sensors publish no ``ENERGY`` block but ``ANALOG.CTEnergy<N>`` (or
``ANALOG.CTEnergy`` for one sensor) with ``Energy`` **kWh**, ``Power`` W, ``Voltage`` V and
``Current`` A; channel 0 is ``CTEnergy1`` (or the unnumbered one), channel 1 ``CTEnergy2`` ...

Device time: ``Time`` (``2019-11-29T12:39:20``, the device's local time without a zone) is read
as if it were UTC; the bridge learns the device's offset from live readings, zone included.

``ENERGY`` fields: ``Power`` W, ``Total`` **kWh** -> Wh, ``Voltage`` V, ``Current`` A. Each may be
a number, a list (multi-channel devices: the element at ``ParserOptions.channel``), or a per-phase
dict ``{"Phase1": ..}`` (the value at ``Phase<channel+1>``, *not* the sum: the channel option
means the same thing for lists and dicts, and a three-phase machine metered per phase cannot be
told apart from three single-phase machines on one meter). A scalar is device-wide and applies
to every channel (``"Voltage":235`` next to ``"Power":[52,5]`` on a Sonoff Dual). A channel
outside the list / dict is a :class:`ParseError` (a misconfigured channel should be loud). An
``ENERGY`` block without any of the four fields (e.g. only ``TotalTariff``) is a sign of life.
"""

from __future__ import annotations

from typing import Any

import msgspec

from iot_bridge.errors import ParseError
from iot_bridge.parsers._common import (
    OFFLINE,
    ONLINE,
    SIGN_OF_LIFE,
    _tuple_new,
    bool_text,
    dedupe,
    loads_object,
    reading,
    too_big,
    with_time,
)
from iot_bridge.parsers.base import (
    MAX_PAYLOAD_BYTES,
    Parser,
    ParserOptions,
    Reading,
    in_wh,
    number,
)

_STARTS = ("tele/", "stat/", "cmnd/")
_MAX_WH = 1.7e308
_PHASES = tuple(f"Phase{i + 1}" for i in range(16))


def _num(value: Any, key: str) -> float:
    return number(value, f"ENERGY.{key}")


def _field(energy: dict[str, Any], key: str, channel: int) -> float | None:
    value = energy.get(key)
    t = type(value)
    if t is float or t is int:
        return _num(value, key)
    if value is None:
        if key in energy:
            raise ParseError(f"ENERGY.{key} is null")
        return None
    if t is list:
        if not 0 <= channel < len(value):
            raise ParseError(
                f"ENERGY.{key} has {len(value)} channels, channel {channel} is out of range"
            )
        return _num(value[channel], f"{key}[{channel}]")
    if t is dict:
        phase = _PHASES[channel] if 0 <= channel < 16 else f"Phase{channel + 1}"
        if phase not in value:
            raise ParseError(f"ENERGY.{key} has no {phase} (channel {channel})")
        return _num(value[phase], f"{key}.{phase}")
    raise ParseError(f"ENERGY.{key} must be a number, list or object, got {t.__name__}")


def _time(obj: dict[str, Any]) -> str | None:
    """``Time`` as the device sent it (converted only if the bridge ever needs it)."""
    value = obj.get("Time")
    return value if type(value) is str else None


def _ct_energy(obj: dict[str, Any], channel: int) -> Reading | None:
    """``ANALOG.CTEnergy<channel + 1>`` (or ``CTEnergy`` for channel 0); ``None`` if absent."""
    analog = obj.get("ANALOG")
    if type(analog) is not dict:
        if analog is None:
            return None
        raise ParseError(f"ANALOG must be a JSON object, got {type(analog).__name__}")
    key = f"CTEnergy{channel + 1}"
    ct = analog.get(key)
    if ct is None and channel == 0 and "CTEnergy" in analog:
        key, ct = "CTEnergy", analog["CTEnergy"]
    if ct is None:
        present = sorted(k for k in analog if k.startswith("CTEnergy"))
        if present:  # a CT meter, but not this channel: a misconfigured channel is loud
            raise ParseError(f"ANALOG has {', '.join(present)}, no {key} (channel {channel})")
        return None
    if type(ct) is not dict:
        raise ParseError(f"ANALOG.{key} must be a JSON object, got {type(ct).__name__}")
    where = f"ANALOG.{key}"
    power, total, voltage, current = (
        None if ct.get(k) is None and k not in ct else number(ct.get(k), f"{where}.{k}")
        for k in ("Power", "Energy", "Voltage", "Current")
    )
    if power is None and total is None and voltage is None and current is None:
        return SIGN_OF_LIFE
    energy = None if total is None else in_wh(total, 1000.0, f"{where}.Energy")
    return reading(power, energy, voltage, current)


def _energy(obj: dict[str, Any], channel: int) -> Reading | None:
    energy = obj.get("ENERGY")
    if type(energy) is not dict:
        if energy is None and "ENERGY" not in obj:
            return with_time(_ct_energy(obj, channel), _time(obj))
        raise ParseError(f"ENERGY must be a JSON object, got {type(energy).__name__}")
    # Inlined fast path for plain numbers (orjson floats are always finite); lists, dicts,
    # absent keys and errors go through _field.
    v: Any = energy.get("Power")
    t = type(v)
    power = v if t is float else float(v) if t is int else _field(energy, "Power", channel)
    v = energy.get("Total")
    t = type(v)
    total = v if t is float else float(v) if t is int else _field(energy, "Total", channel)
    v = energy.get("Voltage")
    t = type(v)
    voltage = v if t is float else float(v) if t is int else _field(energy, "Voltage", channel)
    v = energy.get("Current")
    t = type(v)
    current = v if t is float else float(v) if t is int else _field(energy, "Current", channel)
    if power is None and total is None and voltage is None and current is None:
        return with_time(SIGN_OF_LIFE, _time(obj))
    return reading(
        power,
        None if total is None else in_wh(total, 1000.0, "ENERGY.Total"),
        voltage,
        current,
        device_ts=_time(obj),
    )


def _status(obj: dict[str, Any], channel: int, what: str) -> Reading | None:
    sns = obj.get("StatusSNS")
    if type(sns) is not dict:
        raise ParseError(f"{what} must hold a StatusSNS object, got {type(sns).__name__}")
    return _energy(sns, channel)


def _is_tasmota(topic: str) -> bool:
    return topic.startswith(_STARTS) or "/tele/" in topic or "/stat/" in topic or "/cmnd/" in topic


class _Energy(msgspec.Struct):
    Power: float | msgspec.UnsetType = msgspec.UNSET
    Total: float | msgspec.UnsetType = msgspec.UNSET
    Voltage: float | msgspec.UnsetType = msgspec.UNSET
    Current: float | msgspec.UnsetType = msgspec.UNSET


class _Sensor(msgspec.Struct):
    ENERGY: _Energy | msgspec.UnsetType = msgspec.UNSET
    Time: str | msgspec.UnsetType = msgspec.UNSET


_SENSOR_DECODER = msgspec.json.Decoder(_Sensor)
_UNSET = msgspec.UNSET


def _fast_sensor(payload: bytes) -> Reading | None:
    """A SENSOR frame with a scalar ``ENERGY`` block, decoded in C; ``None`` = let ``_energy``
    decide (arrays, per-phase objects, errors, no ENERGY, an empty ENERGY)."""
    try:
        sensor = _SENSOR_DECODER.decode(payload)
    except (msgspec.MsgspecError, RecursionError):
        return None
    energy = sensor.ENERGY
    if energy is _UNSET:
        return None
    e: _Energy = energy
    power = None if e.Power is _UNSET else e.Power
    total = None if e.Total is _UNSET else e.Total * 1000.0
    if total is not None and not -_MAX_WH < total < _MAX_WH:
        return None  # overflowed: let the general path say so
    voltage = None if e.Voltage is _UNSET else e.Voltage
    current = None if e.Current is _UNSET else e.Current
    if power is None and total is None and voltage is None and current is None:
        return None
    ts = None if sensor.Time is _UNSET else sensor.Time
    r: Reading = _tuple_new(Reading, (power, total, voltage, current, None, ts, False))
    return r


def parse(topic: str, payload: bytes, options: ParserOptions) -> Reading | None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise too_big(payload)
    if topic.endswith("/SENSOR") and _is_tasmota(topic):
        fast = _fast_sensor(payload)
        if fast is not None:
            return fast
        return _energy(loads_object(payload, "SENSOR"), options.channel)
    if not _is_tasmota(topic):
        raise ParseError(f"not a Tasmota topic (no tele/stat/cmnd segment): {topic[:120]!r}")
    last = topic[topic.rfind("/") + 1 :]
    if last == "STATE":
        return SIGN_OF_LIFE
    if last == "LWT":
        if payload == b"Online":
            return ONLINE
        if payload == b"Offline":
            return OFFLINE
        return bool_text(payload, b"Online", b"Offline", "Tasmota LWT")
    if last in ("STATUS8", "STATUS10"):
        return _status(loads_object(payload, last), options.channel, last)
    if last == "RESULT":
        obj = loads_object(payload, "RESULT")
        if "StatusSNS" in obj:
            return _status(obj, options.channel, "RESULT")
        return _energy(obj, options.channel)
    return None


def subscriptions(mqtt_topic: str) -> tuple[str, ...]:
    """The configured topic plus the device's ``LWT`` and ``STATE`` topics (same FullTopic)."""
    parts = mqtt_topic.split("/")
    if parts[-1] == "#":
        return (mqtt_topic,)
    for i, part in enumerate(parts[:-1]):
        if part in ("tele", "stat"):
            parts[i] = "tele"
            stem = "/".join(parts[:-1])
            return dedupe(mqtt_topic, f"{stem}/LWT", f"{stem}/STATE")
    return (mqtt_topic,)


PARSER = Parser(parse=parse, subscriptions=subscriptions)
