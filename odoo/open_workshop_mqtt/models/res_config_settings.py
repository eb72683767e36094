from collections import namedtuple
from datetime import timedelta

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

BRIDGE_SILENCE_PARAM = "open_workshop_mqtt.bridge_silence_minutes"
PLUG_SILENCE_PARAM = "open_workshop_mqtt.plug_silence_minutes"
ALERT_GROUP_PARAM = "open_workshop_mqtt.alert_group_id"
DEFAULT_BRIDGE_SILENCE_MIN = 5
# Above Tasmota's default TelePeriod (300 s): a plug that reports every 5 minutes is not silent.
DEFAULT_PLUG_SILENCE_MIN = 10
RETENTION_PARAM = "open_workshop_mqtt.measurement_retention_days"
DEFAULT_RETENTION_DAYS = 30

AlertSettings = namedtuple("AlertSettings", "bridge_silence plug_silence group")


def _minutes(env, key, default):
    value = env["ir.config_parameter"].sudo().get_param(key)
    try:
        minutes = int(value)
    except (TypeError, ValueError):
        return default
    return minutes if minutes >= 1 else default


def alert_settings(env):
    """The silence limits (timedeltas) and the group told about incidents, read once per use.

    A missing or broken parameter falls back to its default, so a bad value in the technical
    parameters can neither silence the alarms nor make the cron fail.
    """
    group = env["res.groups"]
    group_id = env["ir.config_parameter"].sudo().get_param(ALERT_GROUP_PARAM)
    if group_id and str(group_id).isdigit():
        group = env["res.groups"].sudo().browse(int(group_id)).exists()
    if not group:
        group = env.ref("open_workshop_mqtt.group_iot_manager")
    return AlertSettings(
        bridge_silence=timedelta(
            minutes=_minutes(env, BRIDGE_SILENCE_PARAM, DEFAULT_BRIDGE_SILENCE_MIN)
        ),
        plug_silence=timedelta(minutes=_minutes(env, PLUG_SILENCE_PARAM, DEFAULT_PLUG_SILENCE_MIN)),
        group=group,
    )


class ResConfigSettings(models.TransientModel):
    _inherit = "res.config.settings"

    ows_iot_bridge_silence_minutes = fields.Integer(
        string="Bridge Silent After (minutes)",
        config_parameter=BRIDGE_SILENCE_PARAM,
        default=DEFAULT_BRIDGE_SILENCE_MIN,
        help="A bridge that has not called Odoo for longer than this is reported as silent, "
        "and its running sessions are flagged. Bridges send a heartbeat every 30 seconds.",
    )
    ows_iot_plug_silence_minutes = fields.Integer(
        string="Plug Offline After (minutes)",
        config_parameter=PLUG_SILENCE_PARAM,
        default=DEFAULT_PLUG_SILENCE_MIN,
        help="A plug that is offline, or has sent nothing, for longer than this is reported. "
        "Keep it above the plugs' longest reporting period (Tasmota's TelePeriod is 5 minutes "
        "by default).",
    )
    ows_iot_alert_group_id = fields.Many2one(
        "res.groups",
        string="Tell",
        config_parameter=ALERT_GROUP_PARAM,
        help="The members of this group get an activity when a bridge or a plug goes silent, "
        "once per incident; it is marked done when it recovers. Default: Workshop IoT / Manager.",
    )

    ows_measurement_retention_days = fields.Integer(
        string="Keep Power Measurements (days)",
        config_parameter=RETENTION_PARAM,
        default=DEFAULT_RETENTION_DAYS,
        help="Forwarded power_measurement events older than this are deleted every night "
        "(0 keeps them for ever). Run events and sessions are always kept.",
    )

    @api.model
    def get_values(self):
        values = super().get_values()
        if not values.get("ows_iot_alert_group_id"):
            values["ows_iot_alert_group_id"] = alert_settings(self.env).group.id
        return values

    @api.constrains("ows_iot_bridge_silence_minutes", "ows_iot_plug_silence_minutes")
    def _check_ows_iot_silence(self):
        for settings in self:
            if settings.ows_iot_bridge_silence_minutes < 1 or settings.ows_iot_plug_silence_minutes < 1:
                raise ValidationError(_("The silence limits must be at least one minute."))
