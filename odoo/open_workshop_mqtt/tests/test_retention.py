import uuid
from datetime import datetime, timedelta, timezone

from odoo.tests import tagged

from ..models.res_config_settings import RETENTION_PARAM
from .common import IotCase, make_event, run_start, run_stop


def ts_days_ago(days):
    when = datetime.now(timezone.utc) - timedelta(days=days)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestMeasurementRetention(IotCase):

    def setUp(self):
        super().setUp()
        self.env["ir.config_parameter"].sudo().set_param(RETENTION_PARAM, "30")

    def _store(self, event):
        self.assertEqual(self.ingest(event), ("created", None))
        return self.Event.search([("event_uid", "=", event["event_uid"])])

    def test_old_measurements_go_run_events_and_sessions_stay(self):
        old = self._store(make_event(self.device.device_id, ts=ts_days_ago(31)))
        recent = self._store(make_event(self.device.device_id, ts=ts_days_ago(29)))
        session_id = str(uuid.uuid4())
        started, stopped = ts_days_ago(40), ts_days_ago(39.9)
        start = self._store(run_start(self.device.device_id, session_id, started_at=started))
        stop = self._store(run_stop(self.device.device_id, session_id, started_at=started,
                                    stopped_at=stopped))
        deleted = self.Event._gc_power_measurements()
        self.assertEqual(deleted, 1)
        self.assertFalse(old.exists())
        self.assertTrue(recent.exists())
        self.assertTrue(start.exists() and stop.exists())
        session = self.Session.search([("session_id", "=", session_id)])
        self.assertEqual(session.state, "done")
        self.assertEqual(session.start_event_id, start)
        self.assertEqual(session.stop_event_id, stop)

    def test_zero_keeps_everything(self):
        self.env["ir.config_parameter"].sudo().set_param(RETENTION_PARAM, "0")
        old = self._store(make_event(self.device.device_id, ts=ts_days_ago(400)))
        self.assertEqual(self.Event._gc_power_measurements(), 0)
        self.assertTrue(old.exists())

    def test_broken_setting_means_default(self):
        self.env["ir.config_parameter"].sudo().set_param(RETENTION_PARAM, "a month")
        old = self._store(make_event(self.device.device_id, ts=ts_days_ago(31)))
        self.assertEqual(self.Event._gc_power_measurements(), 1)
        self.assertFalse(old.exists())

    def test_batches_report_what_remains(self):
        events = [self._store(make_event(self.device.device_id, ts=ts_days_ago(35)))
                  for _ in range(5)]
        cron = self.env.ref("open_workshop_mqtt.cron_gc_power_measurements")
        cron_env, progress = cron._add_progress()
        self.assertEqual(cron_env.env["ows.iot.event"]._gc_power_measurements(batch_size=2), 2)
        self.assertEqual((progress.done, progress.remaining), (2, 3))
        self.assertEqual(self.Event._gc_power_measurements(batch_size=2), 2)
        self.assertEqual(self.Event._gc_power_measurements(batch_size=2), 1)
        self.assertFalse(any(event.exists() for event in events))

    def test_cron_calls_it(self):
        old = self._store(make_event(self.device.device_id, ts=ts_days_ago(31)))
        cron = self.env.ref("open_workshop_mqtt.cron_gc_power_measurements")
        self.assertTrue(cron.active)
        cron.method_direct_trigger()
        self.assertFalse(old.exists())

    def test_setting_is_the_parameter(self):
        settings = self.env["res.config.settings"].create({"ows_measurement_retention_days": 7})
        settings.execute()
        self.assertEqual(self.env["ir.config_parameter"].sudo().get_param(RETENTION_PARAM), "7")
