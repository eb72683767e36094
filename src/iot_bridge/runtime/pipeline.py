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

import heapq
import itertools
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from iot_bridge.devices import DeviceConfig, DeviceSet, SessionConfig
from iot_bridge.errors import ParseError
from iot_bridge.events import Event, event_uid, format_ts
from iot_bridge.parsers import PARSERS, Reading
from iot_bridge.runtime.readers import Readers
from iot_bridge.sessions.detector import SessionDetector
from iot_bridge.sessions.timeline import Timeline
from iot_bridge.topics import TopicRouter

_NO_EVENTS: tuple[Event, ...] = ()
ROUTE_CACHE_MAX = 200_000
REASON_MAX = 300  # characters of an error reason kept per device


@dataclass(slots=True)
class Stats:
    messages: int = 0
    unrouted: int = 0
    not_readings: int = 0
    retained: int = 0  # retained messages seen (state only)
    duplicates: int = 0  # late readings already applied before (redelivered)
    parse_errors: Counter[str] = field(default_factory=Counter)  # per parser type
    device_errors: Counter[str] = field(default_factory=Counter)  # per device id
    last_error: dict[str, str] = field(default_factory=dict)  # device id -> last reason
    last_error_at: dict[str, float] = field(default_factory=dict)  # device id -> its arrival


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


class _Device:
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


def _implausible(power: float, bound: float) -> ParseError:
    return ParseError(f"power {power:g} W is beyond the plausibility bound of {bound:g} W")


def _reader_states(saved: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {k: doc["reader"] for k, doc in saved.items() if isinstance(doc.get("reader"), dict)}


def _restore(
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


class Pipeline:
    def __init__(self, *, forward_measurements: bool = False, marker: bool = True) -> None:
        """``marker``: the source marks the end of the broker's backlog (``MQTT_ORDERED_SESSION``;
        without, readings without a time that arrive while catching up are timed as live)."""
        self._devices: dict[str, _Device] = {}
        self._router: TopicRouter[_Device] = TopicRouter()
        self._routes: dict[str, list[_Device]] = {}  # topic -> targets, memoised (hot path)
        self.forward_measurements = forward_measurements
        self.stats = Stats()
        self.dirty: set[str] = set()  # devices whose state changed since last taken
        # Deadlines as a heap with lazy deletion. A device is pushed only when its deadline
        # moves *earlier*; a message timeout that moves later is found stale when popped and
        # re-pushed then, so a stream of readings does not grow the heap.
        self._heap: list[tuple[float, int, _Device]] = []
        self._tie = itertools.count()
        # the bridge's hearing (see the module docstring); a new pipeline hears (replay)
        self.connected = True
        self._window: tuple[float | None, float] | None = None  # outage being caught up
        self._outage: tuple[float | None, bool] | None = None  # (since, observed) while down
        self._untimed_late = marker  # the broker returned our marker the last time
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
                det, timeline = _restore(
                    device_id, cfg.session, (saved_states or {}).get(device_id)
                )
                self._devices[device_id] = _Device(cfg, det, timeline)
            elif current.config != cfg:
                current.live = False
                current.detector.update_config(cfg.session)
                fresh = _Device(cfg, current.detector, current.timeline)
                fresh.online = current.online
                self._devices[device_id] = fresh
        for device in self._devices.values():
            self._schedule(device)
        self._route_all()
        self._readers.configure(
            {k: d.config for k, d in self._devices.items()}, _reader_states(saved_states or {})
        )
        self._reader_topics = frozenset(self._readers.topics())
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
                orphan, _ = _restore(device_id, SessionConfig(), doc)
                events += self._remove(orphan, now)
                self.dirty.add(device_id)
        return events

    def _remove(self, det: SessionDetector, now: float) -> tuple[Event, ...]:
        """A device leaves the config: its open session ends now if the bridge hears, else at
        its last reading (what happened since is unknown, and not for this bridge to bill)."""
        return det.remove(now if self.hearing else (det.last_seen or now))

    def subscriptions(self) -> tuple[str, ...]:
        return tuple(sorted(self._router.filters() | self._readers.topics()))

    # -- the bridge's hearing -----------------------------------------------------------------

    @property
    def hearing(self) -> bool:
        """Deadlines may fire on the clock: connected, and the broker's backlog delivered."""
        return self.connected and self._window is None

    @property
    def catching_up(self) -> bool:
        return self._window is not None

    def disconnected(self, at: float | None, observed: bool) -> None:
        """The connection ended at ``at`` (``None``: the process just started, so when the
        bridge stopped hearing is unknown). ``observed``: lost, not closed by the bridge."""
        self.connected = False
        self._window = None
        if self._outage is None:
            self._outage = (at, observed)

    def connected_at(self, at: float, session_present: bool) -> None:
        """Connected again. Time the bridge could not hear and the broker cannot replay — an
        outage it saw (the broker was gone), or one whose backlog the broker lost — is not the
        devices' silence: open sessions are forgiven it. Then catching up begins."""
        since, observed = self._outage or (None, False)
        self._outage = None
        self.connected = True
        for device in self._devices.values():
            det = device.detector
            if not det.session_open:
                continue
            start = since if since is not None else det.last_seen
            if start is not None and (observed or not session_present):
                det.forgive(start, at)
                self.dirty.add(device.device_id)
        self._window = (since, at)

    @property
    def backlog_marker_echoed(self) -> bool:
        return self._untimed_late

    def caught_up(self, echoed: bool) -> None:
        """Everything the broker held has arrived: deadlines fire again (overdue ones at once).
        ``echoed``: the broker returned our marker, so untimed readings that arrive while
        catching up are late (else they are taken as live next time)."""
        self._window = None
        self._untimed_late = echoed
        for device in self._devices.values():
            device.timeline.end_catch_up()
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
            stats.unrouted += 1
            return _NO_EVENTS
        else:
            events = _NO_EVENTS
        window = self._window
        for device in targets:
            try:
                reading = device.parse(topic, payload, device.options)
                if retain:
                    more = self._retained(device, reading, arrival)
                elif window is not None or reading is None or reading.power_w is None:
                    more = self._reading(device, topic, reading, arrival)
                else:
                    # the common case, inline: a live power reading
                    power = reading.power_w
                    bound = device.max_power_w
                    if not -bound <= power <= bound:
                        raise _implausible(power, bound)
                    device.online = True
                    learned = device.timeline.live(arrival, reading.device_ts, reading.coarse)
                    det = device.detector
                    transitions = det.transitions
                    revision = det.revision
                    more = det.handle_reading(arrival, power, reading.energy_wh)
                    if self.forward_measurements:
                        measured = self._measurement(device.device_id, topic, reading, arrival)
                        more = (*more, measured)
                    if learned or det.revision != revision:  # a change a restart must keep
                        self.dirty.add(device.device_id)
                    if det.transitions != transitions:
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

    def _reading(
        self, device: _Device, topic: str, reading: Reading | None, arrival: float
    ) -> tuple[Event, ...]:
        """Everything but a live power reading: signs of life, online states, and readings
        that arrive while the bridge catches up."""
        det = device.detector
        window = self._window
        transitions = det.transitions
        # a message without a time of its own is placed with the device's last one while
        # catching up (it must not move the device's order), else at its arrival
        t = arrival if window is None or det.last_seen is None else det.last_seen
        if reading is None or reading.power_w is None:
            if reading is not None and reading.online is not None:
                device.online = reading.online
                if reading.online is False:
                    more = det.handle_offline(t)
                    self._after(device, det, transitions, arrival)
                    return more
            # a well-formed frame without power: a sign of life
            if reading is None:
                self.stats.not_readings += 1
            energy = None if reading is None else reading.energy_wh
            more = det.handle_reading(t, None, energy)
            self._after(device, det, transitions, arrival)
            return more
        power = reading.power_w
        if not -device.max_power_w <= power <= device.max_power_w:
            raise _implausible(power, device.max_power_w)
        device.online = True
        estimated = False
        if window is None:
            device.timeline.live(arrival, reading.device_ts, reading.coarse)
            t = arrival
        else:
            placed = device.timeline.place(
                arrival,
                reading.device_ts,
                reading.coarse,
                last=det.last_seen,
                window=window,
                untimed_late=self._untimed_late,
            )
            if placed is None:
                self.stats.duplicates += 1
                return _NO_EVENTS
            t, estimated = placed.t, placed.estimated
        more = det.handle_reading(t, power, reading.energy_wh, estimated)
        if self.forward_measurements:
            more = (*more, self._measurement(device.device_id, topic, reading, t))
        self._after(device, det, transitions, arrival)
        return more

    def _retained(
        self, device: _Device, reading: Reading | None, arrival: float
    ) -> tuple[Event, ...]:
        """The broker's stored value: only an online state counts (an LWT 'offline' ends the
        device's open session at its last reading, as a live one would)."""
        self.stats.retained += 1
        if reading is None or reading.online is None:
            return _NO_EVENTS
        device.online = reading.online
        if reading.online:
            return _NO_EVENTS
        det = device.detector
        transitions = det.transitions
        more = det.handle_offline(max(arrival, det.last_seen or arrival))
        self._after(device, det, transitions, arrival)
        return more

    def _after(
        self, device: _Device, det: SessionDetector, transitions: int, arrival: float
    ) -> None:
        self.dirty.add(device.device_id)
        if det.transitions != transitions:
            # deadlines only move earlier on a transition; a later timeout is found stale when
            # popped (see _schedule)
            self._schedule(device, arrival)

    def _scans(self, topic: str, payload: bytes, arrival: float, retain: bool) -> tuple[Event, ...]:
        """A message on a badge reader's topic (``runtime/readers.py``)."""
        events, failures, changed = self._readers.handle(
            topic,
            payload,
            arrival,
            retain=retain,
            window=self._window,
            untimed_late=self._untimed_late,
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

    @staticmethod
    def _measurement(device_id: str, topic: str, r: Reading, t: float) -> Event:
        payload = {
            "apower": r.power_w,
            "voltage": r.voltage_v,
            "current": r.current_a,
            "total_energy_kwh": None if r.energy_wh is None else r.energy_wh / 1000.0,
        }
        uid = event_uid(device_id, "power_measurement", f"{topic}|{format_ts(t)}")
        return Event(uid, t, device_id, "power_measurement", payload)

    # -- deadlines ------------------------------------------------------------------------------

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
        """Fire the deadlines that are due; devices that are silent get their timeouts here.
        The caller only calls this while the bridge is :attr:`hearing`."""
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
                self.dirty.add(device.device_id)
            self._schedule(device)
        return tuple(events)

    # -- persistence --------------------------------------------------------------------------

    def restore(self, saved: Mapping[str, Mapping[str, Any]], now: float) -> tuple[Event, ...]:
        """Roll every device back to ``saved`` (the last committed states).

        Used when a commit failed: what was computed since is forgotten, and the broker
        redelivers the messages we did not acknowledge. Saved sessions of devices that are no
        longer configured are closed (``device_removed``) and returned."""
        self._heap.clear()
        self.dirty.clear()
        for device_id, device in list(self._devices.items()):
            device.live = False
            det, timeline = _restore(device_id, device.config.session, saved.get(device_id))
            self._devices[device_id] = fresh = _Device(device.config, det, timeline)
            fresh.online = device.online
            self._schedule(fresh)
        self._route_all()
        self._readers = Readers()  # rolled back too: each reader anew from what was saved
        self._readers.configure(
            {k: d.config for k, d in self._devices.items()}, _reader_states(saved)
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
        out = []
        for device in self._devices.values():
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
        self, now: float, silent_after: float, connected_since: float | None
    ) -> list[str]:
        """Configured topics that delivered nothing for ``silent_after`` s while the bridge was
        connected all that time: a plug that died, or a broker ACL that grants the subscription
        and then delivers nothing (mosquitto's way of refusing)."""
        if connected_since is None or now - connected_since < silent_after:
            return []
        return sorted(
            d.config.mqtt_topic
            for d in self._devices.values()
            if d.detector.last_seen is None or now - d.detector.last_seen >= silent_after
        )

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
