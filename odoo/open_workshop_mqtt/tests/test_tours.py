"""Tours in a real browser (Odoo's HttpCase.start_tour, with Debian's chromium).

Odoo skips a tour, saying "Chrome executable not found", only when no Chrome-compatible
browser can be started; odoo/run_addon_tests.sh then reports the skipped tours.
"""

from contextlib import contextmanager
from datetime import datetime, timedelta
from unittest.mock import patch

from odoo.addons.bus.models.bus import dispatch, hashable
from odoo.addons.bus.websocket import WebsocketConnectionHandler
from odoo.sql_db import TestCursor
from odoo.tests import HttpCase, tagged

from ..models.iot_bridge import hash_token
from .common import discovered, make_status, run_stop, ts

# the token the board tour posts with (static/tests/tours/machine_board_tour.js)
TOUR_TOKEN = "ows-tour-token-0123456789abcdefghijklmnopqrstuvwxyz"


@contextmanager
def live_bus():
    """The bus as in production, for a tour: the browser's websocket connects, and every
    commit delivers the notifications it wrote.

    Odoo refuses websockets while a test runs (as bus's own WebsocketCase, we allow them) and
    its test cursor drops post-commit hooks, among them the bus's NOTIFY that wakes the
    websockets. Here each commit wakes the websockets subscribed to the channels it wrote to,
    which then read the notifications from the bus table and send them, as in production.
    """
    commit = TestCursor.commit

    def commit_and_wake(cr):
        channels = list(cr.postcommit.data.get("bus.bus.channels", ()))
        commit(cr)
        for channel in channels:
            for websocket in list(dispatch._channels_to_ws.get(hashable(channel), ())):
                websocket.trigger_notification_dispatching()

    with patch.object(TestCursor, "commit", commit_and_wake), \
            patch.object(WebsocketConnectionHandler, "websocket_allowed", return_value=True):
        yield


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestTours(HttpCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bridge = cls.env["ows.iot.bridge"].create({
            "name": "Tour Bridge", "mqtt_broker": "mqtt://tour:1883",
            "token_hash": hash_token(TOUR_TOKEN), "token_prefix": TOUR_TOKEN[:8],
        })
        cls.device = cls.env["ows.iot.device"].create({
            "bridge_id": cls.bridge.id, "device_id": "shellypmminig3-tour01",
            "machine_name": "Tour Lathe", "mqtt_topic": "tour/status/pm1:0",
        })

    def test_machine_board_updates_live(self):
        with live_bus():
            self.start_tour("/odoo/action-open_workshop_mqtt.action_iot_device",
                            "ows_machine_board_live", login="admin")
        self.device.invalidate_recordset()
        self.assertEqual(self.device.live_state, "idle")
        session = self.env["ows.machine.session"].search([("device_id", "=", self.device.id)])
        self.assertEqual(session.energy_wh, 1.55)

    def test_discovered_plug_adoption(self):
        now = datetime.now().replace(microsecond=0)
        topic = "shellies/shellyplug-s-tour01/relay/0/power"
        status = make_status(discovered_plugs=[discovered(
            topic, at=now, device_id="shellyplug-s-tour01", model="SHPLG-S",
        )], at=now)
        self.env["ows.iot.status"].sudo()._ingest(self.bridge, status, now=now)
        plug = self.env["ows.iot.discovered.plug"].search([("topic", "=", topic)])
        self.assertEqual(plug.state, "new")
        self.start_tour("/odoo/action-open_workshop_mqtt.action_iot_discovered_plug",
                        "ows_discovered_plug_adopt", login="admin")
        device = self.env["ows.iot.device"].search([("device_id", "=", "shellyplug-s-tour01")])
        self.assertEqual(device.machine_name, "Band Saw")
        self.assertEqual(device.mqtt_topic, topic)
        self.assertEqual(device.parser_type, "shelly_gen1")
        self.assertEqual(device.bridge_id, self.bridge)
        plug.invalidate_recordset()
        self.assertEqual(plug.state, "adopted")
        self.assertEqual(plug.adopted_device_ref, device)

    def test_token_dialog_and_list_headers(self):
        self.bridge.write({"token_hash": False, "token_prefix": False})
        self.start_tour("/odoo/action-open_workshop_mqtt.action_iot_bridge", "ows_bridge_token",
                        login="admin")
        self.bridge.invalidate_recordset()
        self.assertTrue(self.bridge.has_token)
        self.assertEqual(len(self.env["ows.iot.bridge.token.wizard"].search(
            [("bridge_id", "=", self.bridge.id), ("token", "!=", False)])), 0,
            "Done forgets the clear token")

    def test_units_in_lists_and_pivot(self):
        Event = self.env["ows.iot.event"].sudo()
        dev = self.device.device_id
        start = datetime(2026, 1, 31, 10, 0, 0)
        for name, duration, working, energy in (("Units Short", 17, 17, 1.55),
                                                ("Units Long", 7500, 720, 3420.0)):
            self.device.machine_name = name
            Event._ingest(self.bridge, run_stop(
                dev, name, started_at=ts(start), stopped_at=ts(start + timedelta(seconds=duration)),
                duration_s=float(duration), working_s=float(working), standby_s=None,
                energy_wh=energy,
            ))
        self.start_tour("/odoo/action-open_workshop_mqtt.action_machine_session", "ows_units",
                        login="admin")
