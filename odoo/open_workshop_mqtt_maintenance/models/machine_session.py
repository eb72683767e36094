from odoo import api, models


class MachineSession(models.Model):
    _inherit = "ows.machine.session"

    @api.model
    def _apply_event(self, event_record, device, event):
        session = super()._apply_event(event_record, device, event)
        if (event["event_type"] == "run_stop" and session.device_id == device
                and device.equipment_id):
            device.equipment_id._ows_recount(open_requests=True)
        return session
