import json
from datetime import timedelta

from odoo import _, api, fields, models
from odoo.exceptions import UserError

from .suggest import suggest

DAYS = 7
LIMIT = 5000  # readings in the chart and in the suggestion (the most recent ones)


class IotDevice(models.Model):
    _inherit = "ows.iot.device"

    tuning_replay_entry = fields.Text(
        string="Device Entry for iot-bridge replay", compute="_compute_tuning_replay_entry",
        help="This device's config entry with the suggested thresholds: save it as a file and "
        "check it on a recording with `iot-bridge replay` before applying it.",
    )

    def _tuning_readings(self, days=DAYS, limit=LIMIT):
        """[(ts, watts)] of the forwarded power_measurement events, oldest first."""
        self.ensure_one()
        self.check_access("read")
        self.env["ows.iot.event"].flush_model(["device_id", "event_type", "ts", "payload"])
        self.env.cr.execute(
            """
            SELECT ts, (payload->>'apower')::float FROM ows_iot_event
             WHERE device_id = %s AND event_type = 'power_measurement' AND ts >= %s
               AND jsonb_typeof(payload->'apower') = 'number'
             ORDER BY ts DESC, id DESC LIMIT %s
            """,
            (self.id, fields.Datetime.now() - timedelta(days=days), limit),
        )
        return list(reversed(self.env.cr.fetchall()))

    def get_tuning_data(self):
        """What the chart widget shows: readings, the current and the suggested thresholds."""
        self.ensure_one()
        readings = self._tuning_readings()
        return {
            "points": [(fields.Datetime.to_string(ts), watts) for ts, watts in readings],
            "days": DAYS,
            "standby_threshold_w": self.standby_threshold_w,
            "working_threshold_w": self.working_threshold_w,
            "suggestion": suggest([watts for _ts, watts in readings]),
            "can_apply": self.env["ows.iot.device"].has_access("write"),
        }

    @api.depends("standby_threshold_w", "working_threshold_w")
    def _compute_tuning_replay_entry(self):
        for device in self:
            entry = device._config_entry() if device.id else {}
            if entry:
                found = suggest([w for _ts, w in device._tuning_readings()])
                if "standby_threshold_w" in found:
                    entry["session_config"].update({
                        "standby_threshold_w": found["standby_threshold_w"],
                        "working_threshold_w": found["working_threshold_w"],
                    })
            device.tuning_replay_entry = json.dumps(entry, indent=2) if entry else False

    def action_apply_tuning_suggestion(self):
        """Take the suggested thresholds (computed again here, never sent by the browser)."""
        self.ensure_one()
        self.check_access("write")
        found = suggest([watts for _ts, watts in self._tuning_readings()])
        if "standby_threshold_w" not in found:
            raise UserError(_("The recent readings do not suggest thresholds (%s).",
                              found["reason"]))
        self.write({"standby_threshold_w": found["standby_threshold_w"],
                    "working_threshold_w": found["working_threshold_w"]})
        return True
