import json
import threading
import uuid
from datetime import datetime, timedelta, timezone

from odoo import SUPERUSER_ID, api
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


# ---------------------------------------------------------------------- statuses
# A fixed "now" for everything that judges time (statuses, the health check, the board).
T0 = datetime(2026, 3, 2, 9, 0, 0)


def ts(moment):
    """A naive UTC datetime as the contract's ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def status_device(device_id, state="idle", at=T0, **overrides):
    """One ``devices[]`` entry of a status, as of ``at``."""
    running = state in ("working", "standby", "stopping")
    entry = {
        "device_id": device_id,
        "state": state,
        "online": True,
        "last_seen": ts(at - timedelta(seconds=2)),
        "power_w": {"working": 812.5, "standby": 12.0}.get(state, 0.4),
        "session_id": "sess-" + device_id if running else None,
        "session_started_at": ts(at - timedelta(minutes=25)) if running else None,
    }
    entry.update(overrides)
    return entry


def discovered(topic, at=T0, **overrides):
    """One ``discovered[]`` entry, as the bridge would build it from a Shelly Gen1
    announcement (shared/payloads/shelly_gen1/shelly1_announce.json)."""
    entry = {
        "topic": topic,
        "device_id": "shelly1",
        "model": "SHSW-1",
        "parser_type": "shelly_gen1",
        "source": "shelly_gen1_announce",
        "first_seen": ts(at - timedelta(hours=1)),
        "last_seen": ts(at - timedelta(seconds=5)),
        "details": {"mac": "8CAAB54B98DF", "ip": "192.168.8.93",
                    "fw_ver": "20220809-123240/v1.12-g99f7e0b", "new_fw": False},
    }
    entry.update(overrides)
    return entry


def make_status(devices=(), discovered_plugs=(), at=T0, **bridge):
    info = {
        "version": "0.9.0",
        "started_at": ts(at - timedelta(hours=2)),
        "uptime_s": 7200.0,
        "mqtt_connected": True,
        "queue_depth": 0,
        "oldest_queued_age_s": None,
        "problems": [],
        "warnings": [],
        "config_version": None,
    }
    info.update(bridge)
    return {
        "sent_at": ts(at),
        "bridge": info,
        "devices": list(devices),
        "discovered": list(discovered_plugs),
    }


class StatusCase(IotCase):
    """IotCase plus statuses ingested as of a given Odoo time (default T0)."""

    def status(self, status, bridge=None, now=T0):
        return self.env["ows.iot.status"].sudo()._ingest(bridge or self.bridge, status, now=now)

    def bus_messages(self, notification_type):
        """The payloads of ``notification_type`` this transaction would send on commit."""
        return [
            json.loads(value["message"])["payload"]
            for value in self.env.cr.precommit.data.get("bus.bus.values", [])
            if json.loads(value["message"])["type"] == notification_type
        ]


def race(test, registry, first, second):
    """Two transactions at the same time on real cursors, the way two requests overlap.

    ``first(env_a)`` runs and stays uncommitted; ``second(env_b)``, whose REPEATABLE READ
    snapshot was taken before, runs in a thread and must wait for A's lock (asserted) until A
    commits. B is committed when it succeeds and rolled back when it raises. Returns A's
    result and B's (or the exception B raised). Environments are built in the calling thread,
    which holds the registry lock while tests run.
    """
    outcome = {}
    cr_a, cr_b = registry.cursor(), registry.cursor()
    try:
        env_a = api.Environment(cr_a, SUPERUSER_ID, {})
        env_b = api.Environment(cr_b, SUPERUSER_ID, {})
        cr_b.execute("SELECT 1")  # B's snapshot is taken now
        result_a = first(env_a)

        def run_b():
            try:
                outcome["b"] = second(env_b)
                cr_b.commit()
            except Exception as exc:  # the caller asserts on it
                outcome["b"] = exc
                cr_b.rollback()

        thread = threading.Thread(target=run_b)
        thread.start()
        thread.join(1.0)
        test.assertTrue(thread.is_alive(), f"B should wait for A's lock: {outcome}")
        cr_a.commit()
        thread.join(30)
        test.assertFalse(thread.is_alive(), "B still blocked after A committed")
    finally:
        cr_a.close()
        cr_b.close()
    return result_a, outcome["b"]
