"""The intake: the one owner of the pipeline. Detect, commit, acknowledge, wake delivery.

One task handles one input at a time, in the order they happened: the next batch of messages,
the connection going up or down, the broker's backlog being delivered, a config change, the
next detector deadline, a finished commit. Everything that touches the pipeline happens here,
so there is no question of who changed what when.

A QoS 1 message is acknowledged only after its effects (events and detector states) are
committed to the store. Commits are grouped: a few milliseconds' worth of messages per fsync
at a trickle (``commit_window``), early when ``early_acks`` messages wait for their PUBACK
(mosquitto sends at most ``max_inflight_messages``, default 20, before it waits for us).
Small groups commit right here; big ones on the database thread while the next group forms.

A store that cannot be written is a state of this loop, not a chain of callbacks: the source is
paused (the broker keeps what we did not acknowledge), the pipeline is rolled back to the last
committed states, and the store is probed on the clock until it takes writes again.

Everything that waits here waits on the injected clock, so tests run it in simulated time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from iot_bridge.clock import Clock, Timer
from iot_bridge.devices import DeviceSet
from iot_bridge.errors import StoreError
from iot_bridge.mqtt.source import (
    CaughtUp,
    Connected,
    Disconnected,
    MessageSource,
    Received,
    SourceItem,
)
from iot_bridge.outbox.store import Store
from iot_bridge.outbox.worker import DbWorker
from iot_bridge.runtime.commits import CommitGroup, log_event, log_message
from iot_bridge.runtime.metrics import Metrics
from iot_bridge.runtime.pipeline import Pipeline

log = logging.getLogger("iot_bridge.intake")

COMMIT_WINDOW_S = 0.025
EARLY_ACKS = 16
INLINE_COMMIT_MAX = 200  # smaller groups commit on the event loop, larger ones on the db thread
PROBE_INTERVAL_S = 2.0


@dataclass(frozen=True, slots=True)
class ApplyConfig:
    devices: DeviceSet


@dataclass(frozen=True, slots=True)
class Stop:
    pass


Input = SourceItem | ApplyConfig | Stop


class Intake:
    def __init__(
        self,
        pipeline: Pipeline,
        *,
        store: Store,
        db: DbWorker,
        metrics: Metrics,
        clock: Clock,
        source: MessageSource,
        wake_delivery: Callable[[], None] = lambda: None,
        on_live_change: Callable[[], None] = lambda: None,
        commit_window: float = COMMIT_WINDOW_S,
        probe_interval: float = PROBE_INTERVAL_S,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.db = db
        self.metrics = metrics
        self.clock = clock
        self.source = source
        self._wake_delivery = wake_delivery
        self._on_live_change = on_live_change  # the heartbeat's prompt status
        self.commit_window = commit_window
        self._probe_interval = probe_interval
        self._inbox: collections.deque[Input] = collections.deque()
        self._wake = asyncio.Event()
        self._timer: Timer | None = None
        self._group = CommitGroup.empty()
        self._inflight: tuple[asyncio.Future[int], CommitGroup] | None = None
        self._first_config = True
        self._stopping = False
        self.store_error: str | None = None
        self._next_probe = 0.0
        self.first_message_at: float | None = None
        self.last_message_at: float | None = None
        self.idle = asyncio.Event()  # set while nothing waits to be committed or acknowledged
        self._debug = log.isEnabledFor(logging.DEBUG)
        # until the source says otherwise the bridge hears nothing; since when is unknown
        pipeline.disconnected(None, observed=False)

    # -- inputs -----------------------------------------------------------------------------------

    def put(self, item: Input) -> None:
        self._inbox.append(item)
        self.idle.clear()
        self._wake.set()

    def apply_config(self, devices: DeviceSet) -> None:
        self.put(ApplyConfig(devices))

    def stop(self) -> None:
        self.put(Stop())

    async def feed(self) -> None:
        """Move the source's items into the inbox, in order; runs beside :meth:`run`."""
        while True:
            self.put(await self.source.get())

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Until :meth:`stop`: then what arrived is committed and acknowledged, and it returns."""
        try:
            while True:
                await self._sleep()
                while self._inbox:
                    await self._handle(self._inbox.popleft())
                now = self.clock.now()
                if self.store_error is None and self.pipeline.hearing:
                    self._group.events += self.pipeline.advance(now)
                if self.pipeline.live_changed:
                    self.pipeline.live_changed = False
                    self._on_live_change()
                await self._commit_if_due(now)
                if self.store_error is not None and now >= self._next_probe:
                    await self._probe(now)
                if self._stopping and self._inflight is None and not self._pending():
                    return
                if self._inflight is None and not self._pending():
                    self.idle.set()
        finally:
            if self._timer is not None:
                self._timer.cancel()

    async def _sleep(self) -> None:
        """Until an input arrives or the next time something is due (stopping: until the
        commit in flight is done, which wakes it)."""
        if self._inbox or (self._stopping and self._inflight is None):
            return
        when = self._next_due()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if when is not None:
            self._timer = self.clock.call_at(when, self._wake.set)
        await self._wake.wait()
        self._wake.clear()

    def _next_due(self) -> float | None:
        times: list[float] = []
        if self.store_error is not None:
            times.append(self._next_probe)
        else:
            if self._group.since is not None and self._inflight is None:
                times.append(self._group.since + self.commit_window)
            if self.pipeline.hearing:
                deadline = self.pipeline.next_deadline()
                if deadline is not None:
                    times.append(deadline)
        return min(times) if times else None

    async def _handle(self, item: Input) -> None:
        if isinstance(item, Received):
            self._received(item)
        elif isinstance(item, Connected):
            self.pipeline.connected_at(item.at, item.session_present)
            self._mark(item.at)
        elif isinstance(item, Disconnected):
            self.pipeline.disconnected(item.at, item.observed)
        elif isinstance(item, CaughtUp):
            self.pipeline.caught_up(item.echoed)
            log.info(
                "MQTT backlog delivered (%s)", "marker returned" if item.echoed else "no marker"
            )
        elif isinstance(item, ApplyConfig):
            await self._apply(item.devices)
        else:
            self._stopping = True

    def _received(self, batch: Received) -> None:
        if self.store_error is not None:
            return  # not processed, not acknowledged: the broker redelivers it
        handle = self.pipeline.handle
        group = self._group
        events = group.events
        acks = group.acks.setdefault(batch.generation, [])
        at = batch.at
        debug = self._debug
        for msg in batch.messages:
            produced = handle(msg.topic, msg.payload, at, msg.retain)
            if produced:
                events.extend(produced)
            if msg.packet_id is not None:
                acks.append(msg.packet_id)
            if debug:
                self._log_message(msg.topic, msg.payload)
        for big in batch.oversize:
            self.pipeline.oversize(big.topic, big.size, at)
            if big.packet_id is not None:
                acks.append(big.packet_id)
        if self.first_message_at is None:
            self.first_message_at = at
        self.last_message_at = at
        group.messages += len(batch.messages) + len(batch.oversize)
        group.unacked = sum(len(ids) for ids in group.acks.values())
        self._mark(at)

    def _log_message(self, topic: str, payload: bytes) -> None:
        log_message(topic, self.pipeline.power_in(topic, payload))

    def _mark(self, at: float) -> None:
        if self._group.since is None:
            self._group.since = at

    async def _apply(self, devices: DeviceSet) -> None:
        saved = None
        if self._first_config:
            try:
                saved = await self.db.call(self.store.load_states)
            except StoreError as exc:
                log.error("Cannot read the saved detector states: %s", exc)
                raise
            self._first_config = False
        change = self.pipeline.apply(devices, self.clock.now(), saved)
        self._group.events += change.events
        self._mark(self.clock.now())
        await self.source.set_filters(self.pipeline.subscriptions())

    # -- commits ----------------------------------------------------------------------------------

    def _pending(self) -> bool:
        g = self._group
        return bool(g.events or g.unacked or g.messages or self.pipeline.dirty)

    async def _commit_if_due(self, now: float) -> None:
        if self._inflight is not None:
            future, group = self._inflight
            if not future.done():
                return
            self._inflight = None
            try:
                future.result()
            except StoreError as exc:
                await self._failed(str(exc), now)
                return
            self._committed(group)
        if self.store_error is not None:
            return
        group = self._group
        if not self._pending():
            group.since = None  # nothing to commit: no window runs
            return
        due = (
            self._stopping
            or group.unacked >= EARLY_ACKS
            or group.since is None
            or now >= group.since + self.commit_window
        )
        if not due:
            return
        self._group = CommitGroup.empty()
        states = self.pipeline.take_dirty_states()
        if group.messages + len(group.events) < INLINE_COMMIT_MAX:
            # a small group commits right here: handing it to the database thread costs more
            # CPU (futures, wake-ups, GIL hand-offs) than the fsync itself
            try:
                self.store.commit(group.events, states, now)
            except StoreError as exc:
                await self._failed(str(exc), now)
                return
            self._committed(group)
            return
        future = asyncio.ensure_future(self.db.call(self.store.commit, group.events, states, now))
        future.add_done_callback(lambda _: self._wake.set())
        self._inflight = (future, group)

    def _committed(self, group: CommitGroup) -> None:
        self.metrics.commits += 1
        for event in group.events:
            self.metrics.events[event.event_type] += 1
            log_event(event)
        for generation, ids in group.acks.items():
            self.source.ack(generation, ids)
        if group.events:
            self._wake_delivery()

    # -- a store that cannot be written -----------------------------------------------------------

    async def _failed(self, reason: str, now: float) -> None:
        self.store_error = reason
        log.error("Store not writable, no longer acknowledging MQTT messages: %s", reason)
        self.source.pause()  # the broker keeps what we could not store
        self._group = CommitGroup.empty()
        self._inbox = collections.deque(i for i in self._inbox if not isinstance(i, Received))
        with contextlib.suppress(StoreError):
            saved: dict[str, dict[str, Any]] = await self.db.call(self.store.load_states)
            orphans = self.pipeline.restore(saved, now)
            self._group.events += orphans  # committed once the store takes writes again
        self._next_probe = now + self._probe_interval

    async def _probe(self, now: float) -> None:
        try:
            await self.db.call(self.store.probe_writable)
        except StoreError as exc:
            log.debug("store still failing: %s", exc)
            self._next_probe = now + self._probe_interval
            return
        log.warning("Store writable again, resuming intake")
        self.store_error = None
        self.source.resume()
