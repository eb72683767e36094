"""Keeps one MQTT connection alive and serves it as the intake's message source.

The session is persistent (``clean_session=False`` with a stable client id), so the broker
queues QoS 1 messages while the bridge is away and redelivers what was not acknowledged.
Subscriptions are sent again after every connect, whether or not the broker kept the session.
Several broker addresses (a cluster) are tried in turn; reconnects back off with jitter.

Catching up: right after subscribing, the client publishes a marker (QoS 1, a fresh nonce) to
a topic of its own that it is subscribed to. The broker queues it behind everything it already
held for us, so when the marker comes back, every message before it was published before we
were back: :class:`~iot_bridge.mqtt.source.CaughtUp` says so. A broker that never returns the
marker (an ACL that forbids the publish, a cluster that reorders) is caught up by guess: once
nothing has arrived for a while.

The marker works because mosquitto keeps one ordered queue per session. MQTT itself orders
messages only per topic and publisher, and NATS delivers each subscription from its own
JetStream consumer: its marker overtakes a backlog of more than a few hundred messages. For such
a broker (``ordered=False``, ``MQTT_ORDERED_SESSION=false``) no marker is sent and the end of the
backlog is always guessed.

A redelivery (DUP) after the backlog is stale. MQTT resends unacknowledged messages only when a
session resumes, so mosquitto's come with the backlog, before the marker. NATS instead resends a
message once its ``ack_wait`` (30 s by default) has passed, on whatever connection the session
has then: what a bridge had received but not committed when it died comes back that long after
it was measured, behind newer readings, and taken as live it would open a session that never
was. Such a message is skipped and counted (``redeliveries_skipped``), and acknowledged unless
it resends one the intake still holds on this connection: then the intake's acknowledgement of
the original is the only PUBACK (NATS reuses packet ids, so a second one could acknowledge a
message nobody has processed). Without the
order (no marker) the end of the backlog is a guess, so every redelivery is skipped.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import random
import re
from collections.abc import Iterable, Sequence

from iot_bridge.backoff import backoff_delay
from iot_bridge.clock import Clock, Timer
from iot_bridge.errors import ConnectRefused, MqttError
from iot_bridge.mqtt import packets as pk
from iot_bridge.mqtt.connection import Connection, Endpoint, open_connection
from iot_bridge.mqtt.source import CaughtUp, Connected, Disconnected, Received, SourceItem

log = logging.getLogger("iot_bridge.mqtt")

SUBSCRIBE_CHUNK = 200  # filters per SUBSCRIBE packet, at most ...
SUBSCRIBE_FIRST = 10  # ... starting with this many (see _subscribe)
CATCH_UP_QUIET_S = 2.0  # without the marker: caught up once nothing arrived for this long ...
CATCH_UP_MAX_S = 120.0  # ... or after this long at the most


def sync_topic(client_id: str) -> str:
    """The client's own marker topic: no wildcards, no leading ``$``, no extra levels."""
    return "iot-bridge/" + (re.sub(r"[+#/\x00]", "_", client_id) or "_") + "/sync"


class MqttClient:
    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        clock: Clock,
        *,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        ordered: bool = True,
    ) -> None:
        """``ordered``: the broker delivers a resumed session as one ordered queue and resends
        only when a session resumes (mosquitto; not NATS): see the module docstring."""
        if not endpoints:
            raise ValueError("at least one broker endpoint is needed")
        self.endpoints = tuple(endpoints)
        self._clock = clock
        self._base = backoff_base
        self._cap = backoff_cap
        self._rng = random.Random()
        self._filters: set[str] = set()
        self._items: collections.deque[SourceItem] = collections.deque()
        self._ready = asyncio.Event()
        self._generation = 0
        self._sync_topic = sync_topic(endpoints[0].client_id)
        self._marker: bytes | None = None  # the nonce we wait to see again
        self._catching_up = False  # the backlog of this connection is still coming
        self._catch_up_timer: Timer | None = None
        self._catch_up_since = 0.0
        self._last_arrival = 0.0
        self.connection: Connection | None = None
        self.endpoint = self.endpoints[0]  # the one connected to, or tried last
        self.reconnects = 0
        self.connected_since: float | None = None  # when the current connection came up
        self.last_error: str | None = None
        self.refused_subscriptions: set[str] = set()
        self.redeliveries_skipped = 0  # stale redeliveries after the backlog (see above)
        self._live = False  # this connection has delivered its backlog
        self._held: set[int] = set()  # packet ids handed over on it, not yet acknowledged
        self.ordered = ordered
        self._stopping = False
        self._self_closed = False  # the current connection is being closed by us
        self._allowed = asyncio.Event()  # cleared while paused
        self._allowed.set()

    @property
    def connected(self) -> bool:
        return self.connection is not None and self.connection.is_open

    # -- MessageSource ------------------------------------------------------------------------

    async def get(self) -> SourceItem:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def ack(self, generation: int, packet_ids: Sequence[int]) -> None:
        conn = self.connection
        if packet_ids and conn is not None and generation == self._generation:
            self._held.difference_update(packet_ids)
            conn.ack(list(packet_ids))  # a connection that died meanwhile: the broker redelivers

    def pause(self) -> None:
        """Drop the connection and stay away until :meth:`resume`: the broker keeps the rest."""
        self._allowed.clear()
        if self.connection is not None:
            self._self_closed = True
            self.connection.abort("paused by the bridge")

    def resume(self) -> None:
        self._allowed.set()

    async def set_filters(self, filters: Iterable[str]) -> None:
        wanted = set(filters)
        added, removed = wanted - self._filters, self._filters - wanted
        self._filters = wanted
        conn = self.connection
        if conn is None or not conn.is_open:
            return
        try:
            if removed:
                for chunk in _chunks(sorted(removed)):
                    await conn.unsubscribe(chunk)
                log.info("MQTT unsubscribed %d topic(s)", len(removed))
            if added:
                await self._subscribe(conn, sorted(added))
        except MqttError as exc:  # the reconnect will subscribe the whole set again
            log.warning("MQTT subscription change interrupted: %s", exc)

    # -- the connection loop ------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, subscribe, wait for the end, back off, repeat; until stopped or cancelled.

        Whatever goes wrong inside one connection ends that connection and leads to the next
        attempt: this loop only ends when asked to."""
        attempt = 0
        index = 0
        ever_connected = False
        while not self._stopping:
            await self._allowed.wait()
            endpoint = self.endpoints[index % len(self.endpoints)]
            self.endpoint = endpoint
            try:
                conn = await self._connect(endpoint)
            except Exception as exc:  # every failure means: try again later
                self.last_error = str(exc) or type(exc).__name__
                delay = backoff_delay(attempt + 1, self._base, self._cap, self._rng)
                if isinstance(exc, MqttError):
                    level = logging.ERROR if isinstance(exc, ConnectRefused) else logging.WARNING
                    log.log(level, "MQTT broker %s not available (%s), retrying in %.1fs",
                            endpoint.url, exc, delay)  # fmt: skip
                else:
                    log.exception("MQTT connection attempt failed unexpectedly; retrying")
                attempt += 1
                index += 1  # the next broker of a cluster
                await self._clock.sleep(delay)
                continue
            attempt = 0
            if ever_connected:
                self.reconnects += 1
            ever_connected = True
            reason = await self._serve(conn)
            if self._stopping:
                return
            self.last_error = reason
            if not self._self_closed:
                log.warning("MQTT connection lost (%s), reconnecting", reason)
                await self._clock.sleep(backoff_delay(1, self._base, self._cap, self._rng))

    async def _connect(self, endpoint: Endpoint) -> Connection:
        self._generation += 1
        generation = self._generation
        self._live = False  # until this connection's backlog is delivered
        self._held = set()

        def on_packets(publishes: list[pk.Publish], oversize: list[pk.Oversize], at: float) -> None:
            self._received(generation, publishes, oversize, at)

        conn = await open_connection(endpoint, self._clock, on_packets, hold=True)
        try:
            if len(self.endpoints) == 1:
                log.info("MQTT connected, subscribing to topics...")
            else:  # which node of the cluster
                log.info("MQTT connected, subscribing to topics... (%s)", endpoint.url)
            self.connection = conn
            self._self_closed = False
            self.last_error = None
            self.connected_since = self._clock.now()
            self._push(Connected(self.connected_since, generation, conn.session_present))
            conn.start_delivery()
            if self.ordered:
                await self._subscribe(conn, sorted(self._filters | {self._sync_topic}))
                await self._start_catch_up(conn)
            else:
                await self._subscribe(conn, sorted(self._filters))
                self._guess_catch_up()
        except BaseException as exc:  # after Connected: the stream hears that it ended
            self.connection = None
            self.connected_since = None
            self._end_catch_up()
            conn.abort()
            lost = not isinstance(exc, asyncio.CancelledError)
            self._push(Disconnected(self._clock.now(), str(exc) or type(exc).__name__, lost))
            raise
        return conn

    async def _serve(self, conn: Connection) -> str:
        """Wait for the connection to end; say why, and tell the stream."""
        try:
            await asyncio.shield(conn.closed)
            reason = "closed"
        except MqttError as exc:
            reason = str(exc)
        finally:
            self.connection = None
            self.connected_since = None
            self._end_catch_up()
        self._push(Disconnected(self._clock.now(), reason, observed=not self._self_closed))
        return reason

    async def _subscribe(self, conn: Connection, filters: list[str]) -> None:
        """Subscribe in packets that each answer within the endpoint's timeout: a NATS cluster
        creates a replicated consumer per new filter, about half a second each, and reads
        nothing else meanwhile (one SUBSCRIBE of 30 new filters took 14 s there). So packets
        start small, grow while the broker answers fast (mosquitto: at once) and shrink when it
        takes more than half the timeout."""
        size, at = SUBSCRIBE_FIRST, 0
        budget = conn.endpoint.timeout
        while at < len(filters):
            chunk = filters[at : at + size]
            at += len(chunk)
            started = self._clock.now()
            granted = await conn.subscribe(chunk, qos=1)
            took = self._clock.now() - started
            if took < budget / 10:
                size = min(SUBSCRIBE_CHUNK, size * 2)
            elif took > budget / 2:
                size = max(1, size // 2)
            for topic_filter, code in zip(chunk, granted, strict=False):
                if code == 0x80:
                    self.refused_subscriptions.add(topic_filter)
                    log.error("MQTT broker refused the subscription to %r (ACL?)", topic_filter)
                else:
                    self.refused_subscriptions.discard(topic_filter)

    # -- intake ---------------------------------------------------------------------------------

    def _received(
        self, generation: int, publishes: list[pk.Publish], oversize: list[pk.Oversize], at: float
    ) -> None:
        self._last_arrival = at
        if self._marker is not None:
            publishes = self._take_marker(generation, publishes)
        elif (self._live or not self.ordered) and any(p.dup for p in publishes):
            publishes = self._skip_stale(publishes)
        if publishes or oversize:
            self._held.update([p.packet_id for p in publishes if p.packet_id is not None])
            self._push(Received(at, generation, publishes, oversize))

    def _take_marker(self, generation: int, publishes: list[pk.Publish]) -> list[pk.Publish]:
        """Our own marker is not a message for the intake: acknowledge it, and if it is the one
        we are waiting for, everything before it was the broker's backlog."""
        sync = self._sync_topic
        if not any(p.topic == sync for p in publishes):
            return publishes
        kept: list[pk.Publish] = []
        for p in publishes:
            if p.topic != sync:
                kept.append(p)
                continue
            if p.packet_id is not None and self.connection is not None:
                self.connection.ack([p.packet_id])
            if p.payload == self._marker:
                if kept:  # what came before the marker goes first
                    self._push(Received(self._last_arrival, generation, kept))
                    kept = []
                self._end_catch_up()
                self._live = True
                self._push(CaughtUp(self._clock.now(), generation, echoed=True))
        return kept

    def _skip_stale(self, publishes: list[pk.Publish]) -> list[pk.Publish]:
        stale = [p for p in publishes if p.dup]
        kept = [p for p in publishes if not p.dup]
        if self.connection is not None:
            # the original of one still held by the intake (or handed over with it now) is
            # acknowledged by the intake; a second PUBACK could acknowledge whatever the
            # broker gave that packet id next
            held = self._held.union(p.packet_id for p in kept)
            self.connection.ack([i for p in stale if (i := p.packet_id) is not None
                                 and i not in held])  # fmt: skip
        self.redeliveries_skipped += len(stale)
        log.warning(
            "MQTT broker resent %d message(s) outside a resumed session's backlog (first on"
            " %r); skipped as stale (NATS resends on its ack_wait timer; docs/deployment.md)",
            len(stale),
            stale[0].topic,
        )
        return kept

    async def _start_catch_up(self, conn: Connection) -> None:
        self._marker = os.urandom(12).hex().encode()
        self._catching_up = True
        self._catch_up_since = self._last_arrival = self._clock.now()
        await conn.publish(self._sync_topic, self._marker, qos=1)
        self._arm_catch_up(self._catch_up_since + CATCH_UP_QUIET_S)

    def _guess_catch_up(self) -> None:
        """No marker (an unordered broker): caught up once the broker falls quiet."""
        self._catching_up = True
        self._catch_up_since = self._last_arrival = self._clock.now()
        self._arm_catch_up(self._catch_up_since + CATCH_UP_QUIET_S)

    def _arm_catch_up(self, when: float) -> None:
        self._catch_up_timer = self._clock.call_at(when, self._catch_up_check)

    def _catch_up_check(self) -> None:
        if not self._catching_up:
            return
        now = self._clock.now()
        quiet_until = self._last_arrival + CATCH_UP_QUIET_S
        if now < quiet_until and now < self._catch_up_since + CATCH_UP_MAX_S:
            self._arm_catch_up(min(quiet_until, self._catch_up_since + CATCH_UP_MAX_S))
            return
        if self.ordered:
            log.warning(
                "MQTT broker did not return the bridge's sync marker on %s; treating the backlog"
                " as delivered after %.0f s (late readings without a device time are timed as"
                " live)",
                self._sync_topic,
                now - self._catch_up_since,
            )
        self._end_catch_up()
        self._live = True
        self._push(CaughtUp(now, self._generation, echoed=False))

    def _end_catch_up(self) -> None:
        self._marker = None
        self._catching_up = False
        if self._catch_up_timer is not None:
            self._catch_up_timer.cancel()
            self._catch_up_timer = None

    def _push(self, item: SourceItem) -> None:
        self._items.append(item)
        self._ready.set()

    # -- shutdown -------------------------------------------------------------------------------

    def stop_reading(self) -> None:
        """Receive nothing more (shutdown): what arrived can still be committed and acked."""
        if self.connection is not None:
            self.connection.pause_reading()

    async def stop(self) -> None:
        self._stopping = True
        self._allowed.set()
        if self.connection is not None:
            self._self_closed = True
            await self.connection.disconnect()


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), SUBSCRIBE_CHUNK):
        yield items[i : i + SUBSCRIBE_CHUNK]
