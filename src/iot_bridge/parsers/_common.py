"""Hot-path helpers shared by the parser families (private to the package).

``Reading`` is a named tuple; :func:`reading` builds it with ``tuple.__new__`` directly, skipping
the keyword-handling ``__new__`` the class generates. The constant readings below are shared:
tuples are immutable, so sharing is safe and costs no allocation.
"""

from __future__ import annotations

from typing import Any

import orjson

from iot_bridge.errors import ParseError
from iot_bridge.parsers.base import MAX_PAYLOAD_BYTES, DeviceTime, Reading

SIGN_OF_LIFE = Reading()
"""A message from the metered channel that carries no value we normalise (resets the timeout)."""
ONLINE = Reading(online=True)
OFFLINE = Reading(online=False)

_tuple_new = tuple.__new__


def reading(
    power_w: float | None,
    energy_wh: float | None = None,
    voltage_v: float | None = None,
    current_a: float | None = None,
    *,
    device_ts: DeviceTime | None = None,
    coarse: bool = False,
) -> Reading:
    """``Reading(power_w, energy_wh, voltage_v, current_a, None, device_ts, coarse)``, built
    the fast way."""
    r: Reading = _tuple_new(
        Reading, (power_w, energy_wh, voltage_v, current_a, None, device_ts, coarse)
    )
    return r


def with_time(
    r: Reading | None, device_ts: DeviceTime | None, coarse: bool = False
) -> Reading | None:
    """``r`` carrying the device's time (readings only: ``None`` stays ``None``)."""
    if r is None or device_ts is None:
        return r
    return r._replace(device_ts=device_ts, coarse=coarse)


def too_big(payload: bytes) -> ParseError:
    return ParseError(f"payload of {len(payload)} bytes exceeds the {MAX_PAYLOAD_BYTES} byte limit")


def loads(payload: bytes) -> Any:
    """orjson decode (size already checked by the caller); NaN/Infinity are rejected by orjson,
    and so is nesting deeper than it allows (recursion)."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise ParseError("invalid JSON: nested too deeply") from None


def loads_object(payload: bytes, what: str) -> dict[str, Any]:
    obj = loads(payload)
    if type(obj) is not dict:
        raise ParseError(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


def sub_object(obj: dict[str, Any], key: str, where: str) -> dict[str, Any] | None:
    """``obj[key]`` if it is an object, ``None`` if absent; anything else is an error."""
    value = obj.get(key)
    if value is None:
        if key in obj:
            raise ParseError(f"{where}.{key} is null, expected an object")
        return None
    if type(value) is not dict:
        raise ParseError(f"{where}.{key} must be an object, got {type(value).__name__}")
    return value


def bool_text(payload: bytes, true: bytes, false: bytes, what: str) -> Reading:
    """An availability payload such as ``true``/``false`` or ``Online``/``Offline``."""
    if payload == true:
        return ONLINE
    if payload == false:
        return OFFLINE
    stripped = payload.strip()
    if stripped == true:
        return ONLINE
    if stripped == false:
        return OFFLINE
    raise ParseError(
        f"{what} payload must be {true.decode()!r} or {false.decode()!r}, got {payload[:40]!r}"
    )


def dedupe(*topics: str) -> tuple[str, ...]:
    """Topic filters in first-seen order without duplicates."""
    return tuple(dict.fromkeys(topics))
