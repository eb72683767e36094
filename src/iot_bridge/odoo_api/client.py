"""The bridge's side of ``docs/odoo-api.md``: config in, events out, answers read by their meaning.

An answer is only what the contract says it is when its JSON body says so: ``400
{"error": "invalid_event"}``, ``404 {"error": "unknown_device"}`` and ``409 {"error":
"conflict"}`` are an event's permanent refusal (kept as a dead letter); ``201``/``200`` with
``created``/``duplicate`` are done. Everything else (a proxy's ``413`` or ``502`` page, a WAF's
HTML ``403``, a ``404`` from a load balancer, a 5xx, a timeout) says nothing about the event and
is raised as :class:`OdooUnavailable`, to be retried. ``401`` is :class:`OdooAuthError`.

Error messages carry the status code and a short reason (the contract's error code, or the
content type of an answer that is not the contract's), never the body of the answer: they end
up in the log and in ``/health``. The token is sent, never logged, never in a message.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from iot_bridge.clock import SYSTEM_CLOCK, Clock
from iot_bridge.errors import OdooAuthError, OdooTooLarge, OdooUnavailable

CONFIG_PATH = "/ows/iot/config"
EVENT_PATH = "/ows/iot/event"
EVENTS_PATH = "/ows/iot/events"
STATUS_PATH = "/ows/iot/status"
MAX_UNKNOWN_DEVICES = 2000  # as many as a status may list devices
MAX_BATCH = 500
"""The contract's limit of events per ``POST /ows/iot/events``: the bridge's batch size."""

DONE = frozenset({"created", "duplicate"})
PERMANENT = {400: "invalid_event", 404: "unknown_device", 409: "conflict"}
"""HTTP status -> the contract's error code that makes that status an event's refusal."""
DEAD = frozenset(PERMANENT.values())
BATCH_STATUS_AS_HTTP = {"created": 201, "duplicate": 200} | {v: k for k, v in PERMANENT.items()}
DETAIL_CHARS = 300
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class Result:
    event_uid: str
    status: str  # created | duplicate | invalid_event | unknown_device | conflict
    detail: str | None = None
    http_status: int | None = None

    @property
    def done(self) -> bool:
        return self.status in DONE


@dataclass(frozen=True, slots=True)
class StatusAnswer:
    """Odoo's answer to a status: ``ok`` / ``stale`` (taken), ``invalid`` (400
    ``invalid_status``, ``detail`` says why) or ``missing`` (404: an addon without the route)."""

    kind: str
    config_version: str | None = None
    unknown_devices: tuple[str, ...] = ()
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    doc: Any  # the parsed JSON, or None when the body was not JSON
    content_type: str


class OdooClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float = 10.0,
        on_latency: Callable[[float], None] | None = None,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._on_latency = on_latency
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self.batch_supported = True

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch_config(self) -> Any:
        answer = await self._request("GET", CONFIG_PATH, None)
        if answer.status != 200 or not isinstance(answer.doc, dict):
            raise _unexpected("GET", CONFIG_PATH, answer)
        return answer.doc

    async def post_event(self, uid: str, body: bytes) -> Result:
        answer = await self._request("POST", EVENT_PATH, body)
        doc = answer.doc
        if answer.status in (200, 201) and isinstance(doc, dict) and doc.get("status") in DONE:
            return Result(uid, str(doc["status"]), None, answer.status)
        code = PERMANENT.get(answer.status)
        if code is not None and _is_error(doc, code):
            return Result(uid, code, _detail(doc), answer.status)
        raise _unexpected("POST", EVENT_PATH, answer)

    async def post_events(self, uids: Sequence[str], bodies: Sequence[bytes]) -> list[Result]:
        """The batch endpoint; falls back to single POSTs where it answers 404 (older addon).

        A batch either answers for every event or fails as a whole (raised)."""
        if self.batch_supported and len(bodies) > 1:
            data = b'{"events":[' + b",".join(bodies) + b"]}"
            answer = await self._request("POST", EVENTS_PATH, data)
            items = answer.doc.get("results") if isinstance(answer.doc, dict) else None
            if answer.status == 200 and isinstance(items, list):
                return self._batch_results(uids, items)
            if answer.status == 404 and not _is_error(answer.doc, "unknown_device"):
                self.batch_supported = False
            else:
                raise _unexpected("POST", EVENTS_PATH, answer)
        results = []
        for uid, body in zip(uids, bodies, strict=True):
            result = await self.post_event(uid, body)
            results.append(result)
        return results

    async def post_status(self, body: bytes) -> StatusAnswer:
        """``POST /ows/iot/status``. 401 raises :class:`OdooAuthError`; 413, 429, 5xx, a body
        that is not the contract's and transport errors raise :class:`OdooUnavailable`."""
        answer = await self._request("POST", STATUS_PATH, body)
        doc = answer.doc
        if answer.status == 200 and isinstance(doc, dict) and doc.get("status") in ("ok", "stale"):
            version = doc.get("config_version")
            unknown = doc.get("unknown_devices")
            ids = unknown[:MAX_UNKNOWN_DEVICES] if isinstance(unknown, list) else []
            return StatusAnswer(
                str(doc["status"]),
                None if version is None else _CONTROL.sub(" ", str(version))[:DETAIL_CHARS],
                tuple(_CONTROL.sub(" ", str(i))[:DETAIL_CHARS] for i in ids),
            )
        if answer.status == 400 and _is_error(doc, "invalid_status"):
            return StatusAnswer("invalid", detail=_detail(doc))
        if answer.status == 404:
            return StatusAnswer("missing")
        raise _unexpected("POST", STATUS_PATH, answer)

    def _batch_results(self, uids: Sequence[str], items: list[Any]) -> list[Result]:
        if len(items) != len(uids):
            raise OdooUnavailable(
                f"POST {EVENTS_PATH}: {len(items)} results for {len(uids)} events", status=200
            )
        results = []
        for uid, item in zip(uids, items, strict=True):
            status = item.get("status") if isinstance(item, dict) else None
            if status not in DONE | DEAD:
                raise OdooUnavailable(
                    f"POST {EVENTS_PATH}: a result with unknown status {_code(status)}", status=200
                )
            http = BATCH_STATUS_AS_HTTP[str(status)]  # as the single POST would answer
            results.append(Result(uid, str(status), _detail(item), http))
        return results

    async def _request(self, method: str, path: str, body: bytes | None) -> Answer:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        start = time.monotonic()
        try:
            async with self._session.request(
                method, self.base_url + path, data=body, headers=self._headers
            ) as resp:
                raw = await resp.read()
                status = resp.status
                content_type = resp.content_type
                retry_after = _retry_after(resp.headers.get("Retry-After"), self._clock.now())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            reason = _CONTROL.sub(" ", f"{type(exc).__name__}: {exc}".rstrip(": "))[:120]
            raise OdooUnavailable(f"{method} {path}: {reason}") from None
        if self._on_latency is not None:
            self._on_latency(time.monotonic() - start)
        doc: Any = None
        if raw and (content_type == "application/json" or content_type.endswith("+json")):
            try:
                doc = orjson.loads(raw)
            except orjson.JSONDecodeError:
                doc = None
        answer = Answer(status, doc, content_type)
        if status == 401:
            raise OdooAuthError(f"{method} {path}: token refused (401)")
        if status == 413:
            raise OdooTooLarge(f"{method} {path} answered 413 ({_reason(answer)})", status=413)
        if status == 429 or status >= 500:
            raise _unexpected(method, path, answer, retry_after)
        return answer


def _unexpected(
    method: str, path: str, answer: Answer, retry_after: float | None = None
) -> OdooUnavailable:
    return OdooUnavailable(
        f"{method} {path} answered {answer.status} ({_reason(answer)})",
        retry_after,
        status=answer.status,
    )


def _reason(answer: Answer) -> str:
    """The contract's error code if the body has one, else what kind of body it was."""
    doc = answer.doc
    if isinstance(doc, dict) and isinstance(doc.get("error"), str) and _CODE.match(doc["error"]):
        return str(doc["error"])
    kind = _CONTROL.sub(" ", answer.content_type[:60]) or "no content type"
    return f"not the contract's answer: {kind}"


def _code(value: Any) -> str:
    return repr(value) if isinstance(value, str) and _CODE.match(value) else "(not a status)"


def _is_error(doc: Any, code: str) -> bool:
    return isinstance(doc, dict) and doc.get("error") == code


def _detail(doc: Any) -> str | None:
    """The contract's ``detail`` (why Odoo refused an event), one short line; kept with the dead
    letter for the operator, never shown in ``/health``."""
    detail = doc.get("detail") if isinstance(doc, dict) else None
    if detail is None:
        return None
    text = detail if isinstance(detail, str) else orjson.dumps(detail).decode()
    return _CONTROL.sub(" ", text)[:DETAIL_CHARS]


def _retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds or an HTTP date; nonsense is ignored."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if not math.isnan(seconds) else None
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None
