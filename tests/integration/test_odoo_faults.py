"""Odoo misbehaving, through the bridge process: down, a proxy's error page, permanent
400/404/409, a missing batch route, a refused token. Nothing is lost, nothing is stored twice, the
rest keeps flowing. The timing of retries (back-off growth, Retry-After, a minute of outage,
timeouts and lost answers) is tested in simulated time in ``tests/test_delivery.py``."""

from __future__ import annotations

import json
import subprocess
import sys

from iot_bridge.tools.broker import Mosquitto
from tests.integration.conftest import (
    TICK,
    BridgeFactory,
    BridgeProcess,
    assert_sessions_whole,
    device,
    events_of,
    publish,
    session,
    wait_until,
)
from tests.support.fake_odoo import STATUS_PATH, FakeOdoo


def test_odoo_down_then_back(broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess) -> None:
    """The one real-time retry across the wire (the back-off schedule itself is tested in
    simulated time in ``tests/test_delivery.py``): a 503, then the 5 s retry delivers."""
    odoo.stop()  # connection refused from now on
    publish(broker, session("alpha", "beta"), gap=TICK)
    bridge.wait_health(lambda h: h["queue_depth"] == 4 and h["odoo_reachable"] is False)
    health = bridge.health()
    assert health is not None
    assert health["active_sessions"] == 0  # detection goes on without Odoo
    assert health["http_status"] == 200  # not yet for longer than HEALTH_ODOO_DOWN_AFTER
    assert "odoo_retrying" in health["warnings"]
    assert "Odoo API error, retrying in 5s" in bridge.log()
    odoo.start()  # same port
    wait_until(lambda: len(odoo.stored_events()) == 4, 30, "the backlog to drain")
    assert_sessions_whole(odoo)
    bridge.wait_health(lambda h: h["queue_depth"] == 0 and h["odoo_reachable"] is True)
    posts = [r.status for r in odoo.requests() if r.method == "POST" and r.path != STATUS_PATH]
    assert posts == [200]  # one batch (heartbeats aside)


def test_a_proxy_error_page_is_retried_and_shown_not_dead_lettered(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    odoo.fail_next(100, 403, html=True)  # a WAF in front of Odoo
    publish(broker, session("alpha"), gap=TICK)
    bridge.wait_health(lambda h: h["queue_depth"] == 2 and h["odoo_reachable"] is False)
    health = bridge.health()
    assert health is not None
    assert health["dead_letters"] == 0
    assert health["odoo_last_error"].endswith(
        " answered 403 (not the contract's answer: text/html)"
    )
    assert "<html>" not in json.dumps(health)


def test_a_conflict_is_a_dead_letter_and_a_warning(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    """Another bridge claimed beta's ids first: Odoo answers 409 conflict for them."""
    odoo.reject_device("shellypmminig3-beta", 409)
    publish(broker, session("alpha", "beta"), gap=TICK)
    bridge.wait_health(lambda h: h["dead_letters"] == 2 and h["queue_depth"] == 0)
    health = bridge.health()
    assert health is not None
    assert health["http_status"] == 200
    assert health["dead_letters_by_reason"] == {"conflict": 2}
    assert "new_dead_letters" in health["warnings"]
    assert {e["device_id"] for e in odoo.stored_events()} == {"shellypmminig3-alpha"}
    assert 'iot_bridge_health_warning{warning="new_dead_letters"} 1' in bridge.metrics()


def test_permanent_rejections_become_dead_letters_and_others_flow(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    """The bridge runs a config Odoo has moved away from (beta removed). Without heartbeats:
    their answer would make the bridge fetch Odoo's config at once (``test_status.py``)."""
    bridge = bridge_factory(broker, odoo, STATUS_INTERVAL="0").start()
    bridge.connected()
    odoo.reject_device("shellypmminig3-alpha", 400)
    odoo.set_devices([device("alpha"), device("gamma")])  # beta now unknown to Odoo: 404
    publish(broker, session("alpha", "beta", "gamma"), gap=TICK)
    bridge.wait_health(lambda h: h["dead_letters"] == 4 and h["queue_depth"] == 0)
    stored = odoo.stored_events()
    assert {e["device_id"] for e in stored} == {"shellypmminig3-gamma"}
    assert len(stored) == 2
    listing = subprocess.run(
        [sys.executable, "-m", "iot_bridge", "dead-letters", "list"],
        env=bridge.env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "4 dead letter(s)" in listing.stdout
    assert "unknown_device" in listing.stdout
    assert "invalid_event" in listing.stdout
    # the operator adds beta in Odoo and replays: beta's session arrives, alpha stays dead
    odoo.set_devices([device("alpha"), device("beta"), device("gamma")])
    replay = subprocess.run(
        [sys.executable, "-m", "iot_bridge", "dead-letters", "replay"],
        env=bridge.env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "4 event(s) queued again" in replay.stdout
    wait_until(lambda: len(odoo.stored_events()) == 4, 20, "the replayed beta events")
    assert {e["device_id"] for e in odoo.stored_events()} == {
        "shellypmminig3-gamma",
        "shellypmminig3-beta",
    }
    bridge.wait_health(lambda h: h["dead_letters"] == 2)
    assert_sessions_whole(odoo)


def test_batch_endpoint_missing_falls_back_to_single_posts(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    odoo.set_batch_enabled(False)
    bridge = bridge_factory(broker, odoo).start()
    bridge.connected()
    odoo.stop()
    publish(broker, session("alpha", "beta"), gap=TICK)
    bridge.wait_health(lambda h: h["queue_depth"] == 4)
    odoo.start()
    wait_until(lambda: len(odoo.stored_events()) == 4, 30, "delivery by single POSTs")
    paths = {r.path for r in odoo.requests() if r.method == "POST" and r.status in (200, 201)}
    assert paths - {STATUS_PATH} == {"/ows/iot/event"}  # heartbeats aside
    assert_sessions_whole(odoo)


def test_wrong_token_is_reported_and_events_kept(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    odoo.set_token("rotated-token")  # the bridge still has the old one
    publish(broker, session("alpha"), gap=TICK)
    bridge.wait_health(lambda h: h["odoo_auth_failed"] and h["http_status"] == 503)
    health = bridge.health()
    assert health is not None
    assert health["queue_depth"] == 2
    assert "odoo_auth_failed" in health["problems"]
    assert "rotated-token" not in bridge.log()
    assert "secret-bridge-token" not in bridge.log()
    assert events_of(odoo) == []


def test_token_refused_at_start_shows_in_health(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    bridge = bridge_factory(broker, odoo, ODOO_TOKEN="not-the-token").start()
    bridge.wait_health(lambda h: h["odoo_auth_failed"] and h["http_status"] == 503)
    health = bridge.health()
    assert health is not None
    assert "odoo_auth_failed" in health["problems"]
    assert any("401" in problem for problem in health["config_errors"])
    assert "not-the-token" not in bridge.log()
