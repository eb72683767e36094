"""The MQTT connection and client on an injected clock (keepalive, backoff, failover), and the
catch-up marker against a real mosquitto."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from iot_bridge.clock import SYSTEM_CLOCK
from iot_bridge.errors import ConnectionLost
from iot_bridge.mqtt import packets as pk
from iot_bridge.mqtt.client import CATCH_UP_QUIET_S, MqttClient, sync_topic
from iot_bridge.mqtt.connection import Endpoint, open_connection
from iot_bridge.mqtt.source import CaughtUp, Connected, Disconnected, Received, SourceItem
from iot_bridge.tools.broker import Mosquitto, free_port
from tests.support.clock import FakeClock, settle
from tests.support.nats import NATS_SERVER, NatsCluster, NatsNode


class TinyBroker:
    """Accepts one client, answers CONNECT with CONNACK, then does what the test says."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.port = 0
        self.pings = 0

    async def start(self) -> TinyBroker:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)  # CONNECT
        writer.write(b"\x20\x02\x00\x00")  # CONNACK, accepted
        self.writers.append(writer)
        while data := await reader.read(1024):
            self.pings += data.count(pk.PINGREQ_PACKET)

    def send(self, data: bytes) -> None:
        self.writers[-1].write(data)

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        if self.server is not None:
            self.server.close()


def test_a_broker_that_trickles_one_endless_packet_is_dead() -> None:
    """Keepalive counts whole packets: bytes of a packet that never ends are no sign of life."""

    async def go() -> None:
        clock = FakeClock()
        broker = await TinyBroker().start()
        conn = await open_connection(Endpoint("127.0.0.1", broker.port, "c", keepalive=10), clock)
        header = bytes([0x30]) + pk._remaining_length(50_000_000) + b"\x00\x01t"
        broker.send(header)
        for _ in range(12):  # 24 s of fake time, a few bytes every 2 s
            broker.send(b"x" * 100)
            await asyncio.sleep(0.01)
            await clock.advance(2.0)
        assert not conn.is_open
        # checked every keepalive / 2: at 20 s the last whole packet (CONNACK) is 20 s old
        with pytest.raises(ConnectionLost, match="no packet from the broker for 20 s"):
            await conn.closed
        await broker.close()

    asyncio.run(go())


def test_a_broker_that_answers_pings_stays_alive() -> None:
    async def go() -> None:
        clock = FakeClock()
        broker = await TinyBroker().start()
        conn = await open_connection(Endpoint("127.0.0.1", broker.port, "c", keepalive=10), clock)
        for _ in range(20):  # 40 s
            await clock.advance(2.0)
            await asyncio.sleep(0.01)
            if broker.pings:
                broker.send(b"\xd0\x00" * broker.pings)  # PINGRESP
                broker.pings = 0
                await asyncio.sleep(0.01)
        assert conn.is_open
        conn.abort()
        await broker.close()

    asyncio.run(go())


def test_reconnects_back_off_on_the_clock_and_try_every_broker_in_turn() -> None:
    async def go() -> None:
        clock = FakeClock()
        dead = [Endpoint("127.0.0.1", free_port(), "c", timeout=1) for _ in range(2)]
        client = MqttClient(dead, clock, backoff_base=1.0, backoff_cap=8.0)
        attempts: list[tuple[float, int]] = []
        original = client._connect

        async def counting(endpoint: Endpoint) -> object:
            attempts.append((clock.now(), endpoint.port))
            return await original(endpoint)

        client._connect = counting  # type: ignore[method-assign, assignment]
        task = asyncio.create_task(client.run())
        for _ in range(40):
            await asyncio.sleep(0.01)  # a refused TCP connect takes real microseconds
            await clock.advance(1.0)
        task.cancel()
        t0 = attempts[0][0]
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(attempts)]
        # iot_bridge.backoff: 1 s, then doubling with +-20 % jitter up to the 8 s cap (the fake
        # clock moves in 1 s steps, so each wait is seen rounded up to the next second)
        for i, gap in enumerate(gaps[:5]):
            nominal = min(8.0, 2.0**i)
            assert nominal * 0.8 - 0.01 <= gap <= nominal * 1.2 + 1.0, (i, gaps)
        assert attempts[-1][0] - t0 <= 40
        assert [p for _, p in attempts[:4]] == [dead[0].port, dead[1].port] * 2
        assert client.last_error is not None
        assert "cannot reach" in client.last_error

    asyncio.run(go())


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Real time, for what a real broker does on its own timer."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def _items_until(client: MqttClient, kind: type, timeout: float = 10.0) -> list[SourceItem]:
    items: list[SourceItem] = []

    async def loop() -> None:
        while True:
            item = await client.get()
            items.append(item)
            if isinstance(item, kind):
                return

    await asyncio.wait_for(loop(), timeout)
    return items


@pytest.mark.integration
def test_the_marker_comes_back_after_the_backlog(tmp_path: Path) -> None:
    """Everything queued while the bridge was away arrives before our marker: then CaughtUp."""
    with Mosquitto(tmp_path / "broker") as broker:

        async def go() -> None:
            ep = Endpoint("127.0.0.1", broker.port, "bridge-under-test", keepalive=5)
            client = MqttClient([ep], SYSTEM_CLOCK)
            await client.set_filters(["plug/status/pm1:0"])
            task = asyncio.create_task(client.run())
            first = await _items_until(client, CaughtUp)
            assert isinstance(first[0], Connected)
            assert isinstance(first[-1], CaughtUp)
            assert first[-1].echoed
            await client.stop()
            await task
            # away: the broker queues for the persistent session
            pub = await open_connection(
                Endpoint("127.0.0.1", broker.port, "pub", clean_session=True), SYSTEM_CLOCK
            )
            for i in range(50):
                await pub.publish("plug/status/pm1:0", f'{{"apower":{i}}}'.encode(), qos=1)
            client = MqttClient([ep], SYSTEM_CLOCK)
            await client.set_filters(["plug/status/pm1:0"])
            task = asyncio.create_task(client.run())
            items = await _items_until(client, CaughtUp)
            got = [m for i in items if isinstance(i, Received) for m in i.messages]
            assert [m.payload for m in got] == [f'{{"apower":{i}}}'.encode() for i in range(50)]
            assert all(m.topic != sync_topic("bridge-under-test") for m in got)
            assert isinstance(items[-1], CaughtUp)
            assert items[-1].echoed
            for item in items:
                if isinstance(item, Received):
                    client.ack(item.generation, [m.packet_id for m in item.messages if m.packet_id])
            # what arrives after the marker is live
            await pub.publish("plug/status/pm1:0", b'{"apower":1}', qos=1)
            (live,) = await _items_until(client, Received)
            assert isinstance(live, Received)
            await pub.disconnect()
            client.pause()  # the bridge closes it: not an observed loss
            (gone,) = await _items_until(client, Disconnected)
            assert isinstance(gone, Disconnected)
            assert not gone.observed
            await client.stop()
            task.cancel()

        asyncio.run(go())


@pytest.mark.integration
def test_without_the_marker_catching_up_ends_when_the_broker_falls_quiet(tmp_path: Path) -> None:
    """An ACL that forbids publishing the marker: the bridge guesses, and says it guessed."""
    acl = tmp_path / "acl"
    acl.write_text("topic read #\n")
    with Mosquitto(tmp_path / "broker", extra=f"acl_file {acl}") as broker:

        async def go() -> None:
            clock = SYSTEM_CLOCK
            ep = Endpoint("127.0.0.1", broker.port, "no-marker", keepalive=5)
            client = MqttClient([ep], clock)
            task = asyncio.create_task(client.run())
            loop = asyncio.get_running_loop()
            start = loop.time()
            items = await _items_until(client, CaughtUp, timeout=CATCH_UP_QUIET_S + 5)
            assert isinstance(items[-1], CaughtUp)
            assert not items[-1].echoed
            assert loop.time() - start >= CATCH_UP_QUIET_S - 0.2
            await client.stop()
            task.cancel()
            await settle()

        asyncio.run(go())


@pytest.mark.integration
@pytest.mark.skipif(NATS_SERVER is None, reason="needs nats-server (Debian: nats-server)")
def test_nats_resends_on_its_timer_and_stale_redeliveries_are_skipped(tmp_path: Path) -> None:
    """NATS sends an unacknowledged message again once ``ack_wait`` passed, on whatever
    connection the session has: after the backlog such a redelivery is stale (skipped, counted);
    when the bridge was away for longer, it comes first, with the backlog, and is taken. (A busy
    NATS may resend more than once, so the counts are lower bounds.)"""
    with NatsNode(tmp_path / "nats", "n0", ack_wait="2s") as node:

        async def go() -> None:
            ep = Endpoint("127.0.0.1", node.mqtt_port, "bridge-under-test", keepalive=5)
            client = MqttClient([ep], SYSTEM_CLOCK, backoff_base=0.1)
            await client.set_filters(["plug/+"])
            task = asyncio.create_task(client.run())
            items = await _items_until(client, CaughtUp)
            assert isinstance(items[-1], CaughtUp)
            assert items[-1].echoed  # behind an empty backlog
            pub = await open_connection(
                Endpoint("127.0.0.1", node.mqtt_port, "pub", clean_session=True), SYSTEM_CLOCK
            )

            async def receive(n: int, tag: str) -> list[pk.Publish]:
                for i in range(n):
                    await pub.publish("plug/a", f"{tag}{i}".encode(), qos=1)
                got: list[pk.Publish] = []
                while len(got) < n:
                    item = await asyncio.wait_for(client.get(), 5)
                    if isinstance(item, Received):
                        got += item.messages
                return got

            # 1. held longer than ack_wait on the same connection: resent, skipped
            held = await receive(3, "held")
            await _until(lambda: client.redeliveries_skipped >= 3, timeout=30)
            client.ack(client._generation, [m.packet_id for m in held if m.packet_id])
            skipped = client.redeliveries_skipped
            # 2. received, then the connection ends, and it is back within ack_wait: the
            # redeliveries come after the marker, and are skipped
            await receive(2, "lost")
            client.pause()
            client.resume()
            items = await _items_until(client, CaughtUp)
            assert not [i for i in items if isinstance(i, Received)]
            await _until(lambda: client.redeliveries_skipped >= skipped + 2, timeout=30)
            # 3. away for longer than ack_wait: the redeliveries come first, with the backlog
            late = await receive(2, "late")
            client.pause()
            await asyncio.sleep(3.0)
            skipped = client.redeliveries_skipped
            client.resume()
            items = await _items_until(client, CaughtUp)
            backlog = [m for i in items if isinstance(i, Received) for m in i.messages]
            assert [(m.payload, m.dup) for m in backlog] == [(m.payload, True) for m in late]
            client.ack(client._generation, [m.packet_id for m in backlog if m.packet_id])
            assert client.redeliveries_skipped == skipped  # taken, not skipped
            await pub.disconnect()
            await client.stop()
            task.cancel()

        asyncio.run(go())


@pytest.mark.integration
@pytest.mark.skipif(NATS_SERVER is None, reason="needs nats-server (Debian: nats-server)")
def test_nats_returns_the_marker_before_a_large_backlog_is_delivered(tmp_path: Path) -> None:
    """Why NATS needs ``ordered=False``: each subscription is its own JetStream consumer, so the
    marker (a subscription of its own) is not queued behind the devices' backlog."""
    with NatsNode(tmp_path / "nats", "n0") as node:

        async def go() -> None:
            ep = Endpoint("127.0.0.1", node.mqtt_port, "bridge-under-test", keepalive=10)
            filters = [f"plug{i}/status" for i in range(5)]
            client = MqttClient([ep], SYSTEM_CLOCK)
            await client.set_filters(filters)
            task = asyncio.create_task(client.run())
            await _items_until(client, CaughtUp)
            await client.stop()
            await task
            pub = await open_connection(
                Endpoint("127.0.0.1", node.mqtt_port, "pub", clean_session=True), SYSTEM_CLOCK
            )
            queued = 2000
            for i in range(queued):
                await pub.publish(filters[i % 5], str(i).encode(), qos=1)
            await pub.disconnect()
            client = MqttClient([ep], SYSTEM_CLOCK)
            await client.set_filters(filters)
            task = asyncio.create_task(client.run())
            items = await _items_until(client, CaughtUp)
            assert isinstance(items[-1], CaughtUp)
            assert items[-1].echoed
            before = [m for i in items if isinstance(i, Received) for m in i.messages]
            after: list[pk.Publish] = []
            while len(before) + len(after) < queued:
                item = await asyncio.wait_for(client.get(), 10)
                if isinstance(item, Received):
                    after += item.messages
                    client.ack(item.generation, [m.packet_id for m in item.messages if m.packet_id])
            print(f"NATS: {len(before)} of {queued} queued messages came before the marker")
            assert len(before) < queued  # the marker overtook the backlog
            assert sorted(int(m.payload) for m in before + after) == list(range(queued))
            await client.stop()
            task.cancel()

        asyncio.run(go())


@pytest.mark.integration
@pytest.mark.skipif(NATS_SERVER is None, reason="needs nats-server (Debian: nats-server)")
def test_unordered_guesses_the_end_of_the_backlog_and_skips_every_redelivery(
    tmp_path: Path,
) -> None:
    with NatsNode(tmp_path / "nats", "n0", ack_wait="1s") as node:

        async def go() -> None:
            ep = Endpoint("127.0.0.1", node.mqtt_port, "bridge-under-test", keepalive=5)
            client = MqttClient([ep], SYSTEM_CLOCK, backoff_base=0.1, ordered=False)
            await client.set_filters(["plug/+"])
            task = asyncio.create_task(client.run())
            loop = asyncio.get_running_loop()
            start = loop.time()
            items = await _items_until(client, CaughtUp, timeout=CATCH_UP_QUIET_S + 5)
            assert isinstance(items[-1], CaughtUp)
            assert not items[-1].echoed  # no marker: the broker fell quiet
            assert loop.time() - start >= CATCH_UP_QUIET_S - 0.2
            pub = await open_connection(
                Endpoint("127.0.0.1", node.mqtt_port, "pub", clean_session=True), SYSTEM_CLOCK
            )
            for i in range(2):
                await pub.publish("plug/a", f"lost{i}".encode(), qos=1)
            got: list[pk.Publish] = []
            while len(got) < 2:
                item = await asyncio.wait_for(client.get(), 5)
                if isinstance(item, Received):
                    got += item.messages
            client.pause()  # as if the bridge died: nothing acknowledged
            await asyncio.sleep(1.6)  # longer than ack_wait: NATS resends with the backlog
            client.resume()
            items = await _items_until(client, CaughtUp, timeout=CATCH_UP_QUIET_S + 5)
            assert not [m for i in items if isinstance(i, Received) for m in i.messages]
            assert client.redeliveries_skipped == 2
            await pub.disconnect()
            await client.stop()
            task.cancel()

        asyncio.run(go())


@pytest.mark.integration
@pytest.mark.skipif(NATS_SERVER is None, reason="needs nats-server (Debian: nats-server)")
def test_a_first_subscription_to_a_nats_cluster_fits_the_timeout(tmp_path: Path) -> None:
    """A NATS cluster takes about half a second per new filter (one replicated consumer each)
    and reads nothing else meanwhile: 25 filters in one SUBSCRIBE would outlast the 10 s
    timeout, so the connection would fail and start over. In small packets they all fit."""
    with NatsCluster(tmp_path / "nats") as cluster:

        async def go() -> None:
            eps = [Endpoint("127.0.0.1", n.mqtt_port, "many-topics", keepalive=30)
                   for n in cluster.nodes]  # fmt: skip
            client = MqttClient(eps, SYSTEM_CLOCK, ordered=False)
            filters = [f"plug{i}/status/pm1:0" for i in range(25)]
            await client.set_filters(filters)
            task = asyncio.create_task(client.run())
            loop = asyncio.get_running_loop()
            start = loop.time()
            items = await _items_until(client, CaughtUp, timeout=90)
            print(f"NATS cluster: 25 new filters subscribed in {loop.time() - start:.1f} s")
            assert [type(i) for i in items if not isinstance(i, Received)] == [Connected, CaughtUp]
            assert client.refused_subscriptions == set()
            await client.stop()
            task.cancel()

        asyncio.run(go())


def test_a_redelivery_of_a_held_message_is_acknowledged_once() -> None:
    """A resend (DUP) of a message the intake still holds is skipped but not acknowledged: the
    intake's acknowledgement of the original is the one PUBACK. A second one could acknowledge
    whatever the broker gave that packet id next (NATS reuses them), and that message would
    be lost."""

    async def go() -> None:
        written = bytearray()
        sent = asyncio.Event()

        async def broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1024)  # CONNECT
            original = pk.publish("plug/a", b"1", 1, 7, False)
            resend = bytes([original[0] | 0x08]) + original[1:]  # the DUP flag
            writer.write(b"\x20\x02\x00\x00" + original + resend)
            sent.set()
            while data := await reader.read(1024):
                written.extend(data)

        server = await asyncio.start_server(broker, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        clock = FakeClock()
        client = MqttClient([Endpoint("127.0.0.1", port, "c", keepalive=0)], clock,
                            ordered=False)  # fmt: skip
        task = asyncio.create_task(client.run())
        (item,) = [i for i in await _items_until(client, Received) if isinstance(i, Received)]
        await sent.wait()
        await settle()
        assert [(m.packet_id, m.dup) for m in item.messages] == [(7, False)]
        assert client.redeliveries_skipped == 1
        assert pk.puback(7) not in written  # not for the skipped resend
        client.ack(item.generation, [7])
        await settle()
        await asyncio.sleep(0.05)
        assert written.count(pk.puback(7)) == 1
        task.cancel()
        server.close()

    asyncio.run(go())
