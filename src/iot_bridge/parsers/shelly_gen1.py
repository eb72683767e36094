"""Shelly Gen1 (Plug S, 1PM, 2.5, EM, 3EM ...) over MQTT: one text value per topic.

Every topic starts with ``shellies/<id>/`` (the id may itself contain ``/``); anything else is not
Gen1 and raises :class:`ParseError`. The channel ``N`` must equal ``ParserOptions.channel``;
a topic of another channel is ``None``.

===================================== =============================================================
``shellies/<id>/relay/N/power``       W -> ``power_w``
``shellies/<id>/relay/N/energy``      **watt-minutes** counter -> ``energy_wh`` (/60)
``shellies/<id>/relay/power|energy``  device-level meter (Shelly 2 in some modes), any channel
``shellies/<id>/emeter/N/power``      W -> ``power_w``
``shellies/<id>/emeter/N/total``      Wh (non-volatile) -> ``energy_wh``
``shellies/<id>/emeter/N/voltage``    V; ``current`` A
``shellies/<id>/emeter/N/<other>``    ``energy`` (Wmin), ``returned_energy``, ``total_returned``,
                                      ``pf``, ``reactive_power``: sign of life ``Reading()``.
                                      ``emeter/N/energy`` is deliberately not used as a counter:
                                      mixing it with ``total`` (another unit, another reset
                                      behaviour) would look like counter resets to the detector.
``shellies/<id>/online``              ``true`` / ``false`` -> ``Reading(online=...)``
``shellies/<id>/info``                JSON, the HTTP ``/status`` body: ``meters[N]`` (``power`` W,
                                      ``total`` Wmin) or ``emeters[N]`` (``power``, ``voltage``,
                                      ``current``, ``total`` Wh); ``is_valid: false`` -> no power.
anything else under ``shellies/``     ``None``: ``relay/N`` (``on``/``off``: relay state only),
                                      ``announce``, ``temperature``, ``overtemperature``,
                                      ``input/N``, ``input_event/N``, ``longpush/N`` ...
===================================== =============================================================

Why ``relay/N`` and ``temperature`` are ``None`` and not a sign of life: they carry no
measurement of the channel's meter, and Gen1 publishes ``relay/N/power`` (and ``energy``) in the
same periodic burst (``mqtt_update_period``) and on every change, so a meter topic always proves
the device alive at least as often.
"""

from __future__ import annotations

from math import isfinite
from typing import Any

from iot_bridge.errors import ParseError
from iot_bridge.parsers._common import (
    SIGN_OF_LIFE,
    bool_text,
    dedupe,
    loads_object,
    reading,
    too_big,
)
from iot_bridge.parsers.base import MAX_PAYLOAD_BYTES, Parser, ParserOptions, Reading
from iot_bridge.parsers.base import number as _num

_PREFIX = "shellies/"
_CHANNELS = tuple(str(i) for i in range(64))
_EMETER_ALIVE = frozenset({"energy", "returned_energy", "total_returned", "pf", "reactive_power"})


def _text_number(payload: bytes, topic: str) -> float:
    try:
        value = float(payload)
    except ValueError:
        raise ParseError(f"{topic}: payload is not a number: {payload[:40]!r}") from None
    if isfinite(value):
        return value
    raise ParseError(f"{topic}: value is not finite")


def _opt(obj: dict[str, Any], key: str, where: str) -> float | None:
    if key not in obj:
        return None
    return _num(obj[key], f"{where}.{key}")


def _entry(obj: dict[str, Any], key: str, channel: int) -> dict[str, Any] | None:
    items = obj.get(key)
    if items is None:
        return None
    if type(items) is not list:
        raise ParseError(f"info.{key} must be a list, got {type(items).__name__}")
    if channel >= len(items):
        return None
    entry = items[channel]
    if type(entry) is not dict:
        raise ParseError(f"info.{key}[{channel}] must be an object, got {type(entry).__name__}")
    return entry


def _parse_info(payload: bytes, channel: int) -> Reading | None:
    """``shellies/<id>/info``: the HTTP ``/status`` body."""
    obj = loads_object(payload, "info")
    em = _entry(obj, "emeters", channel)
    if em is not None:
        where = f"info.emeters[{channel}]"
        power = _opt(em, "power", where)
        if em.get("is_valid") is False:
            power = None
        return reading(
            power, _opt(em, "total", where), _opt(em, "voltage", where), _opt(em, "current", where)
        )
    m = _entry(obj, "meters", channel)
    if m is None:
        return None
    where = f"info.meters[{channel}]"
    power = _opt(m, "power", where)
    if m.get("is_valid") is False:
        power = None
    total = _opt(m, "total", where)
    energy = None if total is None else total / 60.0
    if power is None and energy is None:
        return SIGN_OF_LIFE
    return reading(power, energy)


def parse(topic: str, payload: bytes, options: ParserOptions) -> Reading | None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise too_big(payload)
    if not topic.startswith(_PREFIX):
        raise ParseError(f"not a Shelly Gen1 topic (must start with 'shellies/'): {topic[:120]!r}")
    head, _, last = topic.rpartition("/")
    channel = options.channel
    if last in ("power", "energy"):
        parent, _, n = head.rpartition("/")
        if n == "relay":  # device-level shellies/<id>/relay/power
            if last == "power":
                return reading(_text_number(payload, topic))
            return reading(None, _text_number(payload, topic) / 60.0)
        if n != (_CHANNELS[channel] if 0 <= channel < 64 else str(channel)):
            return None  # another channel, or not a meter topic
        if parent.endswith("/relay"):
            if last == "power":
                return reading(_text_number(payload, topic))
            return reading(None, _text_number(payload, topic) / 60.0)
        if parent.endswith("/emeter"):
            if last == "power":
                return reading(_text_number(payload, topic))
            _text_number(payload, topic)  # validate; emeter/N/energy is not our counter
            return SIGN_OF_LIFE
        return None
    if last == "online":
        return bool_text(payload, b"true", b"false", "Shelly online")
    if last == "info":
        return _parse_info(payload, channel)
    parent, _, n = head.rpartition("/")
    if parent.endswith("/emeter"):
        if n != (_CHANNELS[channel] if 0 <= channel < 64 else str(channel)):
            return None
        if last == "total":
            return reading(None, _text_number(payload, topic))
        if last == "voltage":
            return reading(None, None, _text_number(payload, topic))
        if last == "current":
            return reading(None, None, None, _text_number(payload, topic))
        if last in _EMETER_ALIVE:
            _text_number(payload, topic)
            return SIGN_OF_LIFE
    return None


def subscriptions(mqtt_topic: str) -> tuple[str, ...]:
    """The configured topic, the sibling power/energy topics of its channel and ``<id>/online``."""
    for marker, siblings in (("/relay/", ("power", "energy")), ("/emeter/", ("power", "total"))):
        root, sep, rest = mqtt_topic.rpartition(marker)
        if sep and root:
            n = rest.partition("/")[0]
            base = f"{root}{marker}{n}/" if n.isdigit() else f"{root}{marker}"
            return dedupe(mqtt_topic, *(base + s for s in siblings), f"{root}/online")
    head, _, last = mqtt_topic.rpartition("/")
    if head.startswith(_PREFIX) and last in ("info", "online"):
        return dedupe(mqtt_topic, f"{head}/online")
    return (mqtt_topic,)


PARSER = Parser(parse=parse, subscriptions=subscriptions)
