"""The simulator's scenarios through a real broker, the bridge process and the test Odoo."""

from __future__ import annotations

import subprocess
import sys

import pytest

from iot_bridge.tools.broker import Mosquitto
from tests.integration.conftest import (
    ROOT,
    BridgeFactory,
    BridgeProcess,
    assert_sessions_whole,
    device,
    events_of,
    frame,
    publish,
    wait_until,
)
from tests.support.fake_odoo import FakeOdoo

EXPECTED = {
    "session_end": ["normal"],
    "full_session": ["normal"],
    "timeout": ["timeout"],
    "offline": ["offline"],
    "standby": [],
    "flapping": [],
}


def run_simulator(broker: Mosquitto, scenario: str, prefix: str, interval: float) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests/tools/shelly_simulator.py"),
            "--broker",
            "127.0.0.1",
            "--port",
            str(broker.port),
            "--no-tls",
            "--username",
            "",
            "--password",
            "",
            "--scenario",
            scenario,
            "--prefix",
            prefix,
            "--interval",
            str(interval),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("scenario", sorted(EXPECTED))
def test_simulator_scenario_end_to_end(
    scenario: str, broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    interval = 0.2
    # debounces longer than one frame, so a single flapping frame cannot start a session
    sim = device("sim", start_debounce_s=0.5, stop_debounce_s=1.0, message_timeout_s=1.5)
    odoo.set_devices([sim])
    bridge = bridge_factory(broker, odoo).start()
    bridge.connected()
    run_simulator(broker, scenario, "sim", interval)
    expected = EXPECTED[scenario]
    if expected:
        wait_until(lambda: len(events_of(odoo, "run_stop")) == len(expected), 15, "run_stop")
    else:
        bridge.wait_health(lambda h: h["last_msg_age_s"] is not None and h["last_msg_age_s"] > 2)
    reasons = [e["payload"]["reason"] for e in events_of(odoo, "run_stop")]
    assert reasons == expected
    assert len(events_of(odoo, "run_start")) == len(expected)
    assert_sessions_whole(odoo)
    for stop in events_of(odoo, "run_stop"):
        p = stop["payload"]
        assert p["working_s"] + p["standby_s"] == pytest.approx(p["duration_s"], abs=0.002)
        assert p["energy_source"] == "counter"
        assert p["energy_wh"] > 0
        assert stop["device_id"] == "shellypmminig3-sim"
    health = bridge.health()
    assert health is not None
    assert health["status"] == "ok"
    assert health["queue_depth"] == 0
    assert health["odoo_reachable"] is True
    assert health["active_sessions"] == 0


def test_health_has_the_original_fields_and_metrics(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    health = bridge.health()
    assert health is not None
    for key in ("status", "mqtt_connected", "odoo_reachable", "devices_configured",
                "active_sessions", "uptime_seconds", "queue_depth", "oldest_queued_age_s",
                "dead_letters", "config_errors"):  # fmt: skip
        assert key in health
    assert health["devices_configured"] == 3
    assert health["http_status"] == 200
    text = bridge.metrics()
    for series in ("iot_bridge_messages_total", "iot_bridge_queue_depth",
                   "iot_bridge_odoo_request_seconds_bucket", "iot_bridge_mqtt_reconnects_total",
                   "iot_bridge_parse_errors_total", "iot_bridge_events_total"):  # fmt: skip
        assert series in text
    log = bridge.log()
    assert "[INFO] Bridge started, connecting to MQTT..." in log
    assert "[INFO] MQTT connected, subscribing to topics..." in log
    assert "[INFO] Config loaded: 3 devices" in log
    assert odoo.token not in log  # secrets never in logs


def test_debug_log_names_topic_and_power(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    bridge = bridge_factory(broker, odoo, LOG_LEVEL="DEBUG").start()
    bridge.connected()
    publish(broker, [frame("alpha", 120.5)])
    wait_until(lambda: "Message received" in bridge.log(), 10, "the DEBUG line")
    assert "[DEBUG] Message received: topic=alpha/status/pm1:0, power=120.5W" in bridge.log()
