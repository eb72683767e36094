"""Which sessions are billable, for how much, and whether they are invoiced.

A session is invoiced while the customer invoices linking it (not cancelled) outnumber the
posted credit notes linking it: an invoice (even a draft) takes it, cancelling or deleting
that invoice or posting a credit note gives it back for a corrected re-invoice.
"""

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from odoo.tools import float_is_zero, float_round

from odoo.addons.open_workshop_mqtt_badge.models.machine_session import AUTO

BILLING_STATES = [
    ("to_invoice", "To invoice"),
    ("invoiced", "Invoiced"),
    ("no_charge", "No charge"),
]
CORRECTION_FIELDS = {"billing_corrected", "billing_qty_corrected", "billing_note"}

# Why a session of a period is left out of invoicing (listed to the user).
SKIP_REASONS = [
    ("no_member", "No member"),
    ("no_price", "Machine has no product"),
    ("energy_unknown", "Energy unknown (billed per kWh)"),
]


class MachineSession(models.Model):
    _inherit = "ows.machine.session"

    invoice_line_ids = fields.Many2many(
        "account.move.line", "ows_session_invoice_line_rel", "session_id", "line_id",
        string="Invoice Lines", readonly=True, copy=False,
    )
    billing_state = fields.Selection(
        BILLING_STATES, compute="_compute_billing_state", store=True, index=True,
        string="Billing",
    )
    billing_corrected = fields.Boolean(
        string="Quantity Corrected", groups="account.group_account_invoice",
        help="Bill the corrected quantity instead of the measured one (0: no charge).",
    )
    billing_qty_corrected = fields.Float(
        string="Corrected Quantity", digits=(16, 4), groups="account.group_account_invoice",
    )
    billing_note = fields.Char(string="Correction Note", groups="account.group_account_invoice")
    billing_quantity = fields.Float(
        string="Billed Quantity", compute="_compute_billing_amount", digits=(16, 4),
        help="The quantity of the machine's basis (hours or kWh), rounded up to its step.",
    )
    billing_amount = fields.Monetary(
        string="Amount", compute="_compute_billing_amount",
        currency_field="billing_currency_id",
    )
    billing_currency_id = fields.Many2one(related="device_id.billing_currency_id")

    # "state": the core inserts sessions in SQL; its write of the stop computes this
    @api.depends("state", "invoice_line_ids", "invoice_line_ids.move_id.state",
                 "invoice_line_ids.move_id.move_type", "billing_corrected",
                 "billing_qty_corrected")
    def _compute_billing_state(self):
        for session in self:
            moves = session.invoice_line_ids.move_id
            invoices = moves.filtered(
                lambda m: m.move_type == "out_invoice" and m.state != "cancel")
            refunds = moves.filtered(
                lambda m: m.move_type == "out_refund" and m.state == "posted")
            if len(invoices) > len(refunds):
                session.billing_state = "invoiced"
            elif session.billing_corrected and float_is_zero(
                    session.billing_qty_corrected, precision_digits=4):
                session.billing_state = "no_charge"
            else:
                session.billing_state = "to_invoice"

    @api.depends("working_s", "duration_s", "energy_wh", "energy_known",
                 "device_id.billing_basis", "device_id.billing_rate", "device_id.billing_minimum",
                 "device_id.billing_rounding", "billing_corrected", "billing_qty_corrected")
    def _compute_billing_amount(self):
        for session in self:
            quantity, _reason = session.sudo()._billing_quantity()
            session.billing_quantity = quantity or 0.0
            session.billing_amount = session.sudo()._billing_charge(quantity or 0.0)[0]

    # ------------------------------------------------------------------ pricing
    def _billing_quantity(self):
        """(quantity of the machine's basis rounded up to its step, or None; skip reason)."""
        self.ensure_one()
        device = self.device_id
        if self.billing_corrected:
            raw = self.billing_qty_corrected
        elif device.billing_basis == "kwh":
            if not self.energy_known:
                return None, "energy_unknown"
            raw = (self.energy_wh or 0.0) / 1000.0
        elif device.billing_basis == "session_hour":
            raw = (self.duration_s or 0.0) / 3600.0
        else:
            raw = (self.working_s or 0.0) / 3600.0
        step = device.billing_rounding
        if step and step > 0:
            raw = float_round(raw, precision_rounding=step, rounding_method="UP")
        return raw, None

    def _billing_charge(self, quantity):
        """(amount, minimum top-up) of this session at its machine's rate."""
        device = self.device_id
        usage = device.billing_currency_id.round(quantity * device.billing_rate)
        top_up = max(0.0, device.billing_minimum - usage)
        return usage + top_up, top_up

    # ------------------------------------------------------------------ locks and corrections
    def _member_locked(self):
        return super()._member_locked() | self.filtered(
            lambda s: s.billing_state == "invoiced")

    @api.model
    def _staff_writable_fields(self):
        return super()._staff_writable_fields() | CORRECTION_FIELDS

    def write(self, vals):
        changes_bill = ("partner_id" in vals and not self.env.context.get(AUTO)) or (
            CORRECTION_FIELDS & set(vals) - {"billing_note"})
        if changes_bill:
            invoiced = self.filtered(lambda s: s.billing_state == "invoiced")
            if invoiced:
                raise UserError(_(
                    "%(sessions)s already invoiced (%(invoices)s): issue a credit note first, "
                    "then correct and invoice again.",
                    sessions=", ".join(invoiced.mapped("display_name")),
                    invoices=", ".join(invoiced.invoice_line_ids.move_id.mapped("display_name")),
                ))
        return super().write(vals)

    def action_view_invoices(self):
        moves = self.invoice_line_ids.move_id
        return {
            "type": "ir.actions.act_window",
            "name": _("Invoices"),
            "res_model": "account.move",
            "view_mode": "list,form",
            "domain": [("id", "in", moves.ids)],
        }
