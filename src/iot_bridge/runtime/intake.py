"""MQTT messages in; events and detector states committed in groups; then acknowledged.

A QoS 1 message is acknowledged only after its effects are durable. Messages run through the
pure :class:`~iot_bridge.runtime.pipeline.Pipeline` as they arrive; while one group is being
committed on the database thread the next group forms, so the commit rate (about 6.5k fsyncs/s
here) never caps the message rate. If a commit fails (disk full, read-only volume) nothing is
acknowledged: the in-memory detectors are rolled back to the last committed state, the MQTT
connection is dropped so the broker keeps (and later redelivers) what we could not store, and a
probe retries the disk until it takes writes again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from iot_bridge.errors import StoreError
from iot_bridge.events import Event
from iot_bridge.mqtt.connection import Connection
from iot_bridge.mqtt.packets import Publish
from iot_bridge.outbox.store import Store
from iot_bridge.outbox.worker import DbWorker
from iot_bridge.runtime.metrics import Metrics
from iot_bridge.runtime.pipeline import Pipeline

log = logging.getLogger("iot_bridge.runtime.intake")

COMMIT_WINDOW_S = 0.025  # gather this long before a commit when traffic is light ...
EARLY_ACKS = 16  # ... unless this many QoS 1 messages wait for their PUBACK: mosquitto sends
# at most max_inflight_messages (default 20) unacknowledged ones, then waits for us
INLINE_COMMIT_MAX = 200  # smaller groups commit on the event loop, larger ones on the db thread


class Ingest:
    def __init__(
        self,
        pipeline: Pipeline,
        store: Store,
        db: DbWorker,
        metrics: Metrics,
        *,
        on_committed: Callable[[Sequence[Event]], None] = lambda events: None,
        on_store_failed: Callable[[str], None] = lambda reason: None,
        on_store_recovered: Callable[[], None] = lambda: None,
        probe_interval: float = 2.0,
        commit_window: float = COMMIT_WINDOW_S,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.db = db
        self.metrics = metrics
        self._on_committed = on_committed
        self._on_store_failed = on_store_failed
        self._on_store_recovered = on_store_recovered
        self._probe_interval = probe_interval
        self.commit_window = commit_window
        self._unacked = 0  # QoS 1 messages gathered for the next commit
        self._gathered = 0  # all messages gathered for the next commit
        self._group_full = asyncio.Event()
        self._events: list[Event] = []
        self._acks: dict[Connection, list[int]] = {}
        self._wake = asyncio.Event()
        self._rearm = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._armed_for: float | None = None
        self.store_error: str | None = None
        self.first_message_at: float | None = None
        self.last_message_at: float | None = None
        self.debug = log.isEnabledFor(logging.DEBUG)

    # -- intake (called from the MQTT protocol, synchronously) ---------------------------------

    def on_messages(self, conn: Connection, publishes: list[Publish], now: float) -> None:
        if self.store_error is not None:
            return  # not processed, not acknowledged: the broker keeps them for us
        handle = self.pipeline.handle
        events = self._events
        acks = self._acks.get(conn)
        if acks is None:
            acks = self._acks[conn] = []
        for msg in publishes:
            produced = handle(msg.topic, msg.payload, now)
            if self.debug:  # the original's DEBUG line
                power = self.pipeline.last_power(msg.topic)
                log.debug("Message received: topic=%s, power=%sW", msg.topic, power)
            if produced:
                events.extend(produced)
            if msg.packet_id is not None:
                acks.append(msg.packet_id)
        if self.first_message_at is None:
            self.first_message_at = now
        self.last_message_at = now
        self._gathered += len(publishes)
        self._unacked = len(acks)
        if self._unacked >= EARLY_ACKS:
            self._group_full.set()
        self._idle.clear()
        self._wake.set()
        deadline = self.pipeline.next_deadline()
        if deadline is not None and (self._armed_for is None or deadline < self._armed_for):
            self._rearm.set()

    def add_events(self, events: Sequence[Event]) -> None:
        """Events not caused by a message (config removals): committed with the next group."""
        if events:
            self._events.extend(events)
        self._idle.clear()
        self._wake.set()

    # -- the group-commit loop ------------------------------------------------------------------

    async def run_commits(self) -> None:
        while True:
            await self._wake.wait()
            if self.commit_window and self._unacked < EARLY_ACKS:
                # a few milliseconds' worth of messages per fsync: at a trickle this turns a
                # commit per message into one per window; under load the commit itself is the
                # window, since messages gather while the previous group is being written
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._group_full.wait(), self.commit_window)
            self._wake.clear()
            self._group_full.clear()
            await self.flush()

    async def flush(self) -> bool:
        """Commit what has been gathered and acknowledge it. False if the store failed."""
        if self.store_error is not None:
            return False
        events, self._events = self._events, []
        acks, self._acks = self._acks, {}
        gathered, self._gathered = self._gathered, 0
        self._unacked = 0
        states = self.pipeline.take_dirty_states()
        if not events and not states and not acks:
            self._idle.set()
            return True
        try:
            if gathered + len(events) < INLINE_COMMIT_MAX:
                # a small group: commit right here. Handing it to the database thread costs
                # more CPU (futures, wake-ups, GIL hand-offs) than the fsync itself
                self.store.commit(events, states)
            else:
                # a big group: the thread lets the next group form while this one syncs
                await self.db.call(self.store.commit, events, states)
        except StoreError as exc:
            await self._failed(str(exc))
            return False
        self.metrics.commits += 1
        for event in events:
            self.metrics.events[event.event_type] += 1
            _log_event(event)
        for conn, ids in acks.items():
            if ids:
                conn.ack(ids)  # a connection that died meanwhile: the broker redelivers
        if events:
            self._on_committed(events)
        if not self._wake.is_set():
            self._idle.set()
        return True

    async def drained(self) -> None:
        """Wait until everything received so far is committed and acknowledged."""
        while not self._idle.is_set() or self._wake.is_set():
            await asyncio.sleep(0.005)

    # -- timers ----------------------------------------------------------------------------------

    async def run_timers(self) -> None:
        """Fire detector deadlines on the clock, also for devices that have fallen silent."""
        while True:
            deadline = self.pipeline.next_deadline()
            self._armed_for = deadline
            self._rearm.clear()
            delay = 3600.0 if deadline is None else max(0.0, deadline - time.time())
            try:
                await asyncio.wait_for(self._rearm.wait(), delay)
                continue  # an earlier deadline appeared
            except TimeoutError:
                pass
            if self.store_error is None:
                self.add_events(self.pipeline.advance(time.time()))

    # -- store failure ---------------------------------------------------------------------------

    async def _failed(self, reason: str) -> None:
        self.store_error = reason
        log.error("Store not writable, no longer acknowledging MQTT messages: %s", reason)
        self._events.clear()
        self._acks.clear()
        self._on_store_failed(reason)
        saved = await self.db.call(self.store.load_states)
        orphans = self.pipeline.restore(saved, time.time())
        self._events.extend(orphans)  # committed once the store takes writes again

    async def run_probe(self) -> None:
        """While the store is failing, try a small write now and then; recover when it takes."""
        while True:
            await asyncio.sleep(self._probe_interval)
            if self.store_error is None:
                continue
            try:
                await self.db.call(self.store.probe_writable)
            except StoreError as exc:
                log.debug("store still failing: %s", exc)
                continue
            log.warning("Store writable again, resuming intake")
            self.store_error = None
            self._on_store_recovered()


def _log_event(event: Event) -> None:
    p: dict[str, Any] = dict(event.payload)
    if event.event_type == "run_start":
        log.info("Session started: device=%s, session_id=%s", event.device_id, p["session_id"])
    elif event.event_type == "run_stop":
        log.info(
            "Session stopped: device=%s, session_id=%s, reason=%s, duration=%ss",
            event.device_id,
            p["session_id"],
            p["reason"],
            p["duration_s"],
        )
