"""MQTT 3.1.1 packets: the subset a subscribing bridge (and its simulator) needs. Pure bytes.

Why our own codec instead of a client library: the bridge acknowledges a QoS 1 message only once
its effects are committed to disk, and it commits in groups; owning the dozen packets we use
lets one commit release a whole group of PUBACKs with one socket write and keeps the hot path
to a memoryview slice and a dict lookup (the README compares the libraries that can do this
too, with figures).

The decoder never holds more than ``max_packet`` bytes of one packet: a PUBLISH larger than that
is read up to its packet id and then skipped as it streams in, and comes out as
:class:`Oversize` so that the caller can count it and acknowledge it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

from iot_bridge.errors import ProtocolError

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT = 12, 13, 14

MAX_PACKET = 268_435_455  # the largest remaining length MQTT can express
DEFAULT_MAX_PACKET = 1 << 20  # what the bridge accepts by default (MQTT_MAX_PACKET)

CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class Publish(NamedTuple):  # a tuple: built once per message, so it must be cheap
    topic: str
    payload: bytes
    qos: int
    packet_id: int | None
    retain: bool
    dup: bool


class Oversize(NamedTuple):
    """A PUBLISH larger than the decoder's limit: its header, its size, and no payload."""

    topic: str
    qos: int
    packet_id: int | None
    retain: bool
    size: int  # the packet's remaining length in bytes


@dataclass(frozen=True, slots=True)
class Ack:
    """CONNACK, SUBACK, UNSUBACK, PUBACK, PINGRESP: ``kind`` plus what it carries."""

    kind: int
    packet_id: int | None = None
    session_present: bool = False
    return_codes: bytes = b""


Packet = Publish | Ack | Oversize


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    raw = s.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _remaining_length(len(body)) + body


def connect(
    client_id: str,
    *,
    clean_session: bool,
    keepalive: int,
    username: str | None = None,
    password: str | None = None,
    will: tuple[str, bytes, int, bool] | None = None,
) -> bytes:
    flags = 0x02 if clean_session else 0
    payload = _str(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _str(topic) + struct.pack("!H", len(message)) + message
    if username is not None:
        flags |= 0x80
        payload += _str(username)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    header = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    return _packet(CONNECT << 4, header + payload)


def subscribe(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(_str(f) + bytes([q]) for f, q in filters)
    return _packet(SUBSCRIBE << 4 | 0x02, body)


def unsubscribe(packet_id: int, filters: list[str]) -> bytes:
    body = struct.pack("!H", packet_id) + b"".join(_str(f) for f in filters)
    return _packet(UNSUBSCRIBE << 4 | 0x02, body)


def publish(
    topic: str, payload: bytes, qos: int = 0, packet_id: int | None = None, retain: bool = False
) -> bytes:
    first = PUBLISH << 4 | qos << 1 | (1 if retain else 0)
    body = _str(topic)
    if qos:
        if packet_id is None:
            raise ValueError("QoS 1 needs a packet id")
        body += struct.pack("!H", packet_id)
    return _packet(first, body + payload)


_PUBACK_HEAD = bytes([PUBACK << 4, 2])


def puback(packet_id: int) -> bytes:
    return _PUBACK_HEAD + packet_id.to_bytes(2, "big")


PINGREQ_PACKET = bytes([PINGREQ << 4, 0])
DISCONNECT_PACKET = bytes([DISCONNECT << 4, 0])


class Decoder:
    """Incremental decoder: feed bytes as they arrive, get whole packets back.

    ``max_packet`` bounds what is buffered: a longer PUBLISH is decoded up to its packet id and
    its payload is skipped as it arrives (:class:`Oversize`); any other packet that long is a
    protocol error (brokers send us only small acknowledgements besides PUBLISH)."""

    __slots__ = ("_buf", "_max", "_pending", "_skip")

    def __init__(self, max_packet: int = MAX_PACKET) -> None:
        self._buf = bytearray()
        self._max = max_packet
        self._skip = 0  # payload bytes of an oversize PUBLISH still to be discarded
        self._pending: Oversize | None = None

    def feed(self, data: bytes) -> list[Packet]:
        out: list[Packet] = []
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            if self._skip:
                return out
            assert self._pending is not None
            out.append(self._pending)
            self._pending = None
            data = data[n:]
        buf = self._buf
        buf += data
        pos, end = 0, len(buf)
        view = memoryview(buf)
        try:
            while end - pos >= 2:
                first = buf[pos]
                length, shift, i = 0, 0, pos + 1
                while True:  # remaining length: up to four bytes, 7 bits each
                    if i >= end:
                        return out
                    byte = buf[i]
                    length |= (byte & 0x7F) << shift
                    i += 1
                    if not byte & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise ProtocolError("malformed remaining length")
                kind = first >> 4
                if length > self._max:
                    skipped = self._start_skip(first, view, start=i, end=end, length=length)
                    if skipped is None:
                        break  # the variable header is not all here yet
                    header_end, oversize = skipped
                    available = end - header_end
                    todo = i + length - header_end
                    if available >= todo:
                        out.append(oversize)
                        pos = header_end + todo
                        continue
                    self._skip = todo - available
                    self._pending = oversize
                    pos = end
                    break
                if i + length > end:
                    break
                if kind == PUBLISH:
                    out.append(_decode_publish(first, view, i, i + length))
                else:
                    out.append(_decode_ack(kind, bytes(view[i : i + length])))
                pos = i + length
        finally:
            view.release()
            del buf[:pos]
        return out

    @staticmethod
    def _start_skip(
        first: int, view: memoryview, *, start: int, end: int, length: int
    ) -> tuple[int, Oversize] | None:
        """Decode an oversize PUBLISH's topic and packet id; ``None`` until they are all here."""
        kind = first >> 4
        if kind != PUBLISH:
            raise ProtocolError(f"packet type {kind} of {length} bytes exceeds the limit")
        if end - start < 2:
            return None
        topic_len = int.from_bytes(view[start : start + 2], "big")
        qos = (first >> 1) & 0x03
        header_end = start + 2 + topic_len + (2 if qos else 0)
        if header_end > end:
            return None
        if header_end > start + length:
            raise ProtocolError("PUBLISH shorter than its header")
        try:
            topic = str(view[start + 2 : start + 2 + topic_len], "utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("PUBLISH topic is not UTF-8") from None
        if qos == 3:
            raise ProtocolError("PUBLISH with QoS 3")
        packet_id = int.from_bytes(view[header_end - 2 : header_end], "big") if qos else None
        return header_end, Oversize(topic, qos, packet_id, bool(first & 1), length)


def _decode_publish(first: int, view: memoryview, start: int, end: int) -> Publish:
    qos = (first >> 1) & 0x03
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    topic_len = int.from_bytes(view[start : start + 2], "big")
    pos = start + 2 + topic_len
    try:
        topic = str(view[start + 2 : pos], "utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("PUBLISH topic is not UTF-8") from None
    packet_id = None
    if qos:
        packet_id = int.from_bytes(view[pos : pos + 2], "big")
        pos += 2
    if pos > end:
        raise ProtocolError("PUBLISH shorter than its header")
    return Publish(topic, bytes(view[pos:end]), qos, packet_id, bool(first & 1), bool(first & 8))


def _decode_ack(kind: int, body: bytes) -> Ack:
    if kind == CONNACK:
        if len(body) != 2:
            raise ProtocolError("CONNACK must be 2 bytes")
        return Ack(kind, session_present=bool(body[0] & 1), return_codes=body[1:2])
    if kind in (PUBACK, UNSUBACK):
        return Ack(kind, packet_id=int.from_bytes(body[:2], "big"))
    if kind == SUBACK:
        return Ack(kind, packet_id=int.from_bytes(body[:2], "big"), return_codes=body[2:])
    if kind == PINGRESP:
        return Ack(kind)
    raise ProtocolError(f"unexpected packet type {kind} from the broker")
