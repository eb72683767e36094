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

from iot_bridge.parsers._common import (
    SIGN_OF_LIFE,
    bool_text,
    dedupe,
    loads_object,
    reading,
    too_big,
)
from iot_bridge.parsers.base import MAX_PAYLOAD_BYTES, ParseError, Parser, ParserOptions, Reading

_METER = 0  # switch:N, pm1:N  -> apower, voltage, current, aenergy.total
_EM1 = 1  # em1:N            -> act_power, voltage, current
_EM1DATA = 2  # em1data:N    -> total_act_energy

_RELAY_STATE_KEYS = frozenset(
    {"id", "output", "source", "tag", "timer_started_at", "timer_duration", "errors"}
)

_KEYS: dict[int, dict[str, int]] = {}


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
    t = type(value)
    if t is float:
        if isfinite(value):
            return value  # type: ignore[no-any-return]
        raise ParseError(f"{comp}.{key} is not finite")
    if t is int:
        return float(value)
    raise ParseError(f"{comp}.{key} must be a number, got {t.__name__}")


def _component(
    comp: Any, kind: int, name: str
) -> tuple[float | None, float | None, float | None, float | None, bool]:
    """(power, energy, voltage, current, alive) of one component status object."""
    if type(comp) is not dict:
        raise ParseError(f"{name} must be a JSON object, got {type(comp).__name__}")
    power = energy = voltage = current = None
    if kind == _METER:
        v = comp.get("apower")
        if v is not None or "apower" in comp:
            power = _num(v, name, "apower")
        ae = comp.get("aenergy")
        if ae is not None:
            if type(ae) is not dict:
                raise ParseError(f"{name}.aenergy must be an object, got {type(ae).__name__}")
            v = ae.get("total")
            if v is not None or "total" in ae:
                energy = _num(v, name, "aenergy.total")
        elif "aenergy" in comp:
            raise ParseError(f"{name}.aenergy is null, expected an object")
    elif kind == _EM1:
        v = comp.get("act_power")
        if v is not None or "act_power" in comp:
            power = _num(v, name, "act_power")
    else:
        v = comp.get("total_act_energy")
        if v is not None or "total_act_energy" in comp:
            energy = _num(v, name, "total_act_energy")
    if kind != _EM1DATA:
        v = comp.get("voltage")
        if v is not None or "voltage" in comp:
            voltage = _num(v, name, "voltage")
        v = comp.get("current")
        if v is not None or "current" in comp:
            current = _num(v, name, "current")
    alive = (
        power is not None
        or energy is not None
        or voltage is not None
        or current is not None
        or not _RELAY_STATE_KEYS.issuperset(comp)
    )
    return power, energy, voltage, current, alive


def _from_components(params: dict[str, Any], channel: int) -> Reading | None:
    """Merge the channel's components of a status snapshot or delta (``params`` / ``result``)."""
    power = energy = voltage = current = None
    alive = False
    found = False
    for name, kind in _keys(channel).items():
        comp = params.get(name)
        if comp is None:
            if name in params:
                raise ParseError(f"{name} is null, expected an object")
            continue
        found = True
        p, e, v, c, a = _component(comp, kind, name)
        if power is None:
            power = p
        if energy is None:
            energy = e
        if voltage is None:
            voltage = v
        if current is None:
            current = c
        alive = alive or a
    if not found:
        return None
    if power is None and energy is None and voltage is None and current is None:
        return SIGN_OF_LIFE if alive else None
    return reading(power, energy, voltage, current)


def _parse_status(payload: bytes, name: str, kind: int) -> Reading | None:
    obj = loads_object(payload, f"status/{name}")
    power, energy, voltage, current, alive = _component(obj, kind, name)
    if power is None and energy is None and voltage is None and current is None:
        return SIGN_OF_LIFE if alive else None
    return reading(power, energy, voltage, current)


def _parse_frame(payload: bytes, channel: int) -> Reading | None:
    frame = loads_object(payload, "events/rpc frame")
    method = frame.get("method")
    if method in ("NotifyStatus", "NotifyFullStatus"):
        params = frame.get("params")
        if type(params) is not dict:
            raise ParseError(f"{method} params must be a JSON object, got {type(params).__name__}")
        return _from_components(params, channel)
    if type(method) is not str:
        raise ParseError(f"events/rpc frame has no string 'method' (got {type(method).__name__})")
    return None  # NotifyEvent and friends: button presses, scripts, ...


def _parse_status_rpc(payload: bytes, channel: int) -> Reading | None:
    obj = loads_object(payload, "status/rpc")
    result = obj.get("result")
    if type(result) is not dict:
        raise ParseError(f"status/rpc 'result' must be a JSON object, got {type(result).__name__}")
    return _from_components(result, channel)


def parse(topic: str, payload: bytes, options: ParserOptions) -> Reading | None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise too_big(payload)
    head, _, last = topic.rpartition("/")
    if head.endswith("/status"):
        kind = _keys(options.channel).get(last)
        if kind is not None:
            return _parse_status(payload, last, kind)
        if last == "rpc":
            return _parse_status_rpc(payload, options.channel)
        return None  # another channel, or a component we do not meter (sys, mqtt, input:N)
    if last == "rpc":
        if head.endswith("/events"):
            return _parse_frame(payload, options.channel)
        if head:
            return None  # <prefix>/rpc: RPC requests and responses
    elif last == "online" and head:
        return bool_text(payload, b"true", b"false", "Shelly online")
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
