from odoo.tests import HttpCase, tagged

from .common import BadgeCase


@tagged("post_install", "-at_install", "open_workshop_mqtt_badge")
class TestAttributionTour(BadgeCase, HttpCase):
    """In a real browser: an unknown badge assigned by staff attributes its session."""

    def test_attribute_session_tour(self):
        self.device.machine_name = "Tour Laser"
        member = self.env["res.partner"].create({"name": "Tour Member"})
        self.env["res.partner"].create({"name": "Other Member"})
        self.scan("C0FFEE42", 0)
        session = self.start(30)
        self.assertFalse(session.partner_id)
        self.start_tour("/odoo/action-open_workshop_mqtt_badge.action_badge_unknown",
                        "ows_badge_attribute_session", login="admin")
        session.invalidate_recordset()
        self.assertEqual(session.partner_id, member)
        self.assertEqual(session.member_source, "badge")
        badge = self.Badge.search([("uid", "=", "C0FFEE42")])
        self.assertEqual(badge.partner_id, member)
