from odoo import _, fields, models


class ResPartner(models.Model):
    _inherit = "res.partner"

    ows_badge_ids = fields.One2many("ows.badge", "partner_id", string="Workshop Badges")
    ows_session_count = fields.Integer(
        string="Machine Sessions", compute="_compute_ows_session_count"
    )

    def _compute_ows_session_count(self):
        groups = self.env["ows.machine.session"].sudo()._read_group(
            [("partner_id", "in", self.ids)], ["partner_id"], ["__count"]
        )
        counts = {partner.id: count for partner, count in groups}
        for partner in self:
            partner.ows_session_count = counts.get(partner.id, 0)

    def action_view_ows_sessions(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Machine Sessions"),
            "res_model": "ows.machine.session",
            "view_mode": "list,pivot,graph,form",
            "domain": [("partner_id", "=", self.id)],
        }
