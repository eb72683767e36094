"""Plugs that announce themselves but are no configured device: the ``discovered`` list of the
status (``docs/odoo-api.md``, ``POST /ows/iot/status``). Pure.

Plugs say that they exist on a few well-known topics. The bridge subscribes those (a handful of
filters, never ``#``: a busy broker must not send it every message) and infers from each
announcement what an admin needs to configure the plug in Odoo: the ``mqtt_topic``, the device
id, the model and the parser type.

=========================================  ==================================================
``shellies/announce`` (Shelly Gen1)        ``{"id", "model", "mac", "ip", "fw_ver", …}``
``+/online`` (Shelly Gen2+, LWT)           ``true`` / ``false``; the prefix is the device id
``+/events/rpc`` (Shelly Gen2+)            a JSON-RPC frame whose ``src`` is the device id
``tele/+/LWT`` (Tasmota, LWT)              ``Online`` / ``Offline``
``tasmota/discovery/+/config`` (Tasmota)   ``{"t": topic, "ft": full topic, "md": model, …}``
=========================================  ==================================================

Only messages no configured device takes reach this module (the pipeline routes first), so a
discovery message never touches the session path, and a configured plug's ``online`` topic is
the pipeline's (it feeds that device's ``online`` field). Whatever an announcement says is
hostile input: strings are cut to the contract's 255 characters, NUL never kept, ``details``
kept under 4096 characters of JSON, the list capped at :data:`MAX_ENTRIES` topics; a message
that does not look like an announcement is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from iot_bridge.devices import DeviceSet
from iot_bridge.events import format_ts

DEFAULT_TOPICS = (
    "shellies/announce",
    "+/online",
    "+/events/rpc",
    "tele/+/LWT",
    "tasmota/discovery/+/config",
)
MAX_ENTRIES = 500  # the contract's cap of discovered[]
MAX_TEXT = 255  # characters of topic, device_id, model, parser_type, source, detail strings
MAX_DETAILS_JSON = 4096
MAX_PAYLOAD = 16 * 1024  # an announcement is small; a larger message is not one
FORGET_AFTER_S = 86_400.0  # a plug not heard for a day leaves the list
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHELLY_ID = re.compile(r"^(shelly[a-z0-9]+)-([0-9a-fA-F]{6,12})$")
_GEN1_DETAILS = ("ip", "mac", "fw_ver", "new_fw")
_TASMOTA_DETAILS = ("ip", "mac", "sw", "hn", "dn", "fn")


@dataclass(frozen=True, slots=True)
class Announcement:
    """What one message said about one plug (before first/last seen are added)."""

    topic: str
    device_id: str | None
    model: str | None
    parser_type: str | None
    source: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        """The part of ``topic`` every topic of this plug starts with (``shellies/<id>/``,
        ``<prefix>/``, ``tele/<t>/``): a configured device under it is this plug."""
        if self.topic.endswith("/events/rpc"):
            cut = 2  # <prefix>/events/rpc
        elif self.topic.startswith("shellies/"):
            cut = 3  # shellies/<id>/relay/0/power
        else:
            cut = 1  # tele/<t>/SENSOR
        return self.topic.rsplit("/", cut)[0] + "/"


@dataclass(slots=True)
class _Entry:
    found: Announcement
    first_seen: float
    last_seen: float


def _text(value: Any) -> str | None:
    """A string the contract can carry: no control characters (NUL above all), ≤ 255."""
    if not isinstance(value, str):
        return None
    cleaned = _CONTROL.sub("", value)[:MAX_TEXT]
    return cleaned or None


def _details(source: dict[str, Any], keys: Iterable[str], **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        value = source.get(key)
        if isinstance(value, bool) or (isinstance(value, int | float) and abs(value) < 1e15):
            out[key] = value
        elif (text := _text(value)) is not None:
            out[key] = text
    out.update(extra)
    while out and len(orjson.dumps(out)) > MAX_DETAILS_JSON:  # cannot happen with ≤ 8 keys
        out.pop(next(iter(out)))
    return out


def _json_object(payload: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _gen2_guess(device_id: str) -> tuple[str | None, str]:
    """Model and parser type from a Gen2+ device id (``shellypmminig3-48f6eeb73a1c``)."""
    m = _SHELLY_ID.match(device_id)
    model = m.group(1) if m else None
    if model is not None and model.startswith("shellypmminig3"):
        return model, "shelly_pm_mini_g3"
    return model, "shelly_gen2"


def _lwt(payload: bytes, true: bytes, false: bytes) -> bool | None:
    value = payload.strip()
    return True if value == true else False if value == false else None


def infer(topic: str, payload: bytes) -> Announcement | None:
    """The plug ``payload`` on ``topic`` announces, or ``None`` if it is no announcement."""
    if len(payload) > MAX_PAYLOAD:
        return None
    parts = topic.split("/")
    if topic == "shellies/announce":
        return _shelly_gen1(payload)
    if len(parts) >= 2 and parts[-1] == "online":
        online = _lwt(payload, b"true", b"false")
        prefix = "/".join(parts[:-1])
        if online is None or not prefix or parts[0] == "shellies":
            return None  # shellies/<id>/online is Gen1's: its announce says more
        model, parser = _gen2_guess(parts[-2])
        return Announcement(
            f"{prefix}/events/rpc",
            _text(parts[-2]),
            model,
            parser,
            "shelly_gen2_online",
            {"online": online},
        )
    if len(parts) >= 3 and parts[-2:] == ["events", "rpc"]:
        return _shelly_gen2_rpc("/".join(parts[:-2]), payload)
    if len(parts) == 3 and parts[0] == "tele" and parts[2] == "LWT" and parts[1]:
        online = _lwt(payload, b"Online", b"Offline")
        if online is None:
            return None
        return Announcement(
            f"tele/{parts[1]}/SENSOR", _text(parts[1]), None, "tasmota", "tasmota_lwt",
            {"online": online},
        )  # fmt: skip
    if len(parts) == 4 and parts[:2] == ["tasmota", "discovery"] and parts[3] == "config":
        return _tasmota_discovery(payload)
    return None


def _shelly_gen1(payload: bytes) -> Announcement | None:
    doc = _json_object(payload)
    device_id = None if doc is None else _text(doc.get("id"))
    if doc is None or device_id is None or "/" in device_id:
        return None
    model = _text(doc.get("model"))
    meter = "emeter" if model is not None and model.startswith("SHEM") else "relay"
    return Announcement(
        f"shellies/{device_id}/{meter}/0/power",
        device_id,
        model,
        "shelly_gen1",
        "shelly_gen1_announce",
        _details(doc, _GEN1_DETAILS),
    )


def _shelly_gen2_rpc(prefix: str, payload: bytes) -> Announcement | None:
    doc = _json_object(payload)
    if doc is None or not isinstance(doc.get("method"), str) or not prefix:
        return None
    src = _text(doc.get("src"))
    device_id = src or _text(prefix.rpartition("/")[2])
    model, parser = _gen2_guess(device_id or "")
    params = doc.get("params")
    extra: dict[str, Any] = {}
    if isinstance(params, dict):
        sys, wifi = params.get("sys"), params.get("wifi")
        if isinstance(sys, dict) and (mac := _text(sys.get("mac"))) is not None:
            extra["mac"] = mac
        if isinstance(wifi, dict) and (ip := _text(wifi.get("sta_ip"))) is not None:
            extra["ip"] = ip
        if any(isinstance(k, str) and k.startswith("pm1:") for k in params):
            parser = "shelly_pm_mini_g3"
    return Announcement(f"{prefix}/events/rpc", device_id, model, parser, "shelly_gen2_rpc", extra)


def _tasmota_discovery(payload: bytes) -> Announcement | None:
    doc = _json_object(payload)
    if doc is None:
        return None
    name = _text(doc.get("t"))
    if name is None or "/" in name:
        return None
    full = doc.get("ft") if isinstance(doc.get("ft"), str) else "%prefix%/%topic%/"
    prefixes = doc.get("tp")
    tele = "tele"
    if isinstance(prefixes, list) and len(prefixes) == 3 and isinstance(prefixes[2], str):
        tele = prefixes[2]
    stem = str(full).replace("%prefix%", tele).replace("%topic%", name)
    if "%" in stem:  # a FullTopic with fields we cannot fill (%hostname%, %id%): the default
        stem = f"{tele}/{name}/"
    return Announcement(
        f"{stem.rstrip('/')}/SENSOR",
        name,
        _text(doc.get("md")),
        "tasmota",
        "tasmota_discovery",
        _details(doc, _TASMOTA_DETAILS),
    )


def _usable_topic(topic: str) -> bool:
    return (
        0 < len(topic) <= MAX_TEXT
        and "+" not in topic
        and "#" not in topic
        and not _CONTROL.search(topic)
        and not topic.startswith("$")
    )


class Discovery:
    """The plugs heard so far, by the ``mqtt_topic`` they would be configured with."""

    def __init__(self, topics: Iterable[str] = DEFAULT_TOPICS) -> None:
        self.topics = tuple(topics)
        self._entries: dict[str, _Entry] = {}
        self.heard = 0  # announcements taken
        self.dropped = 0  # new plugs not listed because the list was full

    def handle(self, topic: str, payload: bytes, arrival: float) -> bool:
        """Take one message no device took; ``True`` if it was an announcement."""
        known = self._entries.get(topic)
        if known is not None and known.found.source == "shelly_gen2_rpc":
            # every reading of an unconfigured Gen2+ plug comes here: once its frames have
            # said who it is, the next ones only say it is still there (no JSON decoded)
            known.last_seen = max(known.last_seen, arrival)
            self.heard += 1
            return True
        try:
            found = infer(topic, payload)
        except Exception:  # hostile input beyond the checks above: not an announcement
            return False
        if found is None or not _usable_topic(found.topic):
            return False
        self.heard += 1
        entry = self._entries.get(found.topic)
        if entry is not None:
            entry.found = _merge(entry.found, found)
            entry.last_seen = max(entry.last_seen, arrival)
            return True
        if len(self._entries) >= MAX_ENTRIES:
            self._forget(arrival)
            if len(self._entries) >= MAX_ENTRIES:
                self.dropped += 1
                return True
        self._entries[found.topic] = _Entry(found, arrival, arrival)
        return True

    def _forget(self, now: float) -> None:
        for topic in [t for t, e in self._entries.items() if now - e.last_seen > FORGET_AFTER_S]:
            del self._entries[topic]

    def entries(self, config: DeviceSet | None, now: float) -> list[dict[str, Any]]:
        """The ``discovered`` list: every plug heard that is not a configured device (by its
        device id, or by a configured topic under the same stem), oldest first."""
        self._forget(now)
        ids: set[str] = set()
        topics: list[str] = []
        for device in config.devices if config is not None else ():
            ids.add(device.device_id)
            topics += device.subscriptions()
        out = []
        for topic, e in sorted(self._entries.items(), key=lambda kv: kv[1].first_seen):
            found = e.found
            stem = found.stem
            if found.device_id in ids or any(t.startswith(stem) for t in topics):
                continue
            out.append(
                {
                    "topic": topic,
                    "device_id": found.device_id,
                    "model": found.model,
                    "parser_type": found.parser_type,
                    "source": found.source,
                    "first_seen": format_ts(e.first_seen),
                    "last_seen": format_ts(e.last_seen),
                    "details": found.details,
                }
            )
        return out

    def __len__(self) -> int:
        return len(self._entries)


_RICH = frozenset({"shelly_gen1_announce", "shelly_gen2_rpc", "tasmota_discovery"})


def _merge(old: Announcement, new: Announcement) -> Announcement:
    """A later announcement of the same plug: what it says wins, what it does not say stays
    (an LWT knows no model; the Gen1 announce that came before did). An LWT / ``online``
    message only guesses from the topic: it never overrides what the plug said itself."""
    if old.source in _RICH and new.source not in _RICH:
        return Announcement(
            old.topic, old.device_id, old.model, old.parser_type, old.source,
            _bounded({**old.details, **new.details}),
        )  # fmt: skip
    return Announcement(
        new.topic,
        new.device_id or old.device_id,
        new.model or old.model,
        new.parser_type or old.parser_type,
        new.source,
        _bounded({**old.details, **new.details}),
    )


def _bounded(details: dict[str, Any]) -> dict[str, Any]:
    while details and len(orjson.dumps(details)) > MAX_DETAILS_JSON:
        details.pop(next(iter(details)))
    return details
