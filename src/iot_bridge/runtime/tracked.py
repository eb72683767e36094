"""What the pipeline keeps per configured device, and what it tells about them. Pure.

Split from ``pipeline.py`` (which routes and decides): the per-device record
(:class:`TrackedDevice`), the counters (:class:`Stats`), what a config change did
(:class:`ConfigChange`), the status view of a device (:class:`DeviceView`, read by ``/health``'s
heartbeat, ``heartbeat.py``) and how a persisted device state is restored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from iot_bridge.devices import DeviceConfig, SessionConfig
from iot_bridge.errors import ParseError
from iot_bridge.events import Event
from iot_bridge.parsers import PARSERS
from iot_bridge.sessions.detector import SessionDetector
from iot_bridge.sessions.timeline import Timeline

REASON_MAX = 300  # characters of an error reason kept per device


@dataclass(slots=True)
class Stats:
    messages: int = 0
    unrouted: int = 0
    not_readings: int = 0
    retained: int = 0  # retained messages seen (state only)
    duplicates: int = 0  # late readings already applied before (redelivered)
    announcements: int = 0  # messages no device took that announced a plug (discovery)
    parse_errors: Counter[str] = field(default_factory=Counter)  # per parser type
    device_errors: Counter[str] = field(default_factory=Counter)  # per device id
    last_error: dict[str, str] = field(default_factory=dict)  # device id -> last reason
    last_error_at: dict[str, float] = field(default_factory=dict)  # device id -> its arrival

    def error(self, device_id: str, parser: str, topic: str, reason: str, at: float) -> None:
        """One message of ``device_id`` could not be used: counted, with its reason."""
        self.parse_errors[parser] += 1
        self.device_errors[device_id] += 1
        self.last_error[device_id] = f"{topic[:120]}: {reason}"[:REASON_MAX]
        self.last_error_at[device_id] = at


@dataclass(frozen=True, slots=True)
class ConfigChange:
    events: tuple[Event, ...]
    subscribe: tuple[str, ...]
    unsubscribe: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeviceView:
    """What the bridge currently knows of one device (for the status report)."""

    device_id: str
    state: str
    online: bool | None
    last_seen: float | None
    power_w: float | None
    session_id: str | None
    session_started_at: float | None


class TrackedDevice:
    __slots__ = (
        "config",
        "detector",
        "device_id",
        "live",
        "max_power_w",
        "online",
        "options",
        "parse",
        "parser_type",
        "scheduled",
        "timeline",
    )

    def __init__(self, config: DeviceConfig, detector: SessionDetector, timeline: Timeline) -> None:
        self.config = config
        self.detector = detector
        self.timeline = timeline
        self.device_id = config.device_id
        self.options = config.parser
        self.max_power_w = config.parser.max_power_w
        self.parse = PARSERS[config.parser_type].parse
        self.parser_type = config.parser_type
        self.scheduled: float | None = None  # the deadline this device has in the heap
        self.live = True  # False once replaced or removed: its heap entries are stale
        self.online: bool | None = None


def implausible(power: float, bound: float) -> ParseError:
    return ParseError(f"power {power:g} W is beyond the plausibility bound of {bound:g} W")


def reader_states(saved: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {k: doc["reader"] for k, doc in saved.items() if isinstance(doc.get("reader"), dict)}


def restore_state(
    device_id: str, config: SessionConfig, doc: Mapping[str, Any] | None
) -> tuple[SessionDetector, Timeline]:
    """A persisted device state: ``{"detector": ..., "timeline": ...}``, or (written before
    event time existed) the detector's state alone."""
    if doc is None:
        return SessionDetector(device_id, config), Timeline()
    if "detector" not in doc:
        return SessionDetector.from_state(device_id, config, dict(doc)), Timeline()
    det = SessionDetector.from_state(device_id, config, dict(doc["detector"]))
    return det, Timeline.from_state(doc.get("timeline"))


def device_views(devices: Iterable[TrackedDevice]) -> list[DeviceView]:
    """What the bridge knows of each device right now (the status's ``devices``)."""
    out = []
    for device in devices:
        det = device.detector
        out.append(
            DeviceView(
                device_id=device.device_id,
                state=det.state.value,
                online=device.online,
                last_seen=det.last_seen,
                power_w=det.power_w,
                session_id=det.session_id,
                session_started_at=det.started_at if det.session_open else None,
            )
        )
    return out


def silent_topics(
    devices: Iterable[TrackedDevice], now: float, silent_after: float, connected_since: float | None
) -> list[str]:
    """Configured topics that delivered nothing for ``silent_after`` s while the bridge was
    connected all that time: a plug that died, or a broker ACL that grants the subscription
    and then delivers nothing (mosquitto's way of refusing)."""
    if connected_since is None or now - connected_since < silent_after:
        return []
    return sorted(
        d.config.mqtt_topic
        for d in devices
        if d.detector.last_seen is None or now - d.detector.last_seen >= silent_after
    )


def persisted_state(device: TrackedDevice, reader: dict[str, Any] | None) -> dict[str, Any]:
    """What the store keeps of a device: ``{"detector", "timeline"[, "reader"]}``."""
    state = {"detector": device.detector.to_state(), "timeline": device.timeline.to_state()}
    if reader is not None:
        state["reader"] = reader
    return state
