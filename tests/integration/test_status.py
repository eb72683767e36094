"""The heartbeat end to end (issue 11): a real mosquitto, the bridge as its own process, the
test Odoo over HTTP. An announcing plug and a running session show up in the status Odoo
stores; a device added in Odoo is live within one heartbeat."""

from __future__ import annotations

import json
import time

from iot_bridge.tools.broker import Mosquitto
from tests.integration.conftest import (
    BridgeFactory,
    device,
    events_of,
    frame,
    metric,
    notify,
    publish,
    wait_until,
    working,
)
from tests.support.fake_odoo import FakeOdoo

ANNOUNCE = {
    "id": "shellyplug-s-7c87ce65a1b2",
    "model": "SHPLG-S",
    "mac": "7C87CE65A1B2",
    "ip": "192.168.8.93",
    "new_fw": False,
    "fw_ver": "20220809-123240/v1.12-g99f7e0b",
}
PLUG_TOPIC = "shellies/shellyplug-s-7c87ce65a1b2/relay/0/power"
INTERVAL = 3.0


def test_an_announcement_and_a_session_reach_odoo_in_the_status(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    bridge = bridge_factory(broker, odoo, STATUS_INTERVAL=str(INTERVAL)).start()
    bridge.connected()
    publish(broker, [("shellies/announce", json.dumps(ANNOUNCE).encode())])
    publish(broker, [("tele/tasmota_9CF9D1/LWT", b"Online")], retain=True)
    publish(broker, [("alpha/online", b"true")], retain=True)  # a configured plug's LWT
    publish(broker, working("alpha", 10), gap=0.15)  # a session opens
    wait_until(lambda: len(events_of(odoo, "run_start")) == 1, 10, "alpha's run_start")

    def live() -> bool:
        alpha = odoo.live_devices().get("shellypmminig3-alpha") or {}
        return alpha.get("state") == "working" and PLUG_TOPIC in odoo.discovered()

    wait_until(live, 3 * INTERVAL, "the status with alpha working and the plug discovered")
    status = odoo.last_status()
    assert status is not None
    alpha = next(d for d in status["devices"] if d["device_id"] == "shellypmminig3-alpha")
    start = events_of(odoo, "run_start")[0]["payload"]
    assert alpha["session_id"] == start["session_id"]
    assert alpha["online"] is True
    assert alpha["power_w"] == 300.0
    plug = odoo.discovered()[PLUG_TOPIC]
    assert (plug["device_id"], plug["model"], plug["parser_type"], plug["source"]) == (
        "shellyplug-s-7c87ce65a1b2",
        "SHPLG-S",
        "shelly_gen1",
        "shelly_gen1_announce",
    )
    assert plug["details"]["ip"] == "192.168.8.93"
    assert "tele/tasmota_9CF9D1/SENSOR" in odoo.discovered()
    assert {d["device_id"] for d in status["devices"]} == {
        "shellypmminig3-alpha",
        "shellypmminig3-beta",
        "shellypmminig3-gamma",
    }
    assert status["bridge"]["mqtt_connected"] is True
    assert status["bridge"]["config_version"] == odoo.config_version
    health = bridge.health()
    assert health is not None
    assert health["odoo_reachable"] is True
    assert health["odoo_status"]["taken"] >= 1
    assert health["odoo_status"]["refused"] == 0


def test_a_device_added_in_odoo_is_live_within_one_heartbeat(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    bridge = bridge_factory(broker, odoo, STATUS_INTERVAL=str(INTERVAL)).start()
    bridge.connected()
    wait_until(lambda: odoo.last_status() is not None, 2 * INTERVAL, "a first status")
    odoo.set_devices([device("alpha"), device("beta"), device("gamma"), device("delta")])
    added = time.monotonic()
    # the next status answers the new config_version, the bridge fetches the config at once,
    # and the status after it (prompt: the device set changed) carries delta
    wait_until(
        lambda: "shellypmminig3-delta" in odoo.live_devices(),
        INTERVAL + 4.0,
        "delta in Odoo's live state",
    )
    assert time.monotonic() - added <= INTERVAL + 4.0
    publish(broker, working("delta", 10), gap=0.15)
    wait_until(lambda: len(events_of(odoo, "run_start")) == 1, 10, "delta's run_start")


def test_a_configured_plugs_topic_under_a_discovery_filter_is_delivered_once(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    """``alpha/events/rpc`` is alpha's and matches discovery's ``+/events/rpc``: mosquitto
    delivers it once, the reading counts once, and alpha is no discovered plug."""
    bridge = bridge_factory(broker, odoo, STATUS_INTERVAL=str(INTERVAL)).start()
    bridge.connected()
    before = metric(bridge.metrics(), "iot_bridge_messages_total")
    # in order from one publisher: a duplicate of the first would arrive before the second
    publish(broker, [notify("alpha", 300.0, 150.0), frame("alpha", 300.0, 151.0)])
    wait_until(
        lambda: metric(bridge.metrics(), "iot_bridge_messages_total") >= before + 2, 10, "both"
    )
    text = bridge.metrics()
    assert metric(text, "iot_bridge_messages_total") == before + 2
    assert metric(text, "iot_bridge_messages_announcements_total") == 0
    wait_until(lambda: metric(bridge.metrics(), "iot_bridge_status_sent_total") >= 2, 3 * INTERVAL)
    assert odoo.discovered() == {}


def test_health_learns_odoo_is_down_from_the_heartbeat_without_any_event(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    """Issue 11: ``odoo_reachable`` was only learnt when an event was sent."""
    bridge = bridge_factory(broker, odoo, STATUS_INTERVAL=str(INTERVAL)).start()
    bridge.connected()
    bridge.wait_health(lambda h: h["odoo_reachable"] is True)
    odoo.stop()
    bridge.wait_health(lambda h: h["odoo_reachable"] is False, 2 * INTERVAL + 2)
    odoo.start()
    bridge.wait_health(lambda h: h["odoo_reachable"] is True, 2 * INTERVAL + 2)
    assert events_of(odoo) == []
