from odoo import api, fields, models

from odoo.addons.open_workshop_mqtt.models.iot_event import parse_contract_ts

from .badge import MAX_UID_LEN, normalise_uid

BADGE_SCAN = "badge_scan"


class IotEvent(models.Model):
    """Registers the ``badge_scan`` event type with the core's ingestion."""

    _inherit = "ows.iot.event"

    event_type = fields.Selection(
        selection_add=[(BADGE_SCAN, "Badge scan")], ondelete={BADGE_SCAN: "cascade"}
    )

    @api.model
    def _validate_payload(self, event):
        if event["event_type"] != BADGE_SCAN:
            return super()._validate_payload(event)
        payload = event["payload"]
        uid = normalise_uid(payload.get("badge_uid"))
        if uid is None:
            return "badge_scan payload needs a non-empty string badge_uid"
        if len(uid) > MAX_UID_LEN:
            return f"badge_uid must be at most {MAX_UID_LEN} characters"
        if parse_contract_ts(payload.get("scanned_at")) is None:
            return "badge_scan payload needs scanned_at, a UTC timestamp 'YYYY-MM-DDTHH:MM:SS.mmmZ'"
        reader = payload.get("reader")
        if reader is not None and not isinstance(reader, str):
            return "badge_scan reader must be a string or null"
        return None

    @api.model
    def _process_event(self, record, device, event):
        if event["event_type"] != BADGE_SCAN:
            return super()._process_event(record, device, event)
        payload = dict(event["payload"], badge_uid=normalise_uid(event["payload"]["badge_uid"]))
        return self.env["ows.badge.scan"]._from_event(record, device, dict(event, payload=payload))
