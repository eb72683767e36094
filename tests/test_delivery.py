"""The delivery loop in simulated time: ``Delivery`` + a real SQLite ``Store`` + the real
``OdooClient`` talking HTTP to ``FakeOdoo`` on a real socket, with a ``FakeClock``.

Requests cross the wire in real time (milliseconds); every wait of the delivery (back-off, the
poll for work) is on the fake clock. ``Sim.step`` moves the clock to the next timer only once the
delivery is idle on it, so a minute of Odoo outage runs in a fraction of a second and every retry
is seen at its exact simulated time (the fake Odoo stamps requests with the same clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from iot_bridge.events import Event, event_uid, session_uid
from iot_bridge.odoo_api.client import MAX_BATCH, OdooClient
from iot_bridge.odoo_api.delivery import Delivery
from iot_bridge.outbox.store import Store
from iot_bridge.outbox.worker import DbWorker
from iot_bridge.runtime.metrics import Metrics
from tests.support.clock import FakeClock, settle
from tests.support.fake_odoo import FakeOdoo

TOKEN = "bridge-token-9f8e7d6c5b4a"
DEV_A = "shellypmminig3-aaaaaaaaaaaa"
DEV_B = "shellyplus1pm-bbbbbbbbbbbb"
T0 = 1_767_225_600.0
DEVICES: list[dict[str, Any]] = [
    {"device_id": d, "mqtt_topic": f"{d}/status/pm1:0", "parser_type": "shelly_pm_mini_g3"}
    for d in (DEV_A, DEV_B)
]
REAL_TIMEOUT_S = 10.0  # a bound on real time per step (a hung request fails the test)


def start_event(device: str, started: float) -> Event:
    sid = session_uid(device, started)
    return Event(event_uid(device, "run_start", sid), started, device, "run_start",
                 {"session_id": sid, "started_at": "2026-01-01T00:00:00.000Z"})  # fmt: skip


def stop_event(device: str, started: float, stopped: float) -> Event:
    sid = session_uid(device, started)
    payload = {"session_id": sid, "duration_s": stopped - started, "reason": "normal"}
    return Event(event_uid(device, "run_stop", sid), stopped, device, "run_stop", payload)


def session_events(device: str, n: int, offset: float = 0) -> list[Event]:
    out: list[Event] = []
    for i in range(n):
        started = T0 + offset + 100 * i
        out += [start_event(device, started), stop_event(device, started, started + 50)]
    return out


def invalid_event(device: str = DEV_A) -> Event:
    """A run_start without a session_id: Odoo answers invalid_event."""
    return Event(event_uid(device, "run_start", "broken"), T0, device, "run_start", {})


class Sim:
    def __init__(self, odoo: FakeOdoo, store: Store, clock: FakeClock, metrics: Metrics) -> None:
        self.odoo = odoo
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.db = DbWorker()
        self.client = OdooClient(odoo.url, TOKEN, timeout=0.5, clock=clock)
        self.delivery = Delivery(
            self.client, store, self.db, metrics, clock=clock, rng=random.Random(7)
        )
        self.started = clock.now()

    async def idle(self) -> float:
        """Wait (real time) until the delivery waits on the clock; the time it waits for."""
        deadline = time.monotonic() + REAL_TIMEOUT_S
        while True:
            await settle()
            due = self.clock.next_timer()
            if due is not None:
                await settle()
                if self.clock.next_timer() == due:
                    return due
            if time.monotonic() > deadline:
                raise AssertionError("the delivery never came back to wait on the clock")
            await asyncio.sleep(0.002)

    async def run_until(self, when: float) -> None:
        """Simulated time up to ``when``, every timer on the way fired in order."""
        while (due := await self.idle()) <= when:
            await self.clock.run_until(due)
        await self.clock.run_until(when)

    async def until(self, predicate: Callable[[], bool], max_s: float = 3600.0) -> None:
        """Step until ``predicate()`` holds while the delivery is idle on the clock."""
        end = self.clock.now() + max_s
        while True:
            due = await self.idle()
            if predicate():
                return
            if self.clock.now() > end:
                raise AssertionError(f"not reached within {max_s} simulated seconds")
            await self.clock.run_until(due)

    async def commit(self, events: list[Event]) -> None:
        await self.db.call(self.store.commit, events, {}, self.clock.now())
        self.delivery.notify()

    def depth(self) -> int:
        return self.store.stats().depth

    def posts(self) -> list[tuple[float, int, int]]:
        """(simulated seconds since start, status, events) of every POST Odoo saw."""
        return [
            (round(r.t - self.started, 3), r.status, len(r.event_uids))
            for r in self.odoo.requests()
            if r.method == "POST"
        ]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=T0 + 10_000)


@pytest.fixture
def odoo(clock: FakeClock) -> Iterator[FakeOdoo]:
    fake = FakeOdoo(token=TOKEN, devices=DEVICES, other_bridges={"theirs": DEVICES},
                    clock=clock.now).start()  # fmt: skip
    yield fake
    fake.stop()


Body = Callable[[Sim], Awaitable[None]]


async def _simulate(odoo: FakeOdoo, clock: FakeClock, store: Store, body: Body) -> Sim:
    s = Sim(odoo, store, clock, Metrics())
    task = asyncio.get_running_loop().create_task(s.delivery.run())
    try:
        await body(s)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await s.client.close()
        s.db.close()
    return s


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "bridge.db")
    yield s
    s.close()


@pytest.fixture
def run(odoo: FakeOdoo, clock: FakeClock, store: Store) -> Callable[[Body], Sim]:
    """``run(body)``: the delivery loop running while ``await body(sim)`` drives it."""
    return lambda body: asyncio.run(_simulate(odoo, clock, store, body))


def gaps(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in pairwise(times)]


# -- the happy path and the contract's refusals -------------------------------------------------


def test_delivers_in_commit_order_and_removes(run: Callable[[Body], Sim], odoo: FakeOdoo) -> None:
    async def body(sim: Sim) -> None:
        events = session_events(DEV_A, 3) + session_events(DEV_B, 2)
        await sim.commit(events)
        await sim.until(lambda: sim.depth() == 0)
        assert odoo.stored_uids() == [e.event_uid for e in events]
        assert sim.posts() == [(0.0, 200, 10)]  # one batch, at once
        assert sim.metrics.delivered["created"] == 10
        assert sim.store.dead_letters() == []

    run(body)


def test_backlog_from_before_start_goes_first_without_notify(
    run: Callable[[Body], Sim], odoo: FakeOdoo, store: Store
) -> None:
    events = session_events(DEV_A, 2)
    store.commit(events, {})  # committed before the loop exists (a restart)

    async def body(sim: Sim) -> None:
        await sim.until(lambda: sim.depth() == 0)

    run(body)
    assert odoo.stored_uids() == [e.event_uid for e in events]


def test_rejections_become_dead_letters_and_the_rest_flows(
    run: Callable[[Body], Sim], odoo: FakeOdoo
) -> None:
    async def body(sim: Sim) -> None:
        odoo.reject_device(DEV_B, 400)
        good, bad = session_events(DEV_A, 2), session_events(DEV_B, 1, offset=10)
        stranger = session_events("shelly-not-configured", 1)
        await sim.commit([good[0], bad[0], *stranger, good[1], bad[1], good[2], good[3]])
        await sim.until(lambda: sim.depth() == 0)
        assert odoo.stored_uids() == [e.event_uid for e in good]
        letters = {d.event_uid: (d.status, d.error) for d in sim.store.dead_letters()}
        assert {uid: s for uid, (s, _) in letters.items()} == {
            bad[0].event_uid: 400, bad[1].event_uid: 400,
            stranger[0].event_uid: 404, stranger[1].event_uid: 404,
        }  # fmt: skip
        assert letters[bad[0].event_uid][1].startswith("HTTP 400 invalid_event: ")
        assert letters[stranger[0].event_uid][1].startswith("HTTP 404 unknown_device: ")

    run(body)


def test_conflict_is_a_dead_letter(run: Callable[[Body], Sim], odoo: FakeOdoo) -> None:
    """Another bridge stored our run_start first (uid and session): our run_start and run_stop
    are dead-lettered as conflicts, not dropped as duplicates; the next session is delivered."""

    async def body(sim: Sim) -> None:
        events = session_events(DEV_A, 2)
        thief = OdooClient(odoo.url, "theirs", timeout=2.0)
        try:
            assert (await thief.post_event(events[0].event_uid, events[0].to_json())).done
        finally:
            await thief.close()
        await sim.commit(events)
        await sim.until(lambda: sim.depth() == 0)
        letters = sim.store.dead_letters()
        assert [(d.event_uid, d.status) for d in letters] == [
            (events[0].event_uid, 409),
            (events[1].event_uid, 409),
        ]
        assert letters[0].error == (
            "HTTP 409 conflict: event_uid is already stored for another device or bridge"
        )
        assert (
            letters[1].error == "HTTP 409 conflict: session_id belongs to another device or bridge"
        )
        assert odoo.stored_uids() == [events[0].event_uid, events[2].event_uid, events[3].event_uid]
        assert sim.metrics.delivered["conflict"] == 2
        assert sim.store.stats().dead_letters_by_status == ((409, 2),)

    run(body)


# -- Odoo away: back-off in simulated time ------------------------------------------------------


def test_odoo_failing_for_a_minute_backs_off_5_10_20_40_then_delivers_once(
    run: Callable[[Body], Sim], odoo: FakeOdoo
) -> None:
    """503 for 65 s: retries after 5 s (exactly, the original's), then ~10, ~20, ~40 (jitter
    ±20 %); events committed meanwhile wait for the running back-off; the first retry after
    Odoo is back delivers everything once."""

    async def body(sim: Sim) -> None:
        odoo.fail_next(10_000, 503)
        first = session_events(DEV_A, 1) + session_events(DEV_B, 1)
        await sim.commit(first)
        await sim.run_until(sim.started + 30)
        later = session_events(DEV_A, 1, offset=1000)
        await sim.commit(later)  # must not cut the back-off short
        await sim.run_until(sim.started + 65)
        assert sim.depth() == 6
        assert sim.delivery.status.odoo_reachable is False
        assert sim.delivery.status.unreachable_since == sim.started
        odoo.clear_failures()
        await sim.until(lambda: sim.depth() == 0)
        assert sorted(odoo.stored_uids()) == sorted(e.event_uid for e in first + later)
        failed = [t for t, status, _ in sim.posts() if status == 503]
        assert failed[0] == 0.0
        g = gaps(failed)
        assert g[0] == 5.0
        assert 8.0 <= g[1] <= 12.0
        assert 16.0 <= g[2] <= 24.0
        assert len(failed) == 4
        for earlier, later_gap in pairwise(g):
            assert later_gap >= earlier * 1.33
        delivered_at = [t for t, status, _ in sim.posts() if status == 200]
        assert 32.0 <= delivered_at[0] - failed[-1] <= 48.0  # the ~40 s retry, after recovery
        assert sim.delivery.status.odoo_reachable is True
        assert sim.delivery.status.unreachable_since is None
        assert sim.store.dead_letters() == []  # an outage never dead-letters anything

    run(body)


def test_odoo_down_for_hours_never_dead_letters_and_caps_the_back_off(
    run: Callable[[Body], Sim], odoo: FakeOdoo
) -> None:
    async def body(sim: Sim) -> None:
        odoo.fail_next(100_000, 503)
        events = [e for i in range(20) for e in session_events(DEV_A, 1, offset=1000 * i)]
        await sim.commit(events)
        await sim.run_until(sim.started + 4 * 3600)
        assert sim.depth() == 40
        assert sim.store.dead_letters() == []
        failed = [t for t, status, _ in sim.posts() if status == 503]
        assert max(gaps(failed)) <= 300.0  # MAX_RETRY_S
        assert min(gaps(failed)[6:]) >= 240.0  # capped waits stay within 0.8..1.0 x the cap
        assert len(failed) < 60
        odoo.clear_failures()
        await sim.until(lambda: sim.depth() == 0)
        assert sorted(odoo.stored_uids()) == sorted(e.event_uid for e in events)

    run(body)


def test_retry_after_is_a_floor_for_the_next_try(
    run: Callable[[Body], Sim], odoo: FakeOdoo
) -> None:
    async def body(sim: Sim) -> None:
        odoo.fail_next(1, 503)
        odoo.fail_next(1, 429, retry_after=30)
        odoo.fail_next(1, 503, retry_after=1)
        events = session_events(DEV_B, 1)
        await sim.commit(events)
        await sim.until(lambda: sim.depth() == 0)
        times = [t for t, _, _ in sim.posts()]
        assert [s for _, s, _ in sim.posts()] == [503, 429, 503, 200]
        assert gaps(times)[0] == 5.0  # no Retry-After: the first retry after 5 s
        assert gaps(times)[1] == 30.0  # Retry-After 30 beats the 8..12 s back-off
        assert 16.0 <= gaps(times)[2] <= 24.0  # Retry-After 1 is only a floor
        assert odoo.stored_uids() == [e.event_uid for e in events]

    run(body)


def test_connection_refused_then_back_delivers_the_backlog(
    run: Callable[[Body], Sim], odoo: FakeOdoo
) -> None:
    async def body(sim: Sim) -> None:
        odoo.stop()
        events = session_events(DEV_A, 2)
        await sim.commit(events)
        await sim.run_until(sim.started + 60)
        assert sim.depth() == 4
        status = sim.delivery.status
        assert status.odoo_reachable is False
        assert status.last_error is not None
        assert TOKEN not in status.last_error
        assert status.failures == 4  # at 0, 5, ~15, ~35 s
        odoo.start()  # same port, same state
        await sim.until(lambda: sim.depth() == 0)
        assert odoo.stored_uids() == [e.event_uid for e in events]

    run(body)


def test_timeout_and_lost_response_are_retried_with_the_same_uids(
    run: Callable[[Body], Sim], odoo: FakeOdoo
) -> None:
    async def body(sim: Sim) -> None:
        odoo.set_delay(1.0)  # longer than the client's 0.5 s timeout (real time)
        events = session_events(DEV_A, 1)
        await sim.commit(events)
        await sim.until(lambda: sim.delivery.status.failures == 1)
        assert sim.delivery.status.last_error is not None
        assert "TimeoutError" in sim.delivery.status.last_error
        assert sim.depth() == 2
        odoo.set_delay(0)
        odoo.drop_response_next(1)  # Odoo stores, then the answer never arrives
        await sim.until(lambda: sim.depth() == 0)
        assert odoo.wait_for(lambda f: len(f.requests()) >= 3, timeout=5)
        assert odoo.stored_uids() == [e.event_uid for e in events]  # exactly once each
        sent = {uid for r in odoo.requests() for uid in r.event_uids}
        assert sent == {e.event_uid for e in events}

    run(body)


def test_401_keeps_events_and_reports_auth(run: Callable[[Body], Sim], odoo: FakeOdoo) -> None:
    async def body(sim: Sim) -> None:
        odoo.set_token("rotated-in-odoo")
        events = session_events(DEV_A, 1)
        await sim.commit(events)
        await sim.run_until(sim.started + 20)
        status = sim.delivery.status
        assert status.auth_failed
        assert status.failures == 3
        assert sim.depth() == 2
        assert all(r.attempts >= 3 for r in sim.store.pending(10))
        assert "rotated-in-odoo" not in (status.last_error or "")
        assert sim.store.dead_letters() == []

    run(body)


# -- answers that are not the contract's --------------------------------------------------------


def test_waf_html_403_is_retried_not_dead_lettered(
    run: Callable[[Body], Sim], odoo: FakeOdoo
) -> None:
    async def body(sim: Sim) -> None:
        odoo.fail_next(2, 403, html=True)
        events = session_events(DEV_A, 1)
        await sim.commit(events)
        await sim.until(lambda: sim.delivery.status.failures == 2)
        assert sim.delivery.status.last_error == (
            "POST /ows/iot/events answered 403 (not the contract's answer: text/html)"
        )
        await sim.until(lambda: sim.depth() == 0)
        assert sim.store.dead_letters() == []
        assert odoo.stored_uids() == [e.event_uid for e in events]

    run(body)


def test_413_halves_the_batch_down_to_what_passes(
    run: Callable[[Body], Sim], odoo: FakeOdoo
) -> None:
    async def body(sim: Sim) -> None:
        events = [e for i in range(10) for e in session_events(DEV_A, 1, offset=1000 * i)]
        one = len(events[0].to_json())
        odoo.set_body_limit(4 * one + 40)  # four events pass, five do not
        await sim.commit(events)
        await sim.until(lambda: sim.depth() == 0)
        sizes = [(status, n) for _, status, n in sim.posts()]
        assert sizes[:3] == [(413, 20), (413, 10), (413, 5)]
        assert all(status == 200 and n <= 2 for status, n in sizes[3:])
        assert all(t == 0.0 for t, _, _ in sim.posts())  # halving needs no waiting
        assert sim.delivery.status.batch_size == 2
        assert odoo.stored_uids() == [e.event_uid for e in events]
        assert sim.store.dead_letters() == []

    run(body)


def test_413_for_a_single_event_is_retried(run: Callable[[Body], Sim], odoo: FakeOdoo) -> None:
    async def body(sim: Sim) -> None:
        odoo.set_body_limit(10)
        events = [start_event(DEV_A, T0)]
        await sim.commit(events)
        await sim.run_until(sim.started + 20)
        assert [s for _, s, _ in sim.posts()] == [413, 413, 413]
        assert sim.store.dead_letters() == []
        odoo.set_body_limit(1 << 20)
        await sim.until(lambda: sim.depth() == 0)

    run(body)


# -- one event that breaks Odoo -----------------------------------------------------------------


def test_the_event_that_breaks_every_batch_is_found_and_only_it_dead_lettered(
    run: Callable[[Body], Sim], odoo: FakeOdoo
) -> None:
    async def body(sim: Sim) -> None:
        events = [e for i in range(30) for e in session_events(DEV_A, 1, offset=1000 * i)]
        poison = events[23]
        odoo.break_on(poison.event_uid)
        await sim.commit(events)
        await sim.until(lambda: sim.depth() == 0)
        (letter,) = sim.store.dead_letters()
        assert (letter.event_uid, letter.status) == (poison.event_uid, 500)
        assert letter.error.startswith("HTTP 500 server_error: POST /ows/iot/")
        assert sorted(odoo.stored_uids()) == sorted(e.event_uid for e in events if e is not poison)
        posts = sim.posts()
        assert len(posts) < 40
        assert [s for _, s, _ in posts[:3]] == [500, 500, 500]  # three tries, backing off ...
        assert posts[2][0] == pytest.approx(5 + 10.0, abs=2.1)
        assert posts[-1][0] - posts[3][0] < 60  # ... then the split takes no long waits
        assert not sim.delivery.status.splitting
        assert sim.metrics.delivered["server_error"] == 1

    run(body)


def test_poison_at_the_head_of_a_full_batch(run: Callable[[Body], Sim], odoo: FakeOdoo) -> None:
    async def body(sim: Sim) -> None:
        events = [e for i in range(MAX_BATCH // 2 + 20) for e in session_events(DEV_B, 1, 1000 * i)]
        odoo.break_on(events[0].event_uid)
        await sim.commit(events)
        await sim.until(lambda: sim.depth() == 0)
        assert [d.event_uid for d in sim.store.dead_letters()] == [events[0].event_uid]
        assert len(odoo.stored_uids()) == len(events) - 1
        assert len(sim.posts()) < 45

    run(body)


def test_a_lone_failing_event_is_never_blamed(run: Callable[[Body], Sim], odoo: FakeOdoo) -> None:
    """With nothing else to send, nothing shows Odoo works: keep it, keep backing off."""

    async def body(sim: Sim) -> None:
        event = start_event(DEV_A, T0)
        odoo.break_on(event.event_uid)
        await sim.commit([event])
        await sim.run_until(sim.started + 1800)
        assert sim.store.dead_letters() == []
        assert sim.depth() == 1
        more = session_events(DEV_B, 1)
        await sim.commit(more)  # now there are other events to show that Odoo takes events
        await sim.until(lambda: sim.depth() == 0)
        assert [d.event_uid for d in sim.store.dead_letters()] == [event.event_uid]

    run(body)


def test_outage_during_a_split_dead_letters_nothing(
    run: Callable[[Body], Sim], odoo: FakeOdoo
) -> None:
    """Three 500s start a split; Odoo then stays down (every request fails): the probes fail
    too, so nothing is blamed; when Odoo is back everything is delivered."""

    async def body(sim: Sim) -> None:
        events = [e for i in range(8) for e in session_events(DEV_A, 1, offset=1000 * i)]
        odoo.fail_next(50, 500)
        await sim.commit(events)
        await sim.run_until(sim.started + 7200)
        assert sim.store.dead_letters() == []
        odoo.clear_failures()
        await sim.until(lambda: sim.depth() == 0)
        assert sim.store.dead_letters() == []
        assert sorted(odoo.stored_uids()) == sorted(e.event_uid for e in events)
        assert not sim.delivery.status.splitting

    run(body)


def test_invalid_event_in_a_batch_is_not_a_split(
    run: Callable[[Body], Sim], odoo: FakeOdoo
) -> None:
    async def body(sim: Sim) -> None:
        events = [*session_events(DEV_A, 1), invalid_event(), *session_events(DEV_B, 1)]
        await sim.commit(events)
        await sim.until(lambda: sim.depth() == 0)
        assert sim.posts() == [(0.0, 200, 5)]
        assert [d.status for d in sim.store.dead_letters()] == [400]

    run(body)
