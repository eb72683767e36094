"""The broker and the bridge process misbehaving: broker restart, a session-less broker, a
frozen broker, the bridge offline, ``kill -9`` in a loop, SIGTERM, malformed floods."""

from __future__ import annotations

import random
import threading
import time

from iot_bridge.tools.broker import Mosquitto
from tests.integration.conftest import (
    TICK,
    BridgeFactory,
    BridgeProcess,
    assert_sessions_whole,
    events_of,
    frame,
    metric,
    open_session,
    publish,
    session,
    wait_until,
    working,
)
from tests.support.fake_odoo import FakeOdoo


def off(name: str, ticks: int = 10) -> list[tuple[str, bytes] | None]:
    return [m for _ in range(ticks) for m in (frame(name, 1.0, 500.0), None)]


def test_broker_restart_does_not_end_a_session(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    open_session(broker, odoo, "alpha")
    broker.stop()
    bridge.wait_health(lambda h: not h["mqtt_connected"] and h["http_status"] == 503)
    assert "mqtt_disconnected" in bridge.health()["problems"]  # type: ignore[index]
    time.sleep(4.0)  # longer than the 3 s message timeout: the blink must not end the session
    broker.start()
    bridge.wait_health(lambda h: h["mqtt_connected"] and h["mqtt_reconnects"] >= 1)
    assert events_of(odoo, "run_stop") == []
    publish(broker, working("alpha", 3) + off("alpha"), gap=TICK)
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 1, 10, "run_stop")
    (stop,) = events_of(odoo, "run_stop")
    assert stop["payload"]["reason"] == "normal"
    assert_sessions_whole(odoo)


def test_resubscribes_after_a_session_less_reconnect(
    tmp_path: object, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    """A broker without persistence loses our session on restart; we subscribe again (R6, R15)."""
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    with Mosquitto(tmp_path / "volatile", persistence=False) as volatile:
        bridge = bridge_factory(volatile, odoo).start()
        bridge.connected()
        volatile.kill()
        bridge.wait_health(lambda h: not h["mqtt_connected"])
        volatile.start()
        bridge.wait_health(lambda h: h["mqtt_connected"] and h["mqtt_reconnects"] >= 1)
        publish(volatile, session("gamma"), gap=TICK)
        wait_until(lambda: len(events_of(odoo, "run_stop")) == 1, 10, "a session after resub")
        assert_sessions_whole(odoo)


def test_frozen_broker_is_detected_by_keepalive(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    """A half-open TCP connection (SIGSTOP) is noticed within 1.5 x keepalive (R7)."""
    bridge = bridge_factory(broker, odoo, MQTT_KEEPALIVE="2").start()
    bridge.connected()
    broker.pause()
    try:
        started = time.monotonic()
        bridge.wait_health(lambda h: not h["mqtt_connected"], timeout=10)
        assert time.monotonic() - started < 6.0
    finally:
        broker.resume()
    bridge.wait_health(lambda h: h["mqtt_connected"], timeout=15)
    publish(broker, session("alpha"), gap=TICK)
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 1, 10, "a session afterwards")


def test_kill9_loop_never_loses_or_duplicates_a_session(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    rng = random.Random(42)
    feeder = threading.Thread(
        target=publish, args=(broker, working("alpha", 1) + session("alpha", "beta",
                                                                      work_ticks=50)),
        kwargs={"gap": TICK},
    )  # fmt: skip
    feeder.start()
    kills = 0
    while feeder.is_alive() and kills < 6:
        time.sleep(rng.uniform(0.3, 1.2))
        bridge.kill9()
        kills += 1
        bridge.start()
    feeder.join()
    assert kills >= 4
    wait_until(lambda: len(events_of(odoo, "run_stop")) >= 2, 20, "both sessions to end")
    time.sleep(1.0)
    assert_sessions_whole(odoo)
    by_device = sorted(e["device_id"] for e in events_of(odoo, "run_start"))
    assert by_device == ["shellypmminig3-alpha", "shellypmminig3-beta"]
    reasons = [e["payload"]["reason"] for e in events_of(odoo, "run_stop")]
    assert reasons == ["normal", "normal"]


def test_sigterm_stops_within_10s_and_loses_nothing(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    open_session(broker, odoo, "alpha")
    code, seconds = bridge.terminate()
    assert code == 0
    assert seconds < 10
    bridge.start()
    bridge.connected()
    health = bridge.health()
    assert health is not None
    assert health["active_sessions"] == 1  # the open session survived the restart
    publish(broker, working("alpha", 2) + off("alpha"), gap=TICK)
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 1, 10, "run_stop")
    assert_sessions_whole(odoo)
    sent = [uid for r in odoo.requests() if r.method == "POST" for uid in r.event_uids]
    assert len(sent) == len(set(sent)) == 2  # a clean stop sends nothing twice (R3)


def test_malformed_flood_on_one_device_while_others_work(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    bad = [b"{not json", b'{"apower": NaN}', b'{"apower": "12"}', b'{"apower": null}',
           b"x" * 100_000, b'{"apower": 1e999}', b"\xff\xfe", b"[]"]  # fmt: skip
    flood = [("alpha/status/pm1:0", bad[i % len(bad)]) for i in range(2000)]
    feeder = threading.Thread(target=publish, args=(broker, flood))
    feeder.start()
    publish(broker, session("beta"), gap=TICK)
    feeder.join()
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 1, 10, "beta's session")
    assert {e["device_id"] for e in events_of(odoo)} == {"shellypmminig3-beta"}
    text = bridge.metrics()
    assert metric(text, 'iot_bridge_parse_errors_total{parser="shelly_pm_mini_g3"}') == 2000
    health = bridge.health()
    assert health is not None
    assert health["status"] == "ok"
