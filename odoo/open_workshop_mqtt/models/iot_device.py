from datetime import timedelta

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

from .iot_event import parse_any_ts
from .res_config_settings import alert_settings

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


SESSION_CONFIG_FIELDS = (
    "standby_threshold_w", "working_threshold_w", "start_debounce_s", "stop_debounce_s",
    "message_timeout_s",
)
DETECTOR_STATES = [
    ("idle", "Idle"),
    ("starting", "Starting"),
    ("working", "Working"),
    ("standby", "Standby"),
    ("stopping", "Stopping"),
]
BOARD_STATES = [
    ("working", "Working"),
    ("standby", "Standby"),
    ("idle", "Idle"),
    ("offline", "Offline"),
    ("unknown", "Unknown"),
]
# detector state -> board colour (a session is open in working, standby and stopping)
_BOARD_OF_DETECTOR = {"working": "working", "standby": "standby", "stopping": "standby"}
SESSION_CONFIG_FIELDS_SET = set(SESSION_CONFIG_FIELDS)
BOARD_CHANNEL = "ows_iot_board"


def _number(value):
    """A JSON number: an int when the float is whole (20.0 -> 20)."""
    return int(value) if float(value).is_integer() else value


def _iso(value):
    """A naive UTC datetime as the contract's ``...mmmZ`` text for the browser, else None."""
    if not value:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def session_config_error(env, vals):
    """The reason the session config in ``vals`` (all five keys) is refused, else None.

    Checked in Python before anything reaches the database, so the admin reads this message
    instead of a failed SQL constraint (which Odoo logs as an error); the SQL constraints stay
    as the last line of defence.
    """
    standby, working = vals["standby_threshold_w"], vals["working_threshold_w"]
    if standby < 0:
        return env._("The standby threshold must not be negative (it is %(standby)s W).",
                     standby=f"{standby:g}")
    if standby >= working:
        return env._(
            "The standby threshold (%(standby)s W) must be below the working threshold "
            "(%(working)s W).", standby=f"{standby:g}", working=f"{working:g}",
        )
    if vals["start_debounce_s"] < 0 or vals["stop_debounce_s"] < 0:
        return env._("Debounce times must not be negative.")
    if vals["message_timeout_s"] <= 0:
        return env._("The message timeout must be greater than 0 seconds.")
    return None


class IotDevice(models.Model):
    _name = "ows.iot.device"
    _description = "IoT Device (machine power meter)"
    _inherit = ["ows.iot.alert.mixin"]
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
    status_text = fields.Char(string="Status", compute="_compute_board_state")
    last_contact = fields.Datetime(
        string="Last Event Received", compute="_compute_last_contact",
        help="When Odoo received the last event of this device (not when the plug last spoke: "
        "see Last Seen).",
    )

    # live state, from the bridge's status (heartbeat): overwritten, never history
    # (written in SQL by POST /ows/iot/status, models/iot_status.py)
    live_state = fields.Selection(
        DETECTOR_STATES, string="Detector State", readonly=True, copy=False,
        help="The bridge's session detector state for this machine.",
    )
    plug_online = fields.Selection(
        [("online", "Online"), ("offline", "Offline")], string="Plug", readonly=True, copy=False,
        help="The plug's own online state (its last will); empty when not known.",
    )
    offline_since = fields.Datetime(readonly=True, copy=False)
    last_seen = fields.Datetime(
        readonly=True, copy=False, help="When the plug's last message arrived at the bridge."
    )
    live_power_known = fields.Boolean(readonly=True, copy=False)
    live_power_w = fields.Float(string="Power (W)", readonly=True, copy=False)
    live_session_ref = fields.Char(
        string="Open Session (bridge)", readonly=True, copy=False,
        help="The session the bridge has open for this machine right now.",
    )
    live_session_started_at = fields.Datetime(readonly=True, copy=False)
    live_status_at = fields.Datetime(
        string="Live State Received", readonly=True, copy=False,
        help="When Odoo last received a status of the bridge that listed this machine.",
    )
    board_state = fields.Selection(
        BOARD_STATES, compute="_compute_board_state",
        help="Working, standby or idle as the bridge last said; offline when the plug says so "
        "or has been silent for longer than the setting; unknown without a recent status.",
    )
    bridge_last_contact = fields.Datetime(related="bridge_id.last_contact", string="Bridge Contact")
    session_count = fields.Integer(compute="_compute_session_stats")
    total_hours = fields.Float(compute="_compute_session_stats", string="Time Used")
    total_energy_kwh = fields.Float(compute="_compute_session_stats", string="Energy Used")

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

    @api.constrains(*SESSION_CONFIG_FIELDS)
    def _check_session_config(self):
        for device in self:
            error = session_config_error(self.env, {f: device[f] for f in SESSION_CONFIG_FIELDS})
            if error:
                raise ValidationError(f"{device.machine_name or device.device_id}: {error}")

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

    @api.depends("live_state", "plug_online", "last_seen", "live_status_at")
    def _compute_board_state(self):
        now = fields.Datetime.now()
        settings = alert_settings(self.env)
        labels = dict(self._fields["board_state"]._description_selection(self.env))
        for device in self:
            device.board_state = device._board_state_at(now, settings)
            if device.board_state == "unknown" and device.state == "running":
                device.status_text = _("Running (no live state)")
            else:
                device.status_text = labels[device.board_state]

    def _board_state_at(self, now, settings):
        """One of BOARD_STATES as of ``now``: what the board, the lists and the cron show."""
        self.ensure_one()
        if not self.live_status_at or now - self.live_status_at > settings.bridge_silence:
            return "unknown"
        if self.plug_online == "offline":
            return "offline"
        silent_since = self._silent_since()
        if silent_since and now - silent_since > settings.plug_silence:
            return "offline"
        return _BOARD_OF_DETECTOR.get(self.live_state, "idle")

    def _silent_since(self):
        """Since when the plug has said nothing: its last message, or for a plug never heard,
        since the bridge started (or the device was created, if later)."""
        self.ensure_one()
        if self.last_seen:
            return self.last_seen
        starts = [t for t in (self.bridge_id.bridge_started_at, self.create_date) if t]
        return max(starts) if starts else False

    def _plug_trouble(self, now, settings):
        """``(reason, since)`` when the plug has been offline or silent for longer than the
        setting, else None. Judged only on fresh live state: a bridge that stopped reporting
        this plug (or sends no statuses at all) cannot tell whether it is silent."""
        self.ensure_one()
        if not self.live_status_at or now - self.live_status_at > settings.bridge_silence:
            return None
        limit = settings.plug_silence
        if self.plug_online == "offline" and self.offline_since and now - self.offline_since > limit:
            return "offline", self.offline_since
        silent_since = self._silent_since()
        if silent_since and now - silent_since > limit:
            return "silent", silent_since
        return None

    def _alert_texts(self, reason, minutes):
        name = self.machine_name or self.device_id
        if reason == "offline":
            summary = self.env._("Plug offline: %(machine)s", machine=name)
            note = self.env._(
                "The plug of %(machine)s (%(device)s) has been offline for %(minutes)s minutes.",
                machine=name, device=self.device_id, minutes=minutes,
            )
        else:
            summary = self.env._("Plug silent: %(machine)s", machine=name)
            note = self.env._(
                "The plug of %(machine)s (%(device)s) has sent nothing for %(minutes)s minutes.",
                machine=name, device=self.device_id, minutes=minutes,
            )
        return summary, note

    def _alert_recovered_text(self, minutes):
        return self.env._(
            "The plug of %(machine)s is back after about %(minutes)s minutes.",
            machine=self.machine_name or self.device_id, minutes=minutes,
        )

    # ------------------------------------------------------------------ machine board
    def _board_card(self, now, settings):
        """The live part of this machine's card on the board (JSON for the browser; every
        time as UTC text, formatted by the browser)."""
        self.ensure_one()
        state = self._board_state_at(now, settings)
        started = False
        if state != "unknown" and self.live_session_ref:
            started = self.live_session_started_at
        elif state == "unknown" and self.current_session_id:
            started = self.current_session_id.started_at
        return {
            "id": self.id,
            "board_state": state,
            "detector_state": self.live_state or None,
            "online": {"online": True, "offline": False}.get(self.plug_online),
            "power_w": self.live_power_w if self.live_power_known else None,
            "last_seen": _iso(self.last_seen),
            "session_started_at": _iso(started),
            "valid_until": _iso(
                self.live_status_at and self.live_status_at + settings.bridge_silence
            ),
            "bridge_silent": bool(self.bridge_id.alert_since),
        }

    def board_data(self, day_start):
        """Cards of these machines for the board: live state plus the sessions started since
        ``day_start`` (the browser's local midnight, as UTC text) that are done. The open
        session's running time is added by the browser, which ticks it."""
        start = parse_any_ts(day_start) or (fields.Datetime.now() - timedelta(days=1))
        now = fields.Datetime.now()
        settings = alert_settings(self.env)
        devices = self.exists()
        groups = self.env["ows.machine.session"]._read_group(
            [("device_id", "in", devices.ids), ("state", "=", "done"),
             ("started_at", ">=", start)],
            ["device_id", "energy_known"],
            ["__count", "duration_s:sum", "energy_wh:sum"],
        )
        today = {}
        for device, energy_known, count, duration, energy in groups:
            totals = today.setdefault(device.id, {
                "today_done_s": 0.0, "today_energy_wh": 0.0, "today_energy_unknown": 0,
                "today_sessions": 0,
            })
            totals["today_done_s"] += duration
            totals["today_sessions"] += count
            if energy_known:
                totals["today_energy_wh"] += energy
            else:
                totals["today_energy_unknown"] += count
        cards = {}
        for device in devices:
            card = device._board_card(now, settings)
            card.update(today.get(device.id, {
                "today_done_s": 0.0, "today_energy_wh": 0.0, "today_energy_unknown": 0,
                "today_sessions": 0,
            }))
            cards[device.id] = card
        return {"server_time": _iso(now), "cards": cards}

    def _board_notify_live(self, now, settings):
        """Push these machines' live cards to the open boards of their companies."""
        by_company = {}
        for device in self:
            by_company.setdefault(device.company_id, []).append(device._board_card(now, settings))
        for company, cards in by_company.items():
            self.env["bus.bus"]._sendone(
                (company, BOARD_CHANNEL), "ows_iot_board/live",
                {"server_time": _iso(now), "cards": cards},
            )

    def _board_notify_sessions(self):
        """Tell the open boards that sessions of these machines changed (their today totals),
        once per transaction however many events a batch carried."""
        cr = self.env.cr
        pending = cr.precommit.data.get("ows_iot.board_sessions")
        if pending is None:
            pending = cr.precommit.data["ows_iot.board_sessions"] = {}

            @cr.precommit.add
            def send():
                for company_id, device_ids in pending.items():
                    company = self.env["res.company"].browse(company_id)
                    self.env["bus.bus"]._sendone(
                        (company, BOARD_CHANNEL), "ows_iot_board/sessions",
                        {"device_ids": sorted(device_ids)},
                    )
        for device in self:
            pending.setdefault(device.company_id.id, set()).add(device.id)

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
        for vals in vals_list:
            merged = self._add_missing_default_values(dict(vals))
            error = session_config_error(self.env, {f: merged[f] for f in SESSION_CONFIG_FIELDS})
            if error:
                raise ValidationError(f"{merged.get('machine_name') or _('New machine')}: {error}")
        devices = super().create(vals_list)
        devices.bridge_id._bump_config_version()
        self.env["ows.iot.discovered.plug"]._mark_configured(devices)
        return devices

    @api.model
    def _config_fields(self):
        """Fields whose change alters this device's config entry; addons that extend
        ``_config_entry`` add theirs, so that ``config_version`` moves with them."""
        return CONFIG_FIELDS

    def write(self, vals):
        if SESSION_CONFIG_FIELDS_SET.intersection(vals):
            for device in self:
                merged = {f: vals.get(f, device[f]) for f in SESSION_CONFIG_FIELDS}
                error = session_config_error(self.env, merged)
                if error:
                    raise ValidationError(f"{device.machine_name or device.device_id}: {error}")
        if not self._config_fields().intersection(vals):
            return super().write(vals)
        old_bridges = self.bridge_id
        result = super().write(vals)
        (old_bridges | self.bridge_id)._bump_config_version()
        if {"device_id", "mqtt_topic", "bridge_id", "active"}.intersection(vals):
            self.env["ows.iot.discovered.plug"]._mark_configured(self)
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
