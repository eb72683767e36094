"""Intake truth against a real mosquitto and the real bridge process: late readings keep their
time, no message can stop the bridge, retained values never bill, bad device entries stay local.

Each test is one way the intake used to lose or invent a billed session."""

from __future__ import annotations

import time
from pathlib import Path

from iot_bridge.events import parse_ts
from iot_bridge.tools.broker import Mosquitto
from tests.integration.conftest import (
    TICK,
    BridgeFactory,
    BridgeProcess,
    assert_sessions_whole,
    device,
    events_of,
    frame,
    metric,
    notify,
    publish,
    publish_run,
    session,
    wait_until,
)
from tests.support.fake_odoo import FakeOdoo


def learn_clock(broker: Mosquitto, bridge: BridgeProcess, name: str) -> None:
    """Idle NotifyStatus frames heard live: the bridge learns the plug's clock."""
    before = metric(bridge.metrics(), "iot_bridge_messages_total")
    for _ in range(3):
        publish(broker, [notify(name, 1.0, 200.0)])  # stamped as it is sent
        time.sleep(TICK)
    wait_until(lambda: metric(bridge.metrics(), "iot_bridge_messages_total") >= before + 3)
    time.sleep(0.2)  # committed


def test_a_run_published_while_the_bridge_is_stopped_keeps_its_true_times(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    learn_clock(broker, bridge, "alpha")
    code, _ = bridge.terminate()
    assert code == 0
    stamps = publish_run(broker, "alpha", work_ticks=8, off_ticks=10)  # 2.7 s, bridge away
    time.sleep(1.0)
    bridge.start()
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 1, 15, "the run's run_stop")
    (start,) = events_of(odoo, "run_start")
    (stop,) = events_of(odoo, "run_stop")
    p = stop["payload"]
    assert p["reason"] == "normal"
    assert p["timing"] == "measured"
    # the plug's stamps, not the moment the backlog reached the restarted bridge
    assert abs(parse_ts(start["payload"]["started_at"]) - stamps[0]) < 0.1
    assert abs(parse_ts(p["stopped_at"]) - stamps[8]) < 0.1
    assert abs(p["duration_s"] - (stamps[8] - stamps[0])) < 0.1
    assert p["energy_wh"] == 8.0  # the counter: exact either way
    assert_sessions_whole(odoo)


def test_readings_held_while_the_bridge_is_down_make_their_session(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    """Status frames carry no usable time: the session is still recorded, marked estimated,
    inside the time the bridge was away (R4, with the run asserted, not only the count)."""
    publish(broker, [frame("beta", 1.0, 100.0), None] * 4, gap=TICK)  # heard live: cadence
    last_live = time.time()
    time.sleep(0.3)
    code, _ = bridge.terminate()
    assert code == 0
    publish(broker, session("beta"), gap=TICK)
    time.sleep(0.5)
    restarted = time.time()
    bridge.start()
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 1, 15, "beta's run_stop")
    (stop,) = events_of(odoo, "run_stop")
    p = stop["payload"]
    assert p["reason"] == "normal"
    assert p["timing"] == "estimated"
    # placed in order after the last reading heard live, one cadence (0.15 s) apart: the run
    # lies between the bridge's stop and its restart, as it did
    assert last_live < parse_ts(p["started_at"]) < parse_ts(p["stopped_at"]) < restarted
    assert abs(p["duration_s"] - 8 * TICK) < 0.5
    # persistent session: every reading the broker queued for the stopped bridge came (R4)
    held = [m for m in session("beta") if m is not None]
    assert metric(bridge.metrics(), "iot_bridge_messages_total") == len(held)
    assert p["energy_wh"] == 8.0  # the counter rose by 8 Wh over the run


def test_a_deeply_nested_message_live_and_retained_stops_nothing(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    deep = b'{"apower":' + b"[" * 1000 + b"]" * 1000 + b"}"  # about 2 KB
    publish(broker, [("alpha/status/pm1:0", deep)], retain=True)  # waiting at every subscribe
    bridge = bridge_factory(broker, odoo).start()
    bridge.connected()
    publish(broker, [("alpha/status/pm1:0", deep), ("alpha/events/rpc", deep)])
    publish(broker, session("beta"), gap=TICK)
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 1, 10, "beta's session")
    health = bridge.health()
    assert health is not None
    assert health["status"] == "ok"
    assert health["mqtt_reconnects"] == 0
    text = bridge.metrics()
    assert metric(text, 'iot_bridge_device_errors_total{device="shellypmminig3-alpha"}') == 3
    bridge.kill9()  # after a restart the retained copy comes again: still nothing stops
    bridge.start()
    bridge.connected()
    publish(broker, session("gamma"), gap=TICK)
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 2, 10, "gamma's session")
    assert_sessions_whole(odoo)


def test_an_oversize_message_is_skipped_unread_and_the_connection_kept(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    assert bridge.proc is not None
    rss_before = _rss_mb(bridge.proc.pid)
    publish(broker, [("alpha/status/pm1:0", b"x" * (100 * 1024 * 1024))])  # 100 MiB, QoS 1
    publish(broker, session("beta"), gap=TICK)
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 1, 20, "beta's session")
    text = bridge.metrics()
    assert metric(text, 'iot_bridge_device_errors_total{device="shellypmminig3-alpha"}') == 1
    health = bridge.health()
    assert health is not None
    assert health["mqtt_reconnects"] == 0
    assert _rss_mb(bridge.proc.pid) - rss_before < 20  # never held: it streamed past
    # acknowledged: a restart does not get it redelivered
    code, _ = bridge.terminate()
    assert code == 0
    bridge.start()
    bridge.connected()
    time.sleep(1.0)
    text = bridge.metrics()
    assert metric(text, 'iot_bridge_device_errors_total{device="shellypmminig3-alpha"}') == 0


def test_a_retained_stale_value_never_opens_a_session_across_reconnects(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    publish(broker, [frame("alpha", 500.0, 100.0)], retain=True)
    bridge = bridge_factory(broker, odoo).start()
    bridge.connected()
    time.sleep(4.0)  # longer than the 3 s message timeout
    broker.restart()  # persistence keeps the retained value; we get it again on subscribe
    bridge.wait_health(lambda h: h["mqtt_connected"] and h["mqtt_reconnects"] >= 1, 15)
    time.sleep(4.0)
    assert events_of(odoo) == []
    assert metric(bridge.metrics(), "iot_bridge_messages_retained_total") >= 2


def test_bad_device_entries_stay_local(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    odoo.set_devices(
        [
            device("alpha"),
            device("hashmid") | {"mqtt_topic": "a/#/b"},
            device("shared") | {"mqtt_topic": "$share/g/plug/status/pm1:0"},
            device("nul") | {"mqtt_topic": "plug/\u0000/status/pm1:0"},
            device("huge") | {"mqtt_topic": "h" * 70_000 + "/status/pm1:0"},
        ]
    )
    bridge = bridge_factory(broker, odoo).start()
    bridge.connected()
    health = bridge.health()
    assert health is not None
    errors = " | ".join(health["config_errors"])
    for name in ("hashmid", "shared", "nul", "huge"):
        assert f"device 'shellypmminig3-{name}'" in errors
    assert health["devices_configured"] == 1
    publish(broker, session("alpha"), gap=TICK)
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 1, 10, "alpha's session")
    health = bridge.health()
    assert health is not None
    assert health["mqtt_reconnects"] == 0
    assert bridge.terminate()[0] == 0  # and SIGTERM still stops it


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0
