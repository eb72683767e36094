"""The heartbeat (``runtime/heartbeat.py``) on a fake clock: when statuses go out, what they
say, and what each of Odoo's answers (``docs/odoo-api.md``, POST /ows/iot/status) makes the
bridge do. The answer rows run against the test Odoo over real HTTP where it can give them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from iot_bridge.errors import OdooAuthError, OdooUnavailable
from iot_bridge.events import format_ts
from iot_bridge.odoo_api.client import OdooClient, StatusAnswer
from iot_bridge.runtime.discovery import DEFAULT_TOPICS, Discovery
from iot_bridge.runtime.heartbeat import (
    MISSING_ROUTE_RETRY_S,
    Heartbeat,
    StatusTimer,
    build_status,
)
from iot_bridge.runtime.service import Bridge
from iot_bridge.runtime.tracked import DeviceView
from iot_bridge.settings import load, sample_path
from tests.support.clock import FakeClock, settle
from tests.support.fake_odoo import FakeOdoo, validate_status

T0 = 1_800_000_000.0
REPORT: dict[str, Any] = {
    "problems": [],
    "warnings": ["subscriptions_silent"],
    "mqtt_connected": True,
    "queue_depth": 0,
    "oldest_queued_age_s": None,
    "config_version": "1",
}
VIEW = DeviceView("shellypmminig3-alpha", "working", True, T0 - 1, 120.5, "sess-1", T0 - 60)

# -- StatusTimer: pure ------------------------------------------------------------------------


def test_the_first_status_is_due_at_start_then_every_interval() -> None:
    timer = StatusTimer(30.0, T0)
    assert timer.get_timer() == T0
    assert timer.handle_timer(T0)
    timer.sent(T0)
    assert timer.get_timer() == T0 + 30
    assert not timer.handle_timer(T0 + 29.9)
    assert timer.handle_timer(T0 + 30)


def test_a_change_sends_promptly_but_not_within_two_seconds_of_the_last() -> None:
    timer = StatusTimer(30.0, T0)
    timer.sent(T0)
    timer.changed(T0 + 0.5)
    assert timer.get_timer() == T0 + 2.0  # the window after the last status
    timer.changed(T0 + 1.0)  # another change in that window: the same status
    timer.changed(T0 + 1.9)
    assert timer.get_timer() == T0 + 2.0
    timer.sent(T0 + 2.0)
    timer.changed(T0 + 10.0)  # long after: at once
    assert timer.get_timer() == T0 + 10.0


def test_interval_zero_sends_nothing_ever() -> None:
    timer = StatusTimer(0.0, T0)
    assert timer.get_timer() is None
    timer.changed(T0 + 5)
    assert timer.get_timer() is None
    assert not timer.handle_timer(T0 + 1e6)


def test_a_pause_holds_even_prompt_statuses() -> None:
    timer = StatusTimer(30.0, T0)
    timer.sent(T0)
    timer.pause(T0, MISSING_ROUTE_RETRY_S)
    timer.changed(T0 + 5)
    assert timer.get_timer() == T0 + MISSING_ROUTE_RETRY_S
    timer.sent(T0 + MISSING_ROUTE_RETRY_S)  # the pause is over: asked again
    timer.changed(T0 + MISSING_ROUTE_RETRY_S + 5)  # and prompt again
    assert timer.get_timer() == T0 + MISSING_ROUTE_RETRY_S + 5


# -- the running heartbeat, on a fake clock -----------------------------------------------------


class StubClient:
    """Answers statuses from a script; records when each arrived (on the fake clock)."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.times: list[float] = []
        self.bodies: list[dict[str, Any]] = []
        self.answers: list[StatusAnswer | Exception | None] = []  # None: never answers

    async def post_status(self, body: bytes) -> StatusAnswer:
        self.times.append(self.clock.now())
        self.bodies.append(orjson.loads(body))
        answer = self.answers.pop(0) if self.answers else StatusAnswer("ok", "1")
        if answer is None:
            await asyncio.Event().wait()
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, StatusAnswer)
        return answer


class Harness:
    def __init__(self, clock: FakeClock, client: Any, interval: float = 30.0) -> None:
        self.answered: list[tuple[bool, bool, str]] = []
        self.refetches = 0
        self.version: str | None = "1"
        self.views: list[DeviceView] = [VIEW]

        async def report() -> dict[str, Any]:
            return dict(REPORT, config_version=self.version)

        def refetch() -> None:
            self.refetches += 1

        self.beat = Heartbeat(
            cast(OdooClient, client),
            clock,
            interval=interval,
            request_timeout=10.0,
            started=T0 - 100,
            version="0.1.0",
            report=report,
            views=lambda: self.views,
            discovered=list,
            running_version=lambda: self.version,
            answered=lambda ok, auth, error: self.answered.append((ok, auth, error)),
            refetch=refetch,
        )


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_statuses_go_out_every_interval_and_promptly_on_change_at_most_one_per_2s() -> None:
    async def go() -> list[float]:
        clock = FakeClock(T0)
        client = StubClient(clock)
        h = Harness(clock, client)
        task = asyncio.create_task(h.beat.run())
        await clock.advance(61)  # T0, T0+30, T0+60
        h.beat.changed()  # at T0+61: promptly (last status 1 s ago: at T0+62)
        await clock.advance(0.5)
        h.beat.changed()  # T0+61.5: the same status
        await clock.advance(1.0)  # T0+62.5
        h.beat.changed()  # T0+62.5: the next window, T0+64
        await clock.advance(10)
        task.cancel()
        return [t - T0 for t in client.times]

    assert run(go()) == [0.0, 30.0, 60.0, 62.0, 64.0]


def test_no_status_with_interval_zero() -> None:
    async def go() -> int:
        clock = FakeClock(T0)
        client = StubClient(clock)
        h = Harness(clock, client, interval=0.0)
        await asyncio.wait_for(h.beat.run(), 1)  # returns at once
        h.beat.changed()
        await clock.advance(100)
        return len(client.times)

    assert run(go()) == 0


def test_a_status_that_never_answers_times_out_and_the_next_goes_out_on_time() -> None:
    async def go() -> tuple[list[float], list[Any]]:
        clock = FakeClock(T0)
        client = StubClient(clock)
        client.answers = [None]  # the first hangs
        h = Harness(clock, client)
        task = asyncio.create_task(h.beat.run())
        await clock.advance(31)
        task.cancel()
        return [t - T0 for t in client.times], h.answered

    times, answered = run(go())
    assert times == [0.0, 30.0]  # request timeout 10 + 1 s cut the first; not resent
    # the first counts Odoo unreachable (no answer at all), the second reachable again
    assert answered == [(False, False, "POST /ows/iot/status: timed out"), (True, False, "")]


@pytest.mark.parametrize(
    ("error", "unreachable"),
    [
        (OdooUnavailable("POST /ows/iot/status answered 503", status=503), False),
        (OdooUnavailable("POST /ows/iot/status answered 429", status=429), False),
        (OdooUnavailable("POST /ows/iot/status: ClientConnectorError"), True),  # no answer
    ],
)
def test_transient_failures_are_not_resent(error: OdooUnavailable, unreachable: bool) -> None:
    async def go() -> tuple[list[float], Harness]:
        clock = FakeClock(T0)
        client = StubClient(clock)
        client.answers = [error]
        h = Harness(clock, client)
        task = asyncio.create_task(h.beat.run())
        await clock.advance(29)
        task.cancel()
        return [t - T0 for t in client.times], h

    times, h = run(go())
    assert times == [0.0]
    assert h.answered == ([(False, False, str(error))] if unreachable else [])
    assert h.refetches == 0
    assert h.beat.timer.get_timer() == T0 + 30


def test_401_is_an_auth_failure_as_for_events() -> None:
    async def go() -> Harness:
        clock = FakeClock(T0)
        client = StubClient(clock)
        client.answers = [OdooAuthError("POST /ows/iot/status: token refused (401)")]
        h = Harness(clock, client)
        await h.beat.send(clock.now())
        return h

    h = run(go())
    assert h.answered == [(False, True, "POST /ows/iot/status: token refused (401)")]


def test_400_is_logged_with_its_detail_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> Harness:
        clock = FakeClock(T0)
        client = StubClient(clock)
        client.answers = [StatusAnswer("invalid", detail="devices[3].state")]
        h = Harness(clock, client)
        await h.beat.send(clock.now())
        return h

    h = run(go())
    assert h.beat.counters.refused == 1
    assert h.beat.counters.last_refusal == "devices[3].state"
    assert "devices[3].state" in caplog.text
    assert h.answered == []
    assert h.beat.timer.get_timer() == T0 + 30  # the next one as usual


def test_404_pauses_statuses_for_ten_minutes() -> None:
    async def go() -> tuple[list[float], Harness]:
        clock = FakeClock(T0)
        client = StubClient(clock)
        client.answers = [StatusAnswer("missing")]
        h = Harness(clock, client)
        task = asyncio.create_task(h.beat.run())
        await clock.advance(100)
        h.beat.changed()  # not even a change is sent
        await clock.advance(MISSING_ROUTE_RETRY_S - 100 + 10)
        task.cancel()
        return [t - T0 for t in client.times], h

    times, h = run(go())
    assert times == [0.0, MISSING_ROUTE_RETRY_S]
    assert h.answered == [(True, False, "")]  # the second was taken (ok)
    assert h.beat.counters.route_missing is False


@pytest.mark.parametrize(
    ("answer", "refetch"),
    [
        (StatusAnswer("ok", "1"), 0),
        (StatusAnswer("stale", "1"), 0),
        (StatusAnswer("ok", "2"), 1),  # Odoo's config moved on
        (StatusAnswer("stale", "2"), 1),
        (StatusAnswer("ok", "1", ("shellypmminig3-gone",)), 1),  # a device Odoo no longer has
        (StatusAnswer("ok", None), 0),  # no version said: no fetch per status
    ],
)
def test_ok_and_stale_count_odoo_reachable_and_refetch_when_the_config_differs(
    answer: StatusAnswer, refetch: int
) -> None:
    async def go() -> Harness:
        clock = FakeClock(T0)
        client = StubClient(clock)
        client.answers = [answer]
        h = Harness(clock, client)
        await h.beat.send(clock.now())
        return h

    h = run(go())
    assert h.answered == [(True, False, "")]
    assert h.refetches == refetch


def test_a_bridge_without_config_yet_refetches() -> None:
    async def go() -> Harness:
        clock = FakeClock(T0)
        h = Harness(clock, StubClient(clock))
        h.version = None
        await h.beat.send(clock.now())
        return h

    assert run(go()).refetches == 1


# -- the body -----------------------------------------------------------------------------------


def test_the_body_is_the_contracts_table() -> None:
    body = build_status(
        now=T0, started=T0 - 100, version="0.1.0", report=REPORT, views=[VIEW], discovered=[]
    )
    assert validate_status(body) is None
    assert body["sent_at"] == format_ts(T0)
    assert body["bridge"] == {
        "version": "0.1.0",
        "started_at": format_ts(T0 - 100),
        "uptime_s": 100.0,
        "mqtt_connected": True,
        "queue_depth": 0,
        "oldest_queued_age_s": None,
        "problems": [],
        "warnings": ["subscriptions_silent"],
        "config_version": "1",
    }
    assert body["devices"] == [
        {
            "device_id": "shellypmminig3-alpha",
            "state": "working",
            "online": True,
            "last_seen": format_ts(T0 - 1),
            "power_w": 120.5,
            "session_id": "sess-1",
            "session_started_at": format_ts(T0 - 60),
        }
    ]
    assert body["discovered"] == []


def test_hostile_input_cannot_get_the_status_refused() -> None:
    many = [f"warning {i} " + "x" * 600 + "\x00" for i in range(150)]
    report = dict(REPORT, warnings=many, config_version="v\x00" + "9" * 1000)
    views = [
        DeviceView("bad\x00id", "working", True, None, None, None, None),  # cannot be sent
        DeviceView("offline-one", "offline", False, T0, None, None, None),  # offline: idle
        *(DeviceView(f"d{i}", "idle", None, None, None, None, None) for i in range(2100)),
    ]
    discovery = Discovery()
    discovery.handle(
        "shellies/announce",
        orjson.dumps(
            {"id": "p\x00" + "q" * 400, "model": "M" * 900, "ip": "\x00" * 3, "fw_ver": "f" * 5000}
        ),
        T0,
    )
    for i in range(700):
        discovery.handle(f"tele/t{i}/LWT", b"Online", T0)
    body = build_status(
        now=T0,
        started=T0,
        version="0.1.0",
        report=report,
        views=views,
        discovered=discovery.entries(None, T0),
    )
    assert validate_status(body) is None
    assert len(body["bridge"]["warnings"]) == 100
    assert len(body["devices"]) == 2000
    assert body["devices"][0] == {
        "device_id": "offline-one",
        "state": "idle",
        "online": False,
        "last_seen": format_ts(T0),
        "power_w": None,
        "session_id": None,
        "session_started_at": None,
    }
    assert len(body["discovered"]) == 500
    assert "\x00" not in orjson.dumps(body).decode()


# -- OdooClient.post_status against the test Odoo over HTTP ------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeOdoo]:
    devices = [
        {
            "device_id": "shellypmminig3-alpha",
            "mqtt_topic": "alpha/status/pm1:0",
            "parser_type": "shelly_pm_mini_g3",
        }
    ]
    with FakeOdoo(token="tok", devices=devices) as odoo:
        yield odoo


def _body(*device_ids: str) -> bytes:
    views = [DeviceView(d, "idle", None, None, None, None, None) for d in device_ids]
    return orjson.dumps(
        build_status(now=T0, started=T0, version="0.1.0", report=REPORT, views=views, discovered=[])
    )


def test_the_client_reads_every_answer_of_the_contract(fake: FakeOdoo) -> None:
    async def go() -> list[Any]:
        client = OdooClient(fake.url, "tok", 5.0)
        out: list[Any] = []
        try:
            out.append(await client.post_status(_body("shellypmminig3-alpha", "stranger")))
            out.append(await client.post_status(b'{"sent_at": "yesterday"}'))
            fake.fail_status_next(1, 503)
            with pytest.raises(OdooUnavailable):
                await client.post_status(_body())
            fake.fail_status_next(1, 429)
            with pytest.raises(OdooUnavailable):
                await client.post_status(_body())
            fake.set_status_enabled(False)
            out.append(await client.post_status(_body()))
            fake.set_status_enabled(True)
            wrong = OdooClient(fake.url, "wrong", 5.0)
            with pytest.raises(OdooAuthError):
                await wrong.post_status(_body())
            await wrong.close()
        finally:
            await client.close()
        return out

    ok, invalid, missing = run(go())
    assert ok == StatusAnswer("ok", fake.config_version, ("stranger",))
    assert invalid.kind == "invalid"
    assert invalid.detail is not None
    assert "sent_at" in invalid.detail
    assert missing == StatusAnswer("missing")
    assert fake.live_devices().keys() == {"shellypmminig3-alpha"}


def test_a_real_heartbeat_against_the_test_odoo(fake: FakeOdoo) -> None:
    """The whole loop over HTTP: the status is stored, and a config that moved on is
    fetched at once."""

    async def go() -> Harness:
        clock = FakeClock(T0)
        client = OdooClient(fake.url, "tok", 5.0, clock=clock)
        h = Harness(clock, client)
        h.version = "0"  # the bridge runs an older config
        await h.beat.send(clock.now())
        await settle()
        await client.close()
        return h

    h = run(go())
    assert h.answered == [(True, False, "")]
    assert h.refetches == 1
    status = fake.last_status()
    assert status is not None
    assert status["devices"][0]["device_id"] == "shellypmminig3-alpha"


# -- the service's wiring ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "beats", "discovers"),
    [
        ({}, False, False),  # standalone: no one to tell
        ({"ODOO_URL": "http://127.0.0.1:9", "ODOO_TOKEN": "t"}, True, True),
        (
            {"ODOO_URL": "http://127.0.0.1:9", "ODOO_TOKEN": "t", "STATUS_INTERVAL": "0"},
            False,
            False,
        ),
        ({"ODOO_URL": "http://127.0.0.1:9", "ODOO_TOKEN": "t", "DISCOVERY": "false"}, True, False),
    ],
)
def test_the_bridge_beats_and_discovers_only_where_someone_hears_it(
    tmp_path: Path, env: dict[str, str], beats: bool, discovers: bool
) -> None:
    base = {"MQTT_URL": "mqtt://127.0.0.1:9", "DATA_DIR": str(tmp_path), "HEALTH_PORT": "0"}
    if "ODOO_URL" not in env:
        base["DEVICES_FILE"] = str(sample_path("devices.json"))
    bridge = Bridge(load(base | env))
    try:
        assert (bridge.heartbeat is not None) is beats
        assert (bridge.discovery is not None) is discovers
        assert bool(set(DEFAULT_TOPICS) & set(bridge.pipeline.subscriptions())) is discovers
    finally:
        bridge.db.close()
        bridge.store.close()
