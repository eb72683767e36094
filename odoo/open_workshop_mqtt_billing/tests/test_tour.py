from odoo.tests import HttpCase, tagged

from .common import BillingCase


@tagged("post_install", "-at_install", "open_workshop_mqtt_billing")
class TestInvoicingTour(BillingCase, HttpCase):
    """In a real browser: invoicing a period from the Workshop IoT menu."""

    def test_invoice_period_tour(self):
        self.device.machine_name = "Tour Laser"
        member = self.env["res.partner"].create({"name": "Tour Member"})
        laser = self.session_done(self.device, member, 0, working_s=5400)  # 1.5 h x 24.00
        kiln = self.session_done(self.kiln, member, 20000, working_s=600, energy_known=False)
        self.env.ref("base.user_admin").write({"tz": "UTC", "groups_id": [
            (4, self.env.ref("account.group_account_invoice").id)]})
        self.start_tour("/odoo/action-open_workshop_mqtt.action_machine_session",
                        "ows_billing_invoice_period", login="admin")
        laser.invalidate_recordset()
        self.assertEqual(laser.billing_state, "invoiced")
        invoice = laser.invoice_line_ids.move_id
        self.assertEqual(invoice.partner_id, member)
        self.assertEqual(invoice.state, "draft")
        self.assertAlmostEqual(invoice.amount_untaxed, 36.0)
        self.assertEqual(kiln.billing_state, "to_invoice")
