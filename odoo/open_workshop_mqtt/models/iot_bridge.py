import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

import psycopg2

from odoo import _, api, fields, models

_logger = logging.getLogger(__name__)

TOKEN_PREFIX_LEN = 8
# last_contact is written at most this often per bridge, to keep request rows uncontended.
LAST_CONTACT_RESOLUTION = timedelta(seconds=10)


def hash_token(token):
    """SHA-256 of a bearer token, hex. Tokens are 256-bit random strings, so a fast hash is
    enough (no password stretching needed, like API keys)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class IotBridge(models.Model):
    _name = "ows.iot.bridge"
    _description = "IoT Bridge"
    _order = "name"

    name = fields.Char(required=True)
    mqtt_broker = fields.Char(
        string="MQTT Broker",
        help="The MQTT broker this bridge connects to (reference only, e.g. mqtt://mosquitto:1883).",
    )
    active = fields.Boolean(default=True)
    company_id = fields.Many2one(
        "res.company", required=True, default=lambda self: self.env.company, index=True
    )
    token_hash = fields.Char(
        copy=False, readonly=True, groups="base.group_system",
        help="SHA-256 of the bearer token; the token itself is never stored.",
    )
    token_prefix = fields.Char(
        string="Token Starts With", copy=False, readonly=True,
        help="First characters of the current token, to tell tokens apart.",
    )
    token_set_at = fields.Datetime(string="Token Generated", copy=False, readonly=True)
    has_token = fields.Boolean(compute="_compute_has_token")
    last_contact = fields.Datetime(copy=False, readonly=True)
    config_version = fields.Integer(
        default=1, copy=False, readonly=True,
        help="Bumped whenever one of the bridge's devices changes; served by GET /ows/iot/config.",
    )
    device_ids = fields.One2many("ows.iot.device", "bridge_id", string="Devices")
    device_count = fields.Integer(compute="_compute_device_count")
    note = fields.Text()

    _sql_constraints = [
        ("token_hash_unique", "UNIQUE(token_hash)", "A token can belong to one bridge only."),
    ]

    @api.depends("token_prefix")
    def _compute_has_token(self):
        for bridge in self:
            bridge.has_token = bool(bridge.token_prefix)

    @api.depends("device_ids")
    def _compute_device_count(self):
        groups = self.env["ows.iot.device"]._read_group(
            [("bridge_id", "in", self.ids)], ["bridge_id"], ["__count"]
        )
        counts = {bridge.id: count for bridge, count in groups}
        for bridge in self:
            bridge.device_count = counts.get(bridge.id, 0)

    # ------------------------------------------------------------------ tokens
    def _generate_token(self):
        """Create (or rotate) the bridge's token and return it in clear text, once.

        The previous token stops working at once. Only the hash and a short prefix are kept.
        """
        self.ensure_one()
        self.check_access("write")
        token = secrets.token_urlsafe(32)
        self.sudo().write({
            "token_hash": hash_token(token),
            "token_prefix": token[:TOKEN_PREFIX_LEN],
            "token_set_at": fields.Datetime.now(),
        })
        _logger.info("IoT bridge %s (id %s): token generated", self.name, self.id)
        return token

    def action_revoke_token(self):
        self.check_access("write")
        self.sudo().write({"token_hash": False, "token_prefix": False, "token_set_at": False})
        for bridge in self:
            _logger.info("IoT bridge %s (id %s): token revoked", bridge.name, bridge.id)
        return True

    def action_generate_token(self):
        """Open the wizard that generates the token and shows it once."""
        self.ensure_one()
        self.check_access("write")
        wizard = self.env["ows.iot.bridge.token.wizard"].create({"bridge_id": self.id})
        wizard._generate()
        return {
            "type": "ir.actions.act_window",
            "name": _("Bridge Token"),
            "res_model": "ows.iot.bridge.token.wizard",
            "res_id": wizard.id,
            "view_mode": "form",
            "target": "new",
        }

    @api.model
    def _authenticate_token(self, token):
        """The active bridge whose token is ``token``, or an empty recordset.

        Lookup is by the hash (an index), then the hashes are compared in constant time.
        """
        if not token or not isinstance(token, str):
            return self.browse()
        digest = hash_token(token)
        self.flush_model(["token_hash", "active"])
        self.env.cr.execute(
            "SELECT id, token_hash FROM ows_iot_bridge WHERE token_hash = %s AND active",
            (digest,),
        )
        for bridge_id, stored in self.env.cr.fetchall():
            if stored and hmac.compare_digest(stored, digest):
                return self.browse(bridge_id)
        # Spend the same time on a miss as on a hit.
        hmac.compare_digest(digest, digest)
        return self.browse()

    def _touch_last_contact(self):
        """Record the bridge's last contact without ever making a request fail or wait.

        The update is skipped when the row is locked by a concurrent request or was changed
        by a concurrent transaction, and done at most every LAST_CONTACT_RESOLUTION.
        """
        self.ensure_one()
        now = fields.Datetime.now()
        cr = self.env.cr
        try:
            with cr.savepoint(flush=False):
                cr.execute(
                    "SELECT id FROM ows_iot_bridge WHERE id = %s"
                    " AND (last_contact IS NULL OR last_contact < %s) FOR UPDATE NOWAIT",
                    (self.id, now - LAST_CONTACT_RESOLUTION),
                    log_exceptions=False,
                )
                if cr.fetchone():
                    cr.execute(
                        "UPDATE ows_iot_bridge SET last_contact = %s WHERE id = %s",
                        (now, self.id),
                        log_exceptions=False,
                    )
                    self.invalidate_recordset(["last_contact"])
        except psycopg2.OperationalError:
            pass

    def _bump_config_version(self):
        if not self:
            return
        self.env.cr.execute(
            "UPDATE ows_iot_bridge SET config_version = config_version + 1 WHERE id IN %s",
            (tuple(self.ids),),
        )
        self.invalidate_recordset(["config_version"])

    def _config_payload(self):
        """The body of GET /ows/iot/config for this bridge."""
        self.ensure_one()
        devices = self.env["ows.iot.device"].search(
            [("bridge_id", "=", self.id)], order="device_id"
        )
        return {
            "config_version": str(self.config_version),
            "devices": [device._config_entry() for device in devices],
        }

    def action_view_devices(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Devices"),
            "res_model": "ows.iot.device",
            "view_mode": "list,form",
            "domain": [("bridge_id", "=", self.id)],
            "context": {"default_bridge_id": self.id},
        }
