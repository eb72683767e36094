"""The delivery loop: outbox -> Odoo, oldest first, until Odoo has taken every event.

Rows are sent in batches (the batch endpoint drains a backlog; one request either answers for
every event or fails as a whole). What Odoo answers decides what happens (``client.py``):

- done (created, duplicate): the rows leave the outbox;
- refused by the contract (invalid_event, unknown_device, conflict): dead letters;
- ``413``: the batch was too large for Odoo or a proxy in front of it: the batch size is halved
  (down to single events) and the request sent again at once; the smaller size stays;
- anything else (5xx, 429, timeouts, HTML pages, a WAF's 403): the rows stay and the loop backs
  off (``iot_bridge.backoff``: 5 s first as in the original, then doubling with jitter up to a cap,
  never sooner than ``Retry-After``). A batch that keeps failing with 5xx is split to find the one
  event that breaks it (``splitter.py``); only that event becomes a dead letter.

Time is an input: every wait asks the :class:`~iot_bridge.clock.Clock`, so tests run minutes of
outage in simulated time.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from iot_bridge.backoff import backoff_delay
from iot_bridge.clock import SYSTEM_CLOCK, Clock
from iot_bridge.errors import OdooAuthError, OdooTooLarge, OdooUnavailable, StoreError
from iot_bridge.odoo_api.client import MAX_BATCH, OdooClient, Result
from iot_bridge.odoo_api.splitter import BatchSplitter, Verdict
from iot_bridge.outbox.store import Pending, Store
from iot_bridge.outbox.worker import DbWorker
from iot_bridge.runtime.metrics import Metrics

log = logging.getLogger("iot_bridge.delivery")

FIRST_RETRY_S = 5.0
MAX_RETRY_S = 300.0
POLL_S = 5.0
ERROR_CHARS = 200


@dataclass
class DeliveryStatus:
    """What ``/health`` learns about Odoo from the delivery (and from config fetches)."""

    odoo_reachable: bool | None = None  # None: not tried yet
    auth_failed: bool = False
    last_error: str | None = None  # a status code and a short reason, never a body
    failures: int = 0  # consecutive failed requests
    unreachable_since: float | None = None  # first failure since Odoo last answered
    batch_size: int = MAX_BATCH  # lowered by 413 answers
    splitting: bool = False  # a batch keeps failing: it is being split

    def answered(self) -> None:
        """Odoo answered a request the contract's way."""
        self.odoo_reachable = True
        self.auth_failed = False
        self.failures = 0
        self.last_error = None
        self.unreachable_since = None

    def failed(self, now: float, error: str, *, auth: bool = False) -> None:
        self.odoo_reachable = False
        self.auth_failed = auth
        self.failures += 1
        self.last_error = error[:ERROR_CHARS]
        if self.unreachable_since is None:
            self.unreachable_since = now


class Delivery:
    def __init__(
        self,
        client: OdooClient,
        store: Store,
        db: DbWorker,
        metrics: Metrics,
        *,
        clock: Clock = SYSTEM_CLOCK,
        first_retry: float = FIRST_RETRY_S,
        max_retry: float = MAX_RETRY_S,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.db = db
        self.metrics = metrics
        self.clock = clock
        self.first_retry = first_retry
        self.max_retry = max_retry
        self.status = DeliveryStatus()
        self._splitter = BatchSplitter()
        self._wake = asyncio.Event()
        self._wake.set()  # a backlog from before the restart goes first
        self._rng = rng or random.Random()

    def notify(self) -> None:
        """New events are committed: deliver them now (unless a back-off is running)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            # also look now and then without being told: `dead-letters replay` from the CLI
            # queues events from another process
            await self._wait_for_work(self.clock.now() + POLL_S)
            self._wake.clear()
            while await self._deliver_once():
                pass

    async def _wait_for_work(self, until: float) -> None:
        waker = asyncio.ensure_future(self._wake.wait())
        sleeper = asyncio.ensure_future(self.clock.sleep_until(until))
        try:
            await asyncio.wait((waker, sleeper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            waker.cancel()
            sleeper.cancel()

    async def _deliver_once(self) -> bool:
        """One request. True if more may be waiting; False when empty or after a back-off."""
        limit = self.status.batch_size
        try:
            rows = await self.db.call(self.store.pending, limit)
        except StoreError as exc:
            log.error("cannot read the outbox: %s", exc)
            return False
        if not rows:
            self._splitter.drained()
            self.status.splitting = False
            return False
        sent = self._splitter.choose(rows, limit)
        try:
            results = await self.client.post_events(
                [r.event_uid for r in sent], [r.body for r in sent]
            )
        except OdooTooLarge as exc:
            if len(sent) > 1:
                self.status.batch_size = max(1, len(sent) // 2)
                log.warning(
                    "Odoo refused %d events as too large (413); sending %d per request from now on",
                    len(sent),
                    self.status.batch_size,
                )
                return True
            await self._back_off(exc, sent)
            return False
        except OdooUnavailable as exc:
            return await self._unavailable(exc, sent)
        except OdooAuthError as exc:
            await self._back_off(exc, sent)
            return False
        self._splitter.succeeded(sent)
        more = len(rows) == limit or len(sent) < len(rows)
        if not more:
            self._splitter.drained()  # every event that was pending is answered for
        self.status.answered()
        self.status.splitting = self._splitter.hunting
        return await self._record(sent, results) and more

    async def _unavailable(self, exc: OdooUnavailable, sent: list[Pending]) -> bool:
        content_suspect = exc.status is not None and (exc.status >= 500 or exc.status == 400)
        if not content_suspect:
            await self._back_off(exc, sent)
            return False
        verdict = self._splitter.failed(sent)
        self.status.splitting = self._splitter.hunting
        if verdict is Verdict.BACK_OFF:
            await self._back_off(exc, sent)
            return False
        self.status.failed(self.clock.now(), str(exc))
        self.metrics.odoo_errors += 1
        if verdict is Verdict.RETRY_NOW:
            return True
        (row,) = sent
        reason = "failed alone, again and again, while Odoo took the other events"
        result = Result(row.event_uid, "server_error", f"{exc} {reason}", exc.status)
        await self._record(sent, [result])
        return True

    async def _record(self, rows: list[Pending], results: list[Result]) -> bool:
        done: list[int] = []
        dead: list[tuple[int, int | None, str]] = []
        for row, result in zip(rows, results, strict=True):
            self.metrics.delivered[result.status] += 1
            if result.done:
                done.append(row.seq)
            else:
                dead.append((row.seq, result.http_status, _describe(result)))
                log.error(
                    "Odoo rejected event %s (%s of %s): %s; kept as a dead letter",
                    row.event_uid,
                    row.event_type,
                    row.device_id,
                    _describe(result),
                )
        try:
            await self.db.call(self.store.delivered, done)
            if dead:
                await self.db.call(self.store.dead_letter, dead)
        except StoreError as exc:
            log.error("cannot update the outbox after delivery: %s", exc)
            return False  # Odoo deduplicates the resend by event_uid
        return True

    async def _back_off(self, exc: Exception, rows: list[Pending]) -> None:
        st = self.status
        st.failed(self.clock.now(), str(exc), auth=isinstance(exc, OdooAuthError))
        self.metrics.odoo_errors += 1
        retry_after = exc.retry_after if isinstance(exc, OdooUnavailable) else None
        delay = backoff_delay(st.failures, self.first_retry, self.max_retry, self._rng, retry_after)
        log.warning("Odoo API error, retrying in %.0fs... (%s)", delay, st.last_error)
        try:
            await self.db.call(self.store.failed, [r.seq for r in rows], st.last_error or "")
        except StoreError as store_exc:
            log.error("cannot note the failed attempt in the outbox: %s", store_exc)
        await self.clock.sleep(delay)
        self._wake.set()


def _describe(result: Result) -> str:
    status = f"HTTP {result.http_status} " if result.http_status else ""
    return f"{status}{result.status}: {result.detail or ''}".strip().rstrip(":")
