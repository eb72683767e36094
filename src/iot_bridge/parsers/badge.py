"""Badge readers next to a machine: one message, one scan (or none). Pure.

A device entry may pair its machine with a reader (``badge_reader`` in ``docs/odoo-api.md``):

``tasmota``
    A Tasmota ``SENSOR`` (or ``RESULT``) object whose reader key holds the card:
    ``{"PN532": {"UID": "94D8FC5F"}}``, ``{"RDM6300": {"UID": ...}}``, ``{"RC522": {"UID": ...}}``
    (the key names the reader). Other keys next to it (``Data``, ``Auth``, ``Type``) are not part
    of the UID. A message without a reader key (the teleperiod ``SENSOR`` of a reader that saw no
    card) is not a scan, but its ``Time`` still teaches the bridge the reader's clock.
``generic``
    Any JSON message; the UID at ``uid_path`` (dotted, numeric segments index lists, as for the
    generic power parser). A bare JSON string payload is the UID itself.

UIDs are normalised as Odoo normalises them: trimmed and upper-case; hex byte pairs lose their
separators (``04:a2:3b:1c`` -> ``04A23B1C``); anything else stays as read. An empty UID, or one
longer than 128 characters, is a :class:`ParseError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from iot_bridge.errors import ParseError
from iot_bridge.parsers._common import loads, too_big
from iot_bridge.parsers.base import MAX_PAYLOAD_BYTES, DeviceTime

ReaderFormat = Literal["tasmota", "generic"]
READER_FORMATS: tuple[ReaderFormat, ...] = ("tasmota", "generic")
TASMOTA_READERS = ("PN532", "RDM6300", "RC522")
UID_MAX = 128
_HEX_PAIRS = re.compile(r"[0-9A-F]{2}([:\- ][0-9A-F]{2})+")
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class ReaderConfig:
    mqtt_topic: str
    format: ReaderFormat
    uid_path: str | None = None  # generic only


class Scan(NamedTuple):
    badge_uid: str | None  # None: the reader spoke (its clock) but saw no card
    reader: str | None  # the model as the payload names it, None for generic readers
    device_ts: DeviceTime | None  # the reader's own time of the message, as sent


def normalise_uid(raw: str) -> str:
    uid = raw.strip().upper()
    if _HEX_PAIRS.fullmatch(uid):
        uid = re.sub(r"[:\- ]", "", uid)
    if not uid:
        raise ParseError("the badge UID is empty")
    if len(uid) > UID_MAX:
        raise ParseError(f"the badge UID is {len(uid)} characters long, at most {UID_MAX}")
    return uid


def parse_scan(payload: bytes, reader: ReaderConfig) -> Scan:
    """The scan a reader's message makes (``badge_uid=None``: none, a sign of life only)."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise too_big(payload)
    doc = loads(payload)
    if reader.format == "tasmota":
        return _tasmota(doc)
    return _generic(doc, reader.uid_path)


def _tasmota(doc: Any) -> Scan:
    if type(doc) is not dict:
        raise ParseError(
            f"a Tasmota reader message must be a JSON object, got {type(doc).__name__}"
        )
    time = doc.get("Time")
    device_ts = time if type(time) is str else None
    for key in TASMOTA_READERS:
        card = doc.get(key, _MISSING)
        if card is _MISSING:
            continue
        if type(card) is not dict:
            raise ParseError(f"{key} must be a JSON object, got {type(card).__name__}")
        uid = card.get("UID")
        if uid is None:
            return Scan(None, key, device_ts)  # an answer to a command (`COMMAND`), no card
        if type(uid) is not str:
            raise ParseError(f"{key}.UID must be a string, got {type(uid).__name__}")
        return Scan(normalise_uid(uid), key, device_ts)
    return Scan(None, None, device_ts)


def _generic(doc: Any, uid_path: str | None) -> Scan:
    if type(doc) is str:
        return Scan(normalise_uid(doc), None, None)
    if not uid_path:
        raise ParseError("a generic reader needs uid_path for a JSON object or array")
    value: Any = doc
    for segment in uid_path.split("."):
        if type(value) is dict:
            value = value.get(segment, _MISSING)
        elif type(value) is list and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            value = _MISSING
        if value is _MISSING:
            return Scan(None, None, None)  # not a scan: the path is not in this message
    if type(value) is int:
        value = str(value)
    if type(value) is not str:
        raise ParseError(
            f"the value at uid_path {uid_path!r} must be a string, got {type(value).__name__}"
        )
    return Scan(normalise_uid(value), None, None)
