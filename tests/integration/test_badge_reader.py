"""A badge reader paired with a machine, through a real broker, the bridge process and the
test Odoo: a scan becomes one ``badge_scan`` of that machine, a reader's broken message is that
device's error and never stops its sessions, and a scan made while the bridge was down arrives
once, timed within the outage."""

from __future__ import annotations

import json
import time
from typing import Any

from iot_bridge.events import parse_ts
from iot_bridge.tools.broker import Mosquitto
from tests.integration.conftest import (
    TICK,
    BridgeFactory,
    device,
    events_of,
    open_session,
    publish,
    session,
    wait_until,
)
from tests.support.fake_odoo import FakeOdoo

READER_TOPIC = "tele/reader_alpha/SENSOR"


def machine_with_reader() -> dict[str, Any]:
    return {**device("alpha"), "badge_reader": {"mqtt_topic": READER_TOPIC, "format": "tasmota"}}


def scan(uid: str, at: float | None = None) -> tuple[str, bytes]:
    body: dict[str, Any] = {"PN532": {"UID": uid, "DATA": ""}}
    if at is not None:  # Tasmota's Time: the reader's local time, whole seconds, no zone
        body["Time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(at))
    return READER_TOPIC, json.dumps(body).encode()


def teleperiod(at: float) -> tuple[str, bytes]:
    """The reader's periodic SENSOR message: no UID, but its clock."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(at))
    return READER_TOPIC, json.dumps({"Time": stamp, "ANALOG": {"A0": 3}}).encode()


def test_scan_is_a_badge_scan_of_its_machine_and_broken_reader_messages_stay_local(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    odoo.set_devices([machine_with_reader(), device("beta")])
    bridge = bridge_factory(broker, odoo).start()
    bridge.connected()

    publish(broker, [scan("04:a2:3b:1c")])
    wait_until(lambda: len(events_of(odoo, "badge_scan")) == 1, 10, "the badge_scan")
    (stored,) = events_of(odoo, "badge_scan")
    assert stored["device_id"] == "shellypmminig3-alpha"
    assert stored["payload"]["badge_uid"] == "04A23B1C"
    assert stored["payload"]["reader"] == "PN532"
    assert stored["payload"]["scanned_at"] == stored["ts"]

    # a teleperiod SENSOR without a reader key is no scan; a broken one is alpha's error
    publish(broker, [teleperiod(time.time()), (READER_TOPIC, b'{"PN532": {"UID": ')])
    bridge.wait_health(lambda h: "shellypmminig3-alpha" in h["device_errors"])
    health = bridge.health()
    assert health is not None
    error = health["device_errors"]["shellypmminig3-alpha"]
    assert error["count"] == 1
    assert "badge reader" in error["last_error"]

    # the machine behind the reader still runs sessions, and so does its neighbour
    publish(broker, session("alpha", "beta"), gap=TICK)
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 2, 15, "both sessions closed")
    assert len(events_of(odoo, "badge_scan")) == 1


def test_scan_made_while_the_bridge_was_down_arrives_once_at_its_true_time(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    odoo.set_devices([machine_with_reader()])
    bridge = bridge_factory(broker, odoo).start()
    bridge.connected()
    publish(broker, [teleperiod(time.time())])  # the bridge learns the reader's clock
    open_session(broker, odoo, "alpha")
    bridge.kill9()

    # scanned while the bridge is down: the broker holds it for the persistent session
    scanned = time.time()
    publish(broker, [scan("53BB1F05110001", scanned)])
    time.sleep(3.0)  # a real outage on the wire: the scan is seconds older than the restart
    up = time.time()
    bridge.start()
    wait_until(lambda: len(events_of(odoo, "badge_scan")) == 1, 15, "the held scan")
    (held,) = events_of(odoo, "badge_scan")
    # Time has whole seconds; the offset was learned from one message with whole seconds too
    assert abs(parse_ts(held["payload"]["scanned_at"]) - scanned) < 2.0
    assert parse_ts(held["payload"]["scanned_at"]) < up - 1.0

    bridge.kill9()  # and once more: what was delivered is not delivered again
    bridge.start()
    bridge.connected()
    publish(broker, [scan("94D8FC5F")])
    wait_until(lambda: len(events_of(odoo, "badge_scan")) == 2, 15, "the second scan")
    uids = [e["payload"]["badge_uid"] for e in events_of(odoo, "badge_scan")]
    assert uids == ["53BB1F05110001", "94D8FC5F"]
    assert len(odoo.stored_uids()) == len(set(odoo.stored_uids()))
