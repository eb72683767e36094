from odoo import fields, models

from .badge_scan import DEFAULT_WINDOW_S, WINDOW_PARAM


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    ows_badge_window_s = fields.Integer(
        string="Attribution Window (s)",
        config_parameter=WINDOW_PARAM,
        default=DEFAULT_WINDOW_S,
        help="A session that starts at most this long after a badge scan on its machine is "
        "attributed to the badge's member (a session already open at the scan always is).",
    )
