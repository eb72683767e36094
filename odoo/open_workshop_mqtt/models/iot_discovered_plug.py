import json

from odoo import _, api, fields, models
from odoo.tools.translate import LazyTranslate

from .iot_device import PARSER_TYPES
from .iot_event import parse_contract_ts

_lt = LazyTranslate(__name__)
PARSER_KEYS = {key for key, _label in PARSER_TYPES}
# the contract's sources; a source a newer bridge adds is shown as sent
SOURCES = {
    "shelly_gen1_announce": _lt("Shelly Gen1 announcement"),
    "shelly_gen2_online": _lt("Shelly Gen2+ online topic"),
    "shelly_gen2_rpc": _lt("Shelly Gen2+ RPC event"),
    "tasmota_lwt": _lt("Tasmota last will (LWT)"),
    "tasmota_discovery": _lt("Tasmota discovery"),
}


class IotDiscoveredPlug(models.Model):
    """A plug a bridge heard announce itself on the broker, for which it has no device.

    Reported in every status of the bridge (``discovered``) and merged here per bridge and
    topic. It leaves the "Discovered plugs" list when it is adopted (a device is created from
    it), dismissed, or configured by hand: a device of the bridge with its topic or device id.
    """

    _name = "ows.iot.discovered.plug"
    _description = "Discovered plug"
    _order = "last_seen desc, id desc"
    _rec_name = "topic"

    bridge_id = fields.Many2one(
        "ows.iot.bridge", required=True, readonly=True, ondelete="cascade", index=True
    )
    company_id = fields.Many2one(related="bridge_id.company_id", store=True, index=True)
    topic = fields.Char(
        string="MQTT Topic", required=True, readonly=True,
        help="The topic the device would be configured with, as the bridge inferred it.",
    )
    device_id = fields.Char(string="Device ID", readonly=True)
    device_model = fields.Char(string="Model", readonly=True)
    parser_type = fields.Selection(
        PARSER_TYPES, string="Suggested Parser", readonly=True,
        help="The parser the bridge suggests for this plug (empty: no suggestion it knows).",
    )
    source = fields.Char(readonly=True)
    source_label = fields.Char(string="Heard Through", compute="_compute_source_label")
    first_seen = fields.Datetime(readonly=True)
    last_seen = fields.Datetime(readonly=True, index=True)
    details = fields.Json(string="Details (JSON)", readonly=True)
    details_text = fields.Text(string="Details", compute="_compute_details_text")
    state = fields.Selection(
        [("new", "New"), ("adopted", "Adopted"), ("dismissed", "Dismissed")],
        required=True, default="new", readonly=True, index=True,
    )
    adopted_device_ref = fields.Many2one(
        "ows.iot.device", string="Machine", readonly=True, ondelete="set null"
    )

    _sql_constraints = [
        ("bridge_topic_unique", "UNIQUE(bridge_id, topic)",
         "A discovered plug is known once per bridge and topic."),
    ]

    @api.depends("source")
    def _compute_source_label(self):
        for plug in self:
            label = SOURCES.get(plug.source)
            plug.source_label = str(label) if label else plug.source

    @api.depends("details")
    def _compute_details_text(self):
        for plug in self:
            plug.details_text = (
                json.dumps(plug.details, indent=2, sort_keys=True, ensure_ascii=False)
                if plug.details else ""
            )

    # ------------------------------------------------------------------ from statuses
    @api.model
    def _upsert_from_status(self, bridge, entries, now):
        """Merge a status's ``discovered`` list (valid, topics unique) for ``bridge``.

        A plug already configured as a device of the bridge is skipped (the bridge's config
        is behind). A dismissed plug stays dismissed; an adopted one whose device is gone
        comes back as new.
        """
        if not entries:
            return self.browse()
        devices = self.env["ows.iot.device"].with_context(active_test=False).search_read(
            [("bridge_id", "=", bridge.id)], ["device_id", "mqtt_topic"]
        )
        topics = {d["mqtt_topic"] for d in devices}
        device_ids = {d["device_id"] for d in devices}
        existing = {
            plug.topic: plug
            for plug in self.search([
                ("bridge_id", "=", bridge.id), ("topic", "in", [e["topic"] for e in entries]),
            ])
        }
        to_create = []
        touched = self.browse()
        for entry in entries:
            if entry["topic"] in topics or (entry["device_id"] and entry["device_id"] in device_ids):
                continue
            vals = {
                "device_id": entry["device_id"] or False,
                "device_model": entry["model"] or False,
                "parser_type": entry["parser_type"] if entry["parser_type"] in PARSER_KEYS
                else False,
                "source": entry["source"],
                "last_seen": parse_contract_ts(entry["last_seen"]),
                "details": entry["details"],
            }
            first_seen = parse_contract_ts(entry["first_seen"])
            plug = existing.get(entry["topic"])
            if plug:
                if plug.first_seen and plug.first_seen < first_seen:
                    first_seen = plug.first_seen
                vals["first_seen"] = first_seen
                if plug.state == "adopted" and not plug.adopted_device_ref:
                    vals["state"] = "new"
                plug.write(vals)
                touched |= plug
            else:
                vals.update(bridge_id=bridge.id, topic=entry["topic"], first_seen=first_seen)
                to_create.append(vals)
        return touched | self.create(to_create)

    @api.model
    def _mark_configured(self, devices):
        """Plugs that became devices (by topic or device id, per bridge) leave the list."""
        for device in devices.filtered("active"):
            plugs = self.sudo().search([
                ("bridge_id", "=", device.bridge_id.id), ("state", "=", "new"),
                "|", ("topic", "=", device.mqtt_topic), ("device_id", "=", device.device_id),
            ])
            plugs.write({"state": "adopted", "adopted_device_ref": device.id})

    # ------------------------------------------------------------------ actions
    def action_adopt(self):
        """Open a new machine pre-filled from this plug; saving it adopts the plug."""
        self.ensure_one()
        self.check_access("write")
        context = {
            "default_bridge_id": self.bridge_id.id,
            "default_mqtt_topic": self.topic,
        }
        if self.device_id:
            context["default_device_id"] = self.device_id
        if self.parser_type:
            context["default_parser_type"] = self.parser_type
        return {
            "type": "ir.actions.act_window",
            "name": _("New Machine"),
            "res_model": "ows.iot.device",
            "view_mode": "form",
            "views": [(False, "form")],
            "target": "current",
            "context": context,
        }

    def action_dismiss(self):
        self.check_access("write")
        self.write({"state": "dismissed"})
        return True

    def action_restore(self):
        self.check_access("write")
        self.filtered(lambda p: p.state == "dismissed").write({"state": "new"})
        return True
