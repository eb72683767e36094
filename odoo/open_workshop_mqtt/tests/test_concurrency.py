import uuid

import psycopg2

from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry
from odoo.tests import BaseCase, tagged
from odoo.tests.common import get_db_name

from .common import make_event, race


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestConcurrentDuplicates(BaseCase):
    """Two transactions on their own connections store the same event_uid at the same time.

    Uses committed data on real cursors (no test cursor), cleaned up afterwards. Environments
    are built in the main thread (which holds the registry lock while tests run); the second
    transaction then runs in a worker thread.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.registry = Registry(get_db_name())
        suffix = uuid.uuid4().hex[:8]
        with cls.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            bridge = env["ows.iot.bridge"].create({"name": f"concurrency-{suffix}"})
            device = env["ows.iot.device"].create({
                "bridge_id": bridge.id, "device_id": f"concurrency-{suffix}",
                "machine_name": "Concurrency", "mqtt_topic": f"concurrency/{suffix}",
            })
            cls.bridge_id, cls.device_id, cls.device_code = bridge.id, device.id, device.device_id
        cls.addClassCleanup(cls._cleanup)

    @classmethod
    def _cleanup(cls):
        with cls.registry.cursor() as cr:
            cr.execute("DELETE FROM ows_machine_session WHERE device_id = %s", (cls.device_id,))
            cr.execute("DELETE FROM ows_iot_event WHERE device_id = %s", (cls.device_id,))
            cr.execute("DELETE FROM ows_iot_device WHERE id = %s", (cls.device_id,))
            cr.execute("DELETE FROM ows_iot_bridge WHERE id = %s", (cls.bridge_id,))

    def _ingest(self, env, event):
        return env["ows.iot.event"]._ingest(env["ows.iot.bridge"].browse(self.bridge_id), event)

    def _count(self, column, value):
        with self.registry.cursor() as cr:
            cr.execute(f"SELECT count(*) FROM {column[0]} WHERE {column[1]} = %s", (value,))
            return cr.fetchone()[0]

    def _race(self, event_a, event_b):
        """A stores ``event_a`` and stays uncommitted; B, whose snapshot predates A's commit,
        stores ``event_b`` and must block on the unique index until A commits."""
        return race(self, self.registry, lambda env: self._ingest(env, event_a),
                    lambda env: self._ingest(env, event_b))

    def test_concurrent_same_uid(self):
        event = make_event(self.device_code, "run_start",
                           {"session_id": str(uuid.uuid4()), "power_w": 100})
        result_a, result_b = self._race(event, event)
        # B cannot see A's uid from its snapshot: it fails to serialize, and the request's
        # replay answers duplicate
        self.assertEqual(result_a, ("created", None))
        self.assertIsInstance(result_b, psycopg2.errors.SerializationFailure)
        self.assertEqual(self._replay(event), ("duplicate", None))
        self.assertEqual(self._count(("ows_iot_event", "event_uid"), event["event_uid"]), 1)
        self.assertEqual(
            self._count(("ows_machine_session", "session_id"), event["payload"]["session_id"]), 1
        )

    def _replay(self, event):
        """The request again, as Odoo replays one that failed to serialize."""
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            result = self._ingest(env, event)
            env.flush_all()
            return result

    def test_event_after_a_concurrent_last_contact_is_no_duplicate(self):
        """Two requests of one bridge overlap (a status and a batch): the first records the
        bridge's last contact and commits while the second runs on an older snapshot. The
        second's INSERT then fails to serialize on the bridge row; that is no duplicate (its
        events were never stored, and the bridge would drop them): it propagates, and the
        replayed request stores them."""
        with self.registry.cursor() as cr:
            cr.execute("UPDATE ows_iot_bridge SET last_contact = NULL WHERE id = %s",
                       (self.bridge_id,))
        event = make_event(self.device_code)
        cr_a, cr_b = self.registry.cursor(), self.registry.cursor()
        try:
            env_a = api.Environment(cr_a, SUPERUSER_ID, {})
            env_b = api.Environment(cr_b, SUPERUSER_ID, {})
            cr_b.execute("SELECT 1")  # B's REPEATABLE READ snapshot is taken now
            env_a["ows.iot.bridge"].browse(self.bridge_id)._touch_last_contact()
            cr_a.commit()
            bridge_b = env_b["ows.iot.bridge"].browse(self.bridge_id)
            bridge_b._touch_last_contact()  # as the controller does: skipped, changed under us
            with self.assertRaises(psycopg2.errors.SerializationFailure):
                env_b["ows.iot.event"]._ingest(bridge_b, event)
            cr_b.rollback()
        finally:
            cr_a.close()
            cr_b.close()
        self.assertEqual(self._count(("ows_iot_event", "event_uid"), event["event_uid"]), 0)
        self.assertEqual(self._replay(event), ("created", None))
        self.assertEqual(self._count(("ows_iot_event", "event_uid"), event["event_uid"]), 1)

    def test_sequential_transactions(self):
        event = make_event(self.device_code)
        results = []
        for _attempt in range(2):
            with self.registry.cursor() as cr:
                results.append(self._ingest(api.Environment(cr, SUPERUSER_ID, {}), event))
        self.assertEqual(results, [("created", None), ("duplicate", None)])
        self.assertEqual(self._count(("ows_iot_event", "event_uid"), event["event_uid"]), 1)
