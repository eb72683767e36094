"""A full disk under the bridge, and config reloads that add, change and remove devices."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    open_session,
    publish,
    publish_run,
    session,
    wait_until,
)
from tests.support.fake_odoo import FakeOdoo


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB file system (tmpfs) to fill up; mounting needs root, which CI has."""
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
                   check=True)  # fmt: skip
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as fh, contextlib.suppress(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
    return filler


def test_full_disk_stops_acks_turns_503_and_recovers(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory, small_disk: Path
) -> None:
    bridge = bridge_factory(
        broker, odoo, DATA_DIR=str(small_disk / "data"), FORWARD_MEASUREMENTS="true"
    ).start()
    bridge.connected()
    for _ in range(3):  # beta's plug is heard live first: the bridge learns its clock
        publish(broker, [notify("beta", 1.0, 200.0)])
        time.sleep(TICK)
    time.sleep(0.3)
    filler = fill(small_disk)
    # enough readings that the store must grow: each is also a power_measurement event
    burst = [frame("alpha", 300.0, 100.0 + i / 100) for i in range(3000)]
    publish(broker, burst)
    bridge.wait_health(
        lambda h: h["http_status"] == 503 and "store_not_writable" in h["problems"], 20
    )
    health = bridge.health()
    assert health is not None
    assert health["db_ok"] is False
    assert not health["mqtt_connected"]  # held off: the broker keeps what we cannot store
    assert bridge.proc is not None
    assert bridge.proc.poll() is None  # no crash loop
    # beta runs while the disk is full: the broker holds its readings for the bridge
    stamps = publish_run(broker, "beta", work_ticks=8, off_ticks=10)
    filler.unlink()
    bridge.wait_health(lambda h: h["status"] == "ok" and h["mqtt_connected"], 30)
    # everything the broker held was processed: the 3000 (some twice, after the rollback)
    # and the 18 that arrived while the bridge stayed away ...
    wait_until(lambda: metric(bridge.metrics(), "iot_bridge_messages_total") >= 3018, 20)
    # ... and they are the session they describe, with its true times
    wait_until(
        lambda: any(e["device_id"].endswith("beta") for e in events_of(odoo, "run_stop")),
        20,
        "beta's session from the held readings",
    )
    (beta,) = [e for e in events_of(odoo, "run_stop") if e["device_id"].endswith("beta")]
    assert beta["payload"]["reason"] == "normal"
    assert beta["payload"]["timing"] == "measured"
    assert abs(parse_ts(beta["payload"]["started_at"]) - stamps[0]) < 0.1
    assert abs(parse_ts(beta["payload"]["stopped_at"]) - stamps[8]) < 0.1
    # and intake works as before: a live session is detected and delivered
    publish(broker, session("gamma"), gap=TICK)
    wait_until(
        lambda: any(e["device_id"].endswith("gamma") for e in events_of(odoo, "run_stop")),
        20,
        "gamma's session",
    )
    # the burst's own session of alpha ends by message timeout
    wait_until(lambda: len(events_of(odoo, "run_stop")) == len(events_of(odoo, "run_start")))
    assert_sessions_whole(odoo)


def test_config_reload_adds_changes_and_removes_devices(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    open_session(broker, odoo, "alpha")
    # in Odoo: alpha archived, beta's working threshold raised, delta added
    odoo.set_devices([device("alpha") | {"active": False},
                      device("beta", working_threshold_w=1000), device("gamma"),
                      device("delta")])  # fmt: skip
    bridge.hup()
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 1, 10, "alpha's device_removed")
    (stop,) = events_of(odoo, "run_stop")
    assert stop["device_id"] == "shellypmminig3-alpha"
    assert stop["payload"]["reason"] == "device_removed"
    bridge.wait_health(lambda h: h["devices_configured"] == 3 and h["config_version"] == "2")
    publish(broker, session("beta", "delta"), gap=TICK)
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 2, 10, "delta's session")
    devices = {e["device_id"] for e in events_of(odoo, "run_start")}
    # 300 W is standby for beta now; alpha's topic is no longer subscribed
    assert devices == {"shellypmminig3-alpha", "shellypmminig3-delta"}
    publish(broker, session("alpha"), gap=TICK)
    health = bridge.health()
    assert health is not None
    assert health["active_sessions"] == 0
    assert len(events_of(odoo, "run_start")) == 2
    assert "Config loaded: 3 devices (version 2" in bridge.log()
    assert_sessions_whole(odoo)


def test_threshold_change_keeps_the_open_session(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    open_session(broker, odoo, "gamma")
    odoo.set_devices([device("alpha"), device("beta"), device("gamma", stop_debounce_s=0.3)])
    bridge.hup()
    bridge.wait_health(lambda h: h["config_version"] == "2")
    assert events_of(odoo, "run_stop") == []
    publish(broker, [frame("gamma", 300.0, 30), None, frame("gamma", 1.0, 31), None, None,
                     None, frame("gamma", 1.0, 31)], gap=TICK)  # fmt: skip
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 1, 10, "run_stop")
    (start,) = events_of(odoo, "run_start")
    (stop,) = events_of(odoo, "run_stop")
    assert stop["payload"]["session_id"] == start["payload"]["session_id"]
    assert stop["payload"]["reason"] == "normal"


def test_bridge_starts_from_cached_config_while_odoo_is_down(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    bridge.terminate()
    odoo.stop()
    bridge.start()
    bridge.wait_health(lambda h: h["mqtt_connected"] and h["devices_configured"] == 3)
    publish(broker, session("alpha"), gap=TICK)
    bridge.wait_health(lambda h: h["queue_depth"] == 2)  # detected, waiting for Odoo
    assert "using the cached config" in bridge.log()
    odoo.start()
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 1, 30, "delivery")
    assert_sessions_whole(odoo)
