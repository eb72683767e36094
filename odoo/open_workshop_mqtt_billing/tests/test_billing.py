from datetime import date, datetime

from odoo import Command
from odoo.exceptions import AccessError, UserError
from odoo.tests import Form, tagged

from .common import PERIOD, BillingCase


@tagged("post_install", "-at_install", "open_workshop_mqtt_billing")
class TestPricing(BillingCase):

    def test_working_hours_rounded_up_per_session(self):
        session = self.session_done(self.device, self.alice, 0, working_s=3700, duration_s=4000)
        # 3700 s = 1.028 h -> every started quarter hour: 1.25 h at 24.00
        self.assertAlmostEqual(session.billing_quantity, 1.25)
        self.assertAlmostEqual(session.billing_amount, 30.0)

    def test_minimum_charge(self):
        session = self.session_done(self.device, self.alice, 0, working_s=60)
        self.assertAlmostEqual(session.billing_quantity, 0.25)
        self.assertAlmostEqual(session.billing_amount, 6.0)
        self.device.billing_minimum = 10.0
        self.assertAlmostEqual(session.billing_amount, 10.0)

    def test_session_hours_count_standby(self):
        self.device.write({"billing_basis": "session_hour", "billing_rounding": 0})
        session = self.session_done(self.device, self.alice, 0, working_s=1800, duration_s=5400)
        self.assertAlmostEqual(session.billing_quantity, 1.5)
        self.assertAlmostEqual(session.billing_amount, 36.0)

    def test_kwh(self):
        session = self.session_done(self.kiln, self.alice, 0, working_s=7200, energy_wh=12500.0)
        self.assertAlmostEqual(session.billing_quantity, 12.5)
        self.assertAlmostEqual(session.billing_amount, 5.0)

    def test_exact_steps_are_not_rounded_up(self):
        session = self.session_done(self.device, self.alice, 0, working_s=2700)
        self.assertAlmostEqual(session.billing_quantity, 0.75)

    def test_negative_prices_refused(self):
        with self.assertRaises(Exception), self.env.cr.savepoint():
            self.device.billing_rate = -1


@tagged("post_install", "-at_install", "open_workshop_mqtt_billing")
class TestInvoicing(BillingCase):

    def test_invoices_per_member_lines_per_machine(self):
        a1 = self.session_done(self.device, self.alice, 0, working_s=3600)
        a2 = self.session_done(self.device, self.alice, 7200, working_s=1800)
        a3 = self.session_done(self.kiln, self.alice, 20000, working_s=3600, energy_wh=2000.0)
        b1 = self.session_done(self.device, self.bob, 40000, working_s=900)
        invoices, skipped = self.invoice()
        self.assertEqual(skipped, {})
        self.assertEqual(len(invoices), 2)
        self.assertEqual(set(invoices.mapped("state")), {"draft"})
        self.assertEqual(set(invoices.mapped("move_type")), {"out_invoice"})
        alice_inv = invoices.filtered(lambda m: m.partner_id == self.alice)
        bob_inv = invoices.filtered(lambda m: m.partner_id == self.bob)
        laser, kiln = alice_inv.invoice_line_ids.sorted("name")[1], \
            alice_inv.invoice_line_ids.sorted("name")[0]
        self.assertEqual(kiln.product_id, self.kiln_product)
        self.assertAlmostEqual(kiln.quantity, 2.0)
        self.assertAlmostEqual(kiln.price_unit, 0.40)
        self.assertEqual(laser.product_id, self.laser_product)
        self.assertAlmostEqual(laser.quantity, 1.5)
        self.assertAlmostEqual(laser.price_unit, 24.0)
        self.assertAlmostEqual(laser.price_subtotal, 36.0)
        self.assertEqual(laser.ows_session_ids, a1 | a2)
        self.assertIn("Laser (2 sessions, per working hour)", laser.name)
        self.assertIn("2026-03-02 09:00-10:00, 1 h", laser.name)
        self.assertIn("2026-03-02 11:00-11:30, 0.5 h", laser.name)
        self.assertEqual(kiln.ows_session_ids, a3)
        # Bob's quarter hour is worth 6.00, above the 5.00 minimum: one line
        self.assertEqual(len(bob_inv.invoice_line_ids), 1)
        self.assertAlmostEqual(bob_inv.amount_untaxed, 6.0)
        for session in a1 | a2 | a3 | b1:
            self.assertEqual(session.billing_state, "invoiced")
        self.assertEqual(alice_inv.ows_session_count, 3)
        again, skipped = self.invoice()
        self.assertFalse(again)
        self.assertEqual(skipped, {})

    def test_minimum_charge_line(self):
        self.device.billing_minimum = 10.0
        short = self.session_done(self.device, self.alice, 0, working_s=300)
        self.session_done(self.device, self.alice, 3600, working_s=3600)
        invoice = self.invoice()[0]
        usage, minimum = invoice.invoice_line_ids.sorted("quantity", reverse=True)
        self.assertAlmostEqual(usage.quantity, 1.25)
        self.assertAlmostEqual(usage.price_subtotal, 30.0)
        self.assertAlmostEqual(minimum.price_subtotal, 4.0)  # 10.00 - 0.25 h * 24.00
        self.assertEqual(minimum.ows_session_ids, short)
        self.assertIn("minimum charge", minimum.name)
        self.assertAlmostEqual(invoice.amount_untaxed, 34.0)

    def test_unknown_energy_is_never_billed_per_kwh(self):
        unknown = self.session_done(self.kiln, self.alice, 0, working_s=3600, energy_known=False)
        known = self.session_done(self.kiln, self.alice, 7200, working_s=3600, energy_wh=1000.0)
        self.assertFalse(unknown.energy_known)
        invoices, skipped = self.invoice()
        self.assertEqual(skipped, {"energy_unknown": unknown})
        self.assertEqual(invoices.invoice_line_ids.ows_session_ids, known)
        self.assertEqual(unknown.billing_state, "to_invoice")
        # staff look at it and correct the quantity: now it can be billed
        unknown.write({"billing_corrected": True, "billing_qty_corrected": 3.0,
                       "billing_note": "meter was offline"})
        invoices, skipped = self.invoice()
        self.assertEqual(skipped, {})
        self.assertAlmostEqual(invoices.invoice_line_ids.quantity, 3.0)

    def test_what_is_left_out_and_why(self):
        nobody = self.session_done(self.device, None, 0, working_s=600)
        free = self.Device.create({
            "bridge_id": self.bridge.id, "device_id": "free-printer", "machine_name": "Printer",
            "mqtt_topic": "printer/status", "badge_reader_topic": "tele/printer-reader/SENSOR",
        })
        unpriced = self.session_done(free, self.alice, 100, working_s=600)
        invoices, skipped = self.invoice()
        self.assertFalse(invoices)
        self.assertEqual(skipped, {"no_member": nobody, "no_price": unpriced})

    def test_period_in_the_users_time_zone(self):
        self.env.user.tz = "Europe/Berlin"
        # 2026-02-28 23:30 UTC is 2026-03-01 00:30 in Berlin: March
        start = (datetime(2026, 2, 28, 23, 30) - datetime(2026, 3, 2, 9, 0)).total_seconds()
        march = self.session_done(self.device, self.alice, start, working_s=600)
        # 2026-03-31 22:30 UTC is 2026-04-01 00:30 in Berlin: April
        start = (datetime(2026, 3, 31, 22, 30) - datetime(2026, 3, 2, 9, 0)).total_seconds()
        april = self.session_done(self.device, self.alice, start, working_s=600)
        invoices, _skipped = self.invoice()
        self.assertEqual(invoices.invoice_line_ids.ows_session_ids, march)
        self.assertEqual(april.billing_state, "to_invoice")

    def test_filters(self):
        self.session_done(self.device, self.alice, 0, working_s=600)
        bob = self.session_done(self.kiln, self.bob, 100, working_s=600)
        invoices, _skipped = self.invoice(partners=self.bob, devices=self.kiln)
        self.assertEqual(invoices.invoice_line_ids.ows_session_ids, bob)

    def test_running_sessions_wait(self):
        running = self.start(0)
        self.assertEqual(running.state, "running")
        self.assertFalse(self.invoice()[0])

    def test_wizard(self):
        a = self.session_done(self.device, self.alice, 0, working_s=3600)
        unknown = self.session_done(self.kiln, self.bob, 100, working_s=60, energy_known=False)
        wizard = self.env["ows.session.invoice.wizard"].create({
            "date_from": PERIOD[0], "date_to": PERIOD[1], "invoice_date": date(2026, 4, 1)})
        self.assertEqual((wizard.session_count, wizard.member_count, wizard.skipped_count),
                         (1, 1, 1))
        wizard.action_invoice()
        self.assertEqual(wizard.state, "done")
        self.assertEqual(wizard.invoice_ids.invoice_line_ids.ows_session_ids, a)
        self.assertEqual(wizard.invoice_ids.invoice_date, date(2026, 4, 1))
        self.assertEqual(wizard.skip_line_ids.session_id, unknown)
        self.assertEqual(wizard.skip_line_ids.reason, "energy_unknown")
        action = wizard.action_view_invoices()
        self.assertEqual(action["domain"], [("id", "in", wizard.invoice_ids.ids)])

    def test_default_period_is_last_month(self):
        wizard = self.env["ows.session.invoice.wizard"].create({})
        self.assertEqual(wizard.date_from.day, 1)
        self.assertEqual(wizard.date_to.month, wizard.date_from.month)
        self.assertLess(wizard.date_to, date.today().replace(day=1))


@tagged("post_install", "-at_install", "open_workshop_mqtt_billing")
class TestCorrections(BillingCase):
    """Credit notes and re-invoicing, the way Odoo users do them."""

    def reverse(self, invoice, modify=False):
        wizard = self.env["account.move.reversal"].with_context(
            active_model="account.move", active_ids=invoice.ids).create({
                "reason": "wrong member", "journal_id": invoice.journal_id.id})
        action = wizard.modify_moves() if modify else wizard.refund_moves()
        return self.env["account.move"].browse(action["res_id"])

    def test_invoiced_session_is_locked(self):
        session = self.session_done(self.device, self.alice, 0, working_s=3600)
        self.invoice()
        with self.assertRaises(UserError):
            session.partner_id = self.bob
        with self.assertRaises(UserError):
            session.write({"billing_corrected": True, "billing_qty_corrected": 0.5})
        session.billing_note = "a note is fine"
        # a badge corrected later does not move an invoiced session either
        self.badge_alice.partner_id = self.bob
        self.assertEqual(session.partner_id, self.alice)

    def test_credit_note_then_corrected_reinvoice(self):
        session = self.session_done(self.device, self.alice, 0, working_s=3600)
        invoice = self.invoice()[0]
        invoice.action_post()
        refund = self.reverse(invoice)
        self.assertEqual(refund.move_type, "out_refund")
        self.assertEqual(refund.invoice_line_ids.ows_session_ids, session)
        self.assertEqual(session.billing_state, "invoiced", "a draft credit note frees nothing")
        refund.action_post()
        self.assertEqual(session.billing_state, "to_invoice")
        # the correction: it was Bob, and only half an hour counts
        session.partner_id = self.bob
        session.write({"billing_corrected": True, "billing_qty_corrected": 0.5})
        new = self.invoice()[0]
        self.assertEqual(new.partner_id, self.bob)
        self.assertAlmostEqual(new.invoice_line_ids.quantity, 0.5)
        self.assertAlmostEqual(new.amount_untaxed, 12.0)
        self.assertEqual(session.billing_state, "invoiced")
        self.assertEqual(session.invoice_line_ids.move_id, invoice | refund | new)
        self.assertFalse(self.invoice()[0])

    def test_reverse_and_create_invoice_keeps_it_billed_once(self):
        session = self.session_done(self.device, self.alice, 0, working_s=3600)
        invoice = self.invoice()[0]
        invoice.action_post()
        new_draft = self.reverse(invoice, modify=True)
        self.assertEqual(new_draft.move_type, "out_invoice")
        self.assertEqual(new_draft.invoice_line_ids.ows_session_ids, session)
        self.assertEqual(session.billing_state, "invoiced")
        self.assertFalse(self.invoice()[0])

    def test_cancelled_or_deleted_draft_frees_the_sessions(self):
        session = self.session_done(self.device, self.alice, 0, working_s=3600)
        invoice = self.invoice()[0]
        invoice.button_cancel()
        self.assertEqual(session.billing_state, "to_invoice")
        invoice = self.invoice()[0]
        self.assertEqual(session.billing_state, "invoiced")
        invoice.unlink()
        self.assertEqual(session.billing_state, "to_invoice")
        self.assertTrue(self.invoice()[0])

    def test_removing_a_line_from_a_draft_frees_its_sessions(self):
        laser = self.session_done(self.device, self.alice, 0, working_s=3600)
        kiln = self.session_done(self.kiln, self.alice, 100, working_s=3600, energy_wh=500.0)
        invoice = self.invoice()[0]
        line = invoice.invoice_line_ids.filtered(lambda l: l.product_id == self.kiln_product)
        invoice.write({"invoice_line_ids": [Command.unlink(line.id)]})
        self.assertEqual(kiln.billing_state, "to_invoice")
        self.assertEqual(laser.billing_state, "invoiced")

    def test_zero_correction_is_no_charge(self):
        session = self.session_done(self.device, self.alice, 0, working_s=3600)
        session.write({"billing_corrected": True, "billing_qty_corrected": 0.0})
        self.assertEqual(session.billing_state, "no_charge")
        self.assertFalse(self.invoice()[0])

    def test_billing_corrections_need_the_billing_group(self):
        session = self.session_done(self.device, self.alice, 0, working_s=3600)
        staff = self.env["res.users"].create({
            "name": "Staff", "login": "staff-billing",
            "groups_id": [Command.set([self.env.ref("open_workshop_mqtt.group_iot_user").id])],
        })
        with self.assertRaises(AccessError):
            session.with_user(staff).write({"billing_corrected": True})
        session.with_user(staff).partner_id = self.bob  # the member is staff's business

    def test_invoice_form_shows_the_sessions(self):
        session = self.session_done(self.device, self.alice, 0, working_s=3600)
        invoice = self.invoice()[0]
        action = invoice.action_view_ows_sessions()
        self.assertEqual(self.env["ows.machine.session"].search(action["domain"]), session)
        with Form(invoice) as form:  # the draft stays editable as any invoice
            form.ref = "March"
