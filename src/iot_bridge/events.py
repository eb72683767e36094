"""Unified Event Schema v1: the one event shape the bridge sends to Odoo.

``event_uid`` is derived, never random: the same session and event type always give the same uid,
also after a restart, so Odoo can store each event exactly once however often it is retried.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from iot_bridge.errors import EventError

SCHEMA_VERSION: Final = "v1"
EVENT_TYPES: Final = frozenset({"run_start", "run_stop", "power_measurement", "badge_scan"})

# A fixed namespace for uuid5; changing it would change every uid and break idempotency.
UID_NAMESPACE: Final = uuid.UUID("6f1c2a3e-5b7d-4c8e-9f0a-1b2c3d4e5f60")

_TS_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\Z")


def format_ts(t: float) -> str:
    """Unix seconds -> ``2026-01-31T10:30:15.123Z`` (UTC, milliseconds, ``Z``)."""
    ms = round(t * 1000)
    base = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ms % 1000:03d}Z"


def parse_ts(text: str) -> float:
    """The inverse of :func:`format_ts`; anything else is an :class:`EventError`."""
    if not isinstance(text, str) or not _TS_RE.match(text):
        raise EventError(f"ts must look like 2026-01-31T10:30:15.123Z, got {text!r}")
    dt = datetime.strptime(text[:-1], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    return dt.timestamp()


def session_uid(device_id: str, started_at: float) -> str:
    """Session ids are fixed at session start and reproducible from (device, start time)."""
    return str(uuid.uuid5(UID_NAMESPACE, f"session|{device_id}|{round(started_at * 1000)}"))


def event_uid(device_id: str, event_type: str, key: str) -> str:
    """Deterministic idempotency key: ``key`` is the session id (or a reading's identity)."""
    return str(uuid.uuid5(UID_NAMESPACE, f"{event_type}|{device_id}|{key}"))


@dataclass(frozen=True, slots=True)
class Event:
    event_uid: str
    ts: float
    device_id: str
    event_type: str
    payload: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "event_uid": self.event_uid,
            "ts": format_ts(self.ts),
            "device_id": self.device_id,
            "event_type": self.event_type,
            "payload": dict(self.payload),
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, doc: object) -> Event:
        """Validate a v1 document (used for the outbox, dead-letter replay and tests)."""
        if not isinstance(doc, Mapping):
            raise EventError("event must be a JSON object")
        if doc.get("schema_version") != SCHEMA_VERSION:
            raise EventError(f"schema_version must be {SCHEMA_VERSION!r}")
        uid, device_id, event_type = (doc.get(k) for k in ("event_uid", "device_id", "event_type"))
        if not isinstance(uid, str) or not uid:
            raise EventError("event_uid must be a non-empty string")
        if not isinstance(device_id, str) or not device_id:
            raise EventError("device_id must be a non-empty string")
        if event_type not in EVENT_TYPES:
            raise EventError(f"event_type must be one of {sorted(EVENT_TYPES)}")
        payload = doc.get("payload")
        if not isinstance(payload, Mapping):
            raise EventError("payload must be an object")
        if event_type in ("run_start", "run_stop") and not isinstance(
            payload.get("session_id"), str
        ):
            raise EventError(f"{event_type} payload needs a session_id string")
        return cls(uid, parse_ts(str(doc.get("ts"))), device_id, str(event_type), dict(payload))

    @classmethod
    def from_json(cls, data: bytes | str) -> Event:
        try:
            return cls.from_dict(orjson.loads(data))
        except orjson.JSONDecodeError as exc:
            raise EventError(f"invalid JSON: {exc}") from None
