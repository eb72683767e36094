"""The bridge's side of ``shared/spec/odoo-api.md``: config in, events out, answers classified.

Every answer of the contract's table maps to one of three things: the event is done (created,
duplicate), the event is dead (invalid_event, unknown_device: kept in the dead-letter table),
or the request must be tried again later (:class:`OdooUnavailable`, :class:`OdooAuthError`).
The token is sent, never logged, and never part of an error message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from iot_bridge.errors import OdooAuthError, OdooUnavailable

DONE = frozenset({"created", "duplicate"})
DEAD = frozenset({"invalid_event", "unknown_device"})
RETRYABLE_4XX = frozenset({408, 425, 429})
BATCH_STATUS_AS_HTTP = {
    "created": 201,
    "duplicate": 200,
    "invalid_event": 400,
    "unknown_device": 404,
}
BATCH_LIMIT = 500


@dataclass(frozen=True, slots=True)
class Result:
    event_uid: str
    status: str  # created | duplicate | invalid_event | unknown_device | rejected
    detail: str | None = None
    http_status: int | None = None

    @property
    def done(self) -> bool:
        return self.status in DONE


class OdooClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float = 10.0,
        on_latency: Callable[[float], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._on_latency = on_latency
        self._session: aiohttp.ClientSession | None = None
        self.batch_supported = True

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch_config(self) -> Any:
        status, doc, _ = await self._request("GET", "/ows/iot/config", None)
        if status != 200:
            raise OdooUnavailable(f"GET /ows/iot/config answered {status}")
        return doc

    async def post_event(self, uid: str, body: bytes) -> Result:
        status, doc, _ = await self._request("POST", "/ows/iot/event", body)
        if status in (200, 201) and isinstance(doc, dict) and doc.get("status") in DONE:
            return Result(uid, str(doc["status"]), None, status)
        return self._rejected(uid, status, doc)

    async def post_events(self, uids: Sequence[str], bodies: Sequence[bytes]) -> list[Result]:
        """The batch endpoint; falls back to single POSTs where it answers 404 (older addon)."""
        if self.batch_supported and len(bodies) > 1:
            data = b'{"events":[' + b",".join(bodies) + b"]}"
            status, doc, _ = await self._request("POST", "/ows/iot/events", data)
            if status == 200 and isinstance(doc, dict) and isinstance(doc.get("results"), list):
                return self._batch_results(uids, doc["results"])
            if status == 404 and not _is_error(doc, "unknown_device"):
                self.batch_supported = False
            else:
                raise OdooUnavailable(f"POST /ows/iot/events answered {status}: {_short(doc)}")
        results = []
        for uid, body in zip(uids, bodies, strict=True):
            result = await self.post_event(uid, body)
            results.append(result)
        return results

    def _batch_results(self, uids: Sequence[str], items: list[Any]) -> list[Result]:
        if len(items) != len(uids):
            raise OdooUnavailable(f"batch answer has {len(items)} results for {len(uids)} events")
        results = []
        for uid, item in zip(uids, items, strict=True):
            status = item.get("status") if isinstance(item, dict) else None
            if status not in DONE | DEAD:
                raise OdooUnavailable(f"batch result for {uid} has unknown status {status!r}")
            detail = item.get("detail")
            http = BATCH_STATUS_AS_HTTP.get(str(status), 200)  # as the single POST would answer
            results.append(Result(uid, str(status), None if detail is None else str(detail), http))
        return results

    @staticmethod
    def _rejected(uid: str, status: int, doc: Any) -> Result:
        if status == 400:
            return Result(uid, "invalid_event", _short(doc), status)
        if status == 404 and _is_error(doc, "unknown_device"):
            return Result(uid, "unknown_device", _short(doc), status)
        if 400 <= status < 500 and status not in RETRYABLE_4XX | {404}:
            return Result(uid, "rejected", _short(doc), status)
        raise OdooUnavailable(f"POST /ows/iot/event answered {status}: {_short(doc)}")

    async def _request(self, method: str, path: str, body: bytes | None) -> tuple[int, Any, float]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        start = time.monotonic()
        try:
            async with self._session.request(
                method, self.base_url + path, data=body, headers=self._headers
            ) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise OdooUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from None
        elapsed = time.monotonic() - start
        if self._on_latency is not None:
            self._on_latency(elapsed)
        try:
            doc = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            doc = raw[:200].decode(errors="replace")
        if status == 401:
            raise OdooAuthError(f"{method} {path}: token refused (401)")
        if status == 429 or status >= 500:
            raise OdooUnavailable(f"{method} {path} answered {status}", retry_after)
        return status, doc, elapsed


def _is_error(doc: Any, code: str) -> bool:
    return isinstance(doc, dict) and doc.get("error") == code


def _short(doc: Any) -> str:
    text = doc if isinstance(doc, str) else orjson.dumps(doc).decode()
    return text[:300]


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds or an HTTP date; nonsense is ignored."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
