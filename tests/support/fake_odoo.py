"""A test Odoo that speaks exactly the bridge <-> Odoo REST contract (``odoo-api.md``).

It is the only stand-in for Odoo allowed in the project's tests. It runs a real HTTP/1.1 server
(keep-alive, stdlib only) on ``127.0.0.1`` in a background thread and keeps everything in memory,
guarded by one lock, so tests can drive it from any thread.

Besides the contract it has a few knobs for fault injection (``fail_next``, ``set_delay``,
``drop_response_next``, ``reject_device``, ``break_on``, ``set_batch_enabled``, ``set_body_limit``,
``set_token``, ``fail_status_next``, ``set_status_enabled``) and read-outs for assertions
(``stored_events``, ``stored_uids``, ``requests``, ``sessions``, ``last_status``,
``live_devices``, ``discovered``, ``wait_for``). ``other_bridges`` adds bridges with their own
tokens and devices, so the contract's ownership rules (``409 conflict``) can be exercised;
``clock`` (Unix seconds) stamps requests and is the fake's "now" where the contract compares a
bridge's time with Odoo's (the ordering of statuses), so tests can run it on simulated time.

State survives ``stop()``/``start()``: a restarted fake binds the same port again and still has its
events, like a real Odoo coming back after an outage.
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeGuard
from urllib.parse import urlsplit

__all__ = [
    "EVENT_TYPES",
    "MAX_BATCH",
    "MAX_BODY_BYTES",
    "MAX_PAYLOAD_BYTES",
    "STATUS_STATES",
    "FakeOdoo",
    "RequestRecord",
    "normalise_badge_uid",
    "validate_event",
    "validate_status",
]

CONFIG_PATH = "/ows/iot/config"
EVENT_PATH = "/ows/iot/event"
EVENTS_PATH = "/ows/iot/events"
STATUS_PATH = "/ows/iot/status"
MAX_BATCH = 500
MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_DEPTH = 32
MAX_ABS_NUMBER = 1e15
EVENT_TYPES = frozenset({"run_start", "run_stop", "power_measurement", "badge_scan"})
MAX_BADGE_UID = 128
_HEX_GROUPS = re.compile(r"^[0-9A-F]{2}([ :\-][0-9A-F]{2})+$")
SESSION_EVENT_TYPES = frozenset({"run_start", "run_stop"})
SESSION_NUMBERS = (
    "power_w", "duration_s", "working_s", "standby_s", "energy_wh", "max_power_w", "avg_power_w",
)  # fmt: skip
_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
MAIN = "main"
_DRAIN_LIMIT = 64 * 1024 * 1024

# POST /ows/iot/status (odoo-api.md, "live state")
STATUS_STATES = ("idle", "starting", "working", "standby", "stopping")
MAX_STATUS_DEVICES = 2000
MAX_STATUS_DISCOVERED = 500
MAX_STATUS_MESSAGES = 100
MAX_STATUS_MESSAGE_LEN = 500
MAX_DISCOVERED_STR = 255
MAX_DETAILS_JSON = 4096
MAX_QUEUE_DEPTH = 2**31 - 1
# A stored sent_at further ahead of the server's clock than this does not order statuses.
STATUS_MAX_AHEAD = timedelta(minutes=5)


@dataclass(frozen=True)
class RequestRecord:
    """One request the fake received.

    ``status`` is the status code sent; it is 0 when the response was dropped on purpose
    (``drop_response_next``), then ``dropped`` is True. ``event_uids`` lists the string
    ``event_uid`` values found in the body (one for the single form, all of them for a batch).
    ``t`` is the fake's ``clock()`` (``time.time`` unless given) when the request line had been
    read.
    """

    method: str
    path: str
    status: int
    event_uids: list[str] = field(default_factory=list)
    t: float = 0.0
    dropped: bool = False


def validate_event(event: Any) -> str | None:
    """Return ``None`` for a valid Unified Event Schema v1 event, else a reason."""
    if not isinstance(event, dict):
        return "event must be a JSON object"
    if event.get("schema_version") != "v1":
        return "schema_version must be 'v1'"
    uid = event.get("event_uid")
    if not isinstance(uid, str) or not uid.strip():
        return "event_uid must be a non-empty string"
    ts = event.get("ts")
    if not isinstance(ts, str) or not _TS_RE.match(ts):
        return "ts must be a UTC timestamp 'YYYY-MM-DDTHH:MM:SS.mmmZ'"
    try:
        datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return "ts is not a valid date and time"
    device_id = event.get("device_id")
    if not isinstance(device_id, str) or not device_id.strip():
        return "device_id must be a non-empty string"
    event_type = event.get("event_type")
    if event_type not in EVENT_TYPES:
        return "event_type must be one of " + ", ".join(sorted(EVENT_TYPES))
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return "payload must be a JSON object"
    if event_type in SESSION_EVENT_TYPES:
        session_id = payload.get("session_id")
        if not isinstance(session_id, str) or not session_id.strip():
            return f"{event_type} payload needs a non-empty string session_id"
    reason = _check_values(event)
    if reason is not None:
        return reason
    if len(json.dumps(payload, separators=(",", ":"))) > MAX_PAYLOAD_BYTES:
        return f"payload is larger than {MAX_PAYLOAD_BYTES} bytes"
    if event_type in SESSION_EVENT_TYPES:
        return _check_session_fields(payload)
    if event_type == "badge_scan":
        return _validate_badge_scan(payload)
    return None


def normalise_badge_uid(value: Any) -> str | None:
    """A badge UID as Odoo keys it (``odoo-api.md``, "badge_scan"): trimmed, upper-case, hex
    byte pairs without separators; ``None`` unless a non-empty string."""
    if not isinstance(value, str):
        return None
    text = value.strip().upper()
    if _HEX_GROUPS.match(text):
        text = re.sub(r"[ :\-]", "", text)
    return text or None


def _validate_badge_scan(payload: dict[str, Any]) -> str | None:
    uid = normalise_badge_uid(payload.get("badge_uid"))
    if uid is None:
        return "badge_scan payload needs a non-empty string badge_uid"
    if len(uid) > MAX_BADGE_UID:
        return f"badge_uid must be at most {MAX_BADGE_UID} characters"
    if _parse_ts(payload.get("scanned_at")) is None:
        return "badge_scan payload needs scanned_at, a UTC timestamp 'YYYY-MM-DDTHH:MM:SS.mmmZ'"
    reader = payload.get("reader")
    if reader is not None and not isinstance(reader, str):
        return "badge_scan reader must be a string or null"
    return None


def _check_values(event: dict[str, Any]) -> str | None:
    """No NUL in any string, every number finite and within +-1e15, nesting bounded."""
    stack: list[tuple[Any, int]] = [(event, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return "strings must not contain NUL characters"
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int | float):
            if not (abs(value) <= MAX_ABS_NUMBER):  # NaN fails too
                return f"numbers must be finite and within +-{MAX_ABS_NUMBER:g}"
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                return f"values must not be nested deeper than {MAX_DEPTH} levels"
            if isinstance(value, dict):
                stack.extend((k, depth + 1) for k in value)
                stack.extend((v, depth + 1) for v in value.values())
            else:
                stack.extend((v, depth + 1) for v in value)
    return None


def _check_session_fields(payload: dict[str, Any]) -> str | None:
    for key in SESSION_NUMBERS:
        value = payload.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"payload.{key} must be a number or null"
    return None


def _parse_ts(value: Any) -> datetime | None:
    """A contract timestamp ``YYYY-MM-DDTHH:MM:SS.mmmZ`` as an aware UTC datetime, else None."""
    if not isinstance(value, str) or not _TS_RE.match(value):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _is_number(value: Any) -> TypeGuard[int | float]:
    """A JSON number a float can hold (not a boolean, not NaN/Infinity, not 10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _is_text(value: Any, limit: int | None = None) -> bool:
    return isinstance(value, str) and bool(value.strip()) and (limit is None or len(value) <= limit)


_TS_RULE = "must be a UTC timestamp 'YYYY-MM-DDTHH:MM:SS.mmmZ'"


def _missing(obj: dict[str, Any], keys: tuple[str, ...], where: str) -> str | None:
    """Every key of the contract's table is required, the nullable ones too (as null)."""
    for key in keys:
        if key not in obj:
            return f"{where}.{key} is missing"
    return None


_BRIDGE_NULLABLE = ("queue_depth", "oldest_queued_age_s", "config_version")
_DEVICE_NULLABLE = ("online", "last_seen", "power_w", "session_id", "session_started_at")
_DISCOVERED_NULLABLE = ("device_id", "model", "parser_type")


def _validate_status_bridge(bridge: Any) -> str | None:
    if not isinstance(bridge, dict):
        return "bridge must be a JSON object"
    reason = _missing(bridge, _BRIDGE_NULLABLE, "bridge")
    if reason is not None:
        return reason
    if not _is_text(bridge.get("version")):
        return "bridge.version must be a non-empty string"
    if _parse_ts(bridge.get("started_at")) is None:
        return f"bridge.started_at {_TS_RULE}"
    uptime = bridge.get("uptime_s")
    if not _is_number(uptime) or uptime < 0:
        return "bridge.uptime_s must be a number >= 0"
    if not isinstance(bridge.get("mqtt_connected"), bool):
        return "bridge.mqtt_connected must be true or false"
    depth = bridge.get("queue_depth")
    if depth is not None and (
        not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= MAX_QUEUE_DEPTH
    ):
        return f"bridge.queue_depth must be an integer from 0 to {MAX_QUEUE_DEPTH} or null"
    age = bridge.get("oldest_queued_age_s")
    if age is not None and (not _is_number(age) or age < 0):
        return "bridge.oldest_queued_age_s must be a number >= 0 or null"
    for key in ("problems", "warnings"):
        items = bridge.get(key)
        if not isinstance(items, list) or len(items) > MAX_STATUS_MESSAGES:
            return f"bridge.{key} must be a list of at most {MAX_STATUS_MESSAGES} strings"
        for i, item in enumerate(items):
            if not isinstance(item, str) or len(item) > MAX_STATUS_MESSAGE_LEN:
                return (
                    f"bridge.{key}[{i}] must be a string of at most "
                    f"{MAX_STATUS_MESSAGE_LEN} characters"
                )
    version = bridge.get("config_version")
    if version is not None and not isinstance(version, str):
        return "bridge.config_version must be a string or null"
    return None


def _validate_status_device(device: Any, where: str) -> str | None:
    if not isinstance(device, dict):
        return f"{where} must be a JSON object"
    if not _is_text(device.get("device_id")):
        return f"{where}.device_id must be a non-empty string"
    if device.get("state") not in STATUS_STATES:
        return f"{where}.state must be one of " + ", ".join(STATUS_STATES)
    reason = _missing(device, _DEVICE_NULLABLE, where)
    if reason is not None:
        return reason
    online = device.get("online")
    if online is not None and not isinstance(online, bool):
        return f"{where}.online must be true, false or null"
    for key in ("last_seen", "session_started_at"):
        value = device.get(key)
        if value is not None and _parse_ts(value) is None:
            return f"{where}.{key} {_TS_RULE} or null"
    power = device.get("power_w")
    if power is not None and not _is_number(power):
        return f"{where}.power_w must be a number or null"
    session_id = device.get("session_id")
    if session_id is not None and not _is_text(session_id):
        return f"{where}.session_id must be a non-empty string or null"
    return None


_LIMIT = f"{MAX_DISCOVERED_STR} characters"


def _validate_status_discovered(entry: Any, where: str) -> str | None:
    if not isinstance(entry, dict):
        return f"{where} must be a JSON object"
    topic = entry.get("topic")
    if (
        not isinstance(topic, str)
        or not _is_text(topic, MAX_DISCOVERED_STR)
        or "+" in topic
        or "#" in topic
    ):
        return f"{where}.topic must be a non-empty string of at most {_LIMIT} without wildcards"
    reason = _missing(entry, _DISCOVERED_NULLABLE, where)
    if reason is not None:
        return reason
    for key in ("device_id", "model", "parser_type"):
        value = entry.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_DISCOVERED_STR):
            return f"{where}.{key} must be a string of at most {_LIMIT} or null"
    if not _is_text(entry.get("source"), MAX_DISCOVERED_STR):
        return f"{where}.source must be a non-empty string of at most {_LIMIT}"
    for key in ("first_seen", "last_seen"):
        if _parse_ts(entry.get(key)) is None:
            return f"{where}.{key} {_TS_RULE}"
    details = entry.get("details")
    if not isinstance(details, dict):
        return f"{where}.details must be a JSON object"
    if len(json.dumps(details, separators=(",", ":"), ensure_ascii=False)) > MAX_DETAILS_JSON:
        return f"{where}.details must be at most {MAX_DETAILS_JSON} characters as JSON"
    return None


def _has_nul(value: Any) -> bool:
    """Whether a NUL character hides in any string (keys too): PostgreSQL stores none."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def validate_status(status: Any) -> str | None:
    """Return ``None`` for a valid ``POST /ows/iot/status`` body, else the reason, naming the
    first offending key."""
    if not isinstance(status, dict):
        return "status must be a JSON object"
    if _has_nul(status):
        return "status must not contain NUL characters (\\u0000)"
    if _parse_ts(status.get("sent_at")) is None:
        return f"sent_at {_TS_RULE}"
    reason = _validate_status_bridge(status.get("bridge"))
    if reason is not None:
        return reason
    devices = (status.get("devices"), "devices", MAX_STATUS_DEVICES, "device_id")
    discovered = (status.get("discovered"), "discovered", MAX_STATUS_DISCOVERED, "topic")
    return _validate_status_list(*devices, _validate_status_device) or _validate_status_list(
        *discovered, _validate_status_discovered
    )


def _validate_status_list(
    items: Any, name: str, limit: int, key: str, validate: Callable[[Any, str], str | None]
) -> str | None:
    """A list of at most ``limit`` entries, each valid, ``key`` unique among them."""
    if not isinstance(items, list) or len(items) > limit:
        return f"{name} must be a list of at most {limit} entries"
    seen: set[Any] = set()
    for i, item in enumerate(items):
        reason = validate(item, f"{name}[{i}]")
        if reason is not None:
            return reason
        if item[key] in seen:
            return f"{name}[{i}].{key} {item[key]!r} is listed twice"
        seen.add(item[key])
    return None


def _error_body(status: int) -> dict[str, Any]:
    if status == 401:
        return {"error": "unauthorized"}
    if status == 404:
        return {"error": "not_found"}
    if status == 413:
        return {"error": "payload_too_large"}
    if status == 429:
        return {"error": "too_many_requests"}
    if status >= 500:
        return {"error": "server_error"}
    return {"error": "error"}


def _bump(version: str) -> str:
    return str(int(version) + 1) if version.isdigit() else f"{version}.1"


@dataclass
class _Answer:
    status: int
    body: dict[str, Any] | str  # a str is sent as an HTML page (a proxy's, not the contract's)
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


def _html_page(status: int) -> str:
    return f"<html><head><title>{status}</title></head><body><h1>{status}</h1></body></html>"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], fake: FakeOdoo) -> None:
        self.fake = fake
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(addr, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOdoo/1"
    sys_version = ""
    disable_nagle_algorithm = True
    wbufsize = 64 * 1024  # headers and body leave in one write (flushed after each request)
    timeout = 60  # an idle keep-alive connection is closed after this many seconds
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.sockets_lock:
                self.server.open_sockets.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """No per-request logging: the fake must be fast and quiet."""

    def _read_body(self, limit: int) -> bytes | _TooLarge | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return _TooLarge(total) if total > limit else b"".join(chunks)
                total += size
                data = self.rfile.read(size)
                if total <= limit:
                    chunks.append(data)
                self.rfile.readline(1024)
                if total > _DRAIN_LIMIT:
                    return _TooLarge(total)
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            return None
        if length < 0:
            return None
        if length > limit:
            # read what was sent (up to a bound) so the client sees the answer, not a reset
            left, seen = min(length, _DRAIN_LIMIT), bytearray()
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                seen += chunk
                left -= len(chunk)
            return _TooLarge(length, _parse(bytes(seen))[1])
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        fake = self.server.fake
        t = fake._clock()
        try:
            body = self._read_body(fake._body_limit())
        except (ValueError, OSError):
            body = None
        path = urlsplit(self.path).path
        uids: list[str] = []
        if isinstance(body, _TooLarge):
            self.close_connection = body.length > _DRAIN_LIMIT  # the rest was not read
            uids = body.uids
            answer = fake._too_large(body.length, self.headers.get("Authorization"))
        elif body is None:
            self.close_connection = True
            error = "invalid_status" if path == STATUS_PATH else "invalid_event"
            answer = _Answer(400, {"error": error, "detail": "unreadable request body"})
        else:
            answer, uids = self.server.fake._dispatch(
                self.command, path, self.headers.get("Authorization"), body
            )
        status = 0 if answer.drop else answer.status
        self.server.fake._record(RequestRecord(self.command, path, status, uids, t, answer.drop))
        if answer.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if isinstance(answer.body, str):
            data, content_type = answer.body.encode(), "text/html; charset=utf-8"
        else:
            data, content_type = json.dumps(answer.body).encode(), "application/json; charset=utf-8"
        self.send_response(answer.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = _handle
    do_POST = _handle
    do_PUT = _handle
    do_PATCH = _handle
    do_DELETE = _handle
    do_HEAD = _handle


class _TooLarge:
    def __init__(self, length: int, uids: list[str] | None = None) -> None:
        self.length = length
        self.uids = uids or []


class FakeOdoo:
    """In-memory Odoo implementing ``odoo-api.md`` over real HTTP on 127.0.0.1."""

    def __init__(
        self,
        token: str = "test-token",
        devices: list[dict[str, Any]] | None = None,
        config_version: str = "1",
        *,
        other_bridges: dict[str, list[dict[str, Any]]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``other_bridges``: token -> devices of further bridges (they see only their own)."""
        self._lock = threading.Lock()
        self._clock = clock
        self._token = token
        self._devices: list[dict[str, Any]] = copy.deepcopy(devices or [])
        self._others = {t: copy.deepcopy(d) for t, d in (other_bridges or {}).items()}
        self._config_version = config_version
        self._events: list[dict[str, Any]] = []
        self._owners: dict[str, tuple[str, str]] = {}  # event_uid -> (bridge, device_id)
        self._sessions: dict[str, dict[str, Any]] = {}
        self._session_owners: dict[str, tuple[str, str]] = {}
        self._requests: list[RequestRecord] = []
        self._fail: list[tuple[int, float | None, bool]] = []
        self._drop_next = 0
        self._delay = 0.0
        self._rejected: dict[str, int] = {}
        self._breaking: set[str] = set()
        self._batch_enabled = True
        self._max_body = MAX_BODY_BYTES
        self._status_enabled = True
        self._status_fail: list[int] = []
        self._status_sent_at: datetime | None = None
        self._last_status: dict[str, Any] | None = None
        self._live: dict[str, dict[str, Any]] = {}
        self._discovered: dict[str, dict[str, Any]] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self.url = ""

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeOdoo:
        """Serve on 127.0.0.1 (a free port, or the same port again after ``stop()``)."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", self._port), self)
        self._port = server.server_address[1]
        self.url = f"http://127.0.0.1:{self._port}"
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"fake-odoo-{self._port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every open (keep-alive) connection. State is kept."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = None
        self._thread = None
        server.shutdown()
        server.server_close()
        with server.sockets_lock:
            sockets = list(server.open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> FakeOdoo:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ configuration knobs
    @property
    def token(self) -> str:
        with self._lock:
            return self._token

    @property
    def config_version(self) -> str:
        with self._lock:
            return self._config_version

    def set_devices(self, devices: list[dict[str, Any]], config_version: str | None = None) -> None:
        """Replace the bridge's devices. A device with ``"active": False`` is archived, as in
        Odoo: no longer served in the config, still known for events (its last run_stop).
        ``config_version=None`` bumps the version."""
        with self._lock:
            self._devices = copy.deepcopy(devices)
            self._config_version = (
                _bump(self._config_version) if config_version is None else config_version
            )

    def set_token(self, token: str) -> None:
        """Rotate the token: the old one is answered 401 from now on."""
        with self._lock:
            self._token = token

    def fail_next(
        self, n: int, status: int, retry_after: float | None = None, *, html: bool = False
    ) -> None:
        """Answer the next ``n`` POSTs (single or batch) with ``status``, storing nothing.
        ``html=True`` sends an HTML page instead of JSON, as a proxy or a WAF in front of Odoo
        would (``{"error": ...}`` is only ever the contract's answer)."""
        with self._lock:
            self._fail.extend([(status, retry_after, html)] * n)

    def clear_failures(self) -> None:
        """Forget the failures still queued by ``fail_next`` (Odoo is back)."""
        with self._lock:
            self._fail.clear()

    def set_delay(self, seconds: float) -> None:
        """Sleep ``seconds`` before handling every POST (0 = off)."""
        with self._lock:
            self._delay = max(0.0, seconds)

    def drop_response_next(self, n: int) -> None:
        """Next ``n`` POSTs: store the event(s), then close the connection without answering."""
        with self._lock:
            self._drop_next += n

    def reject_device(self, device_id: str, status: int = 400) -> None:
        """Events of ``device_id`` get ``status`` (400 invalid_event, 404 unknown_device,
        409 conflict, or any other status for the whole request)."""
        with self._lock:
            self._rejected[device_id] = status

    def break_on(self, event_uid: str) -> None:
        """Every POST that carries ``event_uid`` fails with ``500`` and stores nothing, as an
        Odoo with a bug would that this one event triggers."""
        with self._lock:
            self._breaking.add(event_uid)

    def set_body_limit(self, max_bytes: int) -> None:
        """Answer ``413`` to request bodies over ``max_bytes`` (default ``MAX_BODY_BYTES``)."""
        with self._lock:
            self._max_body = max_bytes

    def set_batch_enabled(self, enabled: bool) -> None:
        """``False``: ``POST /ows/iot/events`` answers 404, like an Odoo without the batch route."""
        with self._lock:
            self._batch_enabled = enabled

    def fail_status_next(self, n: int, status: int) -> None:
        """Answer the next ``n`` status POSTs with ``status``, storing nothing. (``fail_next``
        does not touch statuses: heartbeats would eat the failures meant for events.)"""
        with self._lock:
            self._status_fail.extend([status] * n)

    def set_status_enabled(self, enabled: bool) -> None:
        """``False``: ``POST /ows/iot/status`` answers 404, like an Odoo without the route."""
        with self._lock:
            self._status_enabled = enabled

    # ------------------------------------------------------------------ read-outs
    def stored_events(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._events)

    def stored_uids(self) -> list[str]:
        with self._lock:
            return [e["event_uid"] for e in self._events]

    def request_times(self, method: str = "POST") -> list[float]:
        """When each request with ``method`` arrived (on the ``clock`` given), with its status."""
        with self._lock:
            return [r.t for r in self._requests if r.method == method]

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def sessions(self) -> dict[str, dict[str, Any]]:
        """Sessions as the addon would build them from stored run_start/run_stop events."""
        with self._lock:
            return copy.deepcopy(self._sessions)

    def last_status(self) -> dict[str, Any] | None:
        """The body of the last status that was applied (``ok``), or None."""
        with self._lock:
            return copy.deepcopy(self._last_status)

    def live_devices(self) -> dict[str, dict[str, Any]]:
        """The live state per known device, as the latest applied status gave it."""
        with self._lock:
            return copy.deepcopy(self._live)

    def discovered(self) -> dict[str, dict[str, Any]]:
        """Discovered plugs by topic (not configured devices), merged over all statuses:
        ``first_seen`` is the earliest reported, everything else the latest."""
        with self._lock:
            return copy.deepcopy(self._discovered)

    def wait_for(self, predicate: Callable[[FakeOdoo], bool], timeout: float = 10.0) -> bool:
        """Poll ``predicate(self)`` until it is true (returns True) or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    # ------------------------------------------------------------------ request handling
    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._requests.append(record)

    def _body_limit(self) -> int:
        with self._lock:
            return self._max_body

    def _too_large(self, length: int, authorization: str | None) -> _Answer:
        if self._bridge_of(authorization) is None:
            return _Answer(401, {"error": "unauthorized"})
        limit = self._body_limit()
        detail = f"request body of {length} bytes is over the limit of {limit} bytes"
        return _Answer(413, {"error": "payload_too_large", "detail": detail, "max_bytes": limit})

    def _dispatch(
        self, method: str, path: str, authorization: str | None, body: bytes
    ) -> tuple[_Answer, list[str]]:
        if path == CONFIG_PATH:
            if method not in ("GET", "HEAD"):
                return _Answer(405, {"error": "method_not_allowed"}), []
            bridge = self._bridge_of(authorization)
            if bridge is None:
                return _Answer(401, {"error": "unauthorized"}), []
            with self._lock:
                config = {
                    "config_version": self._config_version,
                    "devices": [
                        copy.deepcopy(d) for d in self._devices_of(bridge) if d.get("active", True)
                    ],
                }
            return _Answer(200, config), []
        if path == STATUS_PATH:
            return self._dispatch_status(method, authorization, body), []
        if path not in (EVENT_PATH, EVENTS_PATH):
            return _Answer(404, {"error": "not_found"}), []
        if method != "POST":
            return _Answer(405, {"error": "method_not_allowed"}), []
        with self._lock:
            if path == EVENTS_PATH and not self._batch_enabled:
                return _Answer(404, {"error": "not_found"}), []
            delay = self._delay
        parsed, uids = _parse(body)
        if delay:
            time.sleep(delay)
        with self._lock:
            if self._fail:
                status, retry_after, html = self._fail.pop(0)
                headers = {} if retry_after is None else {"Retry-After": _fmt(retry_after)}
                page = _html_page(status) if html else _error_body(status)
                return _Answer(status, page, headers), uids
            if self._breaking.intersection(uids):
                return _Answer(500, {"error": "server_error"}), uids
            drop = False
            if self._drop_next > 0:
                self._drop_next -= 1
                drop = True
        bridge = self._bridge_of(authorization)
        if bridge is None:
            return _Answer(401, {"error": "unauthorized"}, drop=drop), uids
        if path == EVENT_PATH:
            answer = self._post_single(bridge, parsed)
        else:
            answer = self._post_batch(bridge, parsed)
        answer.drop = drop
        return answer, uids

    def _dispatch_status(self, method: str, authorization: str | None, body: bytes) -> _Answer:
        with self._lock:
            enabled = self._status_enabled
        if not enabled:
            return _Answer(404, {"error": "not_found"})
        if method != "POST":
            return _Answer(405, {"error": "method_not_allowed"})
        with self._lock:
            if self._status_fail:
                code = self._status_fail.pop(0)
                return _Answer(code, _error_body(code))
        bridge = self._bridge_of(authorization)
        if bridge is None:
            return _Answer(401, {"error": "unauthorized"})
        parsed, _uids = _parse(body)
        if isinstance(parsed, _BadJson):
            return _Answer(400, {"error": "invalid_status", "detail": parsed.detail})
        reason = validate_status(parsed)
        if reason is not None:
            return _Answer(400, {"error": "invalid_status", "detail": reason})
        with self._lock:
            return self._apply_status(parsed, bridge)

    def _apply_status(self, status: dict[str, Any], bridge: str) -> _Answer:
        """Latest wins: a status older than the stored one changes nothing. Caller holds the
        lock; ``status`` is valid. The live state kept is the main bridge's: another bridge's
        status is answered, and all its devices are unknown here."""
        if bridge != MAIN:
            ids = [d["device_id"] for d in status["devices"]]
            body = {"status": "ok", "config_version": self._config_version, "unknown_devices": ids}
            return _Answer(200, body)
        sent_at = _parse_ts(status["sent_at"])
        assert sent_at is not None  # validate_status checked it
        stored = self._status_sent_at
        now = datetime.fromtimestamp(self._clock(), UTC)
        if stored is not None and sent_at < stored <= now + STATUS_MAX_AHEAD:
            return _Answer(200, {"status": "stale", "config_version": self._config_version})
        self._status_sent_at = sent_at
        self._last_status = copy.deepcopy(status)
        active = {d["device_id"] for d in self._devices if d.get("active", True)}
        configured_ids = {d.get("device_id") for d in self._devices}
        configured_topics = {d.get("mqtt_topic") for d in self._devices}
        unknown: list[str] = []
        for device in status["devices"]:
            if device["device_id"] in active:
                self._live[device["device_id"]] = copy.deepcopy(device)
            else:
                unknown.append(device["device_id"])
        for entry in status["discovered"]:
            if entry["topic"] in configured_topics or (
                entry.get("device_id") is not None and entry["device_id"] in configured_ids
            ):
                continue  # a configured device: not a discovery
            merged = copy.deepcopy(entry)
            before = self._discovered.get(entry["topic"])
            if before is not None:
                merged["first_seen"] = min(before["first_seen"], entry["first_seen"])
            self._discovered[entry["topic"]] = merged
        return _Answer(
            200,
            {"status": "ok", "config_version": self._config_version, "unknown_devices": unknown},
        )

    def _bridge_of(self, authorization: str | None) -> str | None:
        """The bridge a bearer token belongs to (``MAIN`` or another bridge's token), or None."""
        if not authorization:
            return None
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        given = value.strip().encode()
        with self._lock:
            tokens = [(self._token, MAIN)] + [(t, t) for t in self._others]
        for token, bridge in tokens:
            if hmac.compare_digest(given, token.encode()):
                return bridge
        return None

    def _devices_of(self, bridge: str) -> list[dict[str, Any]]:
        """Caller holds the lock."""
        return self._devices if bridge == MAIN else self._others[bridge]

    def _post_single(self, bridge: str, parsed: Any) -> _Answer:
        if isinstance(parsed, _BadJson):
            return _Answer(400, {"error": "invalid_event", "detail": parsed.detail})
        with self._lock:
            status, uid, detail = self._store(bridge, parsed)
        if status == "created":
            return _Answer(201, {"status": "created", "event_uid": uid})
        if status == "duplicate":
            return _Answer(200, {"status": "duplicate", "event_uid": uid})
        if status == "invalid_event":
            return _Answer(400, {"error": "invalid_event", "detail": detail})
        if status == "unknown_device":
            return _Answer(
                404,
                {"error": "unknown_device", "device_id": parsed.get("device_id"), "detail": detail},
            )
        if status == "conflict":
            return _Answer(409, {"error": "conflict", "event_uid": uid, "detail": detail})
        code = int(status)
        return _Answer(code, _error_body(code))

    def _post_batch(self, bridge: str, parsed: Any) -> _Answer:
        if isinstance(parsed, _BadJson):
            return _Answer(400, {"error": "invalid_event", "detail": parsed.detail})
        if not isinstance(parsed, dict) or not isinstance(parsed.get("events"), list):
            return _Answer(
                400, {"error": "invalid_event", "detail": 'body must be {"events": [...]}'}
            )
        events: list[Any] = parsed["events"]
        if len(events) > MAX_BATCH:
            return _Answer(
                400,
                {
                    "error": "invalid_event",
                    "detail": f"at most {MAX_BATCH} events per batch, got {len(events)}",
                },
            )
        results: list[dict[str, Any]] = []
        with self._lock:
            # A device rejected with a non-4xx-item status fails the whole request.
            for event in events:
                if isinstance(event, dict) and validate_event(event) is None:
                    code = self._rejected.get(event["device_id"])
                    if code is not None and code not in (400, 404, 409):
                        return _Answer(code, _error_body(code))
            for event in events:
                status, uid, detail = self._store(bridge, event)
                results.append({"event_uid": uid, "status": status, "detail": detail})
        return _Answer(200, {"results": results})

    def _store(self, bridge: str, event: Any) -> tuple[str, Any, str | None]:
        """Validate and store one event; caller holds the lock. Returns (status, uid, detail)."""
        uid = event.get("event_uid") if isinstance(event, dict) else None
        if not isinstance(uid, str):
            uid = None
        reason = validate_event(event)
        if reason is not None:
            return "invalid_event", uid, reason
        device_id: str = event["device_id"]
        rejected = self._rejected.get(device_id)
        if rejected == 400:
            return "invalid_event", uid, f"events of device {device_id!r} are rejected"
        known = any(d.get("device_id") == device_id for d in self._devices_of(bridge))
        if rejected == 404 or not known:
            return "unknown_device", uid, f"device {device_id!r} is not known to this bridge"
        if rejected == 409:
            return "conflict", uid, "event_uid is already stored for another device or bridge"
        if rejected is not None:
            return str(rejected), uid, None
        assert uid is not None  # validate_event checked it
        owner = (bridge, device_id)
        if uid in self._owners:
            if self._owners[uid] != owner:
                return "conflict", uid, "event_uid is already stored for another device or bridge"
            return "duplicate", uid, None
        if event["event_type"] in SESSION_EVENT_TYPES:
            session_owner = self._session_owners.get(event["payload"]["session_id"])
            if session_owner is not None and session_owner != owner:
                return "conflict", uid, "session_id belongs to another device or bridge"
        stored = copy.deepcopy(event)
        self._owners[uid] = owner
        self._events.append(stored)
        self._apply_session(owner, stored)
        return "created", uid, None

    def _apply_session(self, owner: tuple[str, str], event: dict[str, Any]) -> None:
        event_type = event["event_type"]
        if event_type not in SESSION_EVENT_TYPES:
            return
        payload: dict[str, Any] = event["payload"]
        session_id: str = payload["session_id"]
        session = self._sessions.get(session_id)
        if session is None:
            self._session_owners[session_id] = owner
            session = {
                "session_id": session_id,
                "device_id": event["device_id"],
                "state": "running",
                "started_at": None,
                "stopped_at": None,
                "duration_s": None,
                "working_s": None,
                "standby_s": None,
                "energy_wh": None,
                "stop_reason": None,
                "start_event_uid": None,
                "stop_event_uid": None,
            }
            self._sessions[session_id] = session
        if event_type == "run_start":
            session["start_event_uid"] = event["event_uid"]
            if session["started_at"] is None:
                session["started_at"] = payload.get("started_at") or event["ts"]
        else:
            session["state"] = "done"
            session["stop_event_uid"] = event["event_uid"]
            if session["started_at"] is None:
                session["started_at"] = payload.get("started_at")
            session["stopped_at"] = payload.get("stopped_at") or event["ts"]
            for key in ("duration_s", "working_s", "standby_s", "energy_wh"):
                session[key] = payload.get(key)
            session["stop_reason"] = payload.get("reason")


class _BadJson:
    def __init__(self, detail: str) -> None:
        self.detail = detail


def _parse(body: bytes) -> tuple[Any, list[str]]:
    """Parse a request body; returns the JSON (or ``_BadJson``) and the event uids in it.

    Numbers are kept as Python parses them (big integers exact, ``1e999`` as infinity), so
    that validation sees what a real server would."""
    try:
        parsed: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return _BadJson(f"body is not valid JSON: {type(exc).__name__}"), []
    uids: list[str] = []
    if isinstance(parsed, dict):
        items = parsed.get("events") if "events" in parsed else [parsed]
        if isinstance(items, list):
            for item in items:
                if isinstance(item, dict) and isinstance(item.get("event_uid"), str):
                    uids.append(item["event_uid"])
    return parsed, uids


def _fmt(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
