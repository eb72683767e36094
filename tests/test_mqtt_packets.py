"""The MQTT 3.1.1 codec (pure bytes), plus the connection against a real private mosquitto."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_bridge.clock import SYSTEM_CLOCK
from iot_bridge.errors import ProtocolError
from iot_bridge.mqtt import packets as pk
from iot_bridge.mqtt.connection import Endpoint, open_connection
from iot_bridge.tools.broker import Mosquitto


def decode_all(data: bytes) -> list[pk.Packet]:
    return pk.Decoder().feed(data)


# -- encoding, byte for byte ------------------------------------------------------------------


def test_publish_qos0_exact_bytes() -> None:
    assert pk.publish("a/b", b"hi") == bytes([0x30, 7, 0, 3]) + b"a/b" + b"hi"


def test_publish_qos1_retain_exact_bytes() -> None:
    data = pk.publish("t", b"x", qos=1, packet_id=0x1234, retain=True)
    assert data == bytes([0x33, 6, 0, 1]) + b"t" + b"\x12\x34" + b"x"


def test_publish_qos1_without_packet_id_is_refused() -> None:
    with pytest.raises(ValueError, match="packet id"):
        pk.publish("t", b"x", qos=1)


def test_connect_exact_bytes() -> None:
    data = pk.connect("cid", clean_session=False, keepalive=30, username="u", password="p")
    body = b"\x00\x04MQTT" + bytes([4, 0xC0]) + b"\x00\x1e" + b"\x00\x03cid" + b"\x00\x01u\x00\x01p"
    assert data == bytes([0x10, len(body)]) + body
    clean = pk.connect("cid", clean_session=True, keepalive=0)
    assert clean[2 + 6 + 1] == 0x02  # flags byte: clean session only
    assert clean[-5:] == b"\x00\x03cid"


def test_connect_with_will() -> None:
    data = pk.connect("c", clean_session=True, keepalive=5, will=("w/t", b"gone", 1, True))
    flags = data[2 + 6 + 1]
    assert flags == 0x02 | 0x04 | (1 << 3) | 0x20
    assert data.endswith(b"\x00\x03w/t\x00\x04gone")


def test_subscribe_and_unsubscribe_bytes() -> None:
    sub = pk.subscribe(7, [("a/#", 1), ("b", 0)])
    assert sub == bytes([0x82, 12, 0, 7]) + b"\x00\x03a/#\x01" + b"\x00\x01b\x00"
    unsub = pk.unsubscribe(8, ["a/#"])
    assert unsub == bytes([0xA2, 7, 0, 8]) + b"\x00\x03a/#"


def test_puback_ping_disconnect_bytes() -> None:
    assert pk.puback(1) == b"\x40\x02\x00\x01"
    assert pk.puback(65535) == b"\x40\x02\xff\xff"
    assert pk.PINGREQ_PACKET == b"\xc0\x00"
    assert pk.DISCONNECT_PACKET == b"\xe0\x00"


# -- remaining length edges -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining", "length_bytes"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (2097151, b"\xff\xff\x7f"),
        (2097152, b"\x80\x80\x80\x01"),
    ],
)
def test_remaining_length_edges(remaining: int, length_bytes: bytes) -> None:
    topic = "t"
    header = 2 + len(topic)  # topic length prefix + topic, QoS 0: no packet id
    if remaining == 0:
        data = pk.PINGREQ_PACKET
        assert data[1:] == length_bytes
        return
    payload = bytes(i % 251 for i in range(remaining - header))
    data = pk.publish(topic, payload)
    assert data[0] == 0x30
    assert data[1 : 1 + len(length_bytes)] == length_bytes
    assert len(data) == 1 + len(length_bytes) + remaining
    (packet,) = decode_all(data)
    assert packet == pk.Publish(topic, payload, 0, None, False, False)
    # the same packet split just inside its length field decodes to the same thing
    dec = pk.Decoder()
    assert dec.feed(data[:2]) == []
    assert dec.feed(data[2:]) == [packet]


# -- decoding acks ----------------------------------------------------------------------------


def test_decode_acks() -> None:
    data = (
        b"\x20\x02\x01\x00"  # CONNACK, session present, accepted
        + b"\x20\x02\x00\x05"  # CONNACK, not authorised
        + b"\x90\x04\x00\x09\x01\x80"  # SUBACK id 9: granted 1, refused
        + b"\x40\x02\x12\x34"  # PUBACK 0x1234
        + b"\xb0\x02\x00\x0a"  # UNSUBACK 10
        + b"\xd0\x00"  # PINGRESP
    )
    assert decode_all(data) == [
        pk.Ack(pk.CONNACK, session_present=True, return_codes=b"\x00"),
        pk.Ack(pk.CONNACK, session_present=False, return_codes=b"\x05"),
        pk.Ack(pk.SUBACK, packet_id=9, return_codes=b"\x01\x80"),
        pk.Ack(pk.PUBACK, packet_id=0x1234),
        pk.Ack(pk.UNSUBACK, packet_id=10),
        pk.Ack(pk.PINGRESP),
    ]


def test_decode_publish_flags_and_packet_ids() -> None:
    data = bytes([0x3B, 7, 0, 1]) + b"t" + b"\x00\x2a" + b"xy"  # dup, QoS 1, retain
    assert decode_all(data) == [pk.Publish("t", b"xy", 1, 42, True, True)]
    data = bytes([0x32, 5, 0, 1]) + b"t" + b"\xff\xff"  # QoS 1, empty payload, id 65535
    assert decode_all(data) == [pk.Publish("t", b"", 1, 65535, False, False)]


def test_qos1_packet_ids_round_trip() -> None:
    for pid in (1, 2, 255, 256, 32767, 65535):
        (packet,) = decode_all(pk.publish("x/y", b"p", qos=1, packet_id=pid))
        assert isinstance(packet, pk.Publish)
        assert packet.packet_id == pid
        assert packet.qos == 1
    (packet,) = decode_all(pk.publish("x/y", b"p", qos=0))
    assert isinstance(packet, pk.Publish)
    assert packet.packet_id is None


# -- malformed input --------------------------------------------------------------------------


def test_remaining_length_longer_than_four_bytes_is_refused() -> None:
    with pytest.raises(ProtocolError, match="remaining length"):
        decode_all(b"\x30\xff\xff\xff\xff\x01" + b"\x00" * 10)


def test_qos3_is_refused() -> None:
    with pytest.raises(ProtocolError, match="QoS 3"):
        decode_all(bytes([0x36, 5, 0, 1]) + b"t" + b"\x00\x01")


def test_non_utf8_topic_is_refused() -> None:
    with pytest.raises(ProtocolError, match="UTF-8"):
        decode_all(bytes([0x30, 6, 0, 2]) + b"\xff\xfe" + b"xy")


def test_publish_shorter_than_its_header_is_refused() -> None:
    # QoS 1, remaining length 3: topic "t" but no room for the packet id
    with pytest.raises(ProtocolError, match="shorter"):
        decode_all(bytes([0x32, 3, 0, 1]) + b"t" + b"\x30\x00")


def test_bad_connack_and_unexpected_packet_types_are_refused() -> None:
    with pytest.raises(ProtocolError, match="CONNACK"):
        decode_all(b"\x20\x01\x00")
    with pytest.raises(ProtocolError, match="unexpected packet type 1"):
        decode_all(pk.connect("c", clean_session=True, keepalive=0))
    with pytest.raises(ProtocolError, match="unexpected packet type 8"):
        decode_all(pk.subscribe(1, [("a", 1)]))


# -- incremental decoding ---------------------------------------------------------------------


def _stream() -> tuple[bytes, list[pk.Packet]]:
    big = bytes(range(256)) * 80  # 20480 bytes: a three-byte remaining length
    parts: list[tuple[bytes, pk.Packet]] = [
        (b"\x20\x02\x00\x00", pk.Ack(pk.CONNACK, return_codes=b"\x00")),
        (b"\x90\x03\x00\x01\x01", pk.Ack(pk.SUBACK, packet_id=1, return_codes=b"\x01")),
        (pk.publish("a/b", b"x"), pk.Publish("a/b", b"x", 0, None, False, False)),
        (pk.publish("a/c", big, 1, 300), pk.Publish("a/c", big, 1, 300, False, False)),
        (b"\xd0\x00", pk.Ack(pk.PINGRESP)),
        (pk.publish("ü/∑", b"", 1, 2, True), pk.Publish("ü/∑", b"", 1, 2, True, False)),
        (pk.puback(9), pk.Ack(pk.PUBACK, packet_id=9)),
        (pk.publish("a/" + "x" * 200, b"y" * 130), pk.Publish("a/" + "x" * 200, b"y" * 130,
                                                              0, None, False, False)),
    ]  # fmt: skip
    return b"".join(d for d, _ in parts), [p for _, p in parts]


def test_decoder_whole_stream() -> None:
    data, expected = _stream()
    assert decode_all(data) == expected


def test_decoder_byte_by_byte() -> None:
    data, expected = _stream()
    dec = pk.Decoder()
    got: list[pk.Packet] = []
    for i in range(len(data)):
        got += dec.feed(data[i : i + 1])
    assert got == expected
    assert dec.feed(b"") == []


@pytest.mark.parametrize("seed", range(20))
def test_decoder_random_chunks(seed: int) -> None:
    data, expected = _stream()
    rng = random.Random(seed)
    dec = pk.Decoder()
    got: list[pk.Packet] = []
    pos = 0
    while pos < len(data):
        step = rng.choice([1, 2, 3, 5, 64, 1000, 30000])
        got += dec.feed(data[pos : pos + step])
        pos += step
    assert got == expected


topics = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\0"),
    min_size=1,
    max_size=60,
)
publishes = st.tuples(
    topics,
    st.binary(max_size=400),
    st.sampled_from([0, 1]),
    st.integers(min_value=1, max_value=65535),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(publishes, min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_property_publish_round_trip_in_any_chunking(
    items: list[tuple[str, bytes, int, int, bool]], rng: random.Random
) -> None:
    data = b"".join(pk.publish(t, p, q, pid if q else None, r) for t, p, q, pid, r in items)
    expected = [pk.Publish(t, p, q, pid if q else None, r, False) for t, p, q, pid, r in items]
    assert decode_all(data) == expected
    dec = pk.Decoder()
    got: list[pk.Packet] = []
    pos = 0
    while pos < len(data):
        step = rng.randint(1, 50)
        got += dec.feed(data[pos : pos + step])
        pos += step
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=pk.MAX_PACKET))
def test_property_remaining_length_encoding(n: int) -> None:
    # the variable-length encoding: 7 bits a byte, continuation bit on all but the last
    encoded = pk._remaining_length(n)
    assert 1 <= len(encoded) <= 4
    value = 0
    for i, byte in enumerate(encoded):
        value |= (byte & 0x7F) << (7 * i)
        assert bool(byte & 0x80) == (i < len(encoded) - 1)
    assert value == n


def _expected_with_limit(
    items: list[tuple[str, bytes, int, int, bool]], limit: int
) -> list[pk.Packet]:
    out: list[pk.Packet] = []
    for t, p, q, pid, r in items:
        size = len(pk.publish(t, p, q, pid if q else None, r))
        remaining = size - 1 - len(pk._remaining_length(size))  # minus fixed header
        while len(pk._remaining_length(remaining)) + 1 + remaining != size:
            remaining -= 1
        if remaining > limit:
            out.append(pk.Oversize(t, q, pid if q else None, r, remaining))
        else:
            out.append(pk.Publish(t, p, q, pid if q else None, r, False))
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=20).filter(lambda s: "\0" not in s),
            st.binary(max_size=300),
            st.integers(0, 1),
            st.integers(1, 65535),
            st.booleans(),
        ),
        max_size=12,
    ),
    st.integers(min_value=8, max_value=200),
    st.randoms(use_true_random=False),
)
def test_property_oversize_publishes_are_skipped_in_any_chunking(
    items: list[tuple[str, bytes, int, int, bool]], limit: int, rng: random.Random
) -> None:
    """Above the limit a PUBLISH comes out as Oversize (header, size, no payload), the packets
    around it decode as usual, and nothing depends on how the bytes were split."""
    data = b"".join(pk.publish(t, p, q, pid if q else None, r) for t, p, q, pid, r in items)
    expected = _expected_with_limit(items, limit)
    dec = pk.Decoder(max_packet=limit)
    got: list[pk.Packet] = []
    pos = 0
    while pos < len(data):
        step = rng.randint(1, 40)
        got += dec.feed(data[pos : pos + step])
        pos += step
    assert got == expected


def test_oversize_payload_is_never_buffered() -> None:
    """100 MB streamed in 64 KiB chunks: the decoder's buffer stays small throughout."""
    dec = pk.Decoder(max_packet=1 << 20)
    size = 100 * 1024 * 1024
    header = pk.publish("big/topic", b"", qos=1, packet_id=7)[2:]  # topic + packet id
    first = bytes([0x32]) + pk._remaining_length(len(header) + size)
    assert dec.feed(first + header) == []
    chunk = bytes(65536)
    for _ in range(size // len(chunk) - 1):
        assert dec.feed(chunk) == []
        assert len(dec._buf) < 70_000
    (last,) = dec.feed(chunk)
    assert last == pk.Oversize("big/topic", 1, 7, False, len(header) + size)
    assert dec.feed(b"\xd0\x00") == [pk.Ack(pk.PINGRESP)]


def test_oversize_non_publish_is_a_protocol_error() -> None:
    dec = pk.Decoder(max_packet=16)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        dec.feed(bytes([0x90, 40]) + bytes(40))


# -- against a real broker --------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.items: list[pk.Publish] = []
        self.event = asyncio.Event()

    def __call__(self, batch: list[pk.Publish], oversize: list[pk.Oversize], t: float) -> None:
        self.items.extend(batch)
        self.event.set()

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[pk.Publish]:
        async def loop() -> None:
            while len(self.items) < n:
                self.event.clear()
                await self.event.wait()

        await asyncio.wait_for(loop(), timeout)
        return list(self.items)


@pytest.mark.integration
def test_real_broker_qos_and_redelivery_after_reconnect(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker", persistence=False) as broker:
        asyncio.run(_broker_scenario(broker.port))


async def _broker_scenario(port: int) -> None:
    sub_ep = Endpoint("127.0.0.1", port, "test-sub-persistent", clean_session=False, timeout=5)
    pub_ep = Endpoint("127.0.0.1", port, "test-pub", clean_session=True, timeout=5)

    # First contact: a fresh persistent session.
    inbox = Inbox()
    sub = await open_connection(sub_ep, SYSTEM_CLOCK, inbox)
    assert sub.session_present is False
    assert await sub.subscribe(["plant/#"], qos=1) == b"\x01"
    assert await sub.subscribe(["qos0/only"], qos=0) == b"\x00"
    pub = await open_connection(pub_ep, SYSTEM_CLOCK)

    await pub.publish("plant/a", b"one", qos=1)
    await pub.publish("plant/b", b"two", qos=1)
    await pub.publish("plant/c", b"zero", qos=0)
    await pub.publish("qos0/only", b"downgraded", qos=1)  # subscription QoS 0 caps it
    got = await inbox.wait_for(4)
    by_payload = {m.payload: m for m in got}
    assert set(by_payload) == {b"one", b"two", b"zero", b"downgraded"}
    assert by_payload[b"one"].topic == "plant/a"
    assert by_payload[b"one"].qos == 1
    assert by_payload[b"one"].packet_id is not None
    assert by_payload[b"one"].dup is False
    assert by_payload[b"zero"].qos == 0
    assert by_payload[b"zero"].packet_id is None
    assert by_payload[b"downgraded"].qos == 0

    # Not acknowledged: drop the TCP connection (a crash, no DISCONNECT).
    sub.abort()
    await pub.publish("plant/d", b"while-away", qos=1)  # queued by the broker for the session

    # Same client id, clean_session=False: the broker resends the unacked QoS 1 with DUP set.
    inbox2 = Inbox()
    sub2 = await open_connection(sub_ep, SYSTEM_CLOCK, inbox2)
    assert sub2.session_present is True
    got2 = await inbox2.wait_for(3)
    assert sorted(m.payload for m in got2) == [b"one", b"two", b"while-away"]
    redelivered = {m.payload: m for m in got2}
    assert redelivered[b"one"].dup is True
    assert redelivered[b"two"].dup is True
    assert all(m.qos == 1 for m in got2)
    # QoS 0 messages are never redelivered
    assert b"zero" not in redelivered
    assert b"downgraded" not in redelivered

    # Acknowledge everything, then go away cleanly and come back.
    ids = [m.packet_id for m in got2]
    assert all(i is not None for i in ids)
    assert sub2.ack([i for i in ids if i is not None]) is True
    await sub2.disconnect()
    assert sub2.ack([1]) is False  # the connection is gone

    inbox3 = Inbox()
    sub3 = await open_connection(sub_ep, SYSTEM_CLOCK, inbox3)
    assert sub3.session_present is True
    # the subscription survived in the session: a marker published now arrives, and it is
    # the only thing that arrives (the acked messages are not redelivered)
    await pub.publish("plant/marker", b"marker", qos=1)
    got3 = await inbox3.wait_for(1)
    await asyncio.sleep(0.3)
    assert [m.payload for m in inbox3.items] == [b"marker"]
    assert got3[0].dup is False
    marker_id = got3[0].packet_id
    assert marker_id is not None
    sub3.ack([marker_id])

    await sub3.disconnect()
    await pub.disconnect()
