import uuid
from datetime import datetime

from odoo.tests import tagged

from .common import IotCase, make_event, run_start, run_stop


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestIngest(IotCase):

    def test_created_then_duplicate(self):
        event = make_event(self.device.device_id)
        self.assertEqual(self.ingest(event), ("created", None))
        self.assertEqual(self.ingest(event), ("duplicate", None))
        changed = dict(event, payload={"apower": 1.0})
        self.assertEqual(self.ingest(changed), ("duplicate", None))
        stored = self.Event.search([("event_uid", "=", event["event_uid"])])
        self.assertEqual(len(stored), 1)
        self.assertEqual(stored.payload, event["payload"])
        self.assertEqual(stored.device_id, self.device)
        self.assertEqual(stored.bridge_id, self.bridge)
        self.assertEqual(stored.ts_raw, event["ts"])

    def test_on_conflict_path(self):
        """The unique index, not a read-then-write check, decides about duplicates."""
        event = make_event(self.device.device_id)
        self.ingest(event)
        self.env.cr.execute(
            "INSERT INTO ows_iot_event (event_uid, event_type, ts, device_id)"
            " VALUES (%s, 'power_measurement', now(), %s)"
            " ON CONFLICT (event_uid) DO NOTHING RETURNING id",
            (event["event_uid"], self.device.id),
        )
        self.assertIsNone(self.env.cr.fetchone())
        self.env.cr.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'ows_iot_event'"
            " AND indexdef ILIKE '%%UNIQUE%%(event_uid)%%'"
        )
        self.assertTrue(self.env.cr.fetchall(), "event_uid must have a unique index")

    def test_invalid(self):
        event = make_event(self.device.device_id)
        for broken in (
            dict(event, schema_version="v2"),
            dict(event, event_uid=""),
            dict(event, ts="2026-01-31T10:30:15Z"),
            dict(event, ts="2026-02-30T10:30:15.000Z"),
            dict(event, event_type="nope"),
            dict(event, payload=[]),
            make_event(self.device.device_id, "run_stop", {"power_w": 1}),
            "not an object",
        ):
            status, detail = self.ingest(broken)
            self.assertEqual(status, "invalid_event", broken)
            self.assertTrue(detail)
        self.assertFalse(self.Event.search([("event_uid", "=", event["event_uid"])]))

    def test_bridge_isolation(self):
        event = make_event(self.other_device.device_id)
        self.assertEqual(self.ingest(event)[0], "unknown_device")
        self.assertEqual(self.ingest(event, self.other_bridge)[0], "created")
        self.assertEqual(self.ingest(make_event("ghost"))[0], "unknown_device")
        # an archived device is still this bridge's: the run_stop that closes the session of
        # a device removed from the config must land (reason device_removed)
        self.device.active = False
        self.assertEqual(self.ingest(make_event(self.device.device_id))[0], "created")
        self.assertNotIn(
            self.device.device_id,
            [d["device_id"] for d in self.bridge._config_payload()["devices"]],
        )

    def test_session_start_then_stop(self):
        sid = str(uuid.uuid4())
        self.assertEqual(self.ingest(run_start(self.device.device_id, sid))[0], "created")
        session = self.Session.search([("session_id", "=", sid)])
        self.assertEqual(session.state, "running")
        self.assertEqual(session.started_at, datetime(2026, 1, 31, 10, 30, 18, 500000))
        self.assertEqual(session.machine_name, "Shaper Origin")
        self.assertEqual(self.device.state, "running")
        self.assertEqual(self.device.running_since, session.started_at)
        # no live state from the bridge yet; the time is the browser's to format, not ours
        self.assertEqual(self.device.status_text, "Running (no live state)")

        self.assertEqual(self.ingest(run_stop(self.device.device_id, sid))[0], "created")
        session.invalidate_recordset()
        self.device.invalidate_recordset()
        self.assertEqual(session.state, "done")
        self.assertEqual(session.stopped_at, datetime(2026, 1, 31, 10, 33, 25, 800000))
        self.assertAlmostEqual(session.duration_s, 187.3)
        self.assertAlmostEqual(session.working_s, 150.0)
        self.assertAlmostEqual(session.standby_s, 37.3)
        self.assertAlmostEqual(session.energy_wh, 6.25)
        self.assertTrue(session.energy_known)
        self.assertEqual(session.energy_source, "counter")
        self.assertEqual(session.stop_reason, "normal")
        self.assertAlmostEqual(session.duration_h, 187.3 / 3600)
        self.assertAlmostEqual(session.energy_kwh, 0.00625)
        self.assertEqual(session.start_event_id.event_type, "run_start")
        self.assertEqual(session.stop_event_id.event_type, "run_stop")
        self.assertEqual(self.device.state, "idle")
        self.assertEqual(self.Session.search_count([("session_id", "=", sid)]), 1)

    def test_stop_before_start(self):
        sid = str(uuid.uuid4())
        self.assertEqual(self.ingest(run_stop(self.device.device_id, sid))[0], "created")
        session = self.Session.search([("session_id", "=", sid)])
        self.assertEqual(session.state, "done")
        self.assertEqual(session.started_at, datetime(2026, 1, 31, 10, 30, 18, 500000))
        self.assertAlmostEqual(session.duration_s, 187.3)
        # the late start does not reopen it
        self.assertEqual(self.ingest(run_start(self.device.device_id, sid))[0], "created")
        session.invalidate_recordset()
        self.assertEqual(session.state, "done")
        self.assertAlmostEqual(session.duration_s, 187.3)
        self.assertEqual(self.Session.search_count([("session_id", "=", sid)]), 1)
        self.assertEqual(self.device.state, "idle")

    def test_minimal_stop_then_start_fills_duration(self):
        sid = str(uuid.uuid4())
        stop = make_event(self.device.device_id, "run_stop",
                          {"session_id": sid, "reason": "timeout"},
                          ts="2026-01-31T11:00:00.000Z")
        self.ingest(stop)
        session = self.Session.search([("session_id", "=", sid)])
        self.assertFalse(session.started_at)
        self.assertEqual(session.duration_s, 0)
        self.assertFalse(session.energy_known)
        self.assertEqual(session.stop_reason, "timeout")
        self.ingest(run_start(self.device.device_id, sid, started_at="2026-01-31T10:00:00.000Z"))
        session.invalidate_recordset()
        self.assertEqual(session.started_at, datetime(2026, 1, 31, 10, 0, 0))
        self.assertAlmostEqual(session.duration_s, 3600)

    def test_stop_without_duration_is_computed(self):
        sid = str(uuid.uuid4())
        self.ingest(run_start(self.device.device_id, sid, started_at="2026-01-31T10:00:00.000Z"))
        stop = make_event(self.device.device_id, "run_stop",
                          {"session_id": sid, "reason": "offline", "energy_wh": None,
                           "working_s": 1000},
                          ts="2026-01-31T10:30:00.000Z")
        self.ingest(stop)
        session = self.Session.search([("session_id", "=", sid)])
        self.assertAlmostEqual(session.duration_s, 1800)
        self.assertAlmostEqual(session.working_s, 1000)
        self.assertAlmostEqual(session.standby_s, 800)
        self.assertFalse(session.energy_known)
        self.assertEqual(session.stop_reason, "offline")

    def test_aggregation_per_machine_and_month(self):
        lathe = self.Device.create({"bridge_id": self.bridge.id, "device_id": "lathe-1",
                                    "machine_name": "Lathe", "mqtt_topic": "lathe/1"})

        def session(device, start, stop, duration_s, energy_wh):
            sid = str(uuid.uuid4())
            self.ingest(run_start(device.device_id, sid, started_at=start))
            self.ingest(run_stop(device.device_id, sid, started_at=start, stopped_at=stop,
                                 duration_s=duration_s, working_s=duration_s, standby_s=0,
                                 energy_wh=energy_wh))

        session(self.device, "2026-01-05T10:00:00.000Z", "2026-01-05T11:00:00.000Z", 3600, 500)
        session(self.device, "2026-01-20T10:00:00.000Z", "2026-01-20T12:00:00.000Z", 7200, 1500)
        session(self.device, "2026-02-02T10:00:00.000Z", "2026-02-02T10:30:00.000Z", 1800, 250)
        session(lathe, "2026-01-07T08:00:00.000Z", "2026-01-07T11:00:00.000Z", 10800, 3000)
        groups = self.Session._read_group(
            [("device_id", "in", (self.device | lathe).ids)],
            ["machine_name", "started_at:month"],
            ["duration_h:sum", "energy_kwh:sum", "__count"],
        )
        result = {(name, month.strftime("%Y-%m")): (round(h, 3), round(kwh, 3), n)
                  for name, month, h, kwh, n in groups}
        self.assertEqual(result, {
            ("Shaper Origin", "2026-01"): (3.0, 2.0, 2),
            ("Shaper Origin", "2026-02"): (0.5, 0.25, 1),
            ("Lathe", "2026-01"): (3.0, 3.0, 1),
        })
        self.assertAlmostEqual(self.device.total_hours, 3.5)
        self.assertAlmostEqual(self.device.total_energy_kwh, 2.25)
        self.assertEqual(self.device.session_count, 3)

    def test_last_contact(self):
        self.assertFalse(self.device.last_contact)
        self.ingest(make_event(self.device.device_id))
        self.device.invalidate_recordset()
        self.assertTrue(self.device.last_contact)
        self.bridge._touch_last_contact()
        self.assertTrue(self.bridge.last_contact)
