import logging

from odoo import api, fields, models

from .iot_event import SessionConflict, parse_any_ts, parse_contract_ts

_logger = logging.getLogger(__name__)

STOP_REASONS = [
    ("normal", "Normal"),
    ("timeout", "Timeout"),
    ("offline", "Device offline"),
    ("device_removed", "Device removed"),
    ("other", "Other"),
]
STOP_REASON_KEYS = {key for key, _label in STOP_REASONS}


def _float_or_none(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an integer no float can hold
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value


class MachineSession(models.Model):
    _name = "ows.machine.session"
    _description = "Machine Usage Session"
    _order = "started_at desc, id desc"
    _rec_name = "session_id"

    session_id = fields.Char(string="Session ID", required=True, readonly=True)
    device_id = fields.Many2one(
        "ows.iot.device", required=True, readonly=True, ondelete="restrict", index=True
    )
    bridge_id = fields.Many2one(related="device_id.bridge_id", store=True, index=True)
    machine_name = fields.Char(
        readonly=True, index=True, help="The machine's name when the session was recorded."
    )
    state = fields.Selection(
        [("running", "Running"), ("done", "Done")], required=True, default="running",
        readonly=True, index=True,
    )
    started_at = fields.Datetime(readonly=True, index=True)
    stopped_at = fields.Datetime(readonly=True)
    duration_s = fields.Float(string="Duration (s)", readonly=True, aggregator="sum")
    working_s = fields.Float(string="Working (s)", readonly=True, aggregator="sum")
    standby_s = fields.Float(string="Standby (s)", readonly=True, aggregator="sum")
    energy_wh = fields.Float(string="Energy (Wh)", readonly=True, aggregator="sum")
    energy_known = fields.Boolean(
        readonly=True, help="False when the bridge could not measure the energy (null)."
    )
    energy_source = fields.Selection(
        [("counter", "Device counter"), ("integrated", "Integrated from power")], readonly=True
    )
    max_power_w = fields.Float(string="Max Power (W)", readonly=True, aggregator="max")
    avg_power_w = fields.Float(string="Avg Power (W)", readonly=True, aggregator="avg")
    stop_reason = fields.Selection(STOP_REASONS, readonly=True)
    duration_h = fields.Float(
        string="Hours", compute="_compute_totals", store=True, aggregator="sum"
    )
    working_h = fields.Float(
        string="Working Hours", compute="_compute_totals", store=True, aggregator="sum",
    )
    energy_kwh = fields.Float(
        string="Energy (kWh)", compute="_compute_totals", store=True, aggregator="sum",
    )
    bridge_silent = fields.Boolean(
        readonly=True, index=True, copy=False,
        help="Running while its bridge has gone silent. The session stays open: the bridge "
        "closes it with its true times when it is back.",
    )
    start_event_id = fields.Many2one("ows.iot.event", readonly=True, ondelete="set null")
    stop_event_id = fields.Many2one("ows.iot.event", readonly=True, ondelete="set null")

    _sql_constraints = [
        ("session_id_unique", "UNIQUE(session_id)", "A session with this ID already exists."),
        (
            "durations_not_negative",
            "CHECK(COALESCE(duration_s, 0) >= 0 AND COALESCE(working_s, 0) >= 0"
            " AND COALESCE(standby_s, 0) >= 0 AND COALESCE(energy_wh, 0) >= 0)",
            "Durations and energy must not be negative.",
        ),
    ]

    @api.depends("duration_s", "working_s", "energy_wh")
    def _compute_totals(self):
        for session in self:
            session.duration_h = (session.duration_s or 0.0) / 3600.0
            session.working_h = (session.working_s or 0.0) / 3600.0
            session.energy_kwh = (session.energy_wh or 0.0) / 1000.0

    # ------------------------------------------------------------------ from events
    @api.model
    def _get_or_create(self, device, session_id):
        """The session ``session_id`` of ``device``, created (running) if new.

        ``INSERT ... ON CONFLICT DO NOTHING``: two requests creating the same session at once
        cannot both insert; the loser gets a serialization failure, which Odoo answers by
        retrying the whole request (then it finds the session).
        """
        cr = self.env.cr
        now = fields.Datetime.now()
        cr.execute(
            """
            INSERT INTO ows_machine_session
                (session_id, device_id, bridge_id, machine_name, state, energy_known,
                 create_uid, create_date, write_uid, write_date)
            VALUES (%s, %s, %s, %s, 'running', false, %s, %s, %s, %s)
            ON CONFLICT (session_id) DO NOTHING
            RETURNING id
            """,
            (session_id, device.id, device.bridge_id.id, device.machine_name,
             self.env.uid, now, self.env.uid, now),
            log_exceptions=False,
        )
        row = cr.fetchone()
        if row:
            return self.browse(row[0]), True
        cr.execute("SELECT id FROM ows_machine_session WHERE session_id = %s", (session_id,))
        return self.browse(cr.fetchone()[0]), False

    @api.model
    def _apply_event(self, event_record, device, event):
        """Open (run_start) or close (run_stop) the session the event names."""
        payload = event["payload"]
        session, _created = self._get_or_create(device, payload["session_id"])
        if session.device_id != device:
            # created by another device's event after the ingest's check: refuse this event
            _logger.warning(
                "event %s: session %s belongs to another device; refused as a conflict",
                event["event_uid"], session.session_id,
            )
            raise SessionConflict(session.session_id)
        ts = parse_contract_ts(event["ts"])
        vals = {}
        if event["event_type"] == "run_start":
            vals["start_event_id"] = event_record.id
            if not session.started_at:
                started_at = parse_any_ts(payload.get("started_at")) or ts
                vals["started_at"] = started_at
                if session.state == "done" and session.stopped_at and not session.duration_s:
                    # The stop came first and could not tell the duration; now we can.
                    duration = max(0.0, (session.stopped_at - started_at).total_seconds())
                    vals["duration_s"] = duration
        else:
            started_at = session.started_at or parse_any_ts(payload.get("started_at"))
            stopped_at = parse_any_ts(payload.get("stopped_at")) or ts
            duration = _float_or_none(payload.get("duration_s"))
            if duration is None and started_at and stopped_at:
                duration = max(0.0, (stopped_at - started_at).total_seconds())
            working = _float_or_none(payload.get("working_s"))
            standby = _float_or_none(payload.get("standby_s"))
            if duration is not None:
                if working is None and standby is not None:
                    working = max(0.0, duration - standby)
                if standby is None and working is not None:
                    standby = max(0.0, duration - working)
            energy = _float_or_none(payload.get("energy_wh"))
            reason = payload.get("reason")
            source = payload.get("energy_source")
            vals.update({
                "state": "done",
                "stop_event_id": event_record.id,
                "started_at": started_at or False,
                "stopped_at": stopped_at,
                "duration_s": max(0.0, duration) if duration is not None else 0.0,
                "working_s": max(0.0, working) if working is not None else 0.0,
                "standby_s": max(0.0, standby) if standby is not None else 0.0,
                "energy_wh": max(0.0, energy) if energy is not None else 0.0,
                "energy_known": energy is not None,
                "energy_source": source if source in ("counter", "integrated") else False,
                "max_power_w": _float_or_none(payload.get("max_power_w")) or 0.0,
                "avg_power_w": _float_or_none(payload.get("avg_power_w")) or 0.0,
                "stop_reason": (
                    reason if reason in STOP_REASON_KEYS else ("other" if reason else False)
                ),
            })
        session.write(vals)
        device._board_notify_sessions()
        return session
