import uuid

import psycopg2

from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry
from odoo.tests import BaseCase, tagged
from odoo.tests.common import get_db_name

from .common import session_events

from odoo.addons.open_workshop_mqtt.tests.common import race


@tagged("post_install", "-at_install", "open_workshop_mqtt_maintenance")
class TestConcurrentCrossing(BaseCase):
    """Two machines of one equipment finish sessions at the same time and together pass the
    service threshold: one request, not two. The later transaction fails to serialize on the
    equipment row (Odoo replays the request) and its replay finds the crossing handled.
    Committed data on real cursors, cleaned up afterwards."""

    def setUp(self):
        super().setUp()
        self.registry = Registry(get_db_name())
        suffix = uuid.uuid4().hex[:8]
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            bridge = env["ows.iot.bridge"].create({"name": f"maint-race-{suffix}"})
            equipment = env["maintenance.equipment"].create({
                "name": f"Race mill {suffix}", "ows_service_interval_h": 10.0,
                "ows_hours_offset": 9.5})
            devices = env["ows.iot.device"].create([{
                "bridge_id": bridge.id, "device_id": f"maint-race-{suffix}-{i}",
                "machine_name": f"Race {i}", "mqtt_topic": f"maint-race/{suffix}/{i}",
                "equipment_id": equipment.id} for i in range(2)])
            self.ids = {"bridge": bridge.id, "equipment": equipment.id, "devices": devices.ids}
            self.codes = devices.mapped("device_id")
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        with self.registry.cursor() as cr:
            devices = tuple(self.ids["devices"])
            cr.execute("DELETE FROM maintenance_request WHERE equipment_id = %s",
                       (self.ids["equipment"],))
            cr.execute("DELETE FROM ows_machine_session WHERE device_id IN %s", (devices,))
            cr.execute("DELETE FROM ows_iot_event WHERE device_id IN %s", (devices,))
            cr.execute("DELETE FROM ows_iot_device WHERE id IN %s", (devices,))
            cr.execute("DELETE FROM maintenance_equipment WHERE id = %s",
                       (self.ids["equipment"],))
            cr.execute("DELETE FROM ows_iot_bridge WHERE id = %s", (self.ids["bridge"],))

    def _ingest(self, env, events):
        bridge = env["ows.iot.bridge"].browse(self.ids["bridge"])
        results = [env["ows.iot.event"]._ingest(bridge, event) for event in events]
        env.flush_all()
        return results

    def test_two_stops_one_request(self):
        events = [session_events(code, 3600 * i, 3600) for i, code in enumerate(self.codes)]
        # B's snapshot is taken before A's crossing; B waits on the equipment row
        result_a, result_b = race(self, self.registry, lambda env: self._ingest(env, events[0]),
                                  lambda env: self._ingest(env, events[1]))
        self.assertEqual(result_a, [("created", None)] * 2)
        self.assertIsInstance(result_b, psycopg2.errors.SerializationFailure)
        with self.registry.cursor() as cr:  # Odoo's replay of B
            self.assertEqual(self._ingest(api.Environment(cr, SUPERUSER_ID, {}), events[1]),
                             [("created", None)] * 2)
        with self.registry.cursor() as cr:
            cr.execute("SELECT ows_service_index FROM maintenance_request"
                       " WHERE equipment_id = %s", (self.ids["equipment"],))
            self.assertEqual(cr.fetchall(), [(1,)])
            cr.execute("SELECT ows_working_hours FROM maintenance_equipment WHERE id = %s",
                       (self.ids["equipment"],))
            self.assertAlmostEqual(cr.fetchone()[0], 11.5)
