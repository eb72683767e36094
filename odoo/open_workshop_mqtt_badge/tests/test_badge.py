import psycopg2

from odoo.exceptions import ValidationError
from odoo.tests import tagged
from odoo.tools import mute_logger
from odoo.tools.safe_eval import safe_eval

from ..models.badge import normalise_uid
from .common import BadgeCase, badge_scan, ts


@tagged("post_install", "-at_install", "open_workshop_mqtt_badge")
class TestBadgeContract(BadgeCase):
    """The badge half of docs/odoo-api.md: the reader in the config, the badge_scan event."""

    def entry(self, device=None):
        payload = self.bridge._config_payload()
        device_id = (device or self.device).device_id
        return next(d for d in payload["devices"] if d["device_id"] == device_id)

    def test_reader_served_only_when_paired(self):
        self.assertEqual(self.entry()["badge_reader"],
                         {"mqtt_topic": "tele/reader-aaaa/SENSOR", "format": "tasmota"})
        self.device.badge_reader_topic = False
        self.assertNotIn("badge_reader", self.entry())

    def test_generic_reader_has_uid_path(self):
        self.device.write({"badge_reader_format": "generic", "badge_reader_uid_path": "card.uid"})
        self.assertEqual(self.entry()["badge_reader"], {
            "mqtt_topic": "tele/reader-aaaa/SENSOR", "format": "generic", "uid_path": "card.uid",
        })

    def test_config_version_follows_reader_fields(self):
        version = self.bridge.config_version
        self.device.badge_reader_topic = "tele/reader-new/SENSOR"
        self.assertEqual(self.bridge.config_version, version + 1)
        self.device.write({"badge_reader_format": "generic", "badge_reader_uid_path": "uid"})
        self.assertEqual(self.bridge.config_version, version + 2)
        self.device.badge_reader_uid_path = "card.uid"
        self.assertEqual(self.bridge.config_version, version + 3)
        self.Badge.create({"uid": "FFFF"})  # badges are not config
        self.scan("FFFF", 5)
        self.assertEqual(self.bridge.config_version, version + 3)

    def test_reader_settings_are_checked(self):
        for vals in (
            {"badge_reader_topic": "tele/+/SENSOR"},
            {"badge_reader_topic": " tele/x/SENSOR"},
            {"badge_reader_format": "generic", "badge_reader_uid_path": False},
            {"badge_reader_format": "generic", "badge_reader_uid_path": "card..uid"},
            {"badge_reader_format": "generic", "badge_reader_uid_path": "card uid"},
        ):
            with self.subTest(vals=vals), self.assertRaises(ValidationError), \
                    self.env.cr.savepoint():
                self.device.write(vals)

    def test_a_reader_belongs_to_one_machine(self):
        second = self.Device.create({
            "bridge_id": self.bridge.id, "device_id": "tasmota-cccc", "machine_name": "Laser",
            "mqtt_topic": "tele/laser/SENSOR", "parser_type": "tasmota",
        })
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            second.badge_reader_topic = "tele/reader-aaaa/SENSOR"
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            second.badge_reader_topic = self.device.mqtt_topic
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            second.mqtt_topic = "tele/reader-aaaa/SENSOR"
        # the same reader topic on another bridge's device is that bridge's business
        self.other_device.badge_reader_topic = "tele/reader-aaaa/SENSOR"
        # a Tasmota that meters the machine and reads its badges: one topic, one machine
        second.badge_reader_topic = "tele/laser/SENSOR"

    def test_badge_scan_is_a_registered_event_type(self):
        self.assertIn("badge_scan", self.Event._event_type_keys())
        status, detail = self.ingest(dict(badge_scan(self.device.device_id, "01", 0),
                                          event_type="badge_swipe"))
        self.assertEqual(status, "invalid_event")
        self.assertIn("badge_scan", detail)

    def test_created_then_duplicate(self):
        event = badge_scan(self.device.device_id, "04a23b1c", 10)
        self.assertEqual(self.ingest(event), ("created", None))
        self.assertEqual(self.ingest(event), ("duplicate", None))
        scan = self.Scan.search([("event_id.event_uid", "=", event["event_uid"])])
        self.assertEqual(len(scan), 1)
        self.assertEqual(scan.badge_id, self.badge_alice)
        self.assertEqual(scan.reader, "PN532")
        self.assertEqual(scan.device_id, self.device)
        self.assertEqual(self.Scan.search_count([("badge_id", "=", self.badge_alice.id)]), 1)

    def test_invalid_payloads(self):
        good = badge_scan(self.device.device_id, "04A23B1C", 10)
        for payload in (
            {"scanned_at": ts(10)},
            {"badge_uid": "", "scanned_at": ts(10)},
            {"badge_uid": "   ", "scanned_at": ts(10)},
            {"badge_uid": 1234, "scanned_at": ts(10)},
            {"badge_uid": "X" * 129, "scanned_at": ts(10)},
            {"badge_uid": "04A2"},
            {"badge_uid": "04A2", "scanned_at": "2026-03-02 09:00:00"},
            {"badge_uid": "04A2", "scanned_at": ts(10), "reader": 532},
        ):
            with self.subTest(payload=payload):
                status, detail = self.ingest(dict(good, payload=payload))
                self.assertEqual(status, "invalid_event")
                self.assertTrue(detail)
        self.assertFalse(self.Event.search([("event_uid", "=", good["event_uid"])]))
        self.assertEqual(self.ingest(good), ("created", None))

    def test_reader_may_be_null_or_absent(self):
        for reader in (None, "RDM6300"):
            event = badge_scan(self.device.device_id, "0A1B2C3D4E", 20, reader=reader)
            self.assertEqual(self.ingest(event), ("created", None))
        event = badge_scan(self.device.device_id, "0A1B2C3D4E", 30)
        del event["payload"]["reader"]
        self.assertEqual(self.ingest(event), ("created", None))

    def test_unknown_badge_is_kept(self):
        self.scan(" 5a:6b:7c:8d ", 40)
        badge = self.Badge.search([("uid", "=", "5A6B7C8D")])
        self.assertTrue(badge)
        self.assertFalse(badge.partner_id)
        self.assertEqual(badge.last_device_id, self.device)
        self.assertEqual(badge.scan_ids.state, "unknown")
        action = self.env.ref("open_workshop_mqtt_badge.action_badge_unknown")
        self.assertIn(badge, self.Badge.search(safe_eval(action.domain)))

    def test_normalise_uid(self):
        self.assertEqual(normalise_uid(" 04a23b1c\n"), "04A23B1C")
        self.assertEqual(normalise_uid("04:a2:3b:1c"), "04A23B1C")
        self.assertEqual(normalise_uid("04 A2 3B 1C"), "04A23B1C")
        self.assertEqual(normalise_uid("member-0042"), "MEMBER-0042")
        self.assertIsNone(normalise_uid(""))
        self.assertIsNone(normalise_uid(None))
        self.assertIsNone(normalise_uid(42))
        badge = self.Badge.create({"uid": "de:ad:be:ef"})
        self.assertEqual(badge.uid, "DEADBEEF")

    def test_uid_unique(self):
        with self.assertRaises(psycopg2.IntegrityError), self.env.cr.savepoint(), \
                mute_logger("odoo.sql_db"):
            self.Badge.create({"uid": "04a23b1c"})

    def test_first_and_last_scan(self):
        self.scan("04A23B1C", 100)
        self.scan("04A23B1C", 50)  # late delivery of an earlier scan
        self.badge_alice.invalidate_recordset()
        self.assertEqual(ts(self.badge_alice.first_scan_at), ts(50))
        self.assertEqual(ts(self.badge_alice.last_scan_at), ts(100))
        self.assertEqual(self.badge_alice.scan_count, 2)
