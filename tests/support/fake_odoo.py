"""A test Odoo that speaks exactly the bridge <-> Odoo REST contract (``odoo-api.md``).

It is the only stand-in for Odoo allowed in the project's tests. It runs a real HTTP/1.1 server
(keep-alive, stdlib only) on ``127.0.0.1`` in a background thread and keeps everything in memory,
guarded by one lock, so tests can drive it from any thread.

Besides the contract it has a few knobs for fault injection (``fail_next``, ``set_delay``,
``drop_response_next``, ``reject_device``, ``set_batch_enabled``, ``set_token``) and read-outs for
assertions (``stored_events``, ``stored_uids``, ``requests``, ``sessions``, ``wait_for``).

State survives ``stop()``/``start()``: a restarted fake binds the same port again and still has its
events, like a real Odoo coming back after an outage.
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "EVENT_TYPES",
    "MAX_BATCH",
    "FakeOdoo",
    "RequestRecord",
    "normalise_badge_uid",
    "validate_event",
]

CONFIG_PATH = "/ows/iot/config"
EVENT_PATH = "/ows/iot/event"
EVENTS_PATH = "/ows/iot/events"
MAX_BATCH = 500
EVENT_TYPES = frozenset({"run_start", "run_stop", "power_measurement", "badge_scan"})
SESSION_EVENT_TYPES = frozenset({"run_start", "run_stop"})
MAX_BADGE_UID = 128
_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
_HEX_GROUPS = re.compile(r"^[0-9A-F]{2}([ :\-][0-9A-F]{2})+$")
_MAX_BODY = 64 * 1024 * 1024


@dataclass(frozen=True)
class RequestRecord:
    """One request the fake received.

    ``status`` is the status code sent; it is 0 when the response was dropped on purpose
    (``drop_response_next``), then ``dropped`` is True. ``event_uids`` lists the string
    ``event_uid`` values found in the body (one for the single form, all of them for a batch).
    ``t`` is ``time.monotonic()`` when the request line had been read.
    """

    method: str
    path: str
    status: int
    event_uids: list[str] = field(default_factory=list)
    t: float = 0.0
    dropped: bool = False


def _valid_ts(value: Any) -> bool:
    if not isinstance(value, str) or not _TS_RE.match(value):
        return False
    try:
        datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return False
    return True


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
    if not _valid_ts(payload.get("scanned_at")):
        return "badge_scan payload needs scanned_at, a UTC timestamp 'YYYY-MM-DDTHH:MM:SS.mmmZ'"
    reader = payload.get("reader")
    if reader is not None and not isinstance(reader, str):
        return "badge_scan reader must be a string or null"
    return None


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
    if event_type == "badge_scan":
        return _validate_badge_scan(payload)
    return None


def _error_body(status: int) -> dict[str, Any]:
    if status == 401:
        return {"error": "unauthorized"}
    if status == 404:
        return {"error": "not_found"}
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
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


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

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            return None
        if length < 0 or length > _MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        t = time.monotonic()
        try:
            body = self._read_body()
        except (ValueError, OSError):
            body = None
        path = urlsplit(self.path).path
        if body is None:
            self.close_connection = True
            answer = _Answer(400, {"error": "invalid_event", "detail": "unreadable request body"})
            uids: list[str] = []
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
        data = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
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


class FakeOdoo:
    """In-memory Odoo implementing ``odoo-api.md`` over real HTTP on 127.0.0.1."""

    def __init__(
        self,
        token: str = "test-token",
        devices: list[dict[str, Any]] | None = None,
        config_version: str = "1",
    ) -> None:
        self._lock = threading.Lock()
        self._token = token
        self._devices: list[dict[str, Any]] = copy.deepcopy(devices or [])
        self._config_version = config_version
        self._events: list[dict[str, Any]] = []
        self._uids: set[str] = set()
        self._sessions: dict[str, dict[str, Any]] = {}
        self._requests: list[RequestRecord] = []
        self._fail: list[tuple[int, float | None]] = []
        self._drop_next = 0
        self._delay = 0.0
        self._rejected: dict[str, int] = {}
        self._batch_enabled = True
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

    def fail_next(self, n: int, status: int, retry_after: float | None = None) -> None:
        """Answer the next ``n`` POSTs (single or batch) with ``status``, storing nothing."""
        with self._lock:
            self._fail.extend([(status, retry_after)] * n)

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
        """Events of ``device_id`` get ``status`` (400 invalid_event, 404 unknown_device, ...)."""
        with self._lock:
            self._rejected[device_id] = status

    def set_batch_enabled(self, enabled: bool) -> None:
        """``False``: ``POST /ows/iot/events`` answers 404, like an Odoo without the batch route."""
        with self._lock:
            self._batch_enabled = enabled

    # ------------------------------------------------------------------ read-outs
    def stored_events(self) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._events)

    def stored_uids(self) -> list[str]:
        with self._lock:
            return [e["event_uid"] for e in self._events]

    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def sessions(self) -> dict[str, dict[str, Any]]:
        """Sessions as the addon would build them from stored run_start/run_stop events."""
        with self._lock:
            return copy.deepcopy(self._sessions)

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

    def _dispatch(
        self, method: str, path: str, authorization: str | None, body: bytes
    ) -> tuple[_Answer, list[str]]:
        if path == CONFIG_PATH:
            if method not in ("GET", "HEAD"):
                return _Answer(405, {"error": "method_not_allowed"}), []
            if not self._authorized(authorization):
                return _Answer(401, {"error": "unauthorized"}), []
            with self._lock:
                config = {
                    "config_version": self._config_version,
                    "devices": [copy.deepcopy(d) for d in self._devices if d.get("active", True)],
                }
            return _Answer(200, config), []
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
                status, retry_after = self._fail.pop(0)
                headers = {} if retry_after is None else {"Retry-After": _fmt(retry_after)}
                return _Answer(status, _error_body(status), headers), uids
            drop = False
            if self._drop_next > 0:
                self._drop_next -= 1
                drop = True
        if not self._authorized(authorization):
            return _Answer(401, {"error": "unauthorized"}, drop=drop), uids
        answer = self._post_single(parsed) if path == EVENT_PATH else self._post_batch(parsed)
        answer.drop = drop
        return answer, uids

    def _authorized(self, authorization: str | None) -> bool:
        if not authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return False
        with self._lock:
            token = self._token
        return hmac.compare_digest(value.strip().encode(), token.encode())

    def _post_single(self, parsed: Any) -> _Answer:
        if isinstance(parsed, _BadJson):
            return _Answer(400, {"error": "invalid_event", "detail": parsed.detail})
        with self._lock:
            status, uid, detail = self._store(parsed)
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
        code = int(status)
        return _Answer(code, _error_body(code))

    def _post_batch(self, parsed: Any) -> _Answer:
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
                    if code is not None and code not in (400, 404):
                        return _Answer(code, _error_body(code))
            for event in events:
                status, uid, detail = self._store(event)
                results.append({"event_uid": uid, "status": status, "detail": detail})
        return _Answer(200, {"results": results})

    def _store(self, event: Any) -> tuple[str, Any, str | None]:
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
        if rejected == 404 or not any(d.get("device_id") == device_id for d in self._devices):
            return "unknown_device", uid, f"device {device_id!r} is not known to this bridge"
        if rejected is not None:
            return str(rejected), uid, None
        assert uid is not None  # validate_event checked it
        if uid in self._uids:
            return "duplicate", uid, None
        stored = copy.deepcopy(event)
        self._uids.add(uid)
        self._events.append(stored)
        self._apply_session(stored)
        return "created", uid, None

    def _apply_session(self, event: dict[str, Any]) -> None:
        event_type = event["event_type"]
        if event_type not in SESSION_EVENT_TYPES:
            return
        payload: dict[str, Any] = event["payload"]
        session_id: str = payload["session_id"]
        session = self._sessions.get(session_id)
        if session is None:
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
    """Parse a request body; returns the JSON (or ``_BadJson``) and the event uids in it."""
    try:
        parsed: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return _BadJson(f"body is not valid JSON: {exc}"), []
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
