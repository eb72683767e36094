import itertools
import uuid

from odoo.exceptions import AccessError
from odoo.tests import tagged

from ..models.badge_scan import WINDOW_PARAM
from .common import BadgeCase, badge_scan, ts


@tagged("post_install", "-at_install", "open_workshop_mqtt_badge")
class TestAttribution(BadgeCase):
    """Which session a scan attributes, whatever order the events arrive in."""

    def test_scan_then_start_within_window(self):
        self.scan("04A23B1C", 0)
        session = self.start(119)
        self.assertEqual(session.partner_id, self.alice)
        self.assertEqual(session.member_source, "badge")
        self.assertEqual(session.badge_scan_id.badge_id, self.badge_alice)
        self.assertEqual(session.badge_scan_id.state, "attributed")

    def test_start_after_the_window_is_not_attributed(self):
        self.scan("04A23B1C", 0)
        session = self.start(121)
        self.assertFalse(session.partner_id)
        self.assertEqual(self.Scan.search([("badge_id", "=", self.badge_alice.id)]).state,
                         "pending")

    def test_window_is_a_setting(self):
        self.env["res.config.settings"].create({"ows_badge_window_s": 300}).execute()
        self.assertEqual(self.env["ir.config_parameter"].sudo().get_param(WINDOW_PARAM), "300")
        self.scan("04A23B1C", 0)
        self.assertEqual(self.start(290).partner_id, self.alice)

    def test_scan_while_running(self):
        session = self.start(0)
        self.scan("04A23B1C", 600)
        self.assertEqual(session.partner_id, self.alice)

    def test_scan_arriving_after_the_stop_it_preceded(self):
        sid = str(uuid.uuid4())
        self.start(0, sid)
        self.stop(sid, 0, 500)
        self.scan("04A23B1C", 300)  # delivered late: it was made while the machine ran
        self.assertEqual(self.find_session(sid).partner_id, self.alice)

    def test_scan_after_the_stop_waits_for_the_next_session(self):
        sid = str(uuid.uuid4())
        self.start(0, sid)
        self.stop(sid, 0, 500)
        self.scan("04A23B1C", 510)
        self.assertFalse(self.find_session(sid).partner_id)
        nxt = self.start(560)
        self.assertEqual(nxt.partner_id, self.alice)

    def test_late_stop_moves_the_scan_to_the_next_session(self):
        """Odoo saw the session running when the scan came, but it had stopped before it."""
        sid = str(uuid.uuid4())
        self.start(0, sid)
        self.scan("04A23B1C", 510)
        self.assertEqual(self.find_session(sid).partner_id, self.alice)
        self.stop(sid, 0, 500)
        self.assertFalse(self.find_session(sid).partner_id)
        self.assertEqual(self.start(530).partner_id, self.alice)

    def test_open_session_wins_over_one_starting_soon(self):
        first = self.start(0)
        self.scan("04A23B1C", 100)
        self.stop(first.session_id, 0, 110)
        second = self.start(150)
        self.assertEqual(first.partner_id, self.alice)
        self.assertFalse(second.partner_id)

    def test_other_machines_scans_do_not_count(self):
        self.other_device.badge_reader_topic = "tele/reader-bbbb/SENSOR"
        event = badge_scan(self.other_device.device_id, "04A23B1C", 0)
        self.assertEqual(self.ingest(event, bridge=self.other_bridge), ("created", None))
        self.assertFalse(self.start(10).partner_id)

    def test_order_of_arrival_does_not_matter(self):
        """Bob badges last before the start, Alice while it runs: Bob used it, in any order."""
        sid = str(uuid.uuid4())
        events = {
            "alice_early": badge_scan(self.device.device_id, "04A23B1C", -90),
            "bob": badge_scan(self.device.device_id, "0A1B2C3D4E", -30),
            "alice_during": badge_scan(self.device.device_id, "04A23B1C", 200),
        }
        for order in itertools.permutations(["alice_early", "bob", "alice_during", "start"]):
            savepoint = self.env.cr.savepoint()
            try:
                with self.subTest(order=order):
                    for name in order:
                        if name == "start":
                            self.start(0, sid)
                        else:
                            self.ok(events[name])
                    self.assertEqual(self.find_session(sid).partner_id, self.bob)
            finally:
                self.env.flush_all()
                savepoint.close(rollback=True)
                self.env.invalidate_all()

    def test_first_scan_during_the_session_when_none_before(self):
        session = self.start(0)
        self.scan("0A1B2C3D4E", 400)
        self.scan("04A23B1C", 300)
        self.assertEqual(session.partner_id, self.alice)
        scans = session.badge_scan_ids.sorted("scanned_at")
        self.assertEqual(scans.mapped("state"), ["attributed", "superseded"])

    def test_unknown_badge_then_assigned(self):
        self.scan("C0FFEE01", 0)
        session = self.start(30)
        self.assertFalse(session.partner_id)
        badge = self.Badge.search([("uid", "=", "C0FFEE01")])
        self.assertEqual(badge.scan_ids.state, "unknown")
        badge.partner_id = self.bob
        self.assertEqual(session.partner_id, self.bob)
        self.assertEqual(badge.scan_ids.state, "attributed")

    def test_correcting_a_badge_member_corrects_its_sessions(self):
        self.scan("04A23B1C", 0)
        session = self.start(10)
        self.badge_alice.partner_id = self.bob
        self.assertEqual(session.partner_id, self.bob)
        self.badge_alice.partner_id = False
        self.assertFalse(session.partner_id)
        self.assertFalse(session.member_source)

    def test_staff_choice_is_kept(self):
        session = self.start(0)
        user = self.env["res.users"].create({
            "name": "Staff", "login": "staff-badge",
            "groups_id": [(6, 0, [self.env.ref("open_workshop_mqtt.group_iot_user").id])],
        })
        session.with_user(user).partner_id = self.bob
        self.assertEqual(session.member_source, "manual")
        self.scan("04A23B1C", 10)
        self.assertEqual(session.partner_id, self.bob)
        session.with_user(user).action_member_from_badge()
        self.assertEqual(session.partner_id, self.alice)
        self.assertEqual(session.member_source, "badge")

    def test_staff_may_change_the_member_only(self):
        session = self.start(0)
        user = self.env["res.users"].create({
            "name": "Staff", "login": "staff-only-member",
            "groups_id": [(6, 0, [self.env.ref("open_workshop_mqtt.group_iot_user").id])],
        })
        with self.assertRaises(AccessError):
            session.with_user(user).write({"duration_s": 1.0})
        with self.assertRaises(AccessError):
            session.with_user(user).write({"partner_id": self.bob.id, "state": "done"})
        session.with_user(user).write({"partner_id": self.alice.id})
        self.assertEqual(session.partner_id, self.alice)

    def test_run_stop_without_start_is_attributed(self):
        sid = str(uuid.uuid4())
        self.scan("04A23B1C", -5)
        session = self.stop(sid, 0, 100)
        self.assertEqual(session.partner_id, self.alice)

    def test_device_without_reader_sessions_unaffected(self):
        sid = str(uuid.uuid4())
        self.ok(dict(badge_scan(self.device.device_id, "04A23B1C", 0)))
        self.device.badge_reader_topic = False
        session = self.start(5, sid)
        self.assertEqual(session.partner_id, self.alice)  # stored scans still count
        self.assertEqual(ts(session.started_at), ts(5))
