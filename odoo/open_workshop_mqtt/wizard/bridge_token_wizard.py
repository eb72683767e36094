from odoo import fields, models


class BridgeTokenWizard(models.TransientModel):
    """Generates (or rotates) a bridge token and shows it exactly once.

    The clear token lives only in this transient record, which is readable by its creator
    only and vacuumed by Odoo after a short while; the bridge keeps just the hash.
    """

    _name = "ows.iot.bridge.token.wizard"
    _description = "IoT Bridge Token"
    _transient_max_hours = 0.1

    bridge_id = fields.Many2one("ows.iot.bridge", required=True, ondelete="cascade")
    token = fields.Char(readonly=True)
    rotated = fields.Boolean(readonly=True)

    def _generate(self):
        self.ensure_one()
        rotated = self.bridge_id.has_token
        token = self.bridge_id._generate_token()
        self.write({"token": token, "rotated": rotated})
        return token

    def action_done(self):
        # Forget the clear token as soon as the user closes the dialog.
        self.write({"token": False})
        return {"type": "ir.actions.act_window_close"}
