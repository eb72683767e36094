"""The intake in simulated time: a fake source, a fake clock, the real pipeline and a real SQLite
store. What crosses the wire is tested in ``tests/integration``; here is the order of things."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pytest

from iot_bridge.devices import device_set_from_json
from iot_bridge.errors import StoreError
from iot_bridge.events import format_ts
from iot_bridge.outbox.store import Store
from iot_bridge.outbox.worker import DbWorker
from iot_bridge.runtime.intake import EARLY_ACKS, INLINE_COMMIT_MAX, Intake
from iot_bridge.runtime.metrics import Metrics
from iot_bridge.runtime.pipeline import Pipeline
from tests.support.clock import FakeClock, settle
from tests.support.source import FakeSource, notify, pm1

P = ParamSpec("P")
R = TypeVar("R")

TOPIC = "m1/status/pm1:0"
EVENTS_TOPIC = "m1/events/rpc"
SESSION = {"standby_threshold_w": 20, "working_threshold_w": 100, "start_debounce_s": 3,
           "stop_debounce_s": 5, "message_timeout_s": 20}  # fmt: skip
CONFIG = device_set_from_json(
    {
        "config_version": "1",
        "devices": [
            {"device_id": "dev-1", "mqtt_topic": TOPIC, "parser_type": "shelly_pm_mini_g3",
             "session_config": SESSION},
            {"device_id": "dev-2", "mqtt_topic": "m2/status/pm1:0",
             "parser_type": "shelly_pm_mini_g3", "session_config": SESSION},
        ],
    }
)  # fmt: skip


class InlineDb(DbWorker):
    """The database calls on the loop's thread: deterministic under the fake clock."""

    async def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        return fn(*args, **kwargs)


class FlakyStore(Store):
    """A store whose disk can be made full."""

    fail = False

    def commit(self, *args: Any, **kwargs: Any) -> int:
        if self.fail:
            raise StoreError("database or disk is full")
        return super().commit(*args, **kwargs)

    def probe_writable(self) -> None:
        if self.fail:
            raise StoreError("only 0 bytes free")
        super().probe_writable()


@dataclass
class Rig:
    clock: FakeClock
    source: FakeSource
    store: FlakyStore
    pipeline: Pipeline
    intake: Intake

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.store.all_events() if kind is None or e["event_type"] == kind]

    async def run(self, seconds: float) -> None:
        await self.clock.advance(seconds)

    async def connected(self) -> None:
        """The broker answers and has nothing held for us; a second passes."""
        self.source.connect()
        await self.run(1)

    async def work(self, topic: str = "", seconds: int = 5) -> None:
        """``seconds`` of 500 W readings, one a second: past the start debounce."""
        await self.feed(topic or TOPIC, [pm1(500, 100 + i) for i in range(seconds)])

    async def feed(self, topic: str, payloads: list[bytes], every: float = 1.0) -> None:
        """One message per ``every`` seconds, live."""
        for payload in payloads:
            self.source.publish((topic, payload))
            await self.clock.advance(every)


@asynccontextmanager
async def rig(tmp_path: Path, clock: FakeClock | None = None) -> AsyncIterator[Rig]:
    clock = clock or FakeClock()
    source = FakeSource(clock.now)
    store = FlakyStore(tmp_path / "bridge.db")
    pipeline = Pipeline()
    intake = Intake(
        pipeline, store=store, db=InlineDb(), metrics=Metrics(), clock=clock, source=source
    )
    tasks = [asyncio.create_task(intake.run()), asyncio.create_task(intake.feed())]
    intake.apply_config(CONFIG)
    await clock.advance(0.1)
    try:
        yield Rig(clock, source, store, pipeline, intake)
    finally:
        intake.stop()
        await clock.advance(1)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        store.close()


def run(coro: Any) -> None:
    asyncio.run(coro)


# -- commit, then acknowledge ---------------------------------------------------------------------


def test_acks_follow_the_commit_of_their_effects(tmp_path: Path) -> None:
    async def go() -> None:
        async with rig(tmp_path) as r:
            r.source.connect()
            await r.run(1)
            seen: list[dict[str, Any]] = []
            r.source.on_ack = lambda gen, ids: seen.append(r.store.load_states())
            ids = r.source.publish((TOPIC, pm1(500)))
            await settle()
            assert r.source.acks == []  # gathered: the commit window is still open
            await r.run(0.03)
            assert r.source.acked_ids() == ids
            # at the moment of the PUBACK the reading's effect was already on disk
            assert seen[0]["dev-1"]["detector"]["state"] == "starting"

    run(go())


def test_a_full_group_commits_without_waiting_for_the_window(tmp_path: Path) -> None:
    async def go() -> None:
        async with rig(tmp_path) as r:
            r.source.connect()
            await r.run(1)
            ids = r.source.publish(*[(TOPIC, pm1(5)) for _ in range(EARLY_ACKS)])
            await settle()
            assert r.source.acked_ids() == ids  # no clock movement needed

    run(go())


def test_deadlines_fire_on_the_clock_for_a_silent_device(tmp_path: Path) -> None:
    async def go() -> None:
        async with rig(tmp_path) as r:
            r.source.connect()
            await r.run(1)
            t0 = r.clock.now()
            await r.work()
            assert [e["event_type"] for e in r.events()] == ["run_start"]
            assert r.events()[0]["payload"]["started_at"] == format_ts(t0)
            await r.run(30)  # the plug falls silent
            (stop,) = r.events("run_stop")
            assert stop["payload"]["reason"] == "timeout"
            assert stop["payload"]["stopped_at"] == format_ts(t0 + 4)
            assert stop["ts"] == format_ts(t0 + 4 + 20)  # decided T after the last reading

    run(go())


# -- a store that cannot be written ---------------------------------------------------------------


def test_store_failure_stops_intake_rolls_back_and_recovers(tmp_path: Path) -> None:
    async def go() -> None:
        async with rig(tmp_path) as r:
            r.source.connect()
            await r.run(1)
            await r.feed(TOPIC, [pm1(1)])
            committed = r.store.load_states()["dev-1"]
            r.store.fail = True
            unacked = r.source.publish((TOPIC, pm1(500)))
            await r.run(0.03)
            assert r.intake.store_error == "database or disk is full"
            assert r.source.paused
            assert r.source.pauses == 1
            assert not set(unacked) & set(r.source.acked_ids())  # never acknowledged
            # the detector is back where the disk says it was: the broker will redeliver
            assert r.pipeline.take_dirty_states() == {}
            assert r.pipeline.detector("dev-1").state.value == committed["detector"]["state"]
            await r.run(2.0)  # the probe: still full
            assert r.source.paused
            r.store.fail = False
            await r.run(2.0)
            assert r.intake.store_error is None
            assert not r.source.paused
            r.source.connect()  # the broker redelivers what we did not acknowledge
            t_back = r.clock.now()
            await r.work()
            (start,) = r.events("run_start")
            assert start["payload"]["started_at"] == format_ts(t_back)

    run(go())


# -- the bridge's own connection ------------------------------------------------------------------


def test_an_observed_broker_outage_never_ends_a_session(tmp_path: Path) -> None:
    async def go() -> None:
        async with rig(tmp_path) as r:
            await r.connected()
            await r.work()
            last = r.clock.now() - 1
            r.source.disconnect(observed=True)  # the broker went away
            await r.run(120)  # far longer than the 20 s message timeout
            assert r.events("run_stop") == []
            r.source.connect(session_present=True)
            await r.run(15)
            assert r.events("run_stop") == []  # the outage was not the device's silence
            await r.run(10)
            (stop,) = r.events("run_stop")
            assert stop["payload"]["reason"] == "timeout"
            assert stop["payload"]["stopped_at"] == format_ts(last)

    run(go())


def test_nothing_is_decided_while_catching_up(tmp_path: Path) -> None:
    """Until the broker's backlog is in, a silent device may only be a device we cannot hear."""

    async def go() -> None:
        async with rig(tmp_path) as r:
            await r.connected()
            await r.work()
            r.source.disconnect(observed=False)  # e.g. the bridge paused itself
            await r.run(5)
            r.source.connect(caught_up=False)
            await r.run(60)
            assert r.events("run_stop") == []
            r.source.catch_up()
            await r.run(0.1)
            (stop,) = r.events("run_stop")  # unforgiven: the device really was silent
            assert stop["payload"]["reason"] == "timeout"

    run(go())


# -- late readings keep their time ----------------------------------------------------------------


def _learn_offset(r: Rig, skew: float) -> Any:
    """Live idle frames on the events topic: the bridge learns the device clock's offset."""

    async def go() -> None:
        for _ in range(3):
            r.source.publish((EVENTS_TOPIC, notify(1.0, r.clock.now() - skew)))
            await r.clock.advance(1)

    return go()


def test_a_run_while_the_bridge_was_stopped_is_a_session_with_its_true_times(
    tmp_path: Path,
) -> None:
    skew = 3.7  # the device's clock runs 3.7 s behind the bridge's

    async def go() -> None:
        clock = FakeClock()
        async with rig(tmp_path, clock) as r:
            r.source.connect()
            await r.run(1)
            await _learn_offset(r, skew)
        # the bridge is stopped; meanwhile the machine runs 4 s at 400 W, then stops
        await clock.advance(60)
        run_start = clock.now() - 40
        backlog = [
            (EVENTS_TOPIC, notify(400.0 if i < 5 else 2.0, run_start + i - skew, 500.0 + i))
            for i in range(12)
        ]
        await clock.advance(30)
        async with rig(tmp_path, clock) as r2:  # restarted from the same store
            r2.source.connect(session_present=True, caught_up=False)
            r2.source.publish(*backlog)  # the broker's backlog arrives in one burst
            await settle()
            r2.source.catch_up()
            await r2.run(1)
            start, stop = r2.events()
            assert start["event_type"] == "run_start"
            assert start["payload"]["started_at"] == format_ts(run_start)
            assert stop["payload"]["reason"] == "normal"
            assert stop["payload"]["stopped_at"] == format_ts(run_start + 5)
            assert stop["payload"]["duration_s"] == 5.0
            assert stop["payload"]["timing"] == "measured"
            assert stop["payload"]["energy_wh"] == 5.0  # from the counter, exact either way

    run(go())


def test_late_readings_without_a_time_make_an_estimated_session(tmp_path: Path) -> None:
    async def go() -> None:
        clock = FakeClock()
        async with rig(tmp_path, clock) as r:
            r.source.connect()
            await r.run(1)
            await r.feed(TOPIC, [pm1(1.0, 500.0)] * 5)  # live: the cadence is 1 s
            last_heard = clock.now() - 1
            r.source.disconnect(observed=False)
            await r.run(120)
            r.source.connect(session_present=True, caught_up=False)
            backlog = [(TOPIC, pm1(400.0 if i < 6 else 2.0, 500.0 + i)) for i in range(14)]
            r.source.publish(*backlog)
            await settle()
            r.source.catch_up()
            back = clock.now()
            await r.run(1)
            start, stop = r.events("run_start") + r.events("run_stop")
            assert stop["payload"]["timing"] == "estimated"
            assert stop["payload"]["reason"] == "normal"
            started = start["payload"]["started_at"]
            # in order after the last reading heard, one cadence each, before the reconnection
            assert started == format_ts(last_heard + 1.0)
            assert started < format_ts(back)
            assert stop["payload"]["energy_wh"] == 6.0  # the counter does not depend on time
            assert 5.0 <= stop["payload"]["duration_s"] <= 7.0  # one cadence per reading

    run(go())


def test_a_redelivered_reading_is_not_applied_twice(tmp_path: Path) -> None:
    async def go() -> None:
        async with rig(tmp_path) as r:
            r.source.connect()
            await r.run(1)
            await _learn_offset(r, 0.0)
            frames = [notify(500.0, r.clock.now() + i, 100.0 + i) for i in range(3)]
            for frame in frames:
                r.source.publish((EVENTS_TOPIC, frame))
                await r.run(1)
            last_seen = r.pipeline.detector("dev-1").last_seen
            r.source.disconnect(observed=True)  # acknowledged or not, the broker resends
            await r.run(1)
            r.source.connect(caught_up=False)
            r.source.publish(*[(EVENTS_TOPIC, f) for f in frames])
            await settle()
            r.source.catch_up()
            await r.run(0.1)
            assert r.pipeline.stats.duplicates == 3
            assert r.pipeline.detector("dev-1").last_seen == last_seen

    run(go())


# -- retained values are state --------------------------------------------------------------------


def test_a_retained_value_never_opens_a_session(tmp_path: Path) -> None:
    async def go() -> None:
        async with rig(tmp_path) as r:
            for _ in range(3):  # on every connect the broker replays it
                r.source.connect()
                r.source.publish((TOPIC, pm1(500.0)), retain=True)
                await r.run(30)
                r.source.disconnect()
                await r.run(1)
            assert r.events() == []
            assert r.pipeline.stats.retained == 3

    run(go())


def test_a_retained_offline_ends_the_open_session_at_its_last_reading(tmp_path: Path) -> None:
    async def go() -> None:
        async with rig(tmp_path) as r:
            await r.connected()
            await r.work()
            last = r.clock.now() - 1
            r.source.disconnect()
            await r.run(2)
            r.source.connect()
            r.source.publish(("m1/online", b"false"), retain=True)
            await r.run(0.1)
            (stop,) = r.events("run_stop")
            assert stop["payload"]["reason"] == "offline"
            assert stop["payload"]["stopped_at"] == format_ts(last)

    run(go())


# -- no message stops the bridge ------------------------------------------------------------------


def test_a_hostile_message_is_acknowledged_counted_and_the_rest_flows(tmp_path: Path) -> None:
    deep = b'{"apower":' + b"[" * 5000 + b"]" * 5000 + b"}"

    async def go() -> None:
        async with rig(tmp_path) as r:
            r.source.connect()
            await r.run(1)
            bad = r.source.publish((TOPIC, deep), ("m2/status/pm1:0", b"\xff" * 100))
            await r.run(0.1)
            assert set(bad) <= set(r.source.acked_ids())
            assert r.pipeline.stats.device_errors == {"dev-1": 1, "dev-2": 1}
            await r.work("m2/status/pm1:0")
            assert [e["device_id"] for e in r.events("run_start")] == ["dev-2"]

    run(go())


def test_subscriptions_follow_the_config(tmp_path: Path) -> None:
    async def go() -> None:
        async with rig(tmp_path) as r:
            assert {"m1/status/pm1:0", "m1/events/rpc", "m1/online"} <= r.source.filters
            assert "m2/status/pm1:0" in r.source.filters

    run(go())


def test_a_batch_before_its_connection_is_processed_in_order(tmp_path: Path) -> None:
    """Received items carry their connection; acks of a gone connection are dropped."""

    async def go() -> None:
        async with rig(tmp_path) as r:
            r.source.connect()
            await r.run(1)
            old = r.source.generation
            r.source.publish((TOPIC, pm1(1)))
            r.source.disconnect()
            r.source.connect()
            await r.run(0.1)
            assert [gen for _, gen, _ in r.source.acks] == [old]  # asked; the source drops it

    run(go())


@pytest.mark.parametrize("payload", [b"{}", b"null", b"[]", b'"x"', b"1e999"])
def test_odd_but_valid_json_is_harmless(tmp_path: Path, payload: bytes) -> None:
    async def go() -> None:
        async with rig(tmp_path) as r:
            r.source.connect()
            await r.run(1)
            r.source.publish((TOPIC, payload))
            await r.run(0.1)
            assert r.events() == []

    run(go())


def test_stop_waits_for_the_commit_in_flight_and_acknowledges_it(tmp_path: Path) -> None:
    """A big group commits off the loop; stopping must wait for it, not spin (it once did,
    and SIGTERM during a backlog drain then never ended the process)."""

    async def go() -> None:
        clock = FakeClock()
        source = FakeSource(clock.now)
        store = FlakyStore(tmp_path / "bridge.db")
        intake = Intake(
            Pipeline(), store=store, db=InlineDb(), metrics=Metrics(), clock=clock, source=source
        )
        run_task = asyncio.create_task(intake.run())
        feed_task = asyncio.create_task(intake.feed())
        intake.apply_config(CONFIG)
        await clock.advance(0.1)
        source.connect()
        await clock.advance(1)
        ids = source.publish(*[(TOPIC, pm1(5.0)) for _ in range(INLINE_COMMIT_MAX + 50)])
        intake.stop()  # arrives with the batch: the commit is still in flight when it is seen
        done, _ = await asyncio.wait([run_task], timeout=5)  # a spin never yields: no timeout
        assert done, "the intake did not stop"
        assert source.acked_ids() == ids
        feed_task.cancel()
        store.close()

    run(go())


def test_the_debug_line_names_the_power_only_when_the_message_carried_one(tmp_path: Path) -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("iot_bridge.intake")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)  # on the logger itself: other tests' root handlers do not matter
    logger.setLevel(logging.DEBUG)

    async def go() -> None:
        async with rig(tmp_path) as r:
            r.source.connect()
            await r.run(1)
            r.source.publish((TOPIC, pm1(120.5)), ("m1/online", b"true"))
            await r.run(0.1)

    try:
        run(go())
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert [m for m in lines if m.startswith("Message received")] == [
        "Message received: topic=m1/status/pm1:0, power=120.5W",
        "Message received: topic=m1/online (no power value)",
    ]
