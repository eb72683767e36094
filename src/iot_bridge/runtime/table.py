"""The pipeline's state: its devices, their routes, readers and deadlines, the bridge's
hearing, and what is persisted and shown of them. Pure.

Split from ``pipeline.py``, which subclasses :class:`DeviceTable` and adds the inputs (MQTT
messages, the connection's life, the clock). Configuration (``apply``), rollback
(``restore``), the store's view (``take_dirty_states``) and inspection live here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iot_bridge.devices import DeviceSet, SessionConfig
from iot_bridge.events import Event
from iot_bridge.runtime.deadlines import Deadlines
from iot_bridge.runtime.discovery import Discovery
from iot_bridge.runtime.hearing import Hearing
from iot_bridge.runtime.readers import Readers
from iot_bridge.runtime.tracked import (
    ConfigChange,
    DeviceView,
    Stats,
    TrackedDevice,
    device_views,
    persisted_state,
    reader_states,
    restore_state,
    silent_topics,
)
from iot_bridge.sessions.detector import SessionDetector
from iot_bridge.topics import TopicRouter


class DeviceTable:
    def __init__(
        self,
        *,
        forward_measurements: bool = False,
        marker: bool = True,
        discovery: Discovery | None = None,
    ) -> None:
        """``marker``: the source marks the end of the broker's backlog (``MQTT_ORDERED_SESSION``;
        without, readings without a time that arrive while catching up are timed as live).
        ``discovery``: where messages no device takes go (announcements, ``discovery.py``)."""
        self._devices: dict[str, TrackedDevice] = {}
        self._router: TopicRouter[TrackedDevice] = TopicRouter()
        self._routes: dict[str, list[TrackedDevice]] = {}  # topic -> targets, memoised (hot path)
        self.forward_measurements = forward_measurements
        self.stats = Stats()
        self.dirty: set[str] = set()  # devices whose state changed since last taken
        # a device's detector state or online state changed (the heartbeat's prompt status);
        # set here, cleared by whoever acts on it
        self.live_changed = False
        self.discovery = discovery
        self._deadlines = Deadlines()  # (``deadlines.py``)
        self._hear = Hearing(marker)  # the bridge's hearing (``pipeline.py``'s docstring)
        self._readers = Readers()
        self._reader_topics: frozenset[str] = frozenset()  # the hot path's test, no call

    # -- configuration ------------------------------------------------------------------------

    def detector(self, device_id: str) -> SessionDetector:
        return self._devices[device_id].detector

    def apply(
        self,
        config: DeviceSet,
        now: float,
        saved_states: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> ConfigChange:
        """Make ``config`` the device set: add, change and remove devices.

        Removed devices close their open session (``device_removed``); changed thresholds reach
        the running detector without ending its session; ``saved_states`` restores devices
        persisted by an earlier process."""
        before = set(self.subscriptions())
        events: list[Event] = []
        wanted = config.by_id()
        for device_id in list(self._devices):
            if device_id not in wanted:
                gone = self._devices.pop(device_id)
                gone.live = False
                events += self._remove(gone.detector, now)
                self.dirty.add(device_id)
        events += self._close_orphans(saved_states or {}, wanted, now)
        for device_id, cfg in wanted.items():
            current = self._devices.get(device_id)
            if current is None:
                det, timeline = restore_state(
                    device_id, cfg.session, (saved_states or {}).get(device_id)
                )
                self._devices[device_id] = TrackedDevice(cfg, det, timeline)
            elif current.config != cfg:
                current.live = False
                current.detector.update_config(cfg.session)
                fresh = TrackedDevice(cfg, current.detector, current.timeline)
                fresh.online = current.online
                self._devices[device_id] = fresh
        for device in self._devices.values():
            self._schedule(device)
        self._route_all()
        self._configure_readers(saved_states or {})
        self.live_changed = True  # the device set is part of the live state
        after = set(self.subscriptions())
        return ConfigChange(
            tuple(events), tuple(sorted(after - before)), tuple(sorted(before - after))
        )

    def _close_orphans(
        self, saved: Mapping[str, Mapping[str, Any]], wanted: Mapping[str, object], now: float
    ) -> list[Event]:
        """Saved sessions of devices no longer configured end now (``device_removed``)."""
        events: list[Event] = []
        for device_id, doc in saved.items():
            if device_id not in wanted and device_id not in self._devices:
                orphan, _ = restore_state(device_id, SessionConfig(), doc)
                events += self._remove(orphan, now)
                self.dirty.add(device_id)
        return events

    def _remove(self, det: SessionDetector, now: float) -> tuple[Event, ...]:
        """A device leaves the config: its open session ends now if the bridge hears, else at
        its last reading (what happened since is unknown, and not for this bridge to bill)."""
        return det.remove(now if self.hearing else (det.last_seen or now))

    def subscriptions(self) -> tuple[str, ...]:
        topics = self._router.filters() | self._readers.topics()
        if self.discovery is not None:
            topics |= set(self.discovery.topics)
        return tuple(sorted(topics))

    # -- the bridge's hearing (``hearing.py``) ----------------------------------------------

    @property
    def hearing(self) -> bool:
        """Deadlines may fire on the clock: connected, and the broker's backlog delivered."""
        return self._hear.hearing

    @property
    def catching_up(self) -> bool:
        return self._hear.window is not None

    @property
    def backlog_marker_echoed(self) -> bool:
        return self._hear.untimed_late

    # -- deadlines ------------------------------------------------------------------------------

    def _schedule(self, device: TrackedDevice, now: float | None = None) -> None:
        self._deadlines.schedule(device, now)

    def next_deadline(self) -> float | None:
        """The earliest deadline of any device (a stale one at worst: it costs a no-op)."""
        return self._deadlines.next()

    # -- persistence --------------------------------------------------------------------------

    def restore(self, saved: Mapping[str, Mapping[str, Any]], now: float) -> tuple[Event, ...]:
        """Roll every device back to ``saved`` (the last committed states).

        Used when a commit failed: what was computed since is forgotten, and the broker
        redelivers the messages we did not acknowledge. Saved sessions of devices that are no
        longer configured are closed (``device_removed``) and returned."""
        self._deadlines.clear()
        self.dirty.clear()
        for device_id, device in list(self._devices.items()):
            device.live = False
            det, timeline = restore_state(device_id, device.config.session, saved.get(device_id))
            self._devices[device_id] = fresh = TrackedDevice(device.config, det, timeline)
            fresh.online = device.online
            self._schedule(fresh)
        self._route_all()
        self._readers = Readers()  # rolled back too: each reader anew from what was saved
        self._configure_readers(saved)
        return tuple(self._close_orphans(saved, self._devices, now))

    def _configure_readers(self, saved: Mapping[str, Mapping[str, Any]]) -> None:
        self._readers.configure(
            {k: d.config for k, d in self._devices.items()}, reader_states(saved)
        )
        self._reader_topics = frozenset(self._readers.topics())

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
            if device is None:
                out[device_id] = None
                continue
            out[device_id] = persisted_state(device, self._readers.to_state(device_id))
        self.dirty.clear()
        return out

    # -- inspection -----------------------------------------------------------------------------

    def open_sessions(self) -> int:
        return sum(1 for d in self._devices.values() if d.detector.session_open)

    def views(self) -> list[DeviceView]:
        return device_views(self._devices.values())

    def silent_topics(
        self, now: float, silent_after: float, connected_since: float | None
    ) -> list[str]:
        return silent_topics(self._devices.values(), now, silent_after, connected_since)
