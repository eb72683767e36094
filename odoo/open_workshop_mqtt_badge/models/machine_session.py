from odoo import _, api, fields, models
from odoo.exceptions import AccessError

from .badge_scan import attribution_window

MEMBER_SOURCES = [("badge", "Badge"), ("manual", "Set by staff")]
AUTO = "ows_badge_auto"  # context key: a write by the attribution, not by staff


class MachineSession(models.Model):
    _inherit = "ows.machine.session"

    partner_id = fields.Many2one(
        "res.partner", string="Member", index=True, ondelete="restrict",
        help="Who used the machine: set from a badge scan, or by staff (which a later scan "
        "never overrides).",
    )
    member_source = fields.Selection(MEMBER_SOURCES, readonly=True)
    badge_scan_id = fields.Many2one(
        "ows.badge.scan", string="Deciding Scan", readonly=True, ondelete="set null"
    )
    badge_scan_ids = fields.One2many("ows.badge.scan", "session_id", string="Badge Scans")

    # ------------------------------------------------------------------ staff edits
    @api.model
    def _staff_writable_fields(self):
        """What staff may change on a session; everything else comes from the bridge.
        Addons add their correction fields."""
        return {"partner_id"}

    def _member_locked(self):
        """Sessions whose member must not change now (billing: already invoiced)."""
        return self.browse()

    def write(self, vals):
        if not self.env.su:
            forbidden = set(vals) - self._staff_writable_fields()
            if forbidden:
                raise AccessError(_(
                    "Sessions are recorded by the bridge; only %(allowed)s can be changed "
                    "(not %(fields)s).",
                    allowed=", ".join(sorted(self._staff_writable_fields())),
                    fields=", ".join(sorted(forbidden)),
                ))
        if "partner_id" in vals and not self.env.context.get(AUTO):
            vals = dict(vals, member_source="manual", badge_scan_id=False)
        return super().write(vals)

    def action_member_from_badge(self):
        """Forget the staff's choice and let the badge scans decide again."""
        self.check_access("write")
        sessions = self.sudo()
        sessions.with_context(**{AUTO: True}).write({"member_source": False})
        sessions._badge_attribute()
        return True

    # ------------------------------------------------------------------ attribution
    def _badge_attribute(self):
        """Set each session's member from its scans of known badges (see badge_scan.py).

        Sessions set by staff, and sessions whose member is locked, keep theirs."""
        sessions = self.sudo().exists()
        locked = sessions._member_locked()
        for session in sessions:
            if session.member_source == "manual" or session in locked:
                continue
            known = session.badge_scan_ids.filtered(lambda scan: scan.badge_id.partner_id)
            winner = known.sorted(lambda scan: scan._winner_key())[:1]
            vals = {
                "partner_id": winner.badge_id.partner_id.id,
                "member_source": "badge" if winner else False,
                "badge_scan_id": winner.id,
            }
            if (session.partner_id.id, session.member_source or False,
                    session.badge_scan_id.id) != tuple(vals.values()):
                session.with_context(**{AUTO: True}).write(vals)

    @api.model
    def _apply_event(self, event_record, device, event):
        """After a run_start / run_stop: the scans near the session may belong to it now (a
        scan that came first), or no longer (a stop earlier than the scan)."""
        session = super()._apply_event(event_record, device, event)
        if session.device_id != device:
            return session
        Scan = self.env["ows.badge.scan"].sudo()
        if device.badge_reader_topic:
            Scan._lock_device(device)
        scans = Scan.search([("session_id", "=", session.id)])
        if session.started_at:
            domain = [("device_id", "=", device.id),
                      ("scanned_at", ">=", session.started_at - attribution_window(self.env))]
            if session.stopped_at:
                domain.append(("scanned_at", "<=", session.stopped_at))
            scans |= Scan.search(domain)
        scans._retarget()
        return session
