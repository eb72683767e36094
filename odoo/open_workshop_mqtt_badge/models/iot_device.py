import re

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

READER_FORMATS = [("tasmota", "Tasmota (PN532 / RDM6300 / ...)"), ("generic", "Generic JSON")]
READER_FIELDS = {"badge_reader_topic", "badge_reader_format", "badge_reader_uid_path"}
_PATH_RE = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")


class IotDevice(models.Model):
    _inherit = "ows.iot.device"

    badge_reader_topic = fields.Char(
        string="Badge Reader Topic",
        help="MQTT topic on which the badge reader next to this machine publishes its scans, "
        "e.g. tele/tasmota_reader/SENSOR. Empty: no reader.",
    )
    badge_reader_format = fields.Selection(
        READER_FORMATS, string="Reader Format", default="tasmota",
        help="Tasmota: {\"PN532\": {\"UID\": ...}} or {\"RDM6300\": {\"UID\": ...}} in SENSOR "
        "messages. Generic: the UID is read from the JSON path below.",
    )
    badge_reader_uid_path = fields.Char(
        string="UID Path", help="Generic reader: dotted JSON path of the UID, e.g. card.uid"
    )
    has_badge_reader = fields.Boolean(compute="_compute_has_badge_reader")
    badge_scan_ids = fields.One2many("ows.badge.scan", "device_id", string="Badge Scans")

    @api.depends("badge_reader_topic")
    def _compute_has_badge_reader(self):
        for device in self:
            device.has_badge_reader = bool(device.badge_reader_topic)

    @api.constrains(*READER_FIELDS, "mqtt_topic", "bridge_id", "active")
    def _check_badge_reader(self):
        """A reader belongs to one machine: its topic is no other device's reader or meter."""
        for device in self:
            others = [("id", "!=", device.id), ("bridge_id", "=", device.bridge_id.id)]
            topic, clash = device.mqtt_topic, self.browse()
            if device.badge_reader_topic:
                device._check_reader_settings()
                topic = device.badge_reader_topic
                clash = self.search(
                    others + ["|", ("badge_reader_topic", "=", topic), ("mqtt_topic", "=", topic)],
                    limit=1,
                )
            if not clash and device.mqtt_topic:
                topic = device.mqtt_topic
                clash = self.search(others + [("badge_reader_topic", "=", topic)], limit=1)
            if clash:
                raise ValidationError(_(
                    "%(device)s: the topic %(topic)s is already the badge reader or power meter "
                    "of %(other)s; a badge reader belongs to one machine.",
                    device=device.device_id, topic=topic, other=clash.display_name,
                ))

    def _check_reader_settings(self):
        topic = self.badge_reader_topic
        if topic != topic.strip() or any(c in topic for c in "+#"):
            raise ValidationError(_(
                "%s: the badge reader topic must not contain wildcards or spaces around it.",
                self.device_id,
            ))
        if self.badge_reader_format == "generic" and not _PATH_RE.match(
            self.badge_reader_uid_path or ""
        ):
            raise ValidationError(_(
                "%s: a generic badge reader needs a dotted UID path, e.g. card.uid.",
                self.device_id,
            ))

    def _config_fields(self):
        return super()._config_fields() | READER_FIELDS

    def _config_entry(self):
        entry = super()._config_entry()
        if self.badge_reader_topic:
            reader = {"mqtt_topic": self.badge_reader_topic,
                      "format": self.badge_reader_format or "tasmota"}
            if reader["format"] == "generic":
                reader["uid_path"] = self.badge_reader_uid_path
            entry["badge_reader"] = reader
        return entry
