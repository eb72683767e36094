"""One MQTT 3.1.1 connection over asyncio: connect, subscribe, receive, acknowledge, keep alive.

Received PUBLISH packets are handed over in the batches the socket delivers them in, together
with one receive timestamp, and are *not* acknowledged here: the owner calls :meth:`ack` once
their effects are on disk. Every network wait has a timeout on the injected clock, and the
keepalive runs on it too: the broker counts as alive only while whole packets arrive (a peer
that trickles one endless packet is as dead as a silent one).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from itertools import cycle

from iot_bridge.clock import Clock, timeout
from iot_bridge.errors import ConnectionLost, ConnectRefused, MqttError, ProtocolError
from iot_bridge.mqtt import packets as pk


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    clean_session: bool = False
    keepalive: int = 30
    timeout: float = 10.0
    max_packet: int = pk.DEFAULT_MAX_PACKET

    @property
    def url(self) -> str:
        """Where this is, without credentials (logs, ``/health``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"

    def __repr__(self) -> str:  # never show the password
        return f"Endpoint({self.url}, client_id={self.client_id!r})"


OnPackets = Callable[[list[pk.Publish], list[pk.Oversize], float], None]


class Connection(asyncio.Protocol):
    def __init__(
        self, endpoint: Endpoint, clock: Clock, on_packets: OnPackets | None, hold: bool = False
    ) -> None:
        self.endpoint = endpoint
        self._clock = clock
        self._on_packets = on_packets
        self._decoder = pk.Decoder(endpoint.max_packet)
        self._transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._connack: asyncio.Future[pk.Ack] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self._waiting: dict[tuple[int, int], asyncio.Future[pk.Ack]] = {}
        self._ids = cycle(range(1, 65536))
        self._last_rx = clock.now()
        self._pings: asyncio.Task[None] | None = None
        # hold: keep what arrives until start_delivery() (the owner announces the connection
        # first); else hand it over as it arrives
        self._early: list[tuple[list[pk.Publish], list[pk.Oversize], float]] | None = (
            [] if hold else None
        )
        self.session_present = False

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            packets = self._decoder.feed(data)
        except ProtocolError as exc:
            self._fail(ConnectionLost(f"protocol error: {exc}"))
            return
        if not packets:
            return  # part of a packet: not yet a sign that the broker works
        now = self._clock.now()
        self._last_rx = now
        publishes: list[pk.Publish] = []
        oversize: list[pk.Oversize] = []
        for packet in packets:
            if isinstance(packet, pk.Publish):
                publishes.append(packet)
            elif isinstance(packet, pk.Oversize):
                oversize.append(packet)
            elif packet.kind == pk.CONNACK:
                if not self._connack.done():
                    self._connack.set_result(packet)
            elif packet.kind != pk.PINGRESP:
                fut = self._waiting.pop((packet.kind, packet.packet_id or 0), None)
                if fut is not None and not fut.done():
                    fut.set_result(packet)
        if (publishes or oversize) and self._on_packets is not None:
            if self._early is not None:  # before start_delivery(): keep them in order
                self._early.append((publishes, oversize, now))
            else:
                self._on_packets(publishes, oversize, now)

    def start_delivery(self) -> None:
        """Hand over messages from now on, first those that came with or right after CONNACK
        (a broker sends its backlog at once): the owner announces the connection first."""
        early, self._early = self._early, None
        if self._on_packets is not None:
            for publishes, oversize, at in early or ():
                self._on_packets(publishes, oversize, at)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionLost(str(exc) if exc else "connection closed by the broker"))

    def _fail(self, exc: MqttError) -> None:
        if self._transport is not None:
            self._transport.abort()
        for fut in [self._connack, *self._waiting.values()]:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: the waiter may be gone already
        self._waiting.clear()
        if not self.closed.done():
            self.closed.set_exception(exc)
            self.closed.exception()  # mark retrieved: nobody may be waiting right now
        if self._pings is not None:
            self._pings.cancel()

    # -- operations ---------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return not self.closed.done()

    async def handshake(self) -> None:
        ep = self.endpoint
        self._write(
            pk.connect(
                ep.client_id,
                clean_session=ep.clean_session,
                keepalive=ep.keepalive,
                username=ep.username,
                password=ep.password,
            )
        )
        try:
            async with timeout(self._clock, ep.timeout):
                ack = await self._connack
        except TimeoutError:
            raise ConnectionLost("no CONNACK from the broker in time") from None
        except ConnectionLost as exc:
            # over TLS 1.3 the broker checks the client's certificate after the handshake, so
            # a missing or untrusted one shows only as the connection ending here
            hint = "client certificate required? (MQTT_CERT_FILE); " if ep.tls else ""
            raise ConnectionLost(f"closed before CONNACK: {hint}{exc}") from None
        code = ack.return_codes[0]
        if code:
            refused = ConnectRefused(code, pk.CONNACK_REASONS.get(code, str(code)))
            self._fail(refused)
            raise refused
        self.session_present = ack.session_present
        if ep.keepalive:
            self._pings = asyncio.get_running_loop().create_task(self._keepalive())

    async def subscribe(self, filters: list[str], qos: int = 1) -> bytes:
        """Subscribe; returns the granted QoS per filter (0x80 = refused by the broker)."""
        packet_id = next(self._ids)
        data = pk.subscribe(packet_id, [(f, qos) for f in filters])
        ack = await self._request(pk.SUBACK, packet_id, data)
        return ack.return_codes

    async def unsubscribe(self, filters: list[str]) -> None:
        packet_id = next(self._ids)
        await self._request(pk.UNSUBACK, packet_id, pk.unsubscribe(packet_id, filters))

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        if qos == 0:
            self._write(pk.publish(topic, payload, 0, None, retain))
            return
        packet_id = next(self._ids)
        await self._request(pk.PUBACK, packet_id, pk.publish(topic, payload, 1, packet_id, retain))

    def ack(self, packet_ids: list[int]) -> bool:
        """Send PUBACKs in receive order with one write; False if the connection is gone."""
        if not self.is_open or self._transport is None:
            return False
        self._transport.write(b"".join([pk.puback(i) for i in packet_ids]))
        return True

    def pause_reading(self) -> None:
        if self._transport is not None and self.is_open:
            self._transport.pause_reading()

    async def disconnect(self) -> None:
        """A clean DISCONNECT (the broker then drops our will, as MQTT says)."""
        if self.is_open and self._transport is not None:
            self._transport.write(pk.DISCONNECT_PACKET)
            self._transport.close()
        with contextlib.suppress(MqttError, TimeoutError):
            async with timeout(self._clock, self.endpoint.timeout):
                await asyncio.shield(self.closed)

    def abort(self, reason: str = "closed by the bridge") -> None:
        self._fail(ConnectionLost(reason))

    async def _request(self, kind: int, packet_id: int, data: bytes) -> pk.Ack:
        fut: asyncio.Future[pk.Ack] = asyncio.get_running_loop().create_future()
        self._waiting[(kind, packet_id)] = fut
        self._write(data)
        try:
            async with timeout(self._clock, self.endpoint.timeout):
                return await fut
        except TimeoutError:
            self._waiting.pop((kind, packet_id), None)
            self._fail(ConnectionLost("broker did not answer in time"))
            raise ConnectionLost("broker did not answer in time") from None

    def _write(self, data: bytes) -> None:
        if not self.is_open or self._transport is None:
            raise ConnectionLost("not connected")
        self._transport.write(data)

    async def _keepalive(self) -> None:
        """PINGREQ every half keepalive (MQTT counts what we *send*, and a QoS 0 flood sends
        nothing back); a broker without a whole packet for 1.5 x keepalive is gone."""
        interval = self.endpoint.keepalive
        while self.is_open:
            await self._clock.sleep(interval / 2)
            idle = self._clock.now() - self._last_rx
            if idle > interval * 1.5:
                self._fail(ConnectionLost(f"no packet from the broker for {idle:.0f} s"))
                return
            if self._transport is not None and self.is_open:
                self._transport.write(pk.PINGREQ_PACKET)


async def open_connection(
    endpoint: Endpoint, clock: Clock, on_packets: OnPackets | None = None, *, hold: bool = False
) -> Connection:
    """TCP (or TLS) connect plus CONNECT/CONNACK, each within ``endpoint.timeout``. ``hold``:
    messages wait for :meth:`Connection.start_delivery`."""
    loop = asyncio.get_running_loop()
    try:
        async with timeout(clock, endpoint.timeout):
            _, conn = await loop.create_connection(
                lambda: Connection(endpoint, clock, on_packets, hold),
                endpoint.host,
                endpoint.port,
                ssl=endpoint.tls,
            )
    except (TimeoutError, OSError) as exc:
        raise ConnectionLost(
            f"cannot reach {endpoint.host}:{endpoint.port}: {exc or 'timed out'}"
        ) from None
    try:
        await conn.handshake()
    except BaseException:
        conn.abort()
        raise
    return conn
