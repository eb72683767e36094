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

The state it works on is :class:`~iot_bridge.runtime.table.DeviceTable` (``table.py``:
devices, routes, configuration, rollback, persistence, inspection), which it extends with the
inputs. The other parts live beside it too: the per-device record, its counters and views
(``tracked.py``), the deadline heap (``deadlines.py``), the hearing state (``hearing.py``),
messages off the hot path (``offpath.py``), badge readers (``readers.py``); messages no device
takes go to discovery (``discovery.py``).
"""

from __future__ import annotations

from iot_bridge.errors import ParseError
from iot_bridge.events import Event
from iot_bridge.runtime.offpath import measurement, other_message, power_in, retained
from iot_bridge.runtime.table import DeviceTable
from iot_bridge.runtime.tracked import TrackedDevice, implausible
from iot_bridge.sessions.detector import SessionDetector

_NO_EVENTS: tuple[Event, ...] = ()
ROUTE_CACHE_MAX = 200_000


class Pipeline(DeviceTable):
    """Messages, the connection's life and clock ticks in; events out (the module docstring)."""

    # -- the bridge's hearing (``hearing.py``) ----------------------------------------------

    def disconnected(self, at: float | None, observed: bool) -> None:
        """The connection ended at ``at`` (``None``: the process just started, so when the
        bridge stopped hearing is unknown). ``observed``: lost, not closed by the bridge."""
        self._hear.disconnected(at, observed)

    def connected_at(self, at: float, session_present: bool) -> None:
        """Connected again. Time the bridge could not hear and the broker cannot replay — an
        outage it saw (the broker was gone), or one whose backlog the broker lost — is not the
        devices' silence: open sessions are forgiven it. Then catching up begins."""
        self.dirty.update(self._hear.connected_at(at, session_present, self._devices.values()))

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
        self.stats.error(device_id, parser, topic, reason, at)

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

    def power_in(self, topic: str, payload: bytes) -> float | None:
        """The power a message carries (the DEBUG log line; off the hot path)."""
        return power_in(self._routes.get(topic) or [], topic, payload)
