"""Badge readers paired with machines: reader messages in, ``badge_scan`` events out. Pure.

Part of the pipeline (which routes a reader's topic here, beside or instead of a meter on the
same topic), kept apart because a reader is not a meter: it has no detector, only a clock of its
own (a separate Tasmota reads the badges, its ``Time`` is its own) and the event it makes. A scan
is timed like a reading (``sessions/timeline.py``): at its arrival when live, at the reader's
own time when it comes with the broker's backlog, so that Odoo attributes it to the session that
was running when the member badged in. A retained message is never a scan.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iot_bridge.devices import DeviceConfig
from iot_bridge.events import Event, event_uid, format_ts
from iot_bridge.parsers.badge import ReaderConfig, parse_scan
from iot_bridge.sessions.timeline import Timeline

Failure = tuple[str, str]  # (device id, reason)


class _Reader:
    __slots__ = ("config", "device_id", "last_seen", "timeline")

    def __init__(self, device_id: str, config: ReaderConfig, doc: Mapping[str, Any] | None) -> None:
        self.device_id = device_id
        self.config = config
        doc = doc or {}
        self.timeline = Timeline.from_state(doc.get("timeline"))
        self.last_seen: float | None = doc.get("last_seen")


class Readers:
    def __init__(self) -> None:
        self._by_device: dict[str, _Reader] = {}
        self._by_topic: dict[str, list[_Reader]] = {}

    def configure(
        self, devices: Mapping[str, DeviceConfig], saved: Mapping[str, Mapping[str, Any]]
    ) -> None:
        """The readers of ``devices``; one whose config is unchanged keeps what it learned,
        a new one starts from ``saved`` (device id -> the ``reader`` part of its state)."""
        kept: dict[str, _Reader] = {}
        for device_id, cfg in devices.items():
            if cfg.reader is None:
                continue
            current = self._by_device.get(device_id)
            if current is not None and current.config == cfg.reader:
                kept[device_id] = current
            else:
                kept[device_id] = _Reader(device_id, cfg.reader, saved.get(device_id))
        self._by_device = kept
        self._by_topic = {}
        for reader in kept.values():
            self._by_topic.setdefault(reader.config.mqtt_topic, []).append(reader)

    def topics(self) -> set[str]:
        return set(self._by_topic)

    def handle(
        self,
        topic: str,
        payload: bytes,
        arrival: float,
        *,
        retain: bool,
        window: tuple[float | None, float] | None,
        untimed_late: bool,
    ) -> tuple[list[Event], list[Failure], set[str]]:
        """(scans as events, failures, devices whose reader state changed)."""
        events: list[Event] = []
        failures: list[Failure] = []
        changed: set[str] = set()
        if retain:
            return events, failures, changed  # the broker's stored value: not a scan
        for reader in self._by_topic.get(topic, ()):
            try:
                scan = parse_scan(payload, reader.config)
            except Exception as exc:  # a ParseError, or worse: that message's error
                failures.append((reader.device_id, f"badge reader: {exc}"))
                continue
            tl = reader.timeline
            if window is None:
                tl.live(arrival, scan.device_ts, False)
                t = arrival if reader.last_seen is None else max(arrival, reader.last_seen)
            else:
                placed = tl.place(
                    arrival,
                    scan.device_ts,
                    False,
                    last=reader.last_seen,
                    window=window,
                    untimed_late=untimed_late,
                )
                if placed is None:
                    continue  # seen before: the broker redelivered it
                t = placed.t
            reader.last_seen = t
            changed.add(reader.device_id)
            if scan.badge_uid is not None:
                events.append(_scan_event(reader.device_id, scan.badge_uid, scan.reader, t))
        return events, failures, changed

    def to_state(self, device_id: str) -> dict[str, Any] | None:
        reader = self._by_device.get(device_id)
        if reader is None:
            return None
        return {"timeline": reader.timeline.to_state(), "last_seen": reader.last_seen}


def _scan_event(device_id: str, badge_uid: str, model: str | None, t: float) -> Event:
    scanned_at = format_ts(t)
    payload = {"badge_uid": badge_uid, "scanned_at": scanned_at, "reader": model}
    uid = event_uid(device_id, "badge_scan", f"{badge_uid}|{scanned_at}")
    return Event(uid, t, device_id, "badge_scan", payload)
