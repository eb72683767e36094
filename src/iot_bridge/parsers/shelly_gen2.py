"""Shelly Gen2 / Gen3 / Gen4 ("Shelly NG") over MQTT, including the Plug PM Gen3 / PM Mini Gen3.

Topics (``<prefix>`` is the device's ``topic_prefix``, by default its device id):

``<prefix>/status/<comp>:<N>`` (``status_ntf``)
    The full status object of one component. ``switch:N`` and ``pm1:N`` give ``apower`` (W),
    ``voltage``, ``current`` and ``aenergy.total`` (Wh); ``em1:N`` gives ``act_power``,
    ``voltage``, ``current``; ``em1data:N`` gives ``total_act_energy`` (Wh). N must equal
    ``ParserOptions.channel``: a status topic of another channel or of a component we do not
    meter (``sys``, ``mqtt``, ``input:0`` ...) is ``None``.
``<prefix>/events/rpc`` (``rpc_ntf``)
    JSON-RPC notifications. ``NotifyStatus`` is a *delta* (only changed keys) and
    ``NotifyFullStatus`` a full snapshot; both are read from the channel's components in
    ``params`` (``switch:N``, ``pm1:N``, ``em1:N``, ``em1data:N``). A field missing from the frame
    stays ``None`` (never 0): the caller overlays deltas on the last known state. Other methods
    (``NotifyEvent``) and frames that touch none of the channel's components are ``None``.
``<prefix>/status/rpc``
    ``{"result": <Shelly.GetStatus>}``, published by the (non-standard) bieniu discovery script;
    read like a ``NotifyFullStatus``.
``<prefix>/online``
    ``true`` / ``false`` (LWT) -> ``Reading(online=...)``.
``<prefix>/rpc``
    RPC request/response channel -> ``None``.

Device time: a notification's ``params.ts`` (Unix seconds, or seconds since boot until the
device has NTP) is the reading's ``device_ts``; a status object only has ``aenergy.minute_ts``,
the minute it belongs to (a coarse time). ``status/rpc`` carries no time we use.

Sign of life versus "not a reading": a frame of the channel's component that carries none of the
normalised fields but does carry some measurement (``temperature``, ``aenergy`` without
``total``, ``freq``, ``counts`` ...) is ``Reading()`` - the device is alive and metering. A frame
whose component object holds only relay state (``id``, ``output``, ``source``, ``tag``, timers)
is ``None``, like every relay-state-only message of the other families (Gen1 ``relay/N``,
Tasmota ``RESULT {"POWER":"ON"}``).
"""

from __future__ import annotations

from math import isfinite
from typing import Any

import msgspec

from iot_bridge.errors import ParseError
from iot_bridge.parsers._common import (
    SIGN_OF_LIFE,
    _tuple_new,
    bool_text,
    dedupe,
    loads,
    reading,
    too_big,
    with_time,
)
from iot_bridge.parsers.base import MAX_PAYLOAD_BYTES, Parser, ParserOptions, Reading

_METER = 0  # switch:N, pm1:N  -> apower, voltage, current, aenergy.total
_EM1 = 1  # em1:N            -> act_power, voltage, current
_EM1DATA = 2  # em1data:N    -> total_act_energy

_RELAY_STATE_KEYS = frozenset(
    {"id", "output", "source", "tag", "timer_started_at", "timer_duration", "errors"}
)

_KEYS: dict[int, dict[str, int]] = {}
_MISSING: Any = object()
_UNSET = msgspec.UNSET


class _AEnergy(msgspec.Struct):
    total: float | msgspec.UnsetType = msgspec.UNSET
    minute_ts: float | msgspec.UnsetType = msgspec.UNSET


class _MeterStatus(msgspec.Struct):
    """The fields we read of a ``switch:N`` / ``pm1:N`` status object; the rest is skipped."""

    apower: float | msgspec.UnsetType = msgspec.UNSET
    voltage: float | msgspec.UnsetType = msgspec.UNSET
    current: float | msgspec.UnsetType = msgspec.UNSET
    aenergy: _AEnergy | msgspec.UnsetType = msgspec.UNSET


_METER_DECODER = msgspec.json.Decoder(_MeterStatus)


def _fast_meter(payload: bytes) -> Reading | None:
    """The common frame, decoded straight into the four fields in C (about twice as fast).

    msgspec rejects what the general path rejects (non-numbers, ``null``, booleans, numbers
    out of a double's range, malformed JSON); any such frame, and a frame with none of the
    four fields (sign of life or relay state: that needs the other keys), returns ``None`` so
    the general path decides it and words the error exactly as it always has.
    """
    try:
        m = _METER_DECODER.decode(payload)
    except (msgspec.MsgspecError, RecursionError):
        return None
    ae = m.aenergy
    energy = minute = None
    if ae is not _UNSET:
        energy = None if ae.total is _UNSET else ae.total
        m_ts = ae.minute_ts
        minute = None if m_ts is _UNSET or not 0 <= m_ts < 1e11 else m_ts  # as _time() checks
    power = None if m.apower is _UNSET else m.apower
    voltage = None if m.voltage is _UNSET else m.voltage
    current = None if m.current is _UNSET else m.current
    if power is None and energy is None and voltage is None and current is None:
        return None
    # Reading(...) built the fast way (see _common.reading): this runs for every status frame
    r: Reading = _tuple_new(
        Reading, (power, energy, voltage, current, None, minute, minute is not None)
    )
    return r


def _keys(channel: int) -> dict[str, int]:
    """Component keys of one channel (cached: no string building per message)."""
    keys = _KEYS.get(channel)
    if keys is None:
        keys = {
            f"switch:{channel}": _METER,
            f"pm1:{channel}": _METER,
            f"em1:{channel}": _EM1,
            f"em1data:{channel}": _EM1DATA,
        }
        _KEYS[channel] = keys
    return keys


def _num(value: Any, comp: str, key: str) -> float:
    """Slow path of the inlined number checks: ints, non-finite floats, wrong types, null."""
    t = type(value)
    if t is int:
        return float(value)
    if t is float:
        if isfinite(value):
            return value  # type: ignore[no-any-return]
        raise ParseError(f"{comp}.{key} is not finite")
    raise ParseError(f"{comp}.{key} must be a number, got {t.__name__}")


def _component(comp: Any, kind: int, name: str) -> Reading | None:
    """One component object (full status or delta) -> reading, sign of life or ``None``.

    The number checks are inlined (``type(v) is float`` first): this is the hot path of every
    Shelly message. A float that orjson produced is always finite (it rejects ``NaN``,
    ``Infinity`` and numbers that overflow a double), so the fast path needs no range check.
    """
    if type(comp) is not dict:
        raise ParseError(f"{name} must be a JSON object, got {type(comp).__name__}")
    power = energy = voltage = current = None
    if kind == _METER:
        v = comp.get("apower", _MISSING)
        if v is not _MISSING:
            power = v if type(v) is float else _num(v, name, "apower")
        ae = comp.get("aenergy", _MISSING)
        if ae is not _MISSING:
            if type(ae) is not dict:
                if ae is None:
                    raise ParseError(f"{name}.aenergy is null, expected an object")
                raise ParseError(f"{name}.aenergy must be an object, got {type(ae).__name__}")
            v = ae.get("total", _MISSING)
            if v is not _MISSING:
                energy = v if type(v) is float else _num(v, name, "aenergy.total")
    elif kind == _EM1:
        v = comp.get("act_power", _MISSING)
        if v is not _MISSING:
            power = v if type(v) is float else _num(v, name, "act_power")
    else:
        v = comp.get("total_act_energy", _MISSING)
        if v is not _MISSING:
            energy = v if type(v) is float else _num(v, name, "total_act_energy")
    if kind != _EM1DATA:
        v = comp.get("voltage", _MISSING)
        if v is not _MISSING:
            voltage = v if type(v) is float else _num(v, name, "voltage")
        v = comp.get("current", _MISSING)
        if v is not _MISSING:
            current = v if type(v) is float else _num(v, name, "current")
    if power is None and energy is None and voltage is None and current is None:
        return None if _RELAY_STATE_KEYS.issuperset(comp) else SIGN_OF_LIFE
    return reading(power, energy, voltage, current)


def _from_components(params: dict[str, Any], keys: dict[str, int]) -> Reading | None:
    """The channel's components of a status snapshot or delta (``params`` / ``result``).

    Usually one component is present (``switch:N`` / ``pm1:N``); an energy meter's snapshot has
    two (``em1:N`` for power, ``em1data:N`` for energy), merged field by field.
    """
    result: Reading | None = None
    found = False
    for name, comp in params.items():  # usually {"ts", "switch:N"}; a full status: ~10
        kind = keys.get(name)
        if kind is None:
            continue
        if comp is None:
            raise ParseError(f"{name} is null, expected an object")
        r = _component(comp, kind, name)
        if not found:
            result = r
            found = True
        elif r is not None:
            result = r if result is None else _merge(result, r)
    return result


def _merge(a: Reading, b: Reading) -> Reading:
    if b is SIGN_OF_LIFE:
        return a
    if a is SIGN_OF_LIFE:
        return b
    return reading(
        a.power_w if a.power_w is not None else b.power_w,
        a.energy_wh if a.energy_wh is not None else b.energy_wh,
        a.voltage_v if a.voltage_v is not None else b.voltage_v,
        a.current_a if a.current_a is not None else b.current_a,
    )


def _decode(payload: bytes, what: str) -> dict[str, Any]:
    obj = loads(payload)
    if type(obj) is not dict:
        raise ParseError(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def _time(value: Any) -> float | None:
    """A device time if ``value`` is a finite, non-negative number; anything else: no time (a
    reading with a broken clock field is still a reading)."""
    t = type(value)
    if (t is float or t is int) and 0 <= value < 1e11:
        return float(value)
    return None


def _minute_ts(comp: dict[str, Any]) -> float | None:
    ae = comp.get("aenergy")
    return _time(ae.get("minute_ts")) if type(ae) is dict else None


def _parse_frame(frame: dict[str, Any], keys: dict[str, int]) -> Reading | None:
    method = frame.get("method")
    if method == "NotifyStatus" or method == "NotifyFullStatus":  # noqa: PLR1714 (unhashable)
        params = frame.get("params")
        if type(params) is not dict:
            raise ParseError(f"{method} params must be a JSON object, got {type(params).__name__}")
        return with_time(_from_components(params, keys), _time(params.get("ts")))
    if type(method) is not str:
        raise ParseError(f"events/rpc frame has no string 'method' (got {type(method).__name__})")
    return None  # NotifyEvent and friends: button presses, scripts, ...


def _parse_status_rpc(payload: bytes, keys: dict[str, int]) -> Reading | None:
    result = _decode(payload, "status/rpc").get("result")
    if type(result) is not dict:
        raise ParseError(f"status/rpc 'result' must be a JSON object, got {type(result).__name__}")
    return _from_components(result, keys)


_STATUS, _EVENTS, _STATUS_RPC, _ONLINE, _IGNORE, _FOREIGN = range(6)
_Route = tuple[int, str, int, dict[str, int]]  # (action, component name, its kind, channel keys)
_ROUTES: dict[int, dict[str, _Route]] = {}
_ROUTE_CACHE_SIZE = 4096


def _route(topic: str, channel: int) -> _Route:
    """What a topic is for a device of this channel (cached by :func:`parse`)."""
    head, _, last = topic.rpartition("/")
    keys = _keys(channel)
    if head.endswith("/status"):
        kind = keys.get(last)
        if kind is not None:
            return (_STATUS, last, kind, keys)
        if last == "rpc":
            return (_STATUS_RPC, last, 0, keys)
        return (_IGNORE, last, 0, keys)  # another channel, or an unmetered component (sys, ...)
    if last == "rpc":
        if head.endswith("/events"):
            return (_EVENTS, last, 0, keys)
        if head:
            return (_IGNORE, last, 0, keys)  # <prefix>/rpc: RPC requests and responses
    elif last == "online" and head:
        return (_ONLINE, last, 0, keys)
    return (_FOREIGN, last, 0, keys)


def parse(topic: str, payload: bytes, options: ParserOptions) -> Reading | None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise too_big(payload)
    channel = options.channel
    routes = _ROUTES.get(channel)
    if routes is None:
        routes = {} if len(_ROUTES) >= 64 else _ROUTES.setdefault(channel, {})
    route = routes.get(topic)
    if route is None:
        route = _route(topic, channel)
        if len(routes) < _ROUTE_CACHE_SIZE:
            routes[topic] = route
    action, name, kind, keys = route
    if action == _STATUS and kind == _METER:
        fast = _fast_meter(payload)
        if fast is not None:
            return fast
    if action <= _EVENTS:  # _STATUS or _EVENTS: a JSON object
        obj = loads(payload)
        if type(obj) is not dict:
            what = "events/rpc frame" if action == _EVENTS else f"status/{name}"
            raise ParseError(f"{what} must be a JSON object, got {type(obj).__name__}")
        if action == _STATUS:
            minute = _minute_ts(obj)
            return with_time(_component(obj, kind, name), minute, coarse=True)
        return _parse_frame(obj, keys)
    if action == _ONLINE:
        return bool_text(payload, b"true", b"false", "Shelly online")
    if action == _STATUS_RPC:
        return _parse_status_rpc(payload, keys)
    if action == _IGNORE:
        return None
    raise ParseError(f"not a Shelly Gen2 topic: {topic[:120]!r}")


def subscriptions(mqtt_topic: str) -> tuple[str, ...]:
    """The configured topic, plus ``<prefix>/events/rpc`` and ``<prefix>/online``.

    ``<prefix>/status/em1:N`` also gets ``<prefix>/status/em1data:N`` (the energy counter).
    """
    prefix, sep, comp = mqtt_topic.rpartition("/status/")
    if sep and prefix and "/" not in comp:
        extra = (f"{prefix}/status/em1data:{comp[4:]}",) if comp.startswith("em1:") else ()
        return dedupe(mqtt_topic, *extra, f"{prefix}/events/rpc", f"{prefix}/online")
    if mqtt_topic.endswith("/events/rpc") and len(mqtt_topic) > len("/events/rpc"):
        return dedupe(mqtt_topic, f"{mqtt_topic[: -len('/events/rpc')]}/online")
    return (mqtt_topic,)


PARSER = Parser(parse=parse, subscriptions=subscriptions)
