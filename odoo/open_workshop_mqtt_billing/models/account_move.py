from odoo import _, fields, models


class AccountMoveLine(models.Model):
    _inherit = "account.move.line"

    ows_session_ids = fields.Many2many(
        "ows.machine.session", "ows_session_invoice_line_rel", "line_id", "session_id",
        string="Machine Sessions", readonly=True, copy=False,
    )

    def _copy_data_extend_business_fields(self, values):
        # A credit note (and "reverse and create invoice") names the same sessions: that is
        # how a credited session becomes invoiceable again, and how a modified one stays billed.
        super()._copy_data_extend_business_fields(values)
        values["ows_session_ids"] = [fields.Command.set(self.ows_session_ids.ids)]


class AccountMove(models.Model):
    _inherit = "account.move"

    ows_session_count = fields.Integer(compute="_compute_ows_session_count",
                                       string="Machine Sessions")

    def _compute_ows_session_count(self):
        for move in self:
            move.ows_session_count = len(move.invoice_line_ids.ows_session_ids)

    def action_view_ows_sessions(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Machine Sessions"),
            "res_model": "ows.machine.session",
            "view_mode": "list,form",
            "domain": [("id", "in", self.invoice_line_ids.ows_session_ids.ids)],
        }
