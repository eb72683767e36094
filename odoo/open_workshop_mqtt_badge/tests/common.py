import uuid
from datetime import datetime, timedelta

from odoo.addons.open_workshop_mqtt.tests.common import IotCase, make_event

T0 = datetime(2026, 3, 2, 9, 0, 0)


def ts(when):
    """A naive UTC datetime (or seconds after T0) as a contract timestamp."""
    if not isinstance(when, datetime):
        when = T0 + timedelta(seconds=when)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def at(seconds):
    return T0 + timedelta(seconds=seconds)


def badge_scan(device_id, uid, when, reader="PN532", event_uid=None):
    return make_event(
        device_id, "badge_scan",
        {"badge_uid": uid, "scanned_at": ts(when), "reader": reader},
        event_uid=event_uid, ts=ts(when),
    )


class BadgeCase(IotCase):
    """The core's two bridges and devices; ours has a Tasmota badge reader; two members."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Badge = cls.env["ows.badge"]
        cls.Scan = cls.env["ows.badge.scan"]
        cls.device.write({"badge_reader_topic": "tele/reader-aaaa/SENSOR"})
        cls.alice = cls.env["res.partner"].create({"name": "Alice Member"})
        cls.bob = cls.env["res.partner"].create({"name": "Bob Member"})
        cls.badge_alice = cls.Badge.create({"uid": "04A23B1C", "partner_id": cls.alice.id})
        cls.badge_bob = cls.Badge.create({"uid": "0A1B2C3D4E", "partner_id": cls.bob.id})

    def ok(self, event):
        self.assertEqual(self.ingest(event), ("created", None), event)

    def scan(self, uid, when, device=None):
        self.ok(badge_scan((device or self.device).device_id, uid, when))

    def start(self, when, session_id=None, device=None):
        session_id = session_id or str(uuid.uuid4())
        self.ok(make_event(
            (device or self.device).device_id, "run_start",
            {"session_id": session_id, "power_w": 300.0, "reason": "power_threshold",
             "started_at": ts(when)}, ts=ts(when),
        ))
        return self.find_session(session_id)

    def stop(self, session_id, started, stopped, device=None):
        self.ok(make_event(
            (device or self.device).device_id, "run_stop",
            {"session_id": session_id, "power_w": 1.0, "reason": "normal",
             "started_at": ts(started), "stopped_at": ts(stopped),
             "duration_s": float(stopped - started), "working_s": float(stopped - started),
             "standby_s": 0.0, "energy_wh": 10.0, "energy_source": "counter"},
            ts=ts(stopped),
        ))
        return self.find_session(session_id)

    def find_session(self, session_id):
        return self.Session.search([("session_id", "=", session_id)])
