"""Device configuration: the ``GET /ows/iot/config`` shape, validated as a whole, frozen.

The same shape comes from Odoo, from the on-disk cache of the last good Odoo answer, from
``DEVICES_FILE`` in standalone mode and from ``replay --device``. One bad device entry never
takes the others down: it is rejected with a message naming the device and the field, and the
rest of the config applies (``odoo-api.md``: "the rest of the config applies").

A key the bridge does not know rejects its entry too, naming the key and the nearest known one:
``standby_treshold_w`` accepted silently would run the machine on the default threshold, and
every session it detects would be billed wrong. Each set of known keys sits next to the code
that reads those keys, so a new key is one edit there.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from iot_bridge.errors import ConfigError
from iot_bridge.parsers import PARSERS, ParserOptions
from iot_bridge.parsers.badge import READER_FORMATS, ReaderConfig
from iot_bridge.parsers.base import DEFAULT_MAX_POWER_W, ENERGY_TO_WH
from iot_bridge.topics import filter_problem, is_wildcard


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Thresholds and timers of ``sessions.md``; the constructor enforces its rules."""

    standby_threshold_w: float = 20.0
    working_threshold_w: float = 100.0
    start_debounce_s: float = 3.0
    stop_debounce_s: float = 15.0
    message_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        for name in (
            "standby_threshold_w",
            "working_threshold_w",
            "start_debounce_s",
            "stop_debounce_s",
            "message_timeout_s",
        ):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number")
        if not 0 <= self.standby_threshold_w < self.working_threshold_w:
            raise ConfigError(
                "thresholds must satisfy 0 <= standby_threshold_w < working_threshold_w "
                f"(got {self.standby_threshold_w} and {self.working_threshold_w})"
            )
        if self.start_debounce_s < 0 or self.stop_debounce_s < 0:
            raise ConfigError("start_debounce_s and stop_debounce_s must be >= 0")
        if self.message_timeout_s <= 0:
            raise ConfigError("message_timeout_s must be > 0")


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    device_id: str
    mqtt_topic: str
    parser_type: str
    machine_name: str = ""
    session: SessionConfig = field(default_factory=SessionConfig)
    parser: ParserOptions = field(default_factory=ParserOptions)
    reader: ReaderConfig | None = None  # a badge reader next to the machine

    def subscriptions(self) -> tuple[str, ...]:
        """Topic filters this device's meter needs, as its parser family defines them (the
        reader's topic is not among them: its messages go to the badge parser)."""
        return PARSERS[self.parser_type].subscriptions(self.mqtt_topic)


@dataclass(frozen=True, slots=True)
class DeviceSet:
    """A validated config document: usable devices plus one message per rejected entry."""

    config_version: str | None
    devices: tuple[DeviceConfig, ...]
    errors: tuple[str, ...] = ()

    def by_id(self) -> dict[str, DeviceConfig]:
        return {d.device_id: d for d in self.devices}


def _name(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _check_keys(obj: Mapping[Any, Any], known: frozenset[str], where: str) -> None:
    """Refuse any key not in ``known``, suggesting the nearest known key for each."""
    unknown = sorted(str(k) for k in obj if k not in known)
    if not unknown:
        return
    choices = sorted(known)
    named: list[str] = []
    for key in unknown:
        close = difflib.get_close_matches(key, choices, n=1)
        named.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
    unmatched = len(named) > sum("did you mean" in n for n in named)
    listed = f" (known: {', '.join(choices)})" if unmatched else ""
    prefix = f"{where}: " if where else ""
    plural = "s" if len(unknown) > 1 else ""
    raise ConfigError(f"{prefix}unknown key{plural} {', '.join(named)}{listed}")


def _number(obj: Mapping[str, Any], key: str, where: str) -> float:
    value = obj[key]
    if type(value) not in (int, float):
        raise ConfigError(f"{_name(where, key)} must be a number, got {value!r}")
    return float(value)


def _text(obj: Mapping[str, Any], key: str, where: str, required: bool = True) -> str:
    value = obj.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ConfigError(f"{_name(where, key)} must be a non-empty string, got {value!r}")
    return value


SESSION_NUMBERS = tuple(f.name for f in fields(SessionConfig))
SESSION_KEYS = frozenset({"strategy", *SESSION_NUMBERS})
"""``session_config``: the strategy and every threshold and timer of :class:`SessionConfig`."""


def session_config_from_json(obj: object, where: str = "session_config") -> SessionConfig:
    if obj is None:
        return SessionConfig()
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{where} must be an object")
    _check_keys(obj, SESSION_KEYS, where)
    strategy = obj.get("strategy", "power_threshold")
    if strategy != "power_threshold":
        raise ConfigError(f"{where}.strategy {strategy!r} is not supported (power_threshold)")
    values = {k: _number(obj, k, where) for k in SESSION_NUMBERS if k in obj}
    return SessionConfig(**values)


PARSER_KEYS = frozenset({"channel", "power_path", "energy_path", "energy_unit", "max_power_w"})
"""``parser_config``: what :func:`parser_options_from_json` reads."""


def parser_options_from_json(obj: object, where: str = "parser_config") -> ParserOptions:
    if obj is None:
        return ParserOptions()
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{where} must be an object")
    _check_keys(obj, PARSER_KEYS, where)
    channel = obj.get("channel", 0)
    if type(channel) is not int or channel < 0:
        raise ConfigError(f"{where}.channel must be a non-negative integer, got {channel!r}")
    power_path = obj.get("power_path", "power")
    energy_path = obj.get("energy_path")
    unit = obj.get("energy_unit", "Wh")
    if not isinstance(power_path, str) or not power_path:
        raise ConfigError(f"{where}.power_path must be a non-empty string")
    if energy_path is not None and (not isinstance(energy_path, str) or not energy_path):
        raise ConfigError(f"{where}.energy_path must be a non-empty string or absent")
    if unit not in ENERGY_TO_WH:
        raise ConfigError(
            f"{where}.energy_unit must be one of {sorted(ENERGY_TO_WH)}, got {unit!r}"
        )
    max_power = obj.get("max_power_w", DEFAULT_MAX_POWER_W)
    if type(max_power) not in (int, float) or not 0 < max_power < math.inf:
        raise ConfigError(f"{where}.max_power_w must be a positive number, got {max_power!r}")
    return ParserOptions(
        channel=channel,
        power_path=power_path,
        energy_path=energy_path,
        energy_unit=unit,
        max_power_w=float(max_power),
    )


READER_KEYS = frozenset({"mqtt_topic", "format", "uid_path"})
"""``badge_reader``: what :func:`reader_from_json` reads."""


def reader_from_json(obj: object, where: str = "badge_reader") -> ReaderConfig | None:
    if obj is None:
        return None
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{where} must be an object")
    _check_keys(obj, READER_KEYS, where)
    topic = _text(obj, "mqtt_topic", where)
    problem = filter_problem(topic)
    if problem is None and is_wildcard(topic):
        problem = "has a wildcard: a reader is one topic"
    if problem is not None:
        shown = topic if len(topic) <= 80 else topic[:77] + "..."
        raise ConfigError(f"{where}.mqtt_topic {shown!r} {problem}")
    fmt = obj.get("format")
    if fmt not in READER_FORMATS:
        raise ConfigError(f"{where}.format must be one of {', '.join(READER_FORMATS)}, got {fmt!r}")
    uid_path = obj.get("uid_path")
    if fmt == "generic" and (not isinstance(uid_path, str) or not uid_path):
        raise ConfigError(f"{where}.uid_path must be a non-empty string for a generic reader")
    if fmt == "tasmota" and uid_path is not None:
        raise ConfigError(f"{where}.uid_path is for generic readers only")
    return ReaderConfig(topic, fmt, uid_path)


DEVICE_KEYS = frozenset(
    {"device_id", "mqtt_topic", "parser_type", "machine_name", "session_config",
     "parser_config", "badge_reader"}
)  # fmt: skip
"""A device entry: what :func:`device_from_json` reads."""


def device_from_json(obj: object, position: int | None = None) -> DeviceConfig:
    """One device entry; raises :class:`ConfigError` naming the device and the field.

    ``position`` (1-based) names an entry whose ``device_id`` is unusable.
    """
    entry = "device entry" if position is None else f"device entry {position}"
    if not isinstance(obj, Mapping):
        raise ConfigError(f"{entry} must be an object, got {type(obj).__name__}")
    device_id = obj.get("device_id")
    named = isinstance(device_id, str) and device_id.strip() != ""
    where = f"device {device_id!r}" if named else entry
    try:
        _check_keys(obj, DEVICE_KEYS, "")
        device_id = _text(obj, "device_id", "")
        topic = _text(obj, "mqtt_topic", "")
        parser_type = _text(obj, "parser_type", "")
        if parser_type not in PARSERS:
            raise ConfigError(
                f"parser_type {parser_type!r} is unknown (known: {', '.join(sorted(PARSERS))})"
            )
        device = DeviceConfig(
            device_id=device_id,
            mqtt_topic=topic,
            parser_type=parser_type,
            machine_name=_text(obj, "machine_name", "", required=False),
            session=session_config_from_json(obj.get("session_config")),
            parser=parser_options_from_json(obj.get("parser_config")),
            reader=reader_from_json(obj.get("badge_reader")),
        )
        # the configured topic and what its parser family adds (online, events/rpc ...)
        for topic_filter in (topic, *device.subscriptions()):
            problem = filter_problem(topic_filter)
            if problem is not None:
                shown = topic_filter if len(topic_filter) <= 80 else topic_filter[:77] + "..."
                raise ConfigError(f"mqtt_topic {shown!r} {problem}")
        return device
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def device_set_from_json(doc: object) -> DeviceSet:
    """The whole document; a document that is not the config shape at all raises ConfigError."""
    if isinstance(doc, list):  # a bare list of device entries is accepted for files
        doc = {"devices": doc}
    if not isinstance(doc, Mapping) or not isinstance(doc.get("devices"), list):
        raise ConfigError('config must be an object with a "devices" list')
    version = doc.get("config_version")
    devices: list[DeviceConfig] = []
    errors: list[str] = []
    seen_ids: set[str] = set()
    seen_topics: dict[str, str] = {}
    for position, entry in enumerate(doc["devices"], 1):
        try:
            device = device_from_json(entry, position)
        except ConfigError as exc:
            errors.append(str(exc))
            continue
        if device.device_id in seen_ids:
            errors.append(f"device {device.device_id!r}: duplicate device_id, entry skipped")
            continue
        owner = seen_topics.get(device.mqtt_topic)
        if owner is not None:
            errors.append(
                f"device {device.device_id!r}: mqtt_topic {device.mqtt_topic!r} "
                f"is already used by {owner!r}, entry skipped"
            )
            continue
        seen_ids.add(device.device_id)
        seen_topics[device.mqtt_topic] = device.device_id
        devices.append(device)
    return DeviceSet(
        config_version=None if version is None else str(version),
        devices=tuple(devices),
        errors=tuple(errors),
    )
