"""Topic -> device -> parser -> session detector, for every configured device. Pure, ``now`` in.

The runtime feeds it MQTT messages and timer ticks and persists what it returns; ``replay``
feeds it a recording. Keeping this free of I/O is what lets the two agree exactly.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from iot_bridge.devices import DeviceConfig, DeviceSet, SessionConfig
from iot_bridge.errors import ParseError
from iot_bridge.events import Event, event_uid, format_ts
from iot_bridge.parsers import PARSERS, Reading
from iot_bridge.sessions.detector import SessionDetector
from iot_bridge.topics import TopicRouter

_NO_EVENTS: tuple[Event, ...] = ()
ROUTE_CACHE_MAX = 200_000


@dataclass(slots=True)
class Stats:
    messages: int = 0
    unrouted: int = 0
    not_readings: int = 0
    parse_errors: Counter[str] = field(default_factory=Counter)
    last_error: dict[str, str] = field(default_factory=dict)  # device_id -> message


@dataclass(frozen=True, slots=True)
class ConfigChange:
    events: tuple[Event, ...]
    subscribe: tuple[str, ...]
    unsubscribe: tuple[str, ...]


class _Device:
    __slots__ = (
        "config",
        "detector",
        "device_id",
        "live",
        "options",
        "parse",
        "parser_type",
        "scheduled",
    )

    def __init__(self, config: DeviceConfig, detector: SessionDetector) -> None:
        self.config = config
        self.detector = detector
        self.device_id = config.device_id
        self.options = config.parser
        self.parse = PARSERS[config.parser_type].parse
        self.parser_type = config.parser_type
        self.scheduled: float | None = None  # the deadline this device has in the heap
        self.live = True  # False once replaced or removed: its heap entries are stale


class Pipeline:
    def __init__(self, *, forward_measurements: bool = False) -> None:
        self._devices: dict[str, _Device] = {}
        self._router: TopicRouter[_Device] = TopicRouter()
        self._routes: dict[str, list[_Device]] = {}  # topic -> targets, memoised (hot path)
        self.forward_measurements = forward_measurements
        self.stats = Stats()
        self.dirty: set[str] = set()  # devices whose detector state changed since last taken
        # Deadlines as a heap with lazy deletion. A device is pushed only when its deadline
        # moves *earlier*; a message timeout that moves later is found stale when popped and
        # re-pushed then, so a stream of readings does not grow the heap.
        self._heap: list[tuple[float, int, _Device]] = []
        self._tie = itertools.count()

    # -- configuration ------------------------------------------------------------------------

    @property
    def devices(self) -> Mapping[str, DeviceConfig]:
        return {k: d.config for k, d in self._devices.items()}

    def detector(self, device_id: str) -> SessionDetector:
        return self._devices[device_id].detector

    def apply(
        self,
        config: DeviceSet,
        now: float,
        saved_states: Mapping[str, dict[str, Any]] | None = None,
    ) -> ConfigChange:
        """Make ``config`` the device set: add, change and remove devices.

        Removed devices close their open session (``device_removed``); changed thresholds reach
        the running detector without ending its session; ``saved_states`` restores detectors
        persisted by an earlier process.
        """
        before = set(self._router.filters())
        events: list[Event] = []
        wanted = config.by_id()
        for device_id in list(self._devices):
            if device_id not in wanted:
                gone = self._devices.pop(device_id)
                gone.live = False
                events += gone.detector.remove(now)
                self.dirty.add(device_id)
        for device_id, orphan_state in (saved_states or {}).items():
            if device_id not in wanted and device_id not in self._devices:
                # a device removed while the bridge was down: its open session ends now
                orphan = SessionDetector.from_state(device_id, SessionConfig(), orphan_state)
                events += orphan.remove(now)
                self.dirty.add(device_id)
        for device_id, cfg in wanted.items():
            current = self._devices.get(device_id)
            if current is None:
                saved = (saved_states or {}).get(device_id)
                det = (
                    SessionDetector.from_state(device_id, cfg.session, saved)
                    if saved is not None
                    else SessionDetector(device_id, cfg.session)
                )
                self._devices[device_id] = _Device(cfg, det)
            elif current.config != cfg:
                current.live = False
                current.detector.update_config(cfg.session)
                self._devices[device_id] = _Device(cfg, current.detector)
        for device in self._devices.values():
            self._schedule(device)
        self._route_all()
        after = set(self._router.filters())
        return ConfigChange(
            tuple(events), tuple(sorted(after - before)), tuple(sorted(before - after))
        )

    def last_power(self, topic: str) -> float | None:
        """The last known power of the (first) device behind ``topic``; for the debug log."""
        targets = self._routes.get(topic) or self._router.match(topic)
        return targets[0].detector.power_w if targets else None

    def subscriptions(self) -> tuple[str, ...]:
        return tuple(sorted(self._router.filters()))

    # -- inputs -------------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes, now: float) -> tuple[Event, ...]:
        """One MQTT message. Bad payloads are counted and skipped, never raised.

        This is the hot path (every message of every device): keep it flat."""
        stats = self.stats
        stats.messages += 1
        targets = self._routes.get(topic)
        if targets is None:
            targets = self._router.match(topic)
            if len(self._routes) < ROUTE_CACHE_MAX:  # bounded: topics may come from wildcards
                self._routes[topic] = targets
        if not targets:
            stats.unrouted += 1
            return _NO_EVENTS
        events = _NO_EVENTS
        for device in targets:
            try:
                reading = device.parse(topic, payload, device.options)
            except ParseError as exc:
                stats.parse_errors[device.parser_type] += 1
                stats.last_error[device.device_id] = f"{topic}: {exc}"
                continue
            det = device.detector
            self.dirty.add(device.device_id)
            transitions = det.transitions
            if reading is None:
                # a well-formed frame of another component: still a sign of life
                stats.not_readings += 1
                more = det.handle_reading(now, None, None)
            elif reading.online is False:
                more = det.handle_offline(now)
            else:
                more = det.handle_reading(now, reading.power_w, reading.energy_wh)
                if self.forward_measurements and reading.power_w is not None:
                    more = (*more, self._measurement(device.device_id, topic, reading, now))
            if det.transitions != transitions:
                # deadlines only move earlier on a transition; a later timeout is found
                # stale when popped (see _schedule)
                self._schedule(device, now)
            if more:
                events = (*events, *more)
        return events

    @staticmethod
    def _measurement(device_id: str, topic: str, r: Reading, now: float) -> Event:
        payload = {
            "apower": r.power_w,
            "voltage": r.voltage_v,
            "current": r.current_a,
            "total_energy_kwh": None if r.energy_wh is None else r.energy_wh / 1000.0,
        }
        uid = event_uid(device_id, "power_measurement", f"{topic}|{format_ts(now)}")
        return Event(uid, now, device_id, "power_measurement", payload)

    def _schedule(self, device: _Device, now: float | None = None) -> None:
        deadline = device.detector.next_deadline()
        if now is not None and device.scheduled is not None and device.scheduled <= now:
            device.scheduled = None  # already handled inline by the detector: its entry is stale
        if deadline is not None and (device.scheduled is None or deadline < device.scheduled):
            device.scheduled = deadline
            heapq.heappush(self._heap, (deadline, next(self._tie), device))

    def next_deadline(self) -> float | None:
        """The earliest deadline of any device (a stale one at worst: it costs a no-op)."""
        heap = self._heap
        while heap:
            deadline, _, device = heap[0]
            if device.live and device.scheduled == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def advance(self, now: float) -> tuple[Event, ...]:
        """Fire the deadlines that are due; devices that are silent get their timeouts here."""
        events: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, device = heapq.heappop(heap)
            if not device.live or device.scheduled != deadline:
                continue
            device.scheduled = None
            fired = device.detector.advance(now)
            if fired:
                events += fired
                self.dirty.add(device.detector.device_id)
            self._schedule(device)
        return tuple(events)

    def pause(self) -> None:
        for device in self._devices.values():
            device.detector.pause()

    def resume(self, now: float) -> None:
        for device in self._devices.values():
            device.detector.resume(now)
            self.dirty.add(device.detector.device_id)
            self._schedule(device)

    # -- persistence --------------------------------------------------------------------------

    def restore(self, saved: Mapping[str, dict[str, Any]], now: float) -> tuple[Event, ...]:
        """Roll every detector back to ``saved`` (the last committed states).

        Used when a commit failed: what was computed since is forgotten, and the broker
        redelivers the messages we did not acknowledge. Saved sessions of devices that are no
        longer configured are closed (``device_removed``) and returned.
        """
        self._heap.clear()
        self.dirty.clear()
        for device_id, device in list(self._devices.items()):
            device.live = False
            state = saved.get(device_id)
            cfg = device.config
            det = (
                SessionDetector.from_state(device_id, cfg.session, state)
                if state is not None
                else SessionDetector(device_id, cfg.session)
            )
            self._devices[device_id] = fresh = _Device(cfg, det)
            self._schedule(fresh)
        self._route_all()
        events: list[Event] = []
        for device_id, state in saved.items():
            if device_id not in self._devices:
                orphan = SessionDetector.from_state(device_id, SessionConfig(), state)
                events += orphan.remove(now)
                self.dirty.add(device_id)
        return tuple(events)

    def _route_all(self) -> None:
        """Route every configured device's topic filters (a new router, an empty memo)."""
        self._router = TopicRouter()
        self._routes = {}
        for device in self._devices.values():
            for topic_filter in device.config.subscriptions():
                self._router.add(topic_filter, device)

    def take_dirty_states(self) -> dict[str, dict[str, Any] | None]:
        """States changed since the last call (``None`` = device gone), for the store."""
        out: dict[str, dict[str, Any] | None] = {}
        for device_id in self.dirty:
            device = self._devices.get(device_id)
            out[device_id] = None if device is None else device.detector.to_state()
        self.dirty.clear()
        return out

    def open_sessions(self) -> int:
        return sum(1 for d in self._devices.values() if d.detector.session_open)

    def states(self) -> Iterable[tuple[str, SessionDetector]]:
        return ((k, d.detector) for k, d in self._devices.items())
