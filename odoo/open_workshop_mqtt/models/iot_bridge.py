import hashlib
import hmac
import logging
import secrets
from datetime import timedelta

import psycopg2

from odoo import _, api, fields, models

from .res_config_settings import alert_settings

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
    _inherit = ["ows.iot.alert.mixin"]
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
    device_count = fields.Integer(compute="_compute_device_count", string="Number of Devices")
    note = fields.Text()

    # live state: the last status (heartbeat) the bridge sent; overwritten, never history
    # (written in SQL by POST /ows/iot/status, models/iot_status.py)
    status_sent_at = fields.Datetime(
        copy=False, readonly=True, help="The bridge's own clock when it sent the last status."
    )
    last_status_at = fields.Datetime(
        string="Last Heartbeat", copy=False, readonly=True,
        help="When Odoo received the bridge's last status (Odoo's clock).",
    )
    bridge_version = fields.Char(string="Bridge Version", copy=False, readonly=True)
    bridge_started_at = fields.Datetime(string="Running Since", copy=False, readonly=True)
    bridge_uptime_s = fields.Float(string="Uptime (s)", copy=False, readonly=True)
    mqtt_connected = fields.Boolean(string="MQTT Connected", copy=False, readonly=True)
    queue_known = fields.Boolean(copy=False, readonly=True)
    queue_depth = fields.Integer(
        copy=False, readonly=True, help="Events the bridge holds that Odoo has not taken yet."
    )
    oldest_queued_age_s = fields.Float(
        string="Oldest Queued", copy=False, readonly=True,
        help="Age in seconds of the oldest event the bridge still holds.",
    )
    status_problems = fields.Json(copy=False, readonly=True)
    status_warnings = fields.Json(copy=False, readonly=True)
    problems_text = fields.Text(string="Problems", compute="_compute_status_texts")
    warnings_text = fields.Text(string="Warnings", compute="_compute_status_texts")
    problem_count = fields.Integer(string="Problem Count", compute="_compute_status_texts")
    reported_config_version = fields.Char(
        string="Config Version Running", copy=False, readonly=True,
        help="The config version the bridge said it runs in its last status.",
    )
    config_current = fields.Boolean(
        string="Runs the Current Config", compute="_compute_config_current",
    )
    discovered_plug_ids = fields.One2many(
        "ows.iot.discovered.plug", "bridge_id", string="Discovered Plugs",
        domain=[("state", "=", "new")],
    )

    _sql_constraints = [
        ("token_hash_unique", "UNIQUE(token_hash)", "A token can belong to one bridge only."),
    ]

    @api.depends("status_problems", "status_warnings")
    def _compute_status_texts(self):
        for bridge in self:
            problems = bridge.status_problems or []
            bridge.problems_text = "\n".join(problems)
            bridge.warnings_text = "\n".join(bridge.status_warnings or [])
            bridge.problem_count = len(problems)

    @api.depends("reported_config_version", "config_version")
    def _compute_config_current(self):
        for bridge in self:
            bridge.config_current = bridge.reported_config_version == str(bridge.config_version)

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
        self.invalidate_recordset(["config_version", "config_current"])

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

    # ------------------------------------------------------------------ health
    def _alert_texts(self, reason, minutes):
        summary = self.env._("Bridge silent: %(bridge)s", bridge=self.name)
        note = self.env._(
            "No call from bridge %(bridge)s for %(minutes)s minutes. Machines it reads are not "
            "recorded until it is back; running sessions stay open and are flagged.",
            bridge=self.name, minutes=minutes,
        )
        return summary, note

    def _alert_recovered_text(self, minutes):
        return self.env._(
            "Bridge %(bridge)s is back after about %(minutes)s minutes.",
            bridge=self.name, minutes=minutes,
        )

    @api.model
    def _cron_check_health(self):
        self._check_health(fields.Datetime.now())

    @api.model
    def _check_health(self, now):
        """Open and close the silence incidents of bridges and plugs as of ``now``.

        A bridge is silent when its last call of any kind (``last_contact``) is older than the
        setting; bridges that never called, have no token or are archived are not watched.
        The plugs of a silent bridge are not judged (the bridge's incident says it all) and
        their running sessions are flagged ``bridge_silent`` until the bridge is back.
        """
        settings = alert_settings(self.env)
        Bridge = self.sudo().with_context(active_test=False)
        watched = Bridge.search([
            ("active", "=", True), ("token_prefix", "!=", False), ("last_contact", "!=", False),
        ])
        silent = watched.filtered(lambda b: now - b.last_contact > settings.bridge_silence)
        for bridge in silent:
            bridge._alert_open("silent", bridge.last_contact, now, settings)
        (Bridge.search([("alert_since", "!=", False)]) - silent)._alert_close(now)

        Session = self.env["ows.machine.session"].sudo()
        Session.search([
            ("bridge_id", "in", silent.ids), ("state", "=", "running"),
            ("bridge_silent", "=", False),
        ]).write({"bridge_silent": True})
        Session.search([
            ("bridge_id", "not in", silent.ids), ("bridge_silent", "=", True),
        ]).write({"bridge_silent": False})

        Device = self.env["ows.iot.device"].sudo().with_context(active_test=False)
        alive = watched - silent
        judged = Device.search([("bridge_id", "in", alive.ids), ("active", "=", True)])
        healthy = Device.browse()
        for device in judged:
            trouble = device._plug_trouble(now, settings)
            if trouble:
                device._alert_open(trouble[0], trouble[1], now, settings)
            else:
                healthy |= device
        # recovered, archived, or of a bridge no longer watched (archived, token revoked)
        stale = Device.search([
            ("alert_since", "!=", False), ("bridge_id", "not in", silent.ids),
        ]) - (judged - healthy)
        stale._alert_close(now)

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
