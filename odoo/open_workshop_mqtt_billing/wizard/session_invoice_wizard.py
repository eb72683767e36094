from dateutil.relativedelta import relativedelta

from odoo import _, api, fields, models

from ..models.machine_session import SKIP_REASONS


def _last_month(today):
    first = today.replace(day=1) - relativedelta(months=1)
    return first, today.replace(day=1) - relativedelta(days=1)


class SessionInvoiceWizard(models.TransientModel):
    """Invoice a period's machine sessions, then show what was invoiced and what was left out."""

    _name = "ows.session.invoice.wizard"
    _description = "Invoice Machine Sessions"

    state = fields.Selection([("draft", "Draft"), ("done", "Done")], default="draft")
    date_from = fields.Date(
        string="From", required=True,
        default=lambda self: _last_month(fields.Date.context_today(self))[0])
    date_to = fields.Date(
        string="To", required=True,
        default=lambda self: _last_month(fields.Date.context_today(self))[1])
    partner_ids = fields.Many2many("res.partner", string="Members",
                                   help="Only these members (all when empty).")
    device_ids = fields.Many2many("ows.iot.device", string="Machines",
                                  help="Only these machines (all when empty).")
    invoice_date = fields.Date(help="Left empty, the invoices get their date when posted.")
    session_count = fields.Integer(compute="_compute_preview", string="Sessions to Invoice")
    member_count = fields.Integer(compute="_compute_preview", string="Members to Invoice")
    skipped_count = fields.Integer(compute="_compute_preview", string="Sessions Left Out")
    invoice_ids = fields.Many2many("account.move", string="Invoices", readonly=True)
    skip_line_ids = fields.One2many("ows.session.invoice.wizard.skip", "wizard_id",
                                    string="Left Out", readonly=True)

    @api.depends("date_from", "date_to", "partner_ids", "device_ids")
    def _compute_preview(self):
        Invoicer = self.env["ows.session.invoicer"]
        for wizard in self:
            if not (wizard.date_from and wizard.date_to) or wizard.state == "done":
                wizard.session_count = wizard.member_count = wizard.skipped_count = 0
                continue
            sessions = Invoicer._sessions_of_period(
                wizard.date_from, wizard.date_to, wizard.partner_ids, wizard.device_ids).sudo()
            billable, skipped = Invoicer._sort(sessions)
            wizard.session_count = len(billable)
            wizard.member_count = len(billable.partner_id)
            wizard.skipped_count = sum(len(s) for s in skipped.values())

    def action_invoice(self):
        self.ensure_one()
        invoices, skipped = self.env["ows.session.invoicer"].invoice_period(
            self.date_from, self.date_to, self.partner_ids, self.device_ids, self.invoice_date)
        self.write({
            "state": "done",
            "invoice_ids": [fields.Command.set(invoices.ids)],
            "skip_line_ids": [fields.Command.clear()] + [
                fields.Command.create({"session_id": session.id, "reason": reason})
                for reason, sessions in skipped.items() for session in sessions
            ],
        })
        return {
            "type": "ir.actions.act_window",
            "name": _("Invoice Machine Sessions"),
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "new",
        }

    def action_view_invoices(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id(
            "account.action_move_out_invoice_type")
        action.update({"domain": [("id", "in", self.invoice_ids.ids)],
                       "context": {"default_move_type": "out_invoice"}})
        return action


class SessionInvoiceWizardSkip(models.TransientModel):
    _name = "ows.session.invoice.wizard.skip"
    _description = "Session left out of invoicing"

    wizard_id = fields.Many2one("ows.session.invoice.wizard", required=True, ondelete="cascade")
    session_id = fields.Many2one("ows.machine.session", required=True, ondelete="cascade")
    reason = fields.Selection(SKIP_REASONS, required=True)
    machine_name = fields.Char(related="session_id.machine_name")
    started_at = fields.Datetime(related="session_id.started_at")
    partner_id = fields.Many2one(related="session_id.partner_id")
