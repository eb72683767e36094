import json
from datetime import datetime, timedelta, timezone

from odoo.exceptions import AccessError, UserError
from odoo.tests import HttpCase, tagged

from odoo.addons.open_workshop_mqtt.tests.common import IotCase, make_event

from .test_suggest import readings


def ago(seconds):
    when = datetime.now(timezone.utc) - timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class TuningCase(IotCase):

    def forward(self, watts_list, start_s=3600):
        """Forwarded power_measurement events, one per 5 s, ending ``start_s`` ago - n*5."""
        for i, watts in enumerate(watts_list):
            event = make_event(self.device.device_id, "power_measurement",
                               {"apower": watts, "voltage": 230.0, "current": None,
                                "total_energy_kwh": None},
                               ts=ago(start_s + 5 * (len(watts_list) - i)))
            self.assertEqual(self.ingest(event), ("created", None))


@tagged("post_install", "-at_install", "open_workshop_mqtt_tuning")
class TestTuning(TuningCase):

    def test_chart_data(self):
        self.forward(readings(0.5, 12.0, 800.0, n=60))
        self.ingest(make_event(self.device.device_id, "power_measurement",
                               {"apower": None}))  # no number: not a point
        self.ingest(make_event(self.device.device_id, "power_measurement",
                               {"apower": 5.0}, ts=ago(8 * 86400)))  # older than 7 days
        data = self.device.get_tuning_data()
        self.assertEqual(len(data["points"]), 180)
        self.assertEqual(data["points"], sorted(data["points"]))
        self.assertEqual((data["standby_threshold_w"], data["working_threshold_w"]), (20, 100))
        self.assertEqual(len(data["suggestion"]["modes"]), 3)
        self.assertTrue(data["can_apply"])

    def test_apply_suggestion(self):
        self.forward(readings(0.5, 12.0, 800.0, n=60))
        expected = self.device.get_tuning_data()["suggestion"]
        version = self.bridge.config_version
        self.device.action_apply_tuning_suggestion()
        self.assertEqual(self.device.standby_threshold_w, expected["standby_threshold_w"])
        self.assertEqual(self.device.working_threshold_w, expected["working_threshold_w"])
        self.assertEqual(self.bridge.config_version, version + 1)

    def test_nothing_to_apply(self):
        self.forward([300.0] * 60)
        with self.assertRaises(UserError):
            self.device.action_apply_tuning_suggestion()

    def test_replay_entry(self):
        self.forward(readings(0.5, 12.0, 800.0, n=60))
        suggestion = self.device.get_tuning_data()["suggestion"]
        entry = json.loads(self.device.tuning_replay_entry)
        self.assertEqual(entry["device_id"], self.device.device_id)
        self.assertEqual(entry["session_config"]["standby_threshold_w"],
                         suggestion["standby_threshold_w"])
        self.assertEqual(entry["session_config"]["working_threshold_w"],
                         suggestion["working_threshold_w"])

    def test_users_may_look_but_not_apply(self):
        self.forward(readings(0.5, 800.0, n=60))
        user = self.env["res.users"].create({
            "name": "Viewer", "login": "tuning-viewer",
            "groups_id": [(6, 0, [self.env.ref("open_workshop_mqtt.group_iot_user").id])],
        })
        device = self.device.with_user(user)
        self.assertFalse(device.get_tuning_data()["can_apply"])
        with self.assertRaises(AccessError):
            device.action_apply_tuning_suggestion()


@tagged("post_install", "-at_install", "open_workshop_mqtt_tuning")
class TestTuningTour(TuningCase, HttpCase):

    def test_tuning_tour(self):
        self.device.machine_name = "Tour Router"
        self.forward(readings(0.5, 12.0, 800.0, n=60))
        expected = self.device.get_tuning_data()["suggestion"]
        self.start_tour(f"/odoo/action-open_workshop_mqtt.action_iot_device_config/"
                        f"{self.device.id}", "ows_tuning_apply", login="admin")
        self.device.invalidate_recordset()
        self.assertEqual(self.device.standby_threshold_w, expected["standby_threshold_w"])
        self.assertEqual(self.device.working_threshold_w, expected["working_threshold_w"])
