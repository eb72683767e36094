"""Topic -> device -> parser -> event time -> session detector, for every device. Pure.

The intake feeds it MQTT messages, the connection's life and clock ticks, and persists what it
returns; ``replay`` feeds it a recording. Keeping this free of I/O is what lets the two agree.

Three rules live here rather than in the detector, because they are about the bridge's view of
the devices, not about a device:

* **No message stops the bridge.** Whatever routing, parsing or detecting one message raises is
  that message's error: counted per device with its last reason, and the next message goes on.
* **Retained values are state, not readings.** A message with the retain flag is the broker's
  stored last value: it never counts as a reading (an LWT value still sets online state).
* **Deciding needs hearing.** Deadlines fire on the wall clock only while the bridge is
  connected and has caught up with the broker's backlog (``hearing``); what arrives late is
  placed at its event time (``sessions/timeline.py``) and decided there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from iot_bridge.devices import DeviceSet, SessionConfig
from iot_bridge.errors import ParseError
from iot_bridge.events import Event
from iot_bridge.runtime.deadlines import Deadlines
from iot_bridge.runtime.discovery import Discovery
from iot_bridge.runtime.hearing import Hearing
from iot_bridge.runtime.offpath import measurement, other_message, retained
from iot_bridge.runtime.readers import Readers
from iot_bridge.runtime.tracked import (
    ConfigChange,
    DeviceView,
    Stats,
    TrackedDevice,
    device_views,
    implausible,
    reader_states,
    restore_state,
    silent_topics,
)
from iot_bridge.sessions.detector import SessionDetector
from iot_bridge.topics import TopicRouter

_NO_EVENTS: tuple[Event, ...] = ()
ROUTE_CACHE_MAX = 200_000
REASON_MAX = 300  # characters of an error reason kept per device


class Pipeline:
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
        self._hear = Hearing(marker)  # the bridge's hearing (see the module docstring)
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
        self._readers.configure(
            {k: d.config for k, d in self._devices.items()}, reader_states(saved_states or {})
        )
        self._reader_topics = frozenset(self._readers.topics())
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

    def disconnected(self, at: float | None, observed: bool) -> None:
        """The connection ended at ``at`` (``None``: the process just started, so when the
        bridge stopped hearing is unknown). ``observed``: lost, not closed by the bridge."""
        self._hear.disconnected(at, observed)

    def connected_at(self, at: float, session_present: bool) -> None:
        """Connected again. Time the bridge could not hear and the broker cannot replay — an
        outage it saw (the broker was gone), or one whose backlog the broker lost — is not the
        devices' silence: open sessions are forgiven it. Then catching up begins."""
        self.dirty.update(self._hear.connected_at(at, session_present, self._devices.values()))

    @property
    def backlog_marker_echoed(self) -> bool:
        return self._hear.untimed_late

    def caught_up(self, echoed: bool) -> None:
        """Everything the broker held has arrived: deadlines fire again (overdue ones at once).
        ``echoed``: the broker returned our marker, so untimed readings that arrive while
        catching up are late (else they are taken as live next time)."""
        self._hear.caught_up(echoed, self._devices.values())
        for device in self._devices.values():
            self._schedule(device)

    # -- inputs -------------------------------------------------------------------------------

    def handle(
        self, topic: str, payload: bytes, arrival: float, retain: bool = False
    ) -> tuple[Event, ...]:
        """One MQTT message, arrived at ``arrival``. Nothing it contains can raise out of here.

        This is the hot path (every message of every device): keep it flat."""
        stats = self.stats
        stats.messages += 1
        targets = self._routes.get(topic)
        if targets is None:
            try:
                targets = self._router.match(topic)
            except Exception as exc:  # a topic the router cannot digest: count it, go on
                stats.unrouted += 1
                stats.last_error["(routing)"] = f"{topic[:120]!r}: {type(exc).__name__}: {exc}"
                return _NO_EVENTS
            if len(self._routes) < ROUTE_CACHE_MAX:  # bounded: topics may come from wildcards
                self._routes[topic] = targets
        if topic in self._reader_topics:
            events = self._scans(topic, payload, arrival, retain)
        elif not targets:
            # no device takes it: an announcement (never the session path), or unrouted
            if self.discovery is not None and self.discovery.handle(topic, payload, arrival):
                stats.announcements += 1
            else:
                stats.unrouted += 1
            return _NO_EVENTS
        else:
            events = _NO_EVENTS
        window = self._hear.window
        for device in targets:
            try:
                reading = device.parse(topic, payload, device.options)
                if retain:
                    more = retained(self, device, reading, arrival)
                elif window is not None or reading is None or reading.power_w is None:
                    more = other_message(self, device, topic, reading, arrival)
                else:
                    # the common case, inline: a live power reading
                    power = reading.power_w
                    bound = device.max_power_w
                    if not -bound <= power <= bound:
                        raise implausible(power, bound)
                    if device.online is not True:
                        device.online = True
                        self.live_changed = True
                    learned = device.timeline.live(arrival, reading.device_ts, reading.coarse)
                    det = device.detector
                    transitions = det.transitions
                    revision = det.revision
                    more = det.handle_reading(arrival, power, reading.energy_wh)
                    if self.forward_measurements:
                        measured = measurement(device.device_id, topic, reading, arrival)
                        more = (*more, measured)
                    if learned or det.revision != revision:  # a change a restart must keep
                        self.dirty.add(device.device_id)
                    if det.transitions != transitions:
                        self.live_changed = True
                        self._schedule(device, arrival)  # deadlines move earlier only here
            except ParseError as exc:
                self._error(device.device_id, device.parser_type, topic, str(exc), arrival)
                continue
            except Exception as exc:  # a bug or hostile input beyond the parser's checks
                reason = f"{type(exc).__name__}: {exc}"
                self._error(device.device_id, device.parser_type, topic, reason, arrival)
                continue
            if more:
                events = (*events, *more)
        return events

    def _after(
        self, device: TrackedDevice, det: SessionDetector, transitions: int, arrival: float
    ) -> None:
        self.dirty.add(device.device_id)
        if det.transitions != transitions:
            self.live_changed = True
            # deadlines only move earlier on a transition; a later timeout is found stale when
            # popped (see _schedule)
            self._schedule(device, arrival)

    def _set_online(self, device: TrackedDevice, online: bool) -> None:
        if device.online is not online:
            device.online = online
            self.live_changed = True

    def _scans(self, topic: str, payload: bytes, arrival: float, retain: bool) -> tuple[Event, ...]:
        """A message on a badge reader's topic (``runtime/readers.py``)."""
        events, failures, changed = self._readers.handle(
            topic,
            payload,
            arrival,
            retain=retain,
            window=self._hear.window,
            untimed_late=self._hear.untimed_late,
        )
        for device_id, reason in failures:
            self._error(device_id, "badge", topic, reason, arrival)
        self.dirty.update(changed)
        return tuple(events)

    def _error(self, device_id: str, parser: str, topic: str, reason: str, at: float) -> None:
        stats = self.stats
        stats.parse_errors[parser] += 1
        stats.device_errors[device_id] += 1
        stats.last_error[device_id] = f"{topic[:120]}: {reason}"[:REASON_MAX]
        stats.last_error_at[device_id] = at

    def oversize(self, topic: str, size: int, at: float) -> None:
        """A message too large to read (``MQTT_MAX_PACKET``): an error of the devices behind
        its topic, or an unrouted message."""
        self.stats.messages += 1
        targets = self._routes.get(topic)
        if targets is None:
            targets = self._router.match(topic)
        if not targets:
            self.stats.unrouted += 1
        for device in targets:
            reason = f"message of {size} bytes exceeds MQTT_MAX_PACKET"
            self._error(device.device_id, device.parser_type, topic, reason, at)

    # -- deadlines ------------------------------------------------------------------------------

    def _schedule(self, device: TrackedDevice, now: float | None = None) -> None:
        self._deadlines.schedule(device, now)

    def next_deadline(self) -> float | None:
        """The earliest deadline of any device (a stale one at worst: it costs a no-op)."""
        return self._deadlines.next()

    def advance(self, now: float) -> tuple[Event, ...]:
        """Fire the deadlines that are due; devices that are silent get their timeouts here.
        The caller only calls this while the bridge is :attr:`hearing`."""
        events: list[Event] = []
        for device in self._deadlines.due(now):
            transitions = device.detector.transitions
            fired = device.detector.advance(now)
            if fired:
                events += fired
                self.dirty.add(device.device_id)
            if device.detector.transitions != transitions:
                self.live_changed = True
            self._deadlines.schedule(device)
        return tuple(events)

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
        self._readers.configure(
            {k: d.config for k, d in self._devices.items()}, reader_states(saved)
        )
        self._reader_topics = frozenset(self._readers.topics())
        return tuple(self._close_orphans(saved, self._devices, now))

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
            state = {"detector": device.detector.to_state(), "timeline": device.timeline.to_state()}
            reader = self._readers.to_state(device_id)
            if reader is not None:
                state["reader"] = reader
            out[device_id] = state
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

    def power_in(self, topic: str, payload: bytes) -> float | None:
        """The power a message carries for the first device behind its topic (the DEBUG log
        line; parses again, so it stays off the hot path)."""
        targets = self._routes.get(topic) or []
        if not targets:
            return None
        device = targets[0]
        try:
            reading = device.parse(topic, payload, device.options)
        except Exception:  # the message's error was counted when it was handled
            return None
        return None if reading is None else reading.power_w
