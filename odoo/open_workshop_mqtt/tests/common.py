import uuid
from datetime import datetime, timezone

from odoo.tests.common import TransactionCase


def now_ts():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def make_event(device_id, event_type="power_measurement", payload=None, event_uid=None, ts=None):
    if payload is None:
        if event_type in ("run_start", "run_stop"):
            payload = {"session_id": str(uuid.uuid4()), "power_w": 120.5}
        else:
            payload = {"apower": 120.5, "voltage": 234.7}
    return {
        "schema_version": "v1",
        "event_uid": event_uid or str(uuid.uuid4()),
        "ts": ts or now_ts(),
        "device_id": device_id,
        "event_type": event_type,
        "payload": payload,
    }


def run_start(device_id, session_id, started_at="2026-01-31T10:30:18.500Z", power_w=120.5):
    return make_event(
        device_id, "run_start",
        {"session_id": session_id, "power_w": power_w, "reason": "power_threshold",
         "started_at": started_at},
        ts=started_at,
    )


def run_stop(device_id, session_id, started_at="2026-01-31T10:30:18.500Z",
             stopped_at="2026-01-31T10:33:25.800Z", **overrides):
    payload = {
        "session_id": session_id, "power_w": 8.2, "reason": "normal",
        "started_at": started_at, "stopped_at": stopped_at, "duration_s": 187.3,
        "working_s": 150.0, "standby_s": 37.3, "energy_wh": 6.25, "energy_source": "counter",
        "max_power_w": 130.0, "avg_power_w": 110.2,
    }
    payload.update(overrides)
    return make_event(device_id, "run_stop", payload, ts=stopped_at)


class IotCase(TransactionCase):
    """Two bridges (ours and theirs) with a device each, and ours' clear token."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Bridge = cls.env["ows.iot.bridge"]
        cls.Device = cls.env["ows.iot.device"]
        cls.Event = cls.env["ows.iot.event"]
        cls.Session = cls.env["ows.machine.session"]
        cls.bridge = cls.Bridge.create({"name": "Bridge A", "mqtt_broker": "mqtt://a:1883"})
        cls.other_bridge = cls.Bridge.create({"name": "Bridge B", "mqtt_broker": "mqtt://b:1883"})
        cls.device = cls.Device.create({
            "bridge_id": cls.bridge.id,
            "device_id": "shellypmminig3-aaaa",
            "machine_name": "Shaper Origin",
            "mqtt_topic": "shaperorigin/status/pm1:0",
            "parser_type": "shelly_pm_mini_g3",
        })
        cls.other_device = cls.Device.create({
            "bridge_id": cls.other_bridge.id,
            "device_id": "shellyplus-bbbb",
            "machine_name": "Lathe",
            "mqtt_topic": "lathe/status/switch:0",
            "parser_type": "shelly_gen2",
        })
        cls.token = cls.bridge._generate_token()
        cls.other_token = cls.other_bridge._generate_token()

    def ingest(self, event, bridge=None):
        return self.Event.sudo()._ingest(bridge or self.bridge, event)
