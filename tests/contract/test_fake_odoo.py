"""The fault knobs and read-outs of ``FakeOdoo`` itself (not part of the contract suite).

These always run against a private ``FakeOdoo``, also when ``CONTRACT_ODOO_URL`` points the
contract suite at a real server.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator

import pytest

from tests.contract._client import (
    Api,
    Target,
    discovered_plug,
    make_event,
    make_status,
    new_uid,
    run_start,
    run_stop,
    status_device,
)
from tests.support.fake_odoo import FakeOdoo

DEVICE = {
    "device_id": "dev-1",
    "mqtt_topic": "m1/status/pm1:0",
    "parser_type": "shelly_pm_mini_g3",
    "machine_name": "M1",
    "session_config": {
        "strategy": "power_threshold",
        "standby_threshold_w": 20,
        "working_threshold_w": 100,
        "start_debounce_s": 3,
        "stop_debounce_s": 15,
        "message_timeout_s": 20,
    },
}


@pytest.fixture
def fake() -> Iterator[FakeOdoo]:
    with FakeOdoo(devices=[DEVICE]) as server:
        yield server


@pytest.fixture
def fapi(fake: FakeOdoo) -> Api:
    return Api(Target(fake.url, fake.token, "dev-1", "dev-foreign", True), timeout=5)


def test_stored_events_and_requests(fake: FakeOdoo, fapi: Api) -> None:
    e1, e2 = make_event("dev-1"), make_event("dev-1")
    assert fapi.post_event(e1).status == 201
    assert fapi.post_events([e1, e2]).status == 200
    assert fake.stored_uids() == [e1["event_uid"], e2["event_uid"]]
    assert fake.stored_events()[0] == e1
    records = fake.requests()
    assert [(r.method, r.path, r.status) for r in records] == [
        ("POST", "/ows/iot/event", 201),
        ("POST", "/ows/iot/events", 200),
    ]
    assert records[1].event_uids == [e1["event_uid"], e2["event_uid"]]
    assert records[0].t <= records[1].t


def test_fail_next(fake: FakeOdoo, fapi: Api) -> None:
    fake.fail_next(2, 503, retry_after=7)
    event = make_event("dev-1")
    first = fapi.post_event(event)
    assert first.status == 503
    assert first.headers["retry-after"] == "7"
    assert "error" in first.json()
    assert fapi.post_events([event]).status == 503
    assert fake.stored_uids() == []
    assert fapi.post_event(event).status == 201
    fake.fail_next(1, 401)
    resp = fapi.post_event(make_event("dev-1"))
    assert (resp.status, resp.json()) == (401, {"error": "unauthorized"})
    fake.fail_next(1, 429)
    resp = fapi.post_event(make_event("dev-1"))
    assert resp.status == 429
    assert "retry-after" not in resp.headers
    assert fapi.get_config().status == 200  # GET is not affected


def test_drop_response_next_commits(fake: FakeOdoo, fapi: Api) -> None:
    fake.drop_response_next(1)
    event = make_event("dev-1")
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        fapi.post_event(event)
    assert fake.stored_uids() == [event["event_uid"]]
    assert fapi.post_event(event).status == 200
    assert [r.status for r in fake.requests()] == [0, 200]
    assert fake.requests()[0].dropped


def test_delay(fake: FakeOdoo, fapi: Api) -> None:
    fake.set_delay(0.3)
    start = time.monotonic()
    assert fapi.post_event(make_event("dev-1")).status == 201
    assert time.monotonic() - start >= 0.3
    fake.set_delay(0)
    start = time.monotonic()
    assert fapi.post_event(make_event("dev-1")).status == 201
    assert time.monotonic() - start < 0.3


def test_reject_device(fake: FakeOdoo, fapi: Api) -> None:
    fake.reject_device("dev-1")
    resp = fapi.post_event(make_event("dev-1"))
    assert (resp.status, resp.json()["error"]) == (400, "invalid_event")
    results = fapi.post_events([make_event("dev-1")]).json()["results"]
    assert results[0]["status"] == "invalid_event"
    fake.reject_device("dev-1", 503)
    assert fapi.post_event(make_event("dev-1")).status == 503
    assert fapi.post_events([make_event("dev-1")]).status == 503
    assert fake.stored_uids() == []


def test_batch_disabled(fake: FakeOdoo, fapi: Api) -> None:
    fake.set_batch_enabled(False)
    assert fapi.post_events([make_event("dev-1")]).status == 404
    assert fapi.post_event(make_event("dev-1")).status == 201
    fake.set_batch_enabled(True)
    assert fapi.post_events([make_event("dev-1")]).status == 200


def test_token_rotation(fake: FakeOdoo, fapi: Api) -> None:
    fake.set_token("new-token")
    assert fapi.get_config().status == 401
    assert fapi.get_config(token="new-token").status == 200
    assert fake.token == "new-token"


def test_set_devices_bumps_version(fake: FakeOdoo, fapi: Api) -> None:
    assert fapi.get_config().json()["config_version"] == "1"
    fake.set_devices([])
    assert fapi.get_config().json() == {"config_version": "2", "devices": []}
    assert fapi.post_event(make_event("dev-1")).status == 404
    fake.set_devices([DEVICE], config_version="abc")
    assert fapi.get_config().json()["config_version"] == "abc"


def test_sessions_view(fake: FakeOdoo, fapi: Api) -> None:
    s1, s2 = new_uid(), new_uid()
    assert fapi.post_event(run_start("dev-1", s1, "2026-01-31T10:30:18.500Z")).status == 201
    assert fake.sessions()[s1]["state"] == "running"
    assert fapi.post_event(run_stop("dev-1", s1)).status == 201
    assert fapi.post_event(run_stop("dev-1", s2)).status == 201  # stop before start
    sessions = fake.sessions()
    assert sessions[s1]["state"] == "done"
    assert sessions[s1]["started_at"] == "2026-01-31T10:30:18.500Z"
    assert sessions[s1]["duration_s"] == 187.3
    assert sessions[s1]["stop_reason"] == "normal"
    assert sessions[s2]["state"] == "done"
    assert sessions[s2]["started_at"] == "2026-01-31T10:30:18.500Z"
    assert fapi.post_event(run_start("dev-1", s2, "2026-01-31T10:30:18.500Z")).status == 201
    assert fake.sessions()[s2]["state"] == "done"


def _get_on(conn: http.client.HTTPConnection, headers: dict[str, str]) -> None:
    conn.request("GET", "/ows/iot/config", headers=headers)
    conn.getresponse().read()


def test_keep_alive_and_restart_on_same_port(fake: FakeOdoo) -> None:
    host, port = fake.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    headers = {"Authorization": f"Bearer {fake.token}", "Content-Type": "application/json"}
    for _ in range(20):
        conn.request("POST", "/ows/iot/event", json.dumps(make_event("dev-1")), headers)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 201
    url = fake.url
    fake.stop()
    # The kept-alive connection is cut, not served by a leftover thread.
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        _get_on(conn, headers)
    conn.close()
    fake.start()
    assert fake.url == url
    assert len(fake.stored_uids()) == 20
    assert Api(Target(url, fake.token, "dev-1", "x", True)).get_config().status == 200


def test_wait_for(fake: FakeOdoo) -> None:
    assert fake.wait_for(lambda f: f.stored_uids() == [], timeout=0.1)
    assert not fake.wait_for(lambda f: len(f.stored_uids()) > 0, timeout=0.05)


def test_status_read_outs(fake: FakeOdoo, fapi: Api) -> None:
    assert fake.last_status() is None
    archived = dict(DEVICE, device_id="dev-archived", mqtt_topic="old/status/pm1:0", active=False)
    fake.set_devices([DEVICE, archived], config_version="7")
    status = make_status(
        [status_device("dev-1"), status_device("dev-archived", "idle"), status_device("x", "idle")],
        [
            discovered_plug("shellies/new-1", first_seen="2026-01-31T09:00:00.000Z"),
            discovered_plug("m1/status/pm1:0", device_id="other"),  # dev-1's topic
            discovered_plug("shellies/x", device_id="dev-archived"),  # a configured id
        ],
    )
    body = fapi.post_status(status).json()
    assert body == {
        "status": "ok",
        "config_version": "7",
        "unknown_devices": ["dev-archived", "x"],
    }
    assert fake.last_status() == status
    assert fake.live_devices() == {"dev-1": status["devices"][0]}
    assert list(fake.discovered()) == ["shellies/new-1"]
    later = make_status(
        discovered=[discovered_plug("shellies/new-1", first_seen="2026-01-31T09:30:00.000Z")]
    )
    assert fapi.post_status(later).json()["status"] == "ok"
    merged = fake.discovered()["shellies/new-1"]
    assert merged["first_seen"] == "2026-01-31T09:00:00.000Z"
    assert merged["last_seen"] == later["discovered"][0]["last_seen"]
    # A status without devices changes nobody's live state.
    assert fake.live_devices() == {"dev-1": status["devices"][0]}


def test_status_knobs_leave_events_alone(fake: FakeOdoo, fapi: Api) -> None:
    fake.fail_status_next(1, 503)
    fake.fail_next(1, 500)
    resp = fapi.post_status(make_status())
    assert (resp.status, resp.json()) == (503, {"error": "server_error"})
    assert fapi.post_event(make_event("dev-1")).status == 500
    assert fapi.post_status(make_status()).status == 200
    assert fake.last_status() is not None
    fake.set_status_enabled(False)
    assert fapi.post_status(make_status()).status == 404
    assert fapi.post_event(make_event("dev-1")).status == 201
    fake.set_status_enabled(True)
    assert fapi.post_status(make_status()).status == 200
    assert [r.path for r in fake.requests()].count("/ows/iot/status") == 4


def test_status_ordering_reads_the_fakes_clock() -> None:
    now = [1_800_000_000.0]  # 2027-01-15T08:00:00Z
    with FakeOdoo(devices=[DEVICE], clock=lambda: now[0]) as fake:
        fapi = Api(Target(fake.url, fake.token, "dev-1", "dev-foreign", True), timeout=5)
        ahead = make_status(sent_at="2027-01-15T08:04:00.000Z")  # 4 min ahead of the fake
        assert fapi.post_status(ahead).json()["status"] == "ok"
        earlier = make_status(sent_at="2027-01-15T08:00:00.000Z")
        assert fapi.post_status(earlier).json()["status"] == "stale"
        now[0] -= 120  # the fake's clock now says 07:58: the stored one is 6 min ahead
        assert fapi.post_status(earlier).json()["status"] == "ok"
        assert fake.last_status() == earlier
