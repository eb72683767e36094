import re

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

MAX_UID_LEN = 128
_HEX_GROUPS = re.compile(r"^[0-9A-F]{2}([ :\-][0-9A-F]{2})+$")


def normalise_uid(value):
    """A badge UID as Odoo keys it: trimmed, upper-case; hex written in separated byte pairs
    (``04:a2:3b`` / ``04 A2 3B``) loses the separators. Anything else stays as read.
    None for a value that is not a non-empty string."""
    if not isinstance(value, str):
        return None
    text = value.strip().upper()
    if _HEX_GROUPS.match(text):
        text = re.sub(r"[ :\-]", "", text)
    return text or None


class Badge(models.Model):
    """A badge (RFID card or tag) by its UID, and the member holding it.

    A scan of a UID Odoo has never seen creates the badge without a member: it is listed under
    "Unknown Badges" until staff assign it to a contact; its scans then attribute their
    sessions.
    """

    _name = "ows.badge"
    _description = "Workshop Badge"
    _order = "last_scan_at desc nulls last, id desc"
    _rec_name = "uid"

    uid = fields.Char(string="Badge UID", required=True, index=True, copy=False)
    partner_id = fields.Many2one(
        "res.partner", string="Member", index=True, ondelete="set null",
        help="The contact holding this badge. Scans of a badge without a member attribute "
        "nothing until one is set.",
    )
    active = fields.Boolean(default=True)
    note = fields.Text()
    scan_ids = fields.One2many("ows.badge.scan", "badge_id", string="Scans")
    scan_count = fields.Integer(compute="_compute_scan_count")
    last_scan_at = fields.Datetime(string="Last Scan", readonly=True)
    last_device_id = fields.Many2one(
        "ows.iot.device", string="Last Machine", readonly=True, ondelete="set null"
    )
    first_scan_at = fields.Datetime(string="First Scan", readonly=True)

    _sql_constraints = [
        ("uid_unique", "UNIQUE(uid)", "A badge with this UID already exists."),
    ]

    @api.depends("uid", "partner_id")
    def _compute_display_name(self):
        for badge in self:
            badge.display_name = (
                f"{badge.uid} ({badge.partner_id.display_name})" if badge.partner_id
                else badge.uid or ""
            )

    def _compute_scan_count(self):
        groups = self.env["ows.badge.scan"]._read_group(
            [("badge_id", "in", self.ids)], ["badge_id"], ["__count"]
        )
        counts = {badge.id: count for badge, count in groups}
        for badge in self:
            badge.scan_count = counts.get(badge.id, 0)

    @api.constrains("uid")
    def _check_uid(self):
        for badge in self:
            if normalise_uid(badge.uid) != badge.uid or len(badge.uid) > MAX_UID_LEN:
                raise ValidationError(_(
                    "Badge UID %(uid)r must be trimmed, upper-case and at most %(max)s "
                    "characters.", uid=badge.uid, max=MAX_UID_LEN,
                ))

    @api.model
    def _prepare_uid(self, vals):
        if isinstance(vals.get("uid"), str):
            vals["uid"] = normalise_uid(vals["uid"]) or vals["uid"]
        return vals

    @api.model_create_multi
    def create(self, vals_list):
        return super().create([self._prepare_uid(dict(vals)) for vals in vals_list])

    def write(self, vals):
        vals = self._prepare_uid(dict(vals))
        result = super().write(vals)
        if "partner_id" in vals:
            # the pending attribution applies (or a corrected member replaces the old one)
            self.sudo().scan_ids.session_id._badge_attribute()
        return result

    @api.model
    def _for_scan(self, uid, device, scanned_at):
        """The badge ``uid`` (created without a member when new), its scan stats updated.

        ``INSERT ... ON CONFLICT`` like the core's sessions: two requests meeting the same new
        badge cannot both create it, and updating the badge row makes concurrent scans of one
        badge serialize (the later one is retried by Odoo).
        """
        cr = self.env.cr
        now = fields.Datetime.now()
        self.flush_model()
        cr.execute(
            """
            INSERT INTO ows_badge (uid, active, first_scan_at, last_scan_at, last_device_id,
                                   create_uid, create_date, write_uid, write_date)
            VALUES (%s, true, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (uid) DO UPDATE SET
                first_scan_at = LEAST(ows_badge.first_scan_at, EXCLUDED.first_scan_at),
                last_scan_at = GREATEST(ows_badge.last_scan_at, EXCLUDED.last_scan_at),
                last_device_id = CASE
                    WHEN ows_badge.last_scan_at IS NULL
                      OR EXCLUDED.last_scan_at >= ows_badge.last_scan_at
                    THEN EXCLUDED.last_device_id ELSE ows_badge.last_device_id END
            RETURNING id
            """,
            (uid, scanned_at, scanned_at, device.id, self.env.uid, now, self.env.uid, now),
        )
        badge = self.browse(cr.fetchone()[0])
        badge.invalidate_recordset(["first_scan_at", "last_scan_at", "last_device_id"])
        return badge

    def action_view_scans(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Badge Scans"),
            "res_model": "ows.badge.scan",
            "view_mode": "list,form",
            "domain": [("badge_id", "=", self.id)],
        }
