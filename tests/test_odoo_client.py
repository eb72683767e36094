"""The Odoo client against FakeOdoo over real HTTP: every answer of ``odoo-api.md`` read by its
meaning (the delivery loop is in ``test_delivery.py``)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from email.utils import formatdate
from typing import Any, TypeVar

import pytest

from iot_bridge.errors import OdooAuthError, OdooTooLarge, OdooUnavailable
from iot_bridge.events import Event, event_uid, session_uid
from iot_bridge.odoo_api.client import OdooClient, Result
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


# -- answers that are not the contract's: retried, never a dead letter, never the body ---------


SECRET_BODY = "internal stack trace with db password hunter2"


@pytest.mark.parametrize(
    ("status_line", "content_type", "body"),
    [
        pytest.param("403 Forbidden", "text/html", f"<h1>WAF</h1>{SECRET_BODY}", id="waf-403-html"),
        pytest.param("400 Bad Request", "text/html", f"<h1>x</h1>{SECRET_BODY}", id="proxy-400"),
        pytest.param("404 Not Found", "text/html", SECRET_BODY, id="proxy-404-html"),
        pytest.param("409 Conflict", "text/plain", SECRET_BODY, id="plain-409"),
        pytest.param(
            "400 Bad Request", "application/json", '{"error": "bad_request", "x": "hunter2"}',
            id="json-400-not-the-contracts",
        ),
        pytest.param(
            "404 Not Found", "application/json", '{"error": "not_found"}', id="json-404-no-route"
        ),
        pytest.param("502 Bad Gateway", "text/html", SECRET_BODY, id="proxy-502"),
        pytest.param("418 I'm a teapot", "application/json", '{"hunter2": 1}', id="teapot"),
        pytest.param(
            "400 Bad Request", "text/html", '{"error": "invalid_event"}', id="contract-not-json"
        ),
    ],
)  # fmt: skip
def test_answers_outside_the_contract_are_retried_without_the_body(
    status_line: str, content_type: str, body: str
) -> None:
    exc = unavailable_from(status_line, {"Content-Type": content_type}, body.encode())
    status = int(status_line.split(maxsplit=1)[0])
    assert exc.status == status
    assert f"answered {status}" in str(exc)
    assert "hunter2" not in str(exc)
    assert "<h1>" not in str(exc)
    assert len(str(exc)) < 120


def test_html_answer_names_its_content_type() -> None:
    exc = unavailable_from("403 Forbidden", {"Content-Type": "text/html"}, b"<h1>no</h1>")
    assert str(exc) == "POST /ows/iot/event answered 403 (not the contract's answer: text/html)"


def test_413_is_too_large_not_a_rejection(odoo: FakeOdoo) -> None:
    odoo.set_body_limit(100)
    exc = post_expecting(odoo, start_event(DEV_A, T0), OdooTooLarge)
    assert isinstance(exc, OdooTooLarge)
    assert exc.status == 413
    assert "payload_too_large" in str(exc)
    assert odoo.stored_events() == []


def test_html_413_from_a_proxy_is_too_large() -> None:
    exc = unavailable_from("413 Request Entity Too Large", {"Content-Type": "text/html"}, b"<h1/>")
    assert isinstance(exc, OdooTooLarge)


def test_409_conflict_is_a_dead_letter(odoo: FakeOdoo) -> None:
    other = FakeOdoo(token=TOKEN, devices=DEVICES, other_bridges={"theirs": DEVICES}).start()
    try:
        ev = start_event(DEV_A, T0)

        async def claim_then_post(c: OdooClient) -> Result:
            thief = OdooClient(other.url, "theirs", timeout=5.0)
            try:
                assert (await thief.post_event(ev.event_uid, ev.to_json())).status == "created"
            finally:
                await thief.close()
            return await c.post_event(ev.event_uid, ev.to_json())

        # the same uid, our device, stored by the other bridge first
        result = with_client(other.url, claim_then_post)
    finally:
        other.stop()
    assert (result.status, result.http_status, result.done) == ("conflict", 409, False)
    assert result.detail is not None
    assert "another" in result.detail


def test_batch_conflict_item(odoo: FakeOdoo) -> None:
    other = FakeOdoo(token=TOKEN, devices=DEVICES, other_bridges={"theirs": DEVICES}).start()
    try:
        claimed, fine = start_event(DEV_A, T0), start_event(DEV_B, T0)

        async def go(c: OdooClient) -> list[Result]:
            thief = OdooClient(other.url, "theirs", timeout=5.0)
            try:
                await thief.post_event(claimed.event_uid, claimed.to_json())
            finally:
                await thief.close()
            events = [claimed, fine]
            return await c.post_events([e.event_uid for e in events], [e.to_json() for e in events])

        results = with_client(other.url, go)
    finally:
        other.stop()
    assert [(r.status, r.http_status) for r in results] == [("conflict", 409), ("created", 201)]


def test_batch_refused_as_a_whole_is_unavailable_with_its_status(odoo: FakeOdoo) -> None:
    events = [start_event(DEV_A, T0), start_event(DEV_B, T0)]
    odoo.fail_next(1, 500)

    async def go(c: OdooClient) -> OdooUnavailable:
        with pytest.raises(OdooUnavailable) as info:
            await c.post_events([e.event_uid for e in events], [e.to_json() for e in events])
        return info.value

    exc = with_client(odoo.url, go)
    assert exc.status == 500
    assert "server_error" in str(exc)


def test_connection_error_message_is_short_and_has_no_token(odoo: FakeOdoo) -> None:
    odoo.stop()
    exc = post_expecting(odoo, start_event(DEV_A, T0), OdooUnavailable)
    assert isinstance(exc, OdooUnavailable)
    assert exc.status is None
    assert TOKEN not in str(exc)
    assert len(str(exc)) <= 160
