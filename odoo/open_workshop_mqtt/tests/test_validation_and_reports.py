from odoo.exceptions import ValidationError
from odoo.tests import Form, tagged

from .common import IotCase, run_stop


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestThresholdValidation(IotCase):
    """Python says what is wrong before PostgreSQL refuses it (which Odoo logs as
    ``ERROR odoo.sql_db: bad query`` and answers with a generic message)."""

    def assert_refused(self, message, make):
        with self.assertNoLogs("odoo.sql_db", level="ERROR"):
            with self.assertRaises(ValidationError) as caught:
                with self.cr.savepoint():
                    make()
        self.assertIn(message, str(caught.exception))

    def test_create(self):
        def create(**vals):
            return lambda: self.Device.create(dict({
                "bridge_id": self.bridge.id, "device_id": "dev-new", "machine_name": "Saw",
                "mqtt_topic": "saw/status/pm1:0",
            }, **vals))

        self.assert_refused(
            "Saw: The standby threshold (150 W) must be below the working threshold (100 W).",
            create(standby_threshold_w=150.0, working_threshold_w=100.0),
        )
        self.assert_refused("Saw: The standby threshold (100 W) must be below",
                            create(standby_threshold_w=100))  # default working: 100
        self.assert_refused("must not be negative", create(standby_threshold_w=-1))
        self.assert_refused("Debounce times must not be negative", create(stop_debounce_s=-1))
        self.assert_refused("greater than 0 seconds", create(message_timeout_s=0))

    def test_write(self):
        self.assert_refused(
            "Shaper Origin: The standby threshold (20 W) must be below the working threshold "
            "(10 W).", lambda: self.device.write({"working_threshold_w": 10}),
        )
        self.assert_refused("must be below",
                            lambda: self.device.write({"standby_threshold_w": 500}))
        self.device.write({"standby_threshold_w": 50, "working_threshold_w": 60})  # both at once
        self.assert_refused("(20.5 W) must be below the working threshold (20 W)", lambda: (
            self.device.write({"standby_threshold_w": 20.5, "working_threshold_w": 20})))

    def test_form(self):
        """What an admin does: the form's save shows the clear message."""
        form = Form(self.Device)
        form.bridge_id = self.bridge
        form.device_id = "dev-form"
        form.machine_name = "Lathe"
        form.mqtt_topic = "lathe/status/pm1:0"
        form.standby_threshold_w = 200
        with self.assertNoLogs("odoo.sql_db", level="ERROR"):
            with self.assertRaises(ValidationError) as caught:
                form.save()
        self.assertIn("Lathe: The standby threshold (200 W) must be below", str(caught.exception))


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestReportsByMachine(IotCase):

    def test_a_renamed_machine_keeps_one_history(self):
        dev = self.device.device_id
        self.ingest(run_stop(dev, "before-rename"))
        self.device.machine_name = "Shaper Origin (left bench)"
        self.ingest(run_stop(dev, "after-rename"))
        sessions = self.Session.search([("device_id", "=", self.device.id)])
        self.assertEqual(set(sessions.mapped("machine_name")),
                         {"Shaper Origin", "Shaper Origin (left bench)"})
        # the reports group by the machine record, as the pivot, graph and "Machine" do
        groups = self.Session._read_group([("device_id", "=", self.device.id)], ["device_id"],
                                          ["__count", "duration_s:sum"])
        self.assertEqual(len(groups), 1)
        self.assertEqual(groups[0][1], 2)
        views = self.Session.get_views([(False, "graph"), (False, "search")])["views"]
        self.assertIn('<field name="device_id"/>', views["graph"]["arch"])
        self.assertIn("""name="group_machine" string="Machine" context="{'group_by': 'device_id'}\"""",
                      views["search"]["arch"])
