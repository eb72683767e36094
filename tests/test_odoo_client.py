"""The Odoo client and the delivery loop against FakeOdoo over real HTTP (``odoo-api.md``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any, TypeVar

import pytest

from iot_bridge.errors import OdooAuthError, OdooUnavailable
from iot_bridge.events import Event, event_uid, session_uid
from iot_bridge.odoo_api.client import OdooClient, Result
from iot_bridge.odoo_api.delivery import Delivery
from iot_bridge.outbox.store import Store
from iot_bridge.outbox.worker import DbWorker
from iot_bridge.runtime.metrics import Metrics
from tests.support.fake_odoo import FakeOdoo

TOKEN = "bridge-token-9f8e7d6c5b4a"
DEV_A = "shellypmminig3-aaaaaaaaaaaa"
DEV_B = "shellyplus1pm-bbbbbbbbbbbb"
T0 = 1_767_225_600.0

DEVICES: list[dict[str, Any]] = [
    {
        "device_id": DEV_A,
        "mqtt_topic": "laser/status/pm1:0",
        "parser_type": "shelly_pm_mini_g3",
        "machine_name": "Laser",
        "session_config": {"strategy": "power_threshold", "standby_threshold_w": 20,
                           "working_threshold_w": 100, "start_debounce_s": 3,
                           "stop_debounce_s": 15, "message_timeout_s": 20},
    },
    {"device_id": DEV_B, "mqtt_topic": "cnc/status/switch:0", "parser_type": "shelly_pm_mini_g3"},
]  # fmt: skip

R = TypeVar("R")


def start_event(device: str, started: float) -> Event:
    sid = session_uid(device, started)
    return Event(
        event_uid(device, "run_start", sid),
        started,
        device,
        "run_start",
        {"session_id": sid, "started_at": started},
    )


def stop_event(device: str, started: float, stopped: float) -> Event:
    sid = session_uid(device, started)
    return Event(
        event_uid(device, "run_stop", sid),
        stopped,
        device,
        "run_stop",
        {"session_id": sid, "duration_s": stopped - started, "reason": "normal"},
    )


def invalid_event(device: str = DEV_A) -> Event:
    """A run_start without a session_id: Odoo answers invalid_event."""
    return Event(event_uid(device, "run_start", "broken"), T0, device, "run_start", {})


@pytest.fixture
def odoo() -> Iterator[FakeOdoo]:
    fake = FakeOdoo(token=TOKEN, devices=DEVICES, config_version="17").start()
    yield fake
    fake.stop()


def with_client(
    url: str,
    fn: Callable[[OdooClient], Awaitable[R]],
    *,
    token: str = TOKEN,
    timeout: float = 5.0,
    on_latency: Callable[[float], None] | None = None,
) -> R:
    async def main() -> R:
        client = OdooClient(url, token, timeout=timeout, on_latency=on_latency)
        try:
            return await fn(client)
        finally:
            await client.close()

    return asyncio.run(main())


def post(odoo: FakeOdoo, event: Event, **kw: Any) -> Result:
    return with_client(odoo.url, lambda c: c.post_event(event.event_uid, event.to_json()), **kw)


def post_expecting(odoo: FakeOdoo, event: Event, exc: type[Exception], **kw: Any) -> Exception:
    async def go(c: OdooClient) -> Exception:
        with pytest.raises(exc) as info:
            await c.post_event(event.event_uid, event.to_json())
        return info.value

    return with_client(odoo.url, go, **kw)


# -- POST /ows/iot/event: every row of the answer table ---------------------------------------


def test_201_created_is_done(odoo: FakeOdoo) -> None:
    ev = start_event(DEV_A, T0)
    result = post(odoo, ev)
    assert result == Result(ev.event_uid, "created", None, 201)
    assert result.done
    assert odoo.stored_events() == [ev.to_dict()]
    (req,) = odoo.requests()
    assert (req.method, req.path, req.status, req.event_uids) == (
        "POST",
        "/ows/iot/event",
        201,
        [ev.event_uid],
    )


def test_200_duplicate_is_done(odoo: FakeOdoo) -> None:
    ev = start_event(DEV_A, T0)
    post(odoo, ev)
    result = post(odoo, ev)
    assert result == Result(ev.event_uid, "duplicate", None, 200)
    assert result.done
    assert odoo.stored_uids() == [ev.event_uid]


def test_400_invalid_event_is_a_dead_letter(odoo: FakeOdoo) -> None:
    ev = invalid_event()
    result = post(odoo, ev)
    assert result.status == "invalid_event"
    assert result.http_status == 400
    assert not result.done
    assert result.detail is not None
    assert "session_id" in result.detail
    assert odoo.stored_events() == []


def test_400_for_a_rejected_device(odoo: FakeOdoo) -> None:
    odoo.reject_device(DEV_B, 400)
    result = post(odoo, start_event(DEV_B, T0))
    assert (result.status, result.http_status, result.done) == ("invalid_event", 400, False)


def test_404_unknown_device(odoo: FakeOdoo) -> None:
    ev = start_event("shelly-not-configured", T0)
    result = post(odoo, ev)
    assert (result.status, result.http_status, result.done) == ("unknown_device", 404, False)
    assert result.detail is not None
    assert "shelly-not-configured" in result.detail
    assert odoo.stored_events() == []


def test_401_raises_auth_error_without_the_token(odoo: FakeOdoo) -> None:
    wrong = "wrong-token-0123456789abcdef"
    exc = post_expecting(odoo, start_event(DEV_A, T0), OdooAuthError, token=wrong)
    assert "401" in str(exc)
    for text in (str(exc), repr(exc), str(exc.args)):
        assert wrong not in text
        assert TOKEN not in text
    assert odoo.stored_events() == []


def test_401_after_token_rotation(odoo: FakeOdoo) -> None:
    odoo.set_token("rotated-token")
    exc = post_expecting(odoo, start_event(DEV_A, T0), OdooAuthError)
    assert TOKEN not in str(exc)
    assert "rotated-token" not in str(exc)


def test_429_with_retry_after_seconds(odoo: FakeOdoo) -> None:
    odoo.fail_next(1, 429, retry_after=7)
    exc = post_expecting(odoo, start_event(DEV_A, T0), OdooUnavailable)
    assert isinstance(exc, OdooUnavailable)
    assert exc.retry_after == 7.0
    assert "429" in str(exc)
    assert odoo.stored_events() == []
    assert post(odoo, start_event(DEV_A, T0)).status == "created"  # the next one goes through


def test_429_with_fractional_retry_after(odoo: FakeOdoo) -> None:
    odoo.fail_next(1, 429, retry_after=1.5)
    exc = post_expecting(odoo, start_event(DEV_A, T0), OdooUnavailable)
    assert isinstance(exc, OdooUnavailable)
    assert exc.retry_after == 1.5


class FixedAnswerServer:
    """A raw HTTP/1.1 server on a real socket that answers every request the same way
    (FakeOdoo formats Retry-After only as seconds; this sends an HTTP date)."""

    def __init__(self, status_line: str, headers: dict[str, str], body: bytes) -> None:
        head = f"HTTP/1.1 {status_line}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.response = (
            head.encode() + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        ) + body
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.seen = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                while len(rest) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    rest += chunk
                self.seen += 1
                conn.sendall(self.response)

    def close(self) -> None:
        self.sock.close()


def unavailable_from(status: str, headers: dict[str, str], body: bytes) -> OdooUnavailable:
    """POST one event to a server that always gives this answer; the error the client raises."""
    server = FixedAnswerServer(status, headers, body)
    try:
        ev = start_event(DEV_A, T0)

        async def go(c: OdooClient) -> OdooUnavailable:
            with pytest.raises(OdooUnavailable) as info:
                await c.post_event(ev.event_uid, ev.to_json())
            return info.value

        exc = with_client(server.url, go)
        assert server.seen == 1
        return exc
    finally:
        server.close()


def test_429_with_retry_after_http_date() -> None:
    when = formatdate(time.time() + 30, usegmt=True)
    exc = unavailable_from(
        "429 Too Many Requests",
        {"Retry-After": when, "Content-Type": "application/json"},
        b'{"error": "too_many_requests"}',
    )
    assert exc.retry_after is not None
    assert 27.0 <= exc.retry_after <= 30.0  # an HTTP date has whole seconds


def test_429_with_retry_after_date_in_the_past_is_zero() -> None:
    exc = unavailable_from(
        "503 Service Unavailable",
        {"Retry-After": formatdate(time.time() - 3600, usegmt=True)},
        b"",
    )
    assert exc.retry_after == 0.0


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_unavailable(odoo: FakeOdoo, status: int) -> None:
    odoo.fail_next(1, status)
    exc = post_expecting(odoo, start_event(DEV_A, T0), OdooUnavailable)
    assert isinstance(exc, OdooUnavailable)
    assert str(status) in str(exc)
    assert exc.retry_after is None
    assert odoo.stored_events() == []


def test_503_with_retry_after(odoo: FakeOdoo) -> None:
    odoo.fail_next(1, 503, retry_after=3)
    exc = post_expecting(odoo, start_event(DEV_A, T0), OdooUnavailable)
    assert isinstance(exc, OdooUnavailable)
    assert exc.retry_after == 3.0


def test_timeout_is_unavailable_and_the_retry_stores_once(odoo: FakeOdoo) -> None:
    ev = start_event(DEV_A, T0)
    odoo.set_delay(1.0)
    t = time.monotonic()
    exc = post_expecting(odoo, ev, OdooUnavailable, timeout=0.3)
    assert time.monotonic() - t < 0.9  # the client gave up, it did not wait for the answer
    assert TOKEN not in str(exc)
    odoo.set_delay(0)
    retry = post(odoo, ev)
    assert retry.done
    # the slow first request finishes on the server later: still exactly one stored event
    assert odoo.wait_for(lambda f: len(f.requests()) == 2, timeout=5)
    assert odoo.stored_uids() == [ev.event_uid]


def test_connection_refused_is_unavailable_then_recovers(odoo: FakeOdoo) -> None:
    ev = start_event(DEV_A, T0)
    odoo.stop()

    async def go(c: OdooClient) -> tuple[OdooUnavailable, Result]:
        with pytest.raises(OdooUnavailable) as info:
            await c.post_event(ev.event_uid, ev.to_json())
        odoo.start()  # same port, same state: Odoo is back
        return info.value, await c.post_event(ev.event_uid, ev.to_json())

    exc, result = with_client(odoo.url, go)
    assert TOKEN not in str(exc)
    assert result.status == "created"
    assert odoo.stored_uids() == [ev.event_uid]


def test_response_lost_after_commit_then_retry_is_duplicate(odoo: FakeOdoo) -> None:
    ev = start_event(DEV_A, T0)
    odoo.drop_response_next(1)

    async def go(c: OdooClient) -> Result:
        with pytest.raises(OdooUnavailable):
            await c.post_event(ev.event_uid, ev.to_json())
        return await c.post_event(ev.event_uid, ev.to_json())  # same uid

    result = with_client(odoo.url, go)
    assert result == Result(ev.event_uid, "duplicate", None, 200)
    assert odoo.stored_uids() == [ev.event_uid]  # exactly one
    reqs = odoo.requests()
    assert [(r.status, r.dropped, r.event_uids) for r in reqs] == [
        (0, True, [ev.event_uid]),
        (200, False, [ev.event_uid]),
    ]


# -- POST /ows/iot/events (batch) --------------------------------------------------------------


def test_batch_results_in_request_order_with_mixed_statuses(odoo: FakeOdoo) -> None:
    already = start_event(DEV_A, T0)
    post(odoo, already)
    events = [
        stop_event(DEV_A, T0, T0 + 60),  # created
        already,  # duplicate
        invalid_event(),  # invalid_event
        start_event("unknown-plug", T0),  # unknown_device
        start_event(DEV_B, T0 + 5),  # created
    ]
    results = with_client(
        odoo.url,
        lambda c: c.post_events([e.event_uid for e in events], [e.to_json() for e in events]),
    )
    assert [(r.event_uid, r.status) for r in results] == [
        (events[0].event_uid, "created"),
        (events[1].event_uid, "duplicate"),
        (events[2].event_uid, "invalid_event"),
        (events[3].event_uid, "unknown_device"),
        (events[4].event_uid, "created"),
    ]
    assert [r.done for r in results] == [True, True, False, False, True]
    assert results[2].detail is not None
    assert "session_id" in results[2].detail
    assert odoo.stored_uids() == [already.event_uid, events[0].event_uid, events[4].event_uid]
    batch = [r for r in odoo.requests() if r.path == "/ows/iot/events"]
    assert len(batch) == 1
    assert batch[0].event_uids == [e.event_uid for e in events]
    assert len(odoo.requests()) == 2  # the first single post plus one batch


def test_batch_falls_back_to_single_posts_when_the_route_is_missing(odoo: FakeOdoo) -> None:
    odoo.set_batch_enabled(False)
    events = [start_event(DEV_A, T0), invalid_event(), start_event("unknown-plug", T0)]
    more = [start_event(DEV_B, T0), stop_event(DEV_B, T0, T0 + 9)]

    async def go(c: OdooClient) -> tuple[list[Result], list[Result], bool]:
        first = await c.post_events([e.event_uid for e in events], [e.to_json() for e in events])
        second = await c.post_events([e.event_uid for e in more], [e.to_json() for e in more])
        return first, second, c.batch_supported

    first, second, supported = with_client(odoo.url, go)
    assert [r.status for r in first] == ["created", "invalid_event", "unknown_device"]
    assert [r.http_status for r in first] == [201, 400, 404]
    assert [r.status for r in second] == ["created", "created"]
    assert supported is False
    paths = [(r.path, r.status) for r in odoo.requests()]
    # one 404 from the batch route, then single posts only (the client remembers)
    assert paths == [("/ows/iot/events", 404)] + [("/ows/iot/event", s) for s in (201, 400, 404)]\
        + [("/ows/iot/event", 201)] * 2  # fmt: skip
    assert odoo.stored_uids() == [events[0].event_uid, more[0].event_uid, more[1].event_uid]


def test_batch_failure_is_unavailable_for_the_whole_request(odoo: FakeOdoo) -> None:
    events = [start_event(DEV_A, T0), start_event(DEV_B, T0)]
    odoo.fail_next(1, 503, retry_after=2)

    async def go(c: OdooClient) -> OdooUnavailable:
        with pytest.raises(OdooUnavailable) as info:
            await c.post_events([e.event_uid for e in events], [e.to_json() for e in events])
        return info.value

    exc = with_client(odoo.url, go)
    assert exc.retry_after == 2.0
    assert odoo.stored_events() == []


def test_batch_401(odoo: FakeOdoo) -> None:
    events = [start_event(DEV_A, T0), start_event(DEV_B, T0)]

    async def go(c: OdooClient) -> OdooAuthError:
        with pytest.raises(OdooAuthError) as info:
            await c.post_events([e.event_uid for e in events], [e.to_json() for e in events])
        return info.value

    exc = with_client(odoo.url, go, token="nope-nope-nope")
    assert "nope-nope-nope" not in str(exc)


# -- GET /ows/iot/config, latency ---------------------------------------------------------------


def test_fetch_config_returns_the_devices_document(odoo: FakeOdoo) -> None:
    doc = with_client(odoo.url + "/", lambda c: c.fetch_config())  # trailing slash tolerated
    assert doc == {"config_version": "17", "devices": DEVICES}
    odoo.set_devices(DEVICES[:1])
    doc2 = with_client(odoo.url, lambda c: c.fetch_config())
    assert doc2 == {"config_version": "18", "devices": DEVICES[:1]}


def test_fetch_config_with_a_bad_token(odoo: FakeOdoo) -> None:
    async def go(c: OdooClient) -> OdooAuthError:
        with pytest.raises(OdooAuthError) as info:
            await c.fetch_config()
        return info.value

    exc = with_client(odoo.url, go, token="bad-config-token")
    assert "bad-config-token" not in str(exc)


def test_latency_callback(odoo: FakeOdoo) -> None:
    seen: list[float] = []
    odoo.set_delay(0.2)
    ev = start_event(DEV_A, T0)
    with_client(
        odoo.url, lambda c: c.post_event(ev.event_uid, ev.to_json()), on_latency=seen.append
    )
    assert len(seen) == 1
    assert 0.2 <= seen[0] < 2.0
    odoo.set_delay(0)
    with_client(odoo.url, lambda c: c.fetch_config(), on_latency=seen.append)
    assert len(seen) == 2
    assert 0 < seen[1] < 0.2


# -- Delivery: outbox -> Odoo, end to end -------------------------------------------------------


class Harness:
    def __init__(self, odoo: FakeOdoo, path: Path, *, first_retry: float = 0.2) -> None:
        self.odoo = odoo
        self.store = Store(path)
        self.first_retry = first_retry
        self.metrics = Metrics()

    async def run(
        self,
        body: Callable[[Delivery, DbWorker], Awaitable[R]],
        *,
        token: str = TOKEN,
    ) -> R:
        db = DbWorker()
        client = OdooClient(self.odoo.url, token, timeout=2.0)
        delivery = Delivery(client, self.store, db, self.metrics, first_retry=self.first_retry)
        task = asyncio.get_running_loop().create_task(delivery.run())
        try:
            return await body(delivery, db)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()
            db.close()

    def close(self) -> None:
        self.store.close()


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


@pytest.fixture
def harness(odoo: FakeOdoo, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(odoo, tmp_path / "bridge.db")
    yield h
    h.close()


def session_events(device: str, n: int, offset: float = 0) -> list[Event]:
    out: list[Event] = []
    for i in range(n):
        started = T0 + offset + 100 * i
        out += [start_event(device, started), stop_event(device, started, started + 50)]
    return out


def test_delivery_delivers_and_removes(harness: Harness, odoo: FakeOdoo) -> None:
    events = session_events(DEV_A, 3) + session_events(DEV_B, 2)

    async def body(delivery: Delivery, db: DbWorker) -> None:
        await db.call(harness.store.commit, events, {DEV_A: {"phase": "idle"}})
        delivery.notify()
        await until(lambda: len(odoo.stored_uids()) == len(events))
        await until(lambda: harness.store.stats().depth == 0)

    asyncio.run(harness.run(body))
    assert odoo.stored_uids() == [e.event_uid for e in events]  # in commit order
    assert harness.store.dead_letters() == []
    assert harness.store.load_states() == {DEV_A: {"phase": "idle"}}  # states are not outbox
    assert harness.metrics.delivered["created"] == len(events)
    assert len(odoo.sessions()) == 5
    assert all(s["state"] == "done" for s in odoo.sessions().values())


def test_delivery_backlog_from_before_start_goes_first(harness: Harness, odoo: FakeOdoo) -> None:
    events = session_events(DEV_A, 2)
    harness.store.commit(events, {})  # committed before the loop exists (a restart)

    async def body(delivery: Delivery, db: DbWorker) -> None:
        await until(lambda: harness.store.stats().depth == 0)  # no notify needed

    asyncio.run(harness.run(body))
    assert odoo.stored_uids() == [e.event_uid for e in events]


def test_delivery_dead_letters_one_device_and_delivers_the_other(
    harness: Harness, odoo: FakeOdoo
) -> None:
    odoo.reject_device(DEV_B, 400)
    good = session_events(DEV_A, 2)
    bad = session_events(DEV_B, 2, offset=10)
    mixed = [good[0], bad[0], good[1], bad[1], good[2], bad[2], good[3], bad[3]]

    async def body(delivery: Delivery, db: DbWorker) -> None:
        await db.call(harness.store.commit, mixed, {})
        delivery.notify()
        await until(lambda: harness.store.stats().depth == 0)

    asyncio.run(harness.run(body))
    assert odoo.stored_uids() == [e.event_uid for e in good]
    letters = harness.store.dead_letters()
    assert sorted(d.event_uid for d in letters) == sorted(e.event_uid for e in bad)
    assert all(d.device_id == DEV_B for d in letters)
    assert all("invalid_event" in d.error for d in letters)
    assert harness.store.stats().dead_letters == 4
    assert delivery_statuses(harness) == {"created": 4, "invalid_event": 4}


def delivery_statuses(h: Harness) -> dict[str, int]:
    return {k: v for k, v in h.metrics.delivered.items() if v}


def test_delivery_unknown_device_with_single_posts_then_replay(
    harness: Harness, odoo: FakeOdoo
) -> None:
    odoo.set_batch_enabled(False)
    newcomer = "shellyplus1pm-cccccccccccc"
    stranger = session_events(newcomer, 1)
    good = session_events(DEV_A, 1)

    async def body(delivery: Delivery, db: DbWorker) -> None:
        await db.call(harness.store.commit, [*stranger, *good], {})
        delivery.notify()
        await until(lambda: harness.store.stats().depth == 0)

    asyncio.run(harness.run(body))
    assert odoo.stored_uids() == [e.event_uid for e in good]
    letters = harness.store.dead_letters()
    assert sorted((d.event_uid, d.status) for d in letters) == sorted(
        (e.event_uid, 404) for e in stranger
    )
    assert all("unknown_device" in d.error for d in letters)

    # the device is created in Odoo: a replay delivers the dead letters
    odoo.set_devices([*DEVICES, {"device_id": newcomer, "mqtt_topic": "new/status/pm1:0",
                                 "parser_type": "shelly_pm_mini_g3"}])  # fmt: skip
    assert harness.store.replay_dead_letters() == 2

    async def body2(delivery: Delivery, db: DbWorker) -> None:
        await until(lambda: harness.store.stats().depth == 0)

    asyncio.run(harness.run(body2))
    assert harness.store.dead_letters() == []
    assert sorted(odoo.stored_uids()) == sorted(e.event_uid for e in good + stranger)
    assert odoo.sessions()[str(stranger[0].payload["session_id"])]["state"] == "done"


def test_delivery_retries_503_and_delivers_exactly_once(harness: Harness, odoo: FakeOdoo) -> None:
    events = session_events(DEV_A, 2)
    odoo.fail_next(2, 503)

    async def body(delivery: Delivery, db: DbWorker) -> None:
        await db.call(harness.store.commit, events, {})
        delivery.notify()
        await until(lambda: delivery.status.odoo_reachable is False)
        assert harness.store.stats().depth == len(events)  # kept while Odoo is down
        await until(lambda: harness.store.stats().depth == 0)
        assert delivery.status.odoo_reachable is True
        assert delivery.status.failures == 0

    asyncio.run(harness.run(body))
    assert odoo.stored_uids() == [e.event_uid for e in events]
    posts = [r for r in odoo.requests() if r.method == "POST"]
    assert [r.status for r in posts] == [503, 503, 200]
    assert all(r.event_uids == [e.event_uid for e in events] for r in posts)
    gaps = [b.t - a.t for a, b in itertools.pairwise(posts)]
    assert gaps[0] >= 0.2 * 0.95  # first retry after first_retry
    assert gaps[1] >= 0.4 * 0.8 * 0.95  # then doubled (jitter 0.8..1.2)
    assert gaps[0] < 2.0
    assert gaps[1] < 2.0
    assert harness.metrics.odoo_errors == 2
    assert delivery_statuses(harness) == {"created": 4}


def test_delivery_honours_retry_after(harness: Harness, odoo: FakeOdoo) -> None:
    events = session_events(DEV_B, 1)
    odoo.fail_next(1, 429, retry_after=1)

    async def body(delivery: Delivery, db: DbWorker) -> None:
        await db.call(harness.store.commit, events, {})
        delivery.notify()
        await until(lambda: delivery.status.odoo_reachable is False)
        assert delivery.status.next_retry_at is not None
        assert delivery.status.next_retry_at - time.time() > 0.7
        delivery.notify()  # new events arriving must not cut the back-off short
        await until(lambda: harness.store.stats().depth == 0)

    asyncio.run(harness.run(body))
    posts = [r for r in odoo.requests() if r.method == "POST"]
    assert [r.status for r in posts] == [429, 200]
    assert posts[1].t - posts[0].t >= 1.0 * 0.95  # Retry-After 1 s beats first_retry 0.2 s
    assert odoo.stored_uids() == [e.event_uid for e in events]


def test_delivery_keeps_events_on_401_and_reports_it(harness: Harness, odoo: FakeOdoo) -> None:
    events = session_events(DEV_A, 1)

    async def body(delivery: Delivery, db: DbWorker) -> None:
        await db.call(harness.store.commit, events, {})
        delivery.notify()
        await until(lambda: delivery.status.auth_failed)
        assert harness.store.stats().depth == 2
        assert TOKEN not in (delivery.status.last_error or "")
        odoo.set_token("rotated-in-odoo")  # no change for the bridge: it keeps failing
        await until(lambda: delivery.status.failures >= 2)
        assert harness.store.stats().depth == 2
        rows = harness.store.pending(10)
        assert all(r.attempts >= 1 for r in rows)

    asyncio.run(harness.run(body, token="stale-token"))
    assert odoo.stored_events() == []
    assert harness.store.dead_letters() == []


def test_delivery_lost_response_is_retried_and_stored_once(
    harness: Harness, odoo: FakeOdoo
) -> None:
    events = session_events(DEV_A, 2)
    odoo.drop_response_next(1)

    async def body(delivery: Delivery, db: DbWorker) -> None:
        await db.call(harness.store.commit, events, {})
        delivery.notify()
        await until(lambda: harness.store.stats().depth == 0)

    asyncio.run(harness.run(body))
    assert odoo.stored_uids() == [e.event_uid for e in events]  # stored once each
    posts = [r for r in odoo.requests() if r.method == "POST"]
    assert [r.dropped for r in posts] == [True, False]
    assert delivery_statuses(harness) == {"duplicate": 4}
