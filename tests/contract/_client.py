"""A tiny stdlib HTTP client for the contract suite (no bridge code on purpose)."""

from __future__ import annotations

import http.client
import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

_UNSET: Any = object()


@dataclass(frozen=True)
class Target:
    """The server under test and what the suite needs to know about it."""

    url: str
    token: str
    device_id: str
    foreign_device_id: str
    is_fake: bool
    foreign_token: str = ""  # the token of the bridge that owns foreign_device_id


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.raw.decode("utf-8"))

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


class Api:
    """Speaks to the server as the bridge would, one connection per request."""

    def __init__(self, target: Target, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        parts = urlsplit(target.url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._https = parts.scheme == "https"
        self._prefix = parts.path.rstrip("/")

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        token: str | None = _UNSET,
        authorization: str | None = _UNSET,
    ) -> Response:
        """Send a request. ``token=None`` sends no Authorization header;
        ``authorization`` overrides the whole header value."""
        headers = {"Accept": "application/json"}
        if authorization is not _UNSET:
            if authorization is not None:
                headers["Authorization"] = authorization
        else:
            tok = self.target.token if token is _UNSET else token
            if tok is not None:
                headers["Authorization"] = f"Bearer {tok}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        try:
            conn.request(method, self._prefix + path, body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw)
        finally:
            conn.close()

    def get_config(self, **kw: Any) -> Response:
        return self.request("GET", "/ows/iot/config", **kw)

    def post_event(self, event: Any, **kw: Any) -> Response:
        body = event if isinstance(event, bytes) else json.dumps(event).encode()
        return self.request("POST", "/ows/iot/event", body=body, **kw)

    def post_status(self, status: Any, **kw: Any) -> Response:
        body = status if isinstance(status, bytes) else json.dumps(status).encode()
        return self.request("POST", "/ows/iot/status", body=body, **kw)

    def post_events(self, events: Any, **kw: Any) -> Response:
        if isinstance(events, bytes):
            body = events
        elif isinstance(events, list):
            body = json.dumps({"events": events}).encode()
        else:
            body = json.dumps(events).encode()
        return self.request("POST", "/ows/iot/events", body=body, **kw)


def now_ts(offset_s: float = 0.0) -> str:
    """The current UTC time (plus ``offset_s``) as the contract wants it:
    ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    return _fmt_ts(datetime.now(UTC) + timedelta(seconds=offset_s))


def new_uid() -> str:
    return str(uuid.uuid4())


def new_badge_uid() -> str:
    """A fresh 7-byte UID as a PN532 reads it (upper-case hex): unknown to any server."""
    return uuid.uuid4().hex[:14].upper()


def make_event(
    device_id: str,
    event_type: str = "power_measurement",
    payload: dict[str, Any] | None = None,
    event_uid: str | None = None,
    ts: str | None = None,
) -> dict[str, Any]:
    """A valid Unified Event Schema v1 event with a fresh uid."""
    if payload is None:
        if event_type in ("run_start", "run_stop"):
            payload = {"session_id": new_uid(), "power_w": 120.5, "reason": "power_threshold"}
        elif event_type == "badge_scan":
            payload = {
                "badge_uid": new_badge_uid(),
                "scanned_at": ts or now_ts(),
                "reader": "PN532",
            }
        else:
            payload = {"apower": 120.5, "voltage": 234.7, "current": 0.289}
    return {
        "schema_version": "v1",
        "event_uid": event_uid or new_uid(),
        "ts": ts or now_ts(),
        "device_id": device_id,
        "event_type": event_type,
        "payload": payload,
    }


def run_start(device_id: str, session_id: str, started_at: str | None = None) -> dict[str, Any]:
    ts = started_at or now_ts()
    return make_event(
        device_id,
        "run_start",
        {
            "session_id": session_id,
            "power_w": 120.5,
            "reason": "power_threshold",
            "started_at": ts,
        },
        ts=ts,
    )


def run_stop(
    device_id: str,
    session_id: str,
    started_at: str = "2026-01-31T10:30:18.500Z",
    stopped_at: str = "2026-01-31T10:33:25.800Z",
) -> dict[str, Any]:
    return make_event(
        device_id,
        "run_stop",
        {
            "session_id": session_id,
            "power_w": 8.2,
            "reason": "normal",
            "started_at": started_at,
            "stopped_at": stopped_at,
            "duration_s": 187.3,
            "working_s": 150.0,
            "standby_s": 37.3,
            "energy_wh": 6.25,
            "energy_source": "counter",
            "max_power_w": 130.0,
            "avg_power_w": 110.2,
        },
    )


def badge_scan(
    device_id: str, badge_uid: str, scanned_at: str | None = None, reader: str | None = "PN532"
) -> dict[str, Any]:
    """A ``badge_scan`` event; ``ts`` is the scan time, as the bridge sends it."""
    ts = scanned_at or now_ts()
    return make_event(
        device_id,
        "badge_scan",
        {"badge_uid": badge_uid, "scanned_at": ts, "reader": reader},
        ts=ts,
    )


def status_device(device_id: str, state: str = "working", **overrides: Any) -> dict[str, Any]:
    """One ``devices[]`` entry of a status: a plug in the given detector state."""
    running = state in ("working", "standby", "stopping")
    entry: dict[str, Any] = {
        "device_id": device_id,
        "state": state,
        "online": True,
        "last_seen": now_ts(-1.5),
        "power_w": 120.5 if state == "working" else 3.2,
        "session_id": new_uid() if running else None,
        "session_started_at": now_ts(-600) if running else None,
    }
    entry.update(overrides)
    return entry


def discovered_plug(topic: str, **overrides: Any) -> dict[str, Any]:
    """One ``discovered[]`` entry, shaped like a Shelly Gen1 announcement."""
    entry: dict[str, Any] = {
        "topic": topic,
        "device_id": "shellyplug-s-7c87ce65a1b2",
        "model": "SHPLG-S",
        "parser_type": "shelly_gen1",
        "source": "shelly_gen1_announce",
        "first_seen": now_ts(-3600),
        "last_seen": now_ts(-2),
        "details": {"ip": "192.168.8.93", "fw_ver": "20220809-123240/v1.12-g99f7e0b"},
    }
    entry.update(overrides)
    return entry


class _SentAt:
    """``sent_at`` values that only move forward, so that statuses of one test run are never
    stale because of each other (the server keeps the latest per bridge)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = datetime.now(UTC).replace(microsecond=0)

    def next(self, ahead_s: float = 0.0) -> str:
        with self._lock:
            moment = max(
                datetime.now(UTC) + timedelta(seconds=ahead_s),
                self._last + timedelta(milliseconds=1),
            )
            # whole milliseconds, as sent: before_last(0.001) is then exactly one ms earlier
            moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
            self._last = moment
        return _fmt_ts(moment)

    def before_last(self, seconds: float) -> str:
        with self._lock:
            return _fmt_ts(self._last - timedelta(seconds=seconds))


def _fmt_ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


SENT_AT = _SentAt()


def make_status(
    devices: list[dict[str, Any]] | None = None,
    discovered: list[dict[str, Any]] | None = None,
    sent_at: str | None = None,
) -> dict[str, Any]:
    """A valid ``POST /ows/iot/status`` body, sent after every status before it unless
    ``sent_at`` says otherwise."""
    return {
        "sent_at": sent_at or SENT_AT.next(),
        "bridge": {
            "version": "0.9.0",
            "started_at": now_ts(-9000),
            "uptime_s": 9000.0,
            "mqtt_connected": True,
            "queue_depth": 0,
            "oldest_queued_age_s": None,
            "problems": [],
            "warnings": [],
            "config_version": None,
        },
        "devices": devices or [],
        "discovered": discovered or [],
    }
