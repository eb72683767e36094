import json
from datetime import timedelta

from odoo import fields
from odoo.addons.bus.tests.common import WebsocketCase
from odoo.exceptions import AccessError
from odoo.tests import new_test_user, tagged

from ..models.res_config_settings import alert_settings
from .common import T0, StatusCase, make_status, run_start, run_stop, status_device, ts


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestBoard(StatusCase):

    def state_at(self, now, device=None):
        return (device or self.device)._board_state_at(now, alert_settings(self.env))

    def test_board_states(self):
        dev = self.device.device_id
        self.assertEqual(self.state_at(T0), "unknown")  # no live state yet
        for detector, board in (("working", "working"), ("standby", "standby"),
                                ("stopping", "standby"), ("starting", "idle"), ("idle", "idle")):
            self.status(make_status([status_device(dev, detector)]))
            self.assertEqual(self.state_at(T0), board, detector)
        # the status is only as good as its age: 5 minutes (the bridge silence setting)
        self.assertEqual(self.state_at(T0 + timedelta(minutes=5)), "idle")
        self.assertEqual(self.state_at(T0 + timedelta(minutes=5, seconds=1)), "unknown")
        self.status(make_status([status_device(dev, "working", online=False)]))
        self.assertEqual(self.state_at(T0), "offline")
        # a plug that says nothing for longer than the plug setting (10 min) is offline too
        later = T0 + timedelta(minutes=10, seconds=5)
        self.status(make_status([status_device(dev, "working", at=later, last_seen=None)],
                                at=later), now=later)
        self.assertEqual(self.state_at(later), "offline")

    def test_today_totals_are_done_sessions_started_since_day_start(self):
        dev = self.device.device_id
        now = fields.Datetime.now()  # board_data judges the live state as of now
        day_start = now - timedelta(hours=12)  # the browser's local midnight, in UTC
        yesterday = ts(day_start - timedelta(hours=2))
        self.ingest(run_stop(dev, "y1", started_at=yesterday,
                             stopped_at=ts(day_start - timedelta(hours=1)), duration_s=3600.0))
        self.ingest(run_stop(dev, "t1", started_at=ts(day_start + timedelta(hours=1)),
                             stopped_at=ts(day_start + timedelta(hours=1, seconds=17)),
                             duration_s=17.0, energy_wh=1.55))
        self.ingest(run_stop(dev, "t2", started_at=ts(day_start + timedelta(hours=2)),
                             stopped_at=ts(day_start + timedelta(hours=3)), duration_s=3600.0,
                             energy_wh=None))
        self.ingest(run_start(dev, "t3", started_at=ts(day_start + timedelta(hours=4))))
        self.status(make_status([status_device(dev, "working", at=now, session_id="t3")], at=now),
                    now=now)
        data = self.device.board_data(ts(day_start))
        card = data["cards"][self.device.id]
        self.assertEqual(card["today_sessions"], 2)
        self.assertAlmostEqual(card["today_done_s"], 3617.0)
        self.assertAlmostEqual(card["today_energy_wh"], 1.55)
        self.assertEqual(card["today_energy_unknown"], 1)  # never counted as zero
        self.assertIn("server_time", data)
        # the open session is the browser's to tick: as the bridge has it
        self.assertEqual(card["board_state"], "working")
        self.assertEqual(card["session_started_at"], ts(now - timedelta(minutes=25)))

    def test_card_of_a_machine_without_live_state(self):
        self.ingest(run_start(self.device.device_id, "s1", started_at=ts(T0)))
        card = self.device._board_card(T0, alert_settings(self.env))
        self.assertEqual(card["board_state"], "unknown")
        self.assertIsNone(card["valid_until"])
        self.assertIsNone(card["power_w"])
        self.assertIsNone(card["last_seen"])
        # Odoo's open session still shows how long it has been running
        self.assertEqual(card["session_started_at"], ts(T0))

    def test_session_changes_are_told_once_per_transaction(self):
        dev = self.device.device_id
        self.ingest(run_start(dev, "a"))
        self.ingest(run_stop(dev, "a"))
        self.ingest(run_start(self.other_device.device_id, "b"), bridge=self.other_bridge)
        self.env.cr.precommit.run()  # what the commit does: the pending notices are sent
        messages = self.env["bus.bus"].search([("message", "like", "ows_iot_board/sessions")])
        self.assertEqual(len(messages), 1)
        self.assertIn(f'"device_ids":[{self.device.id},{self.other_device.id}]',
                      messages.message.replace(" ", ""))

    def test_board_data_obeys_access_rights(self):
        user = new_test_user(self.env, "iot_screen", groups="open_workshop_mqtt.group_iot_user")
        data = self.device.with_user(user).board_data(ts(T0))
        self.assertIn(self.device.id, data["cards"])
        stranger = new_test_user(self.env, "no_iot", groups="base.group_user")
        with self.assertRaises(AccessError):
            self.device.with_user(stranger).board_data(ts(T0))


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestBoardChannel(StatusCase, WebsocketCase):
    """Live cards reach a Workshop IoT user's websocket, and nobody else's."""

    def test_live_cards_over_the_websocket(self):
        new_test_user(self.env, "iot_ws", groups="open_workshop_mqtt.group_iot_user")
        new_test_user(self.env, "no_iot_ws", groups="base.group_user")
        board = (self.bridge.company_id, "ows_iot_board")
        sockets = {}
        for login in ("iot_ws", "no_iot_ws"):
            self.session = None  # authenticate() would end the previous user's session
            session = self.authenticate(login, login)
            sockets[login] = self.websocket_connect(cookie=f"session_id={session.sid}")
            self.subscribe(sockets[login], [], self.env["bus.bus"]._bus_last_id())
        now = fields.Datetime.now()
        self.status(make_status([status_device(self.device.device_id, "working", at=now)],
                                at=now), now=now)
        self.env["bus.bus"]._sendone("broadcast", "ows_test/ping", {})
        self.trigger_notification_dispatching([board, "broadcast"])
        types = {}
        for login, socket in sockets.items():
            notifications = json.loads(socket.recv())
            types[login] = [n["message"]["type"] for n in notifications]
            if login == "iot_ws":
                [live] = [n["message"]["payload"] for n in notifications
                          if n["message"]["type"] == "ows_iot_board/live"]
                self.assertEqual(live["cards"][0]["id"], self.device.id)
                self.assertEqual(live["cards"][0]["board_state"], "working")
        self.assertEqual(types, {"iot_ws": ["ows_iot_board/live", "ows_test/ping"],
                                 "no_iot_ws": ["ows_test/ping"]})
