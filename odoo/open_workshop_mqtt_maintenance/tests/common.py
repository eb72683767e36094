import uuid
from datetime import datetime, timedelta

from odoo.addons.open_workshop_mqtt.tests.common import IotCase, run_start, run_stop

T0 = datetime(2026, 3, 2, 8, 0, 0)


def ts(seconds):
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def session_events(device_id, start, working_s, standby_s=0.0, session_id=None):
    """run_start and run_stop of a session ``start`` seconds after T0."""
    session_id = session_id or str(uuid.uuid4())
    stop = start + working_s + standby_s
    return (
        run_start(device_id, session_id, started_at=ts(start)),
        run_stop(device_id, session_id, started_at=ts(start), stopped_at=ts(stop),
                 duration_s=float(working_s + standby_s), working_s=float(working_s),
                 standby_s=float(standby_s)),
    )


class MaintenanceCase(IotCase):
    """The core's device is the CNC mill, linked to its equipment with a 10 h plan."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Request = cls.env["maintenance.request"]
        cls.team = cls.env["maintenance.team"].create({"name": "Workshop crew"})
        cls.equipment = cls.env["maintenance.equipment"].create({
            "name": "CNC mill", "maintenance_team_id": cls.team.id,
            "ows_service_interval_h": 10.0,
        })
        cls.device.write({"machine_name": "CNC mill", "equipment_id": cls.equipment.id})
        cls.clock = 0

    def work(self, hours, device=None, standby_h=0.0):
        """One finished session of ``hours`` working hours, one after the other."""
        device = device or self.device
        start = self.clock
        self.clock += int((hours + standby_h) * 3600) + 60
        for event in session_events(device.device_id, start, hours * 3600, standby_h * 3600):
            self.assertEqual(self.ingest(event, device.bridge_id), ("created", None))
        return self.Session.search([], order="id desc", limit=1)

    def requests(self):
        return self.Request.search([("equipment_id", "=", self.equipment.id),
                                    ("ows_service_index", ">", 0)], order="id")
