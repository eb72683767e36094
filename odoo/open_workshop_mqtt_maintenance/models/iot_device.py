from odoo import api, fields, models


class IotDevice(models.Model):
    _inherit = "ows.iot.device"

    equipment_id = fields.Many2one(
        "maintenance.equipment", string="Equipment (Maintenance)", ondelete="set null",
        index=True, help="The equipment whose working-hour counter this machine's sessions feed.",
    )

    @api.model_create_multi
    def create(self, vals_list):
        devices = super().create(vals_list)
        devices.equipment_id._ows_recount(open_requests=False)
        return devices

    def write(self, vals):
        if "equipment_id" not in vals:
            return super().write(vals)
        before = self.equipment_id
        result = super().write(vals)
        (before | self.equipment_id)._ows_recount(open_requests=False)
        return result

    def unlink(self):
        equipment = self.equipment_id
        result = super().unlink()
        equipment.exists()._ows_recount(open_requests=False)
        return result
