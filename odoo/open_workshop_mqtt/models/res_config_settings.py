from odoo import fields, models

from .iot_event_retention import DEFAULT_RETENTION_DAYS, RETENTION_PARAM


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    ows_measurement_retention_days = fields.Integer(
        string="Keep Power Measurements (days)",
        config_parameter=RETENTION_PARAM,
        default=DEFAULT_RETENTION_DAYS,
        help="Forwarded power_measurement events older than this are deleted every night "
        "(0 keeps them for ever). Run events and sessions are always kept.",
    )
