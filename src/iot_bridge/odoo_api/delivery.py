"""The delivery loop: outbox -> Odoo, in order, until Odoo has taken every event.

Rows are sent oldest first in batches (the batch endpoint drains a backlog; one request either
answers for every event or fails as a whole, so per-device order holds). Transient failures keep
the rows and back off: first retry after 5 s as in the original, then doubling with jitter up to
a cap, never sooner than Odoo's ``Retry-After``. Permanent rejections go to the dead-letter table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass

from iot_bridge.errors import OdooAuthError, OdooUnavailable, StoreError
from iot_bridge.odoo_api.client import OdooClient, Result
from iot_bridge.outbox.store import Store
from iot_bridge.outbox.worker import DbWorker
from iot_bridge.runtime.metrics import Metrics

log = logging.getLogger("iot_bridge.delivery")

FIRST_RETRY_S = 5.0
MAX_RETRY_S = 300.0
BATCH = 500
POLL_S = 5.0


@dataclass
class DeliveryStatus:
    odoo_reachable: bool | None = None  # None: not tried yet
    auth_failed: bool = False
    last_error: str | None = None
    next_retry_at: float | None = None
    failures: int = 0


class Delivery:
    def __init__(
        self,
        client: OdooClient,
        store: Store,
        db: DbWorker,
        metrics: Metrics,
        *,
        first_retry: float = FIRST_RETRY_S,
        max_retry: float = MAX_RETRY_S,
    ) -> None:
        self.client = client
        self.store = store
        self.db = db
        self.metrics = metrics
        self.first_retry = first_retry
        self.max_retry = max_retry
        self.status = DeliveryStatus()
        self._wake = asyncio.Event()
        self._wake.set()  # a backlog from before the restart goes first
        self._rng = random.Random()

    def notify(self) -> None:
        """New events are committed: deliver them now (unless a back-off is running)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            # also look now and then without being told: `dead-letters replay` from the CLI
            # queues events from another process
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)
            self._wake.clear()
            while await self._deliver_once():
                pass

    async def _deliver_once(self) -> bool:
        """One batch. True if more may be waiting; False when empty or backing off."""
        try:
            rows = await self.db.call(self.store.pending, BATCH)
        except StoreError as exc:
            log.error("cannot read the outbox: %s", exc)
            return False
        if not rows:
            return False
        uids = [r.event_uid for r in rows]
        try:
            results = await self.client.post_events(uids, [r.body for r in rows])
        except (OdooUnavailable, OdooAuthError) as exc:
            await self._back_off(exc, [r.seq for r in rows])
            return False
        self.status.odoo_reachable = True
        self.status.auth_failed = False
        self.status.failures = 0
        self.status.last_error = None
        self.status.next_retry_at = None
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
        return len(rows) == BATCH

    async def _back_off(self, exc: Exception, seqs: list[int]) -> None:
        st = self.status
        st.failures += 1
        st.last_error = str(exc)
        st.odoo_reachable = False
        st.auth_failed = isinstance(exc, OdooAuthError)
        self.metrics.odoo_errors += 1
        delay = min(self.max_retry, self.first_retry * 2 ** (st.failures - 1))
        delay = delay * (0.8 + 0.4 * self._rng.random()) if st.failures > 1 else delay
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry))
        st.next_retry_at = time.time() + delay
        log.warning("Odoo API error, retrying in %.0fs... (%s)", delay, exc)
        with contextlib.suppress(StoreError):
            await self.db.call(self.store.failed, seqs, str(exc)[:500])
        await asyncio.sleep(delay)
        self._wake.set()


def _describe(result: Result) -> str:
    status = f"HTTP {result.http_status} " if result.http_status else ""
    return f"{status}{result.status}: {result.detail or ''}".strip()
