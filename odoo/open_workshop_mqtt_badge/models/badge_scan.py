"""Badge scans and which session each one attributes.

The rule (docs/odoo-api.md, "badge_scan"): a scan at time t on a machine belongs to the
machine's session that is open at t, or else to the first one that starts within the window
after t (default 120 s). A session's member is decided by its scans of known badges: the last
scan before (or at) the start, else the first scan while it ran. Both rules depend only on the
stored scans and sessions, never on the order events arrive in, so a backlog delivered late or
out of order ends with the same members as a live feed.
"""

from datetime import timedelta

from odoo import api, fields, models

from odoo.addons.open_workshop_mqtt.models.iot_event import parse_contract_ts

WINDOW_PARAM = "open_workshop_mqtt_badge.attribution_window_s"
DEFAULT_WINDOW_S = 120

SCAN_STATES = [
    ("unknown", "Unknown badge"),
    ("pending", "No session yet"),
    ("attributed", "Attributed"),
    ("superseded", "Superseded"),
]


def attribution_window(env):
    """The window after a scan in which a starting session is still attributed to it."""
    value = env["ir.config_parameter"].sudo().get_param(WINDOW_PARAM, DEFAULT_WINDOW_S)
    try:
        seconds = max(0, int(value))
    except (TypeError, ValueError):
        seconds = DEFAULT_WINDOW_S
    return timedelta(seconds=seconds)


class BadgeScan(models.Model):
    _name = "ows.badge.scan"
    _description = "Badge Scan"
    _order = "scanned_at desc, id desc"
    _rec_name = "badge_id"

    event_id = fields.Many2one(
        "ows.iot.event", string="Event", required=True, readonly=True, ondelete="cascade",
        index=True,
    )
    device_id = fields.Many2one(
        "ows.iot.device", string="Machine", required=True, readonly=True, ondelete="cascade",
        index=True,
    )
    company_id = fields.Many2one(related="device_id.company_id", store=True, index=True)
    badge_id = fields.Many2one(
        "ows.badge", string="Badge", required=True, readonly=True, ondelete="restrict",
        index=True,
    )
    partner_id = fields.Many2one(related="badge_id.partner_id", string="Member")
    scanned_at = fields.Datetime(required=True, readonly=True, index=True)
    reader = fields.Char(readonly=True, help="The reader model as the bridge reported it.")
    session_id = fields.Many2one(
        "ows.machine.session", string="Session", readonly=True, ondelete="set null", index=True,
        help="The session this scan belongs to by time: open at the scan, or starting within "
        "the attribution window after it.",
    )
    state = fields.Selection(
        SCAN_STATES, compute="_compute_state", store=True, index=True,
    )

    _sql_constraints = [
        ("event_unique", "UNIQUE(event_id)", "An event makes one scan."),
    ]

    @api.depends("badge_id.partner_id", "session_id", "session_id.badge_scan_id")
    def _compute_state(self):
        for scan in self:
            if not scan.badge_id.partner_id:
                scan.state = "unknown"
            elif not scan.session_id:
                scan.state = "pending"
            elif scan.session_id.badge_scan_id == scan:
                scan.state = "attributed"
            else:
                scan.state = "superseded"

    # ------------------------------------------------------------------ from events
    @api.model
    def _from_event(self, record, device, event):
        """Store the scan of a ``badge_scan`` event and attribute what it can."""
        payload = event["payload"]
        scanned_at = parse_contract_ts(payload["scanned_at"])
        self._lock_device(device)
        badge = self.env["ows.badge"]._for_scan(payload["badge_uid"], device, scanned_at)
        reader = payload.get("reader")
        scan = self.create({
            "event_id": record.id,
            "device_id": device.id,
            "badge_id": badge.id,
            "scanned_at": scanned_at,
            "reader": reader if isinstance(reader, str) else False,
        })
        scan._retarget()
        return scan

    @api.model
    def _lock_device(self, device):
        """Serialize attribution per machine.

        A scan and the run_start it belongs to can arrive in two concurrent requests; each
        transaction would miss the other's row. Both touch the machine's lock row first: the
        later one waits, and (REPEATABLE READ) fails with a serialization error once the
        first commits; Odoo then replays the request, which now sees both.
        """
        self.env.cr.execute(
            """
            INSERT INTO ows_badge_attribution_lock (device_id, counter) VALUES (%s, 1)
            ON CONFLICT (device_id) DO UPDATE SET counter = ows_badge_attribution_lock.counter + 1
            """,
            (device.id,),
            log_exceptions=False,
        )

    def _target_session(self, window):
        """The session this scan belongs to by time, or an empty recordset."""
        self.ensure_one()
        Session = self.env["ows.machine.session"]
        last = Session.search(
            [("device_id", "=", self.device_id.id), ("started_at", "!=", False),
             ("started_at", "<=", self.scanned_at)],
            order="started_at desc, id desc", limit=1,
        )
        # sessions of one machine do not overlap: only the latest one started may be open
        if last and (not last.stopped_at and last.state == "running"
                     or last.stopped_at and last.stopped_at >= self.scanned_at):
            return last
        return Session.search(
            [("device_id", "=", self.device_id.id), ("started_at", ">", self.scanned_at),
             ("started_at", "<=", self.scanned_at + window)],
            order="started_at asc, id asc", limit=1,
        )

    def _retarget(self):
        """Point each scan at its session by time and re-decide the sessions concerned."""
        window = attribution_window(self.env)
        touched = self.env["ows.machine.session"]
        for scan in self:
            target = scan._target_session(window)
            if target != scan.session_id:
                touched |= scan.session_id
                scan.session_id = target
            touched |= target
        touched._badge_attribute()

    def _winner_key(self):
        """Sort key: the best scan of a session first (see the module docstring)."""
        session = self.session_id
        before = self.scanned_at <= session.started_at
        if before:
            return (0, -self.scanned_at.timestamp(), -self.id)
        return (1, self.scanned_at.timestamp(), self.id)


class BadgeAttributionLock(models.Model):
    """One row per machine with a badge reader, updated by every attribution step (see
    ``BadgeScan._lock_device``)."""

    _name = "ows.badge.attribution.lock"
    _description = "Badge attribution lock (technical)"
    _log_access = False

    device_id = fields.Many2one("ows.iot.device", required=True, ondelete="cascade")
    counter = fields.Integer()

    _sql_constraints = [
        ("device_unique", "UNIQUE(device_id)", "One lock row per machine."),
    ]
