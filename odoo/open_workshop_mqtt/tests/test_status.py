import json
from datetime import datetime, timedelta, timezone

from odoo.tests import HttpCase, tagged

from ..models.res_config_settings import alert_settings
from .common import T0, StatusCase, discovered, make_status, status_device, ts


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestStatusIngest(StatusCase):

    def test_bridge_fields_are_overwritten(self):
        outcome, body = self.status(make_status(
            queue_depth=3, oldest_queued_age_s=42.5, problems=["odoo_auth_failed"],
            warnings=["device x: no reading for 120 s"], config_version="1",
        ))
        self.assertEqual(outcome, "ok")
        self.assertEqual(body, {"status": "ok", "config_version": str(self.bridge.config_version),
                                "unknown_devices": []})
        bridge = self.bridge
        self.assertEqual(bridge.last_status_at, T0)
        self.assertEqual(bridge.status_sent_at, T0)
        self.assertEqual(bridge.bridge_version, "0.9.0")
        self.assertEqual(bridge.bridge_started_at, T0 - timedelta(hours=2))
        self.assertTrue(bridge.mqtt_connected)
        self.assertTrue(bridge.queue_known)
        self.assertEqual(bridge.queue_depth, 3)
        self.assertEqual(bridge.oldest_queued_age_s, 42.5)
        self.assertEqual(bridge.problem_count, 1)
        self.assertEqual(bridge.problems_text, "odoo_auth_failed")
        self.assertEqual(bridge.warnings_text, "device x: no reading for 120 s")
        self.assertEqual(bridge.reported_config_version, "1")
        # latest wins: the next status replaces all of it, nothing is kept as history
        later = T0 + timedelta(seconds=30)
        self.status(make_status(at=later, queue_depth=None, mqtt_connected=False), now=later)
        self.assertEqual(bridge.last_status_at, later)
        self.assertFalse(bridge.queue_known)
        self.assertFalse(bridge.mqtt_connected)
        self.assertEqual(bridge.problem_count, 0)
        self.assertFalse(bridge.problems_text)
        self.assertFalse(bridge.config_current)

    def test_config_current(self):
        self.status(make_status(config_version=str(self.bridge.config_version)))
        self.assertTrue(self.bridge.config_current)
        self.device.write({"working_threshold_w": 150})  # Odoo's config moved on
        self.assertFalse(self.bridge.config_current)

    def test_device_live_state(self):
        self.status(make_status([status_device(self.device.device_id, "working")]))
        device = self.device
        self.assertEqual(device.live_state, "working")
        self.assertEqual(device.plug_online, "online")
        self.assertEqual(device.last_seen, T0 - timedelta(seconds=2))
        self.assertTrue(device.live_power_known)
        self.assertEqual(device.live_power_w, 812.5)
        self.assertEqual(device.live_session_ref, "sess-" + device.device_id)
        self.assertEqual(device.live_session_started_at, T0 - timedelta(minutes=25))
        self.assertEqual(device.live_status_at, T0)
        self.assertEqual(device._board_state_at(T0, alert_settings(self.env)), "working")
        # the status opened no session: only run_start does
        self.assertFalse(self.Session.search([("device_id", "=", device.id)]))
        self.assertEqual(self.Event.search_count([("device_id", "=", device.id)]), 0)

    def test_unknown_foreign_and_archived_devices_are_ignored(self):
        archived = self.Device.create({
            "bridge_id": self.bridge.id, "device_id": "old-plug", "machine_name": "Old",
            "mqtt_topic": "old/status/pm1:0", "active": False,
        })
        outcome, body = self.status(make_status([
            status_device("ghost", "working"),
            status_device(self.other_device.device_id, "working"),
            status_device(self.device.device_id, "standby"),
            status_device("old-plug", "working"),
        ]))
        self.assertEqual(outcome, "ok")
        self.assertEqual(body["unknown_devices"], ["ghost", self.other_device.device_id, "old-plug"])
        self.assertFalse(self.other_device.live_state)
        self.assertFalse(archived.live_state)
        self.assertEqual(self.device.live_state, "standby")

    def test_older_status_is_stale_and_changes_nothing(self):
        self.status(make_status([status_device(self.device.device_id, "working")]))
        earlier = T0 - timedelta(seconds=10)
        outcome, body = self.status(
            make_status([status_device(self.device.device_id, "idle", at=earlier)], at=earlier,
                        version="0.1"),
            now=T0 + timedelta(seconds=1),
        )
        self.assertEqual(outcome, "stale")
        self.assertEqual(body, {"status": "stale", "config_version": str(self.bridge.config_version)})
        self.assertEqual(self.device.live_state, "working")
        self.assertEqual(self.bridge.last_status_at, T0)
        self.assertEqual(self.bridge.bridge_version, "0.9.0")
        # the same sent_at again is applied (a resend), a newer one too
        self.assertEqual(self.status(make_status(), now=T0 + timedelta(seconds=2))[0], "ok")
        self.assertEqual(self.bridge.last_status_at, T0 + timedelta(seconds=2))

    def test_sent_at_far_ahead_of_odoo_does_not_order(self):
        tomorrow = T0 + timedelta(days=1)
        self.assertEqual(self.status(make_status(at=tomorrow))[0], "ok")
        # 4 minutes ahead still orders; once Odoo's clock is 5+ minutes behind it, it does not
        self.assertEqual(self.status(make_status(at=T0), now=tomorrow - timedelta(minutes=4))[0],
                         "stale")
        self.assertEqual(self.status(make_status(at=T0), now=T0)[0], "ok")
        self.assertEqual(self.bridge.status_sent_at, T0)

    def test_statuses_are_per_bridge(self):
        self.status(make_status(at=T0))
        earlier = T0 - timedelta(minutes=1)
        outcome, _body = self.status(
            make_status([status_device(self.other_device.device_id, "working", at=earlier)],
                        at=earlier),
            bridge=self.other_bridge,
        )
        self.assertEqual(outcome, "ok")
        self.assertEqual(self.other_device.live_state, "working")

    def test_last_seen_never_moves_back(self):
        self.status(make_status([status_device(self.device.device_id)]))
        seen = self.device.last_seen
        later = T0 + timedelta(seconds=30)
        # a bridge that restarted has not heard the plug yet: null; an older value neither wins
        self.status(make_status([status_device(self.device.device_id, at=later, last_seen=None)],
                                at=later), now=later)
        self.assertEqual(self.device.last_seen, seen)
        later2 = later + timedelta(seconds=30)
        self.status(make_status([status_device(self.device.device_id, at=later2,
                                               last_seen=ts(seen - timedelta(hours=1)))],
                                at=later2), now=later2)
        self.assertEqual(self.device.last_seen, seen)

    def test_offline_since_is_when_odoo_first_heard_it(self):
        dev = self.device.device_id
        self.status(make_status([status_device(dev, online=False)]))
        self.assertEqual(self.device.plug_online, "offline")
        self.assertEqual(self.device.offline_since, T0)
        later = T0 + timedelta(seconds=30)
        self.status(make_status([status_device(dev, online=False, at=later)], at=later), now=later)
        self.assertEqual(self.device.offline_since, T0)
        self.assertEqual(self.device._board_state_at(later, alert_settings(self.env)), "offline")
        later2 = later + timedelta(seconds=30)
        self.status(make_status([status_device(dev, online=None, at=later2)], at=later2),
                    now=later2)
        self.assertFalse(self.device.plug_online)
        self.assertFalse(self.device.offline_since)

    def test_null_power_is_not_zero(self):
        self.status(make_status([status_device(self.device.device_id, power_w=None)]))
        self.assertFalse(self.device.live_power_known)
        card = self.device._board_card(T0, alert_settings(self.env))
        self.assertIsNone(card["power_w"])

    def test_invalid_status_changes_nothing(self):
        status = make_status([status_device(self.device.device_id, "dancing")])
        outcome, body = self.status(status)
        self.assertEqual(outcome, "invalid_status")
        self.assertEqual(body["error"], "invalid_status")
        self.assertTrue(body["detail"].startswith("devices[0].state"), body["detail"])
        self.assertFalse(self.bridge.last_status_at)
        self.assertFalse(self.device.live_state)

    def test_live_cards_go_to_the_board_channel(self):
        self.status(make_status([status_device(self.device.device_id, "working")]))
        [payload] = self.bus_messages("ows_iot_board/live")
        self.assertEqual(payload["server_time"], ts(T0))
        [card] = payload["cards"]
        self.assertEqual(card["id"], self.device.id)
        self.assertEqual(card["board_state"], "working")
        self.assertEqual(card["power_w"], 812.5)
        self.assertEqual(card["session_started_at"], ts(T0 - timedelta(minutes=25)))
        self.assertEqual(card["valid_until"], ts(T0 + timedelta(minutes=5)))
        channels = [value["channel"] for value in self.env.cr.precommit.data["bus.bus.values"]]
        self.assertIn(f'["{self.env.cr.dbname}","res.company",{self.bridge.company_id.id},'
                      '"ows_iot_board"]', channels)

    def test_discovered_plugs_are_stored(self):
        self.status(make_status(discovered_plugs=[discovered("shellies/shelly1/relay/0/power")]))
        plug = self.env["ows.iot.discovered.plug"].search([("bridge_id", "=", self.bridge.id)])
        self.assertEqual(plug.topic, "shellies/shelly1/relay/0/power")
        self.assertEqual(plug.device_model, "SHSW-1")
        self.assertEqual(plug.parser_type, "shelly_gen1")
        self.assertEqual(plug.details["mac"], "8CAAB54B98DF")


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestStatusRoute(StatusCase, HttpCase):
    """POST /ows/iot/status over HTTP (the contract suite covers every answer row; this is
    the route's wiring in a real server)."""

    def post(self, body, token="__default__"):
        headers = {"Content-Type": "application/json"}
        token = self.token if token == "__default__" else token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.opener.post(self.base_url() + "/ows/iot/status", data=data, headers=headers,
                                timeout=30)

    def test_route(self):
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        status = make_status([status_device(self.device.device_id, "working", at=now),
                              status_device("ghost", at=now)], at=now)
        self.assertEqual(self.post(status, token=None).status_code, 401)
        self.assertEqual(self.post(status, token="wrong").json(), {"error": "unauthorized"})
        response = self.post(b"{nope")
        self.assertEqual(response.status_code, 400)
        self.assertEqual(response.json()["error"], "invalid_status")
        response = self.post(status)
        self.assertEqual(response.status_code, 200, response.text)
        self.assertEqual(response.json(), {
            "status": "ok", "config_version": str(self.bridge.config_version),
            "unknown_devices": ["ghost"],
        })
        self.device.invalidate_recordset()
        self.bridge.invalidate_recordset()
        self.assertEqual(self.device.live_state, "working")
        self.assertEqual(self.device.board_state, "working")
        self.assertTrue(self.bridge.last_status_at)
        self.assertTrue(self.bridge.last_contact)
        stale = make_status(at=now - timedelta(seconds=5))
        self.assertEqual(self.post(stale).json()["status"], "stale")
