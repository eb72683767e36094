from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

PARSER_TYPES = [
    ("shelly_pm_mini_g3", "Shelly PM Mini Gen3"),
    ("shelly_gen2", "Shelly Gen2 / Gen3 (RPC)"),
    ("shelly_gen1", "Shelly Gen1"),
    ("tasmota", "Tasmota"),
    ("generic", "Generic JSON"),
]
ENERGY_UNITS = [("Wh", "Wh"), ("kWh", "kWh"), ("Wmin", "Watt-minutes")]

# Fields whose change alters what GET /ows/iot/config serves.
CONFIG_FIELDS = {
    "device_id", "mqtt_topic", "parser_type", "machine_name", "strategy",
    "standby_threshold_w", "working_threshold_w", "start_debounce_s", "stop_debounce_s",
    "message_timeout_s", "parser_channel", "parser_power_path", "parser_energy_path",
    "parser_energy_unit", "bridge_id", "active",
}


def _number(value):
    """A JSON number: an int when the float is whole (20.0 -> 20)."""
    return int(value) if float(value).is_integer() else value


class IotDevice(models.Model):
    _name = "ows.iot.device"
    _description = "IoT Device (machine power meter)"
    _order = "machine_name, device_id"
    _rec_names_search = ["machine_name", "device_id"]

    device_id = fields.Char(
        string="Device ID", required=True, index=True,
        help="The id the bridge uses in events, e.g. shellypmminig3-48f6eeb73a1c.",
    )
    machine_name = fields.Char(required=True)
    mqtt_topic = fields.Char(string="MQTT Topic", required=True)
    parser_type = fields.Selection(PARSER_TYPES, required=True, default="shelly_pm_mini_g3")
    bridge_id = fields.Many2one("ows.iot.bridge", required=True, ondelete="restrict", index=True)
    active = fields.Boolean(default=True)
    company_id = fields.Many2one(related="bridge_id.company_id", store=True, index=True)

    # session_config
    strategy = fields.Selection(
        [("power_threshold", "Power threshold")], required=True, default="power_threshold"
    )
    standby_threshold_w = fields.Float(string="Standby Threshold (W)", required=True, default=20)
    working_threshold_w = fields.Float(string="Working Threshold (W)", required=True, default=100)
    start_debounce_s = fields.Float(string="Start Debounce (s)", required=True, default=3)
    stop_debounce_s = fields.Float(string="Stop Debounce (s)", required=True, default=15)
    message_timeout_s = fields.Float(string="Message Timeout (s)", required=True, default=20)

    # optional parser settings, served as parser_config (only the keys that are set)
    parser_channel = fields.Char(
        string="Channel", help="Channel / switch index of the device (a whole number, e.g. 0)."
    )
    parser_power_path = fields.Char(
        string="Power Path", help="Generic parser: JSON path of the power value, e.g. ENERGY.Power"
    )
    parser_energy_path = fields.Char(
        string="Energy Path", help="Generic parser: JSON path of the cumulative energy counter."
    )
    parser_energy_unit = fields.Selection(ENERGY_UNITS, string="Energy Unit")

    session_ids = fields.One2many("ows.machine.session", "device_id", string="Sessions")
    state = fields.Selection(
        [("running", "Running"), ("idle", "Idle")], compute="_compute_live_state"
    )
    running_since = fields.Datetime(compute="_compute_live_state")
    current_session_id = fields.Many2one("ows.machine.session", compute="_compute_live_state")
    status_text = fields.Char(string="Status", compute="_compute_live_state")
    last_contact = fields.Datetime(
        compute="_compute_last_contact", help="When the last event of this device was received."
    )
    bridge_last_contact = fields.Datetime(related="bridge_id.last_contact", string="Bridge Contact")
    session_count = fields.Integer(compute="_compute_session_stats")
    total_hours = fields.Float(compute="_compute_session_stats", string="Hours")
    total_energy_kwh = fields.Float(compute="_compute_session_stats", string="Energy (kWh)")

    _sql_constraints = [
        ("device_id_unique", "UNIQUE(device_id)", "The device ID must be unique."),
        (
            "thresholds_ordered",
            "CHECK(standby_threshold_w >= 0 AND standby_threshold_w < working_threshold_w)",
            "Thresholds must satisfy 0 <= standby < working.",
        ),
        (
            "debounces_positive",
            "CHECK(start_debounce_s >= 0 AND stop_debounce_s >= 0)",
            "Debounce times must not be negative.",
        ),
        ("timeout_positive", "CHECK(message_timeout_s > 0)", "The message timeout must be > 0."),
    ]

    @api.depends("machine_name", "device_id")
    def _compute_display_name(self):
        for device in self:
            device.display_name = (
                f"{device.machine_name} ({device.device_id})"
                if device.machine_name and device.device_id
                else device.machine_name or device.device_id or ""
            )

    @api.constrains("standby_threshold_w", "working_threshold_w")
    def _check_thresholds(self):
        for device in self:
            if not 0 <= device.standby_threshold_w < device.working_threshold_w:
                raise ValidationError(_(
                    "%(device)s: thresholds must satisfy 0 <= standby (%(standby)s W) "
                    "< working (%(working)s W).",
                    device=device.device_id, standby=device.standby_threshold_w,
                    working=device.working_threshold_w,
                ))

    @api.constrains("start_debounce_s", "stop_debounce_s", "message_timeout_s")
    def _check_timings(self):
        for device in self:
            if device.start_debounce_s < 0 or device.stop_debounce_s < 0:
                raise ValidationError(
                    _("%s: debounce times must not be negative.", device.device_id)
                )
            if device.message_timeout_s <= 0:
                raise ValidationError(
                    _("%s: the message timeout must be greater than 0.", device.device_id)
                )

    @api.constrains("parser_channel")
    def _check_parser_channel(self):
        for device in self:
            channel = (device.parser_channel or "").strip()
            if channel and not channel.isdigit():
                raise ValidationError(
                    _("%s: the channel must be a whole number >= 0.", device.device_id)
                )

    @api.constrains("device_id", "mqtt_topic")
    def _check_identifiers(self):
        for device in self:
            if not (device.device_id or "").strip() or device.device_id != device.device_id.strip():
                raise ValidationError(_("The device ID must not be empty or padded with spaces."))
            if not (device.mqtt_topic or "").strip():
                raise ValidationError(_("%s: the MQTT topic is required.", device.device_id))
            if any(c in device.mqtt_topic for c in "+#"):
                raise ValidationError(
                    _("%s: the MQTT topic must not contain wildcards.", device.device_id)
                )

    # ------------------------------------------------------------------ live state
    def _compute_live_state(self):
        running = self.env["ows.machine.session"].search(
            [("device_id", "in", self.ids), ("state", "=", "running")], order="started_at desc"
        )
        by_device = {}
        for session in running:
            by_device.setdefault(session.device_id.id, session)
        for device in self:
            session = by_device.get(device.id)
            device.current_session_id = session
            device.state = "running" if session else "idle"
            device.running_since = session.started_at if session else False
            if session and session.started_at:
                device.status_text = _(
                    "Running since %s",
                    fields.Datetime.context_timestamp(device, session.started_at).strftime(
                        "%Y-%m-%d %H:%M"
                    ),
                )
            else:
                device.status_text = _("Running") if session else _("Idle")

    def _compute_last_contact(self):
        groups = self.env["ows.iot.event"].sudo()._read_group(
            [("device_id", "in", self.ids)], ["device_id"], ["create_date:max"]
        )
        last = {device.id: when for device, when in groups}
        for device in self:
            device.last_contact = last.get(device.id, False)

    def _compute_session_stats(self):
        groups = self.env["ows.machine.session"]._read_group(
            [("device_id", "in", self.ids)],
            ["device_id"],
            ["__count", "duration_h:sum", "energy_kwh:sum"],
        )
        stats = {device.id: (count, hours, kwh) for device, count, hours, kwh in groups}
        for device in self:
            count, hours, kwh = stats.get(device.id, (0, 0.0, 0.0))
            device.session_count = count
            device.total_hours = hours
            device.total_energy_kwh = kwh

    # ------------------------------------------------------------------ config
    def _config_entry(self):
        """This device's entry in GET /ows/iot/config."""
        self.ensure_one()
        entry = {
            "device_id": self.device_id,
            "mqtt_topic": self.mqtt_topic,
            "parser_type": self.parser_type,
            "machine_name": self.machine_name,
            "session_config": {
                "strategy": self.strategy,
                "standby_threshold_w": _number(self.standby_threshold_w),
                "working_threshold_w": _number(self.working_threshold_w),
                "start_debounce_s": _number(self.start_debounce_s),
                "stop_debounce_s": _number(self.stop_debounce_s),
                "message_timeout_s": _number(self.message_timeout_s),
            },
        }
        parser_config = {}
        channel = (self.parser_channel or "").strip()
        if channel:
            parser_config["channel"] = int(channel)
        if self.parser_power_path:
            parser_config["power_path"] = self.parser_power_path
        if self.parser_energy_path:
            parser_config["energy_path"] = self.parser_energy_path
        if self.parser_energy_unit:
            parser_config["energy_unit"] = self.parser_energy_unit
        if parser_config:
            entry["parser_config"] = parser_config
        return entry

    @api.model_create_multi
    def create(self, vals_list):
        devices = super().create(vals_list)
        devices.bridge_id._bump_config_version()
        return devices

    @api.model
    def _config_fields(self):
        """Fields whose change alters this device's config entry; addons that extend
        ``_config_entry`` add theirs, so that ``config_version`` moves with them."""
        return CONFIG_FIELDS

    def write(self, vals):
        if not self._config_fields().intersection(vals):
            return super().write(vals)
        old_bridges = self.bridge_id
        result = super().write(vals)
        (old_bridges | self.bridge_id)._bump_config_version()
        return result

    def unlink(self):
        bridges = self.bridge_id
        result = super().unlink()
        bridges._bump_config_version()
        return result

    def action_view_sessions(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Sessions"),
            "res_model": "ows.machine.session",
            "view_mode": "list,pivot,graph,form",
            "domain": [("device_id", "=", self.id)],
        }
