from odoo.tests import tagged

from .common import MaintenanceCase, session_events


@tagged("post_install", "-at_install", "open_workshop_mqtt_maintenance")
class TestWorkingHourCounter(MaintenanceCase):

    def test_counter_sums_working_hours_of_finished_sessions(self):
        self.work(1.5, standby_h=0.5)
        self.work(2.0)
        self.assertAlmostEqual(self.equipment.ows_working_hours, 3.5)
        self.assertEqual(self.equipment.ows_session_count, 2)
        start, _stop = session_events(self.device.device_id, 99999, 3600)
        self.ingest(start)  # a running session does not count yet
        self.equipment.invalidate_recordset()
        self.assertAlmostEqual(self.equipment.ows_working_hours, 3.5)
        self.assertEqual(self.equipment.ows_session_count, 3)

    def test_hours_before_the_bridge(self):
        self.equipment.ows_hours_offset = 100.0
        self.assertAlmostEqual(self.equipment.ows_working_hours, 100.0)
        self.work(1.0)
        self.assertAlmostEqual(self.equipment.ows_working_hours, 101.0)

    def test_a_request_per_crossing(self):
        self.work(6.0)
        self.assertFalse(self.requests())
        self.work(4.5)  # 10.5 h: the 10 h service is due
        request = self.requests()
        self.assertEqual(len(request), 1)
        self.assertEqual(request.maintenance_type, "preventive")
        self.assertEqual(request.maintenance_team_id, self.team)
        self.assertEqual(request.ows_service_index, 1)
        self.assertAlmostEqual(request.ows_working_hours, 10.5)
        self.assertIn("10 working hours", request.name)
        self.work(5.0)  # 15.5 h: nothing new
        self.assertEqual(len(self.requests()), 1)
        self.assertAlmostEqual(self.equipment.ows_next_service_h, 20.0)
        self.work(5.0)  # 20.5 h: the next one
        self.assertEqual(self.requests().mapped("ows_service_index"), [1, 2])

    def test_one_request_when_one_session_passes_two_thresholds(self):
        self.work(25.0)
        self.assertEqual(self.requests().mapped("ows_service_index"), [2])
        self.assertAlmostEqual(self.equipment.ows_next_service_h, 30.0)

    def test_a_redelivered_stop_opens_nothing_more(self):
        start, stop = session_events(self.device.device_id, 0, 11 * 3600)
        self.ingest(start)
        self.assertEqual(self.ingest(stop), ("created", None))
        self.assertEqual(self.ingest(stop), ("duplicate", None))
        self.assertEqual(len(self.requests()), 1)

    def test_stop_before_start_counts(self):
        start, stop = session_events(self.device.device_id, 0, 11 * 3600)
        self.ingest(stop)
        self.ingest(start)
        self.assertAlmostEqual(self.equipment.ows_working_hours, 11.0)
        self.assertEqual(len(self.requests()), 1)

    def test_configuration_moves_the_baseline_without_requests(self):
        self.work(35.0)
        self.assertEqual(len(self.requests()), 1)
        self.equipment.ows_service_interval_h = 5.0  # 35 h: 7 intervals passed, none new
        self.assertEqual(len(self.requests()), 1)
        self.assertAlmostEqual(self.equipment.ows_next_service_h, 40.0)
        other = self.env["maintenance.equipment"].create({
            "name": "Lathe", "ows_service_interval_h": 1.0})
        self.device.equipment_id = other  # 35 h arrive at the lathe: no request either
        self.assertAlmostEqual(other.ows_working_hours, 35.0)
        self.assertAlmostEqual(self.equipment.ows_working_hours, 0.0)
        self.assertFalse(self.Request.search([("equipment_id", "=", other.id)]))
        self.work(1.0)
        self.assertEqual(self.Request.search([("equipment_id", "=", other.id)])
                         .mapped("ows_service_index"), [36])

    def test_two_machines_feed_one_equipment(self):
        self.other_device.equipment_id = self.equipment
        self.work(6.0)
        self.work(6.0, device=self.other_device)
        self.assertAlmostEqual(self.equipment.ows_working_hours, 12.0)
        self.assertEqual(len(self.requests()), 1)

    def test_no_plan_no_request(self):
        self.equipment.ows_service_interval_h = 0
        self.work(50.0)
        self.assertAlmostEqual(self.equipment.ows_working_hours, 50.0)
        self.assertFalse(self.requests())

    def test_sessions_button(self):
        session = self.work(1.0)
        action = self.equipment.action_view_ows_sessions()
        self.assertEqual(self.Session.search(action["domain"]), session)
