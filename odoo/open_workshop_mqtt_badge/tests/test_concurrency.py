import uuid

import psycopg2

from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry
from odoo.tests import BaseCase, tagged
from odoo.tests.common import get_db_name

from .common import badge_scan, ts

from odoo.addons.open_workshop_mqtt.tests.common import make_event, race


@tagged("post_install", "-at_install", "open_workshop_mqtt_badge")
class TestConcurrentScanAndStart(BaseCase):
    """A badge_scan and the run_start it belongs to, in two transactions at the same time.

    Neither transaction sees the other's row; without the per-machine lock both would commit
    and the session would stay without its member. With it, the later one fails with a
    serialization error (which Odoo answers by replaying the request) and its replay
    attributes the session. Real cursors and committed data, cleaned up afterwards.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.registry = Registry(get_db_name())
        suffix = uuid.uuid4().hex[:8]
        with cls.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            bridge = env["ows.iot.bridge"].create({"name": f"badge-race-{suffix}"})
            partner = env["res.partner"].create({"name": f"Racer {suffix}"})
            badge = env["ows.badge"].create({"uid": f"RACE{suffix.upper()}",
                                             "partner_id": partner.id})
            cls.ids = {"bridge": bridge.id, "partner": partner.id, "badge": badge.id}
            cls.badge_uid = badge.uid
        cls.addClassCleanup(cls._cleanup_class)

    @classmethod
    def _cleanup_class(cls):
        with cls.registry.cursor() as cr:
            cr.execute("DELETE FROM ows_badge WHERE id = %s", (cls.ids["badge"],))
            cr.execute("DELETE FROM ows_iot_bridge WHERE id = %s", (cls.ids["bridge"],))
            cr.execute("DELETE FROM res_partner WHERE id = %s", (cls.ids["partner"],))

    def setUp(self):
        super().setUp()
        suffix = uuid.uuid4().hex[:8]
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            device = env["ows.iot.device"].create({
                "bridge_id": self.ids["bridge"], "device_id": f"badge-race-{suffix}",
                "machine_name": "Race", "mqtt_topic": f"race/{suffix}",
                "badge_reader_topic": f"race/{suffix}/reader",
            })
            self.device_pk, self.device_code = device.id, device.device_id
        self.addCleanup(self._cleanup_device)

    def _cleanup_device(self):
        with self.registry.cursor() as cr:
            for table in ("ows_badge_scan", "ows_badge_attribution_lock", "ows_machine_session",
                          "ows_iot_event"):
                cr.execute(f"DELETE FROM {table} WHERE device_id = %s", (self.device_pk,))
            cr.execute("DELETE FROM ows_iot_device WHERE id = %s", (self.device_pk,))

    def _ingest(self, env, event):
        """As a request does: ingest, then flush (the env must outlive the call: a transaction
        flushes only the environments still referenced)."""
        result = env["ows.iot.event"]._ingest(env["ows.iot.bridge"].browse(self.ids["bridge"]),
                                             event)
        env.flush_all()
        return result

    def _member_of(self, session_id):
        with self.registry.cursor() as cr:
            cr.execute("SELECT partner_id FROM ows_machine_session WHERE session_id = %s",
                       (session_id,))
            return cr.fetchone()[0]

    def _race(self, first, second):
        """``first`` stays uncommitted while ``second`` runs in a thread on its own cursor
        (snapshot taken before ``first`` commits); then ``second`` is replayed once, as Odoo
        replays a request that failed to serialize."""
        result_a, result_b = race(self, self.registry, lambda env: self._ingest(env, first),
                                  lambda env: self._ingest(env, second))
        self.assertEqual(result_a, ("created", None))
        self.assertIsInstance(result_b, psycopg2.errors.SerializationFailure)
        with self.registry.cursor() as cr:  # the replay
            env = api.Environment(cr, SUPERUSER_ID, {})
            self.assertEqual(self._ingest(env, second), ("created", None))

    def _events(self):
        session_id = str(uuid.uuid4())
        start = make_event(self.device_code, "run_start", {
            "session_id": session_id, "power_w": 300.0, "reason": "power_threshold",
            "started_at": ts(20)}, ts=ts(20))
        return session_id, start, badge_scan(self.device_code, self.badge_uid, 0)

    def test_start_first_scan_second(self):
        session_id, start, scan = self._events()
        self._race(start, scan)
        self.assertEqual(self._member_of(session_id), self.ids["partner"])

    def test_scan_first_start_second(self):
        session_id, start, scan = self._events()
        self._race(scan, start)
        self.assertEqual(self._member_of(session_id), self.ids["partner"])
