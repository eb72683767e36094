"""Generic JSON or bare-number payloads, configured per device through ``ParserOptions``.

* A payload that is a bare JSON number (``20.58``) is the power in W.
* A JSON object or array is read at ``power_path`` (W) and, if set, ``energy_path`` (a counter in
  ``energy_unit``: ``Wh``, ``kWh`` or ``Wmin``, converted to Wh). Paths are dotted; a segment of
  digits indexes a list (``0.value``, ``StatusSNS.ENERGY.Power``, ``params.switch:0.apower``).

Missing paths (a decision):

* ``power_path`` missing from a JSON object/array is a :class:`ParseError` whose message names the
  path and the keys that were there, so an operator can see at once that the path is wrong. A
  generic device has no "delta frames": every message on its topic is expected to carry power.
* ``energy_path`` missing gives ``energy_wh=None`` (not an error): energy is optional per message
  (e.g. Tasmota PowerDelta frames) and the detector falls back to integrating power.

A value found at a path must be a finite number: strings, booleans, null, objects are errors.
Topics are not checked: the device's ``mqtt_topic`` is whatever the operator configured.
"""

from __future__ import annotations

from typing import Any

from iot_bridge.errors import ParseError
from iot_bridge.parsers._common import loads, reading, too_big
from iot_bridge.parsers.base import (
    ENERGY_TO_WH,
    MAX_PAYLOAD_BYTES,
    Parser,
    ParserOptions,
    Reading,
    in_wh,
)
from iot_bridge.parsers.base import number as _num

_Path = tuple[tuple[str, int | None], ...]
_PATHS: dict[str, _Path] = {}
_MISSING: Any = object()


def _compile(path: str) -> _Path:
    compiled = _PATHS.get(path)
    if compiled is None:
        compiled = tuple((seg, int(seg) if seg.isdigit() else None) for seg in path.split("."))
        if len(_PATHS) < 1024:
            _PATHS[path] = compiled
    return compiled


def _at(doc: Any, path: str) -> Any:
    cur = doc
    for key, index in _compile(path):
        t = type(cur)
        if t is dict:
            cur = cur.get(key, _MISSING)
            if cur is _MISSING:
                return _MISSING
        elif t is list and index is not None and index < len(cur):
            cur = cur[index]
        else:
            return _MISSING
    return cur


def _keys_hint(doc: Any) -> str:
    if type(doc) is dict:
        keys = list(doc)[:10]
        return f"top-level keys: {', '.join(map(repr, keys)) or 'none'}"
    return f"top-level list of {len(doc)} items"


def parse(topic: str, payload: bytes, options: ParserOptions) -> Reading | None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise too_big(payload)
    doc = loads(payload)
    t = type(doc)
    if t is float or t is int:
        return reading(_num(doc, "payload"))
    if t is not dict and t is not list:
        raise ParseError(f"payload must be a number or a JSON object/array, got {t.__name__}")
    path = options.power_path
    value = _at(doc, path)
    if value is _MISSING:
        raise ParseError(f"power_path {path!r} not found in payload ({_keys_hint(doc)})")
    power = _num(value, f"value at power_path {path!r}")
    epath = options.energy_path
    if not epath:
        return reading(power)
    factor = ENERGY_TO_WH.get(options.energy_unit)
    if factor is None:
        raise ParseError(f"unknown energy_unit {options.energy_unit!r} (Wh, kWh or Wmin)")
    value = _at(doc, epath)
    if value is _MISSING:
        return reading(power)
    field = f"value at energy_path {epath!r}"
    return reading(power, in_wh(_num(value, field), factor, field))


def subscriptions(mqtt_topic: str) -> tuple[str, ...]:
    """Only the configured topic: a generic device has no known availability topic."""
    return (mqtt_topic,)


PARSER = Parser(parse=parse, subscriptions=subscriptions)
