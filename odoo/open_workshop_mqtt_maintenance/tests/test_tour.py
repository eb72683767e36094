import json

from odoo.tests import HttpCase, tagged

from .common import MaintenanceCase, session_events


@tagged("post_install", "-at_install", "open_workshop_mqtt_maintenance")
class TestMaintenanceTour(MaintenanceCase, HttpCase):
    """In a real browser: the manager sets a plan, the bridge reports a long session over
    HTTP, the preventive request is there."""

    def test_maintenance_trigger_tour(self):
        self.equipment.write({"name": "Tour Mill", "ows_service_interval_h": 0})
        self.env.ref("base.user_admin").write({"groups_id": [
            (4, self.env.ref("maintenance.group_equipment_manager").id)]})
        self.start_tour("/odoo/action-maintenance.hr_equipment_action",
                        "ows_maintenance_set_plan", login="admin")
        self.assertAlmostEqual(self.equipment.ows_service_interval_h, 2.0)
        for event in session_events(self.device.device_id, 0, 2.5 * 3600):
            response = self.url_open(
                "/ows/iot/event", data=json.dumps(event),
                headers={"Authorization": f"Bearer {self.token}",
                         "Content-Type": "application/json"})
            self.assertEqual(response.status_code, 201, response.text)
        self.assertEqual(len(self.requests()), 1)
        self.start_tour("/odoo/action-maintenance.hr_equipment_request_action",
                        "ows_maintenance_request_opened", login="admin")
