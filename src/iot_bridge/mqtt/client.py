"""Keeps one MQTT connection alive: reconnect with jittered exponential backoff, resubscribe.

The session is persistent (``clean_session=False`` with a stable client id), so the broker
queues QoS 1 messages while the bridge is away and redelivers what was not acknowledged.
Subscriptions are sent again after every reconnect, whether or not the broker kept the session.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Iterable

from iot_bridge.errors import ConnectRefused, MqttError
from iot_bridge.mqtt.connection import Connection, Endpoint, OnMessages, open_connection

log = logging.getLogger("iot_bridge.mqtt")

SUBSCRIBE_CHUNK = 200  # filters per SUBSCRIBE packet


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential with "equal jitter": half fixed, half random, so retries never align."""
    ceiling = min(cap, base * 2.0 ** min(attempt, 60))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class MqttClient:
    def __init__(
        self,
        endpoint: Endpoint,
        on_messages: OnMessages,
        *,
        on_connected: Callable[[Connection], None] = lambda c: None,
        on_disconnected: Callable[[str], None] = lambda reason: None,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
    ) -> None:
        self.endpoint = endpoint
        self._on_messages = on_messages
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._base = backoff_base
        self._cap = backoff_cap
        self._rng = random.Random()
        self._filters: set[str] = set()
        self.connection: Connection | None = None
        self.reconnects = 0
        self.last_error: str | None = None
        self.refused_subscriptions: set[str] = set()
        self._stopping = False
        self._allowed = asyncio.Event()  # cleared while the bridge cannot store what it receives
        self._allowed.set()

    @property
    def connected(self) -> bool:
        return self.connection is not None and self.connection.is_open

    async def run(self) -> None:
        """Connect, subscribe, wait for the connection to end, back off, repeat; until cancelled."""
        attempt = 0
        ever_connected = False
        while not self._stopping:
            await self._allowed.wait()
            try:
                conn = await open_connection(self.endpoint, self._on_messages)
                log.info("MQTT connected, subscribing to topics...")
                await self._subscribe(conn, sorted(self._filters))
            except MqttError as exc:
                self.last_error = str(exc)
                delay = backoff_delay(attempt, self._base, self._cap, self._rng)
                level = logging.ERROR if isinstance(exc, ConnectRefused) else logging.WARNING
                log.log(
                    level,
                    "MQTT broker %s:%s not available (%s), retrying in %.1fs",
                    self.endpoint.host,
                    self.endpoint.port,
                    exc,
                    delay,
                )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            attempt = 0
            if ever_connected:
                self.reconnects += 1
            ever_connected = True
            self.connection = conn
            self.last_error = None
            self._on_connected(conn)
            try:
                await asyncio.shield(conn.closed)
                reason = "closed"
            except MqttError as exc:
                reason = str(exc)
            finally:
                self.connection = None
            if self._stopping:
                return
            self.last_error = reason
            log.warning("MQTT connection lost (%s), reconnecting", reason)
            self._on_disconnected(reason)
            await asyncio.sleep(backoff_delay(0, self._base, self._cap, self._rng))

    async def set_filters(self, filters: Iterable[str]) -> None:
        """Make ``filters`` the subscription set; applied now if connected, else on connect."""
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

    async def _subscribe(self, conn: Connection, filters: list[str]) -> None:
        if not filters:
            return
        for chunk in _chunks(filters):
            granted = await conn.subscribe(chunk, qos=1)
            for topic_filter, code in zip(chunk, granted, strict=False):
                if code == 0x80:
                    self.refused_subscriptions.add(topic_filter)
                    log.error("MQTT broker refused the subscription to %r (ACL?)", topic_filter)
                else:
                    self.refused_subscriptions.discard(topic_filter)

    def hold(self) -> None:
        """Drop the connection and stay away until :meth:`release` (store not writable)."""
        self._allowed.clear()
        if self.connection is not None:
            self.connection.abort()

    def release(self) -> None:
        self._allowed.set()

    async def stop(self) -> None:
        self._stopping = True
        if self.connection is not None:
            await self.connection.disconnect()


def _chunks(items: list[str]) -> Iterable[list[str]]:
    for i in range(0, len(items), SUBSCRIBE_CHUNK):
        yield items[i : i + SUBSCRIBE_CHUNK]
