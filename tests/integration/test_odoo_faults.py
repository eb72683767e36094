"""Odoo misbehaving: down, 5xx, 429 with Retry-After, timeouts, a response lost after the
commit, permanent 400/404. Nothing is lost, nothing is stored twice, the rest keeps flowing."""

from __future__ import annotations

import subprocess
import sys
import time
from itertools import pairwise

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
from tests.support.fake_odoo import FakeOdoo


def post_times(odoo: FakeOdoo) -> list[float]:
    return [r.t for r in odoo.requests() if r.method == "POST"]


def test_odoo_down_then_back(broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess) -> None:
    odoo.stop()  # connection refused from now on
    publish(broker, session("alpha", "beta"), gap=TICK)
    bridge.wait_health(lambda h: h["queue_depth"] == 4 and h["odoo_reachable"] is False)
    health = bridge.health()
    assert health is not None
    assert health["active_sessions"] == 0  # detection goes on without Odoo
    assert "Odoo API error, retrying in 5s" in bridge.log()
    odoo.start()  # same port
    wait_until(lambda: len(odoo.stored_events()) == 4, 30, "the backlog to drain")
    assert_sessions_whole(odoo)
    bridge.wait_health(lambda h: h["queue_depth"] == 0 and h["odoo_reachable"] is True)


def test_5xx_then_429_honours_retry_after(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    odoo.fail_next(1, 503)
    odoo.fail_next(1, 429, retry_after=9)
    publish(broker, session("alpha"), gap=TICK)
    wait_until(lambda: len(odoo.stored_events()) >= 1, 40, "delivery after the faults")
    wait_until(lambda: len(odoo.stored_events()) == 2, 20, "both events")
    times = post_times(odoo)
    statuses = [r.status for r in odoo.requests() if r.method == "POST"]
    assert statuses[:3] == [503, 429, 200]
    assert times[1] - times[0] >= 4.9  # the original's first retry after 5 s
    assert times[2] - times[1] >= 8.9  # Retry-After: 9 beats the 8..12 s backoff floor
    assert_sessions_whole(odoo)


def test_timeout_and_lost_response_are_retried_with_the_same_uid(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    bridge = bridge_factory(broker, odoo, ODOO_TIMEOUT="1").start()
    bridge.connected()
    odoo.set_delay(2.0)  # longer than the bridge's ODOO_TIMEOUT
    publish(broker, session("alpha"), gap=TICK)
    bridge.wait_health(lambda h: h["odoo_reachable"] is False and h["queue_depth"] == 2)
    odoo.set_delay(0)
    odoo.drop_response_next(1)  # Odoo commits, then the answer never arrives
    wait_until(lambda: bridge.health()["queue_depth"] == 0, 40, "delivery")  # type: ignore[index]
    assert_sessions_whole(odoo)
    assert len(odoo.stored_events()) == 2
    sent = [uid for r in odoo.requests() if r.method == "POST" for uid in r.event_uids]
    assert len(sent) > 2  # retried ...
    assert set(sent) == set(odoo.stored_uids())  # ... always with the same uids


def test_permanent_rejections_become_dead_letters_and_others_flow(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
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
    assert paths == {"/ows/iot/event"}
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


def test_odoo_down_for_a_minute_backs_off_then_delivers_everything_once(
    broker: Mosquitto, odoo: FakeOdoo, bridge: BridgeProcess
) -> None:
    """Odoo answers 503 for 65 s: retries back off 5, 10, 20, 40 s (each ±20 %), the
    backlog keeps growing meanwhile, and the first retry after recovery drains it."""
    odoo.fail_next(10_000, 503)
    down_from = time.monotonic()
    publish(broker, session("alpha", "beta"), gap=TICK)
    bridge.wait_health(lambda h: h["queue_depth"] == 4)
    time.sleep(max(0.0, 65 - (time.monotonic() - down_from)))
    publish(broker, session("gamma"), gap=TICK)  # more sessions while Odoo is still down
    odoo.clear_failures()  # Odoo is back
    wait_until(lambda: len(odoo.stored_events()) == 6, 60, "the backlog after recovery")
    assert_sessions_whole(odoo)
    failed = [r.t for r in odoo.requests() if r.method == "POST" and r.status == 503]
    gaps = [b - a for a, b in pairwise(failed)]
    assert gaps[0] >= 4.9  # the original's 5 s first
    for earlier, later in pairwise(gaps):
        assert later >= earlier * 1.3  # growing (x2 with +-20 % jitter)
    assert max(gaps) <= 48.1  # 40 s +20 %, well below the 300 s cap
