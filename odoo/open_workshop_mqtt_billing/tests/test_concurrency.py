import threading
import uuid

import psycopg2

from odoo import SUPERUSER_ID, api
from odoo.exceptions import UserError
from odoo.modules.registry import Registry
from odoo.tests import BaseCase, tagged
from odoo.tests.common import get_db_name

from odoo.addons.open_workshop_mqtt.tests.common import make_event
from odoo.addons.open_workshop_mqtt_badge.tests.common import badge_scan, ts

from .common import PERIOD


@tagged("post_install", "-at_install", "open_workshop_mqtt_billing")
class TestConcurrentInvoicing(BaseCase):
    """Two invoicing runs over the same period at the same time, on their own connections.

    Whatever the interleaving, every session ends on exactly one invoice: the second run is
    refused while the first holds the sessions, fails to serialize if the first committed
    after the second began, and (replayed, as Odoo replays such a request) finds nothing left.
    Committed data, cleaned up afterwards.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.registry = Registry(get_db_name())

    def setUp(self):
        super().setUp()
        suffix = uuid.uuid4().hex[:8]
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            bridge = env["ows.iot.bridge"].create({"name": f"billing-race-{suffix}"})
            product = env["product.product"].create({"name": f"Race time {suffix}",
                                                     "type": "service"})
            device = env["ows.iot.device"].create({
                "bridge_id": bridge.id, "device_id": f"billing-race-{suffix}",
                "machine_name": f"Race {suffix}", "mqtt_topic": f"billing-race/{suffix}",
                "badge_reader_topic": f"billing-race/{suffix}/reader",
                "billing_product_id": product.id, "billing_rate": 10.0,
            })
            partners = env["res.partner"].create([{"name": f"Racer {i} {suffix}"}
                                                  for i in range(3)])
            events = []
            for i, partner in enumerate(partners):
                badge = env["ows.badge"].create({"uid": f"BR{i}{suffix.upper()}",
                                                 "partner_id": partner.id})
                start = 3600 * (i + 1)
                events.append(badge_scan(device.device_id, badge.uid, start - 10))
                events.append(make_event(device.device_id, "run_stop", {
                    "session_id": str(uuid.uuid4()), "power_w": 1.0, "reason": "normal",
                    "started_at": ts(start), "stopped_at": ts(start + 1800),
                    "duration_s": 1800.0, "working_s": 1800.0, "standby_s": 0.0,
                    "energy_wh": 100.0, "energy_source": "counter"}, ts=ts(start + 1800)))
            for event in events:
                assert env["ows.iot.event"]._ingest(bridge, event)[0] == "created"
            env.flush_all()
            sessions = env["ows.machine.session"].search([("device_id", "=", device.id)])
            assert len(sessions) == 3 and all(sessions.mapped("partner_id"))
            self.ids = {"bridge": bridge.id, "device": device.id, "product": product.id,
                        "partners": partners.ids, "sessions": sessions.ids}
        self.addCleanup(self._cleanup)

    def _cleanup(self):
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            moves = env["account.move"].search([("partner_id", "in", self.ids["partners"])])
            moves.filtered(lambda m: m.state != "draft").button_draft()
            moves.with_context(force_delete=True).unlink()
            device = self.ids["device"]
            for table in ("ows_badge_scan", "ows_badge_attribution_lock", "ows_machine_session",
                          "ows_iot_event"):
                cr.execute(f"DELETE FROM {table} WHERE device_id = %s", (device,))
            cr.execute("DELETE FROM ows_badge WHERE partner_id IN %s",
                       (tuple(self.ids["partners"]),))
            cr.execute("DELETE FROM ows_iot_device WHERE id = %s", (device,))
            cr.execute("DELETE FROM ows_iot_bridge WHERE id = %s", (self.ids["bridge"],))
            env["product.product"].browse(self.ids["product"]).unlink()
            env["res.partner"].browse(self.ids["partners"]).unlink()

    @staticmethod
    def _env(cr):
        return api.Environment(cr, SUPERUSER_ID, {"tz": "UTC"})

    def _run(self, env):
        """One invoicing run as a request makes it: the number of invoices, or the error."""
        devices = env["ows.iot.device"].browse(self.ids["device"])
        try:
            invoices, _skipped = env["ows.session.invoicer"].invoice_period(
                *PERIOD, devices=devices)
            env.flush_all()
            env.cr.commit()
            return len(invoices)
        except (UserError, psycopg2.errors.SerializationFailure) as exc:
            env.cr.rollback()
            return type(exc).__name__

    def _invoice_counts(self):
        """Per session: how many customer invoices name it."""
        with self.registry.cursor() as cr:
            cr.execute("""
                SELECT rel.session_id, count(DISTINCT m.id)
                  FROM ows_session_invoice_line_rel rel
                  JOIN account_move_line l ON l.id = rel.line_id
                  JOIN account_move m ON m.id = l.move_id
                 WHERE rel.session_id IN %s AND m.move_type = 'out_invoice'
                 GROUP BY rel.session_id
            """, (tuple(self.ids["sessions"]),))
            return dict(cr.fetchall())

    def _assert_invoiced_once(self):
        self.assertEqual(self._invoice_counts(), dict.fromkeys(self.ids["sessions"], 1))

    def _replay(self):
        with self.registry.cursor() as cr:
            return self._run(self._env(cr))

    def test_second_run_refused_while_the_first_holds_the_sessions(self):
        cr_a, cr_b = self.registry.cursor(), self.registry.cursor()
        try:
            env_a, env_b = self._env(cr_a), self._env(cr_b)
            devices = env_a["ows.iot.device"].browse(self.ids["device"])
            invoices, _skipped = env_a["ows.session.invoicer"].invoice_period(
                *PERIOD, devices=devices)
            env_a.flush_all()
            self.assertEqual(len(invoices), 3)
            outcome = {}
            thread = threading.Thread(target=lambda: outcome.update(b=self._run(env_b)))
            thread.start()
            thread.join(30)
            self.assertEqual(outcome, {"b": "UserError"})
            cr_a.commit()
        finally:
            cr_a.close()
            cr_b.close()
        self.assertEqual(self._replay(), 0)
        self._assert_invoiced_once()

    def test_second_run_begun_before_the_first_committed(self):
        cr_a, cr_b = self.registry.cursor(), self.registry.cursor()
        try:
            env_a, env_b = self._env(cr_a), self._env(cr_b)
            cr_b.execute("SELECT 1")  # B's snapshot predates A's invoices
            self.assertEqual(self._run(env_a), 3)
            outcome = {}
            thread = threading.Thread(target=lambda: outcome.update(b=self._run(env_b)))
            thread.start()
            thread.join(30)
            self.assertEqual(outcome, {"b": "SerializationFailure"})
        finally:
            cr_a.close()
            cr_b.close()
        self.assertEqual(self._replay(), 0)
        self._assert_invoiced_once()

    def test_two_runs_started_together(self):
        barrier = threading.Barrier(2)
        cursors = [self.registry.cursor(), self.registry.cursor()]
        envs = [self._env(cr) for cr in cursors]
        outcome = {}

        def run(i):
            barrier.wait(10)
            outcome[i] = self._run(envs[i])

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
        finally:
            for cr in cursors:
                cr.close()
        results = sorted(outcome.values(), key=str)
        self.assertIn(3, results, outcome)
        losers = [r for r in results if r != 3]
        self.assertEqual(len(losers), 1, outcome)
        self.assertIn(losers[0], (0, "UserError", "SerializationFailure"), outcome)
        self.assertEqual(self._replay(), 0)
        self._assert_invoiced_once()
