"""What the addon must refuse (docs/odoo-api.md, "What an event may contain", 409 and 413).

One invalid event is that event's 400, alone and inside a batch, never a 500 for the batch; ids
that belong to another bridge or device are a 409 conflict, not a silent duplicate; a body over the
limit is a JSON 413.
"""

import json
import uuid

from odoo.tests import HttpCase, tagged

from ..controllers.main import MAX_BODY_BYTES
from ..models.iot_event import MAX_PAYLOAD_BYTES
from .common import IotCase, make_event, run_start, run_stop

HUGE = "__HUGE__"


def _nested(depth):
    value = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def _with(key, value, event_type="power_measurement"):
    def mutate(event):
        if event_type != event["event_type"]:
            event["event_type"] = event_type
            event["payload"] = run_stop("x", str(uuid.uuid4()))["payload"]
        event["payload"][key] = value
    return mutate


BAD = {
    "nul-in-payload-string": (_with("note", "a\x00b"), None),
    "nul-in-payload-key": (_with("a\x00b", 1), None),
    "nul-in-session_id": (_with("session_id", "s\x00", "run_stop"), None),
    "integer-too-large-for-a-float": (_with("big", HUGE), "1" + "0" * 400),
    "float-overflow": (_with("big", HUGE), "1e400"),
    "out-of-range": (_with("big", HUGE), "-1e16"),
    "nan": (_with("big", HUGE), "NaN"),
    "energy-infinite": (_with("energy_wh", HUGE, "run_stop"), "1e999"),
    "duration-string": (_with("duration_s", "187.3", "run_stop"), None),
    "energy-string": (_with("energy_wh", "6.25", "run_stop"), None),
    "working-boolean": (_with("working_s", True, "run_stop"), None),
    "oversize-payload": (_with("blob", "x" * MAX_PAYLOAD_BYTES), None),
    "too-deep": (_with("deep", _nested(40)), None),
}


def _raw(event, huge):
    body = json.dumps(event)
    if huge is not None:
        body = body.replace(f'"{HUGE}"', huge)
    return body


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestRefusedContent(IotCase):
    """The model's own validation, before anything reaches PostgreSQL."""

    def test_each_bad_value_is_invalid_and_not_stored(self):
        for name, (mutate, huge) in BAD.items():
            with self.subTest(name):
                event = make_event(self.device.device_id)
                mutate(event)
                status, detail = self.ingest(json.loads(_raw(event, huge)))
                self.assertEqual(status, "invalid_event")
                self.assertTrue(detail)
                self.assertFalse(self.Event.search([("event_uid", "=", event["event_uid"])]))

    def test_nul_in_event_uid_and_device_id(self):
        for key in ("event_uid", "device_id"):
            event = make_event(self.device.device_id)
            event[key] = event[key] + "\x00"
            self.assertEqual(self.ingest(event)[0], "invalid_event", key)

    def test_payload_at_the_limit_is_stored(self):
        event = make_event(self.device.device_id, payload={"blob": ""})
        event["payload"]["blob"] = "x" * (MAX_PAYLOAD_BYTES - len('{"blob":""}'))
        self.assertEqual(self.ingest(event), ("created", None))


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestConflicts(IotCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.second_device = cls.Device.create({
            "bridge_id": cls.bridge.id,
            "device_id": "shellypmminig3-cccc",
            "machine_name": "Laser",
            "mqtt_topic": "laser/status/pm1:0",
            "parser_type": "shelly_pm_mini_g3",
        })

    def test_uid_stored_by_another_bridge(self):
        theirs = make_event(self.other_device.device_id, "run_start")
        self.assertEqual(self.ingest(theirs, self.other_bridge), ("created", None))
        ours = dict(theirs, device_id=self.device.device_id)
        status, detail = self.ingest(ours)
        self.assertEqual(status, "conflict")
        self.assertIn("another device or bridge", detail)
        self.assertEqual(self.ingest(theirs, self.other_bridge), ("duplicate", None))
        stored = self.Event.search([("event_uid", "=", theirs["event_uid"])])
        self.assertEqual(stored.device_id, self.other_device)

    def test_uid_stored_for_another_device_of_the_same_bridge(self):
        first = make_event(self.device.device_id)
        self.assertEqual(self.ingest(first)[0], "created")
        again = dict(first, device_id=self.second_device.device_id)
        self.assertEqual(self.ingest(again)[0], "conflict")
        self.assertEqual(self.ingest(first)[0], "duplicate")  # same device: a duplicate

    def test_session_of_another_device(self):
        sid = str(uuid.uuid4())
        self.assertEqual(self.ingest(run_start(self.device.device_id, sid))[0], "created")
        stop = run_stop(self.second_device.device_id, sid)
        status, detail = self.ingest(stop)
        self.assertEqual((status, detail), ("conflict", "session_id belongs to another device or bridge"))
        self.assertFalse(self.Event.search([("event_uid", "=", stop["event_uid"])]))
        session = self.Session.search([("session_id", "=", sid)])
        self.assertEqual((session.device_id, session.state), (self.device, "running"))

    def test_session_of_another_bridge(self):
        sid = str(uuid.uuid4())
        theirs = run_start(self.other_device.device_id, sid)
        self.assertEqual(self.ingest(theirs, self.other_bridge)[0], "created")
        self.assertEqual(self.ingest(run_stop(self.device.device_id, sid))[0], "conflict")
        self.assertEqual(self.ingest(run_start(self.device.device_id, sid))[0], "conflict")
        session = self.Session.search([("session_id", "=", sid)])
        self.assertEqual(session.device_id, self.other_device)


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestRefusalsOverHttp(IotCase, HttpCase):

    def post(self, path, body, token=None):
        headers = {"Content-Type": "application/json",
                   "Authorization": f"Bearer {token or self.token}"}
        return self.opener.post(self.base_url() + path, data=body, headers=headers, timeout=60)

    def test_one_bad_event_in_a_batch_is_that_events_400(self):
        for name, (mutate, huge) in BAD.items():
            with self.subTest(name):
                before, bad, after = (make_event(self.device.device_id) for _ in range(3))
                mutate(bad)
                body = '{"events": [%s]}' % ",".join(_raw(e, huge) for e in (before, bad, after))
                response = self.post("/ows/iot/events", body.encode())
                self.assertEqual(response.status_code, 200, response.text[:300])
                results = response.json()["results"]
                self.assertEqual([r["status"] for r in results],
                                 ["created", "invalid_event", "created"])
                single = self.post("/ows/iot/event", _raw(bad, huge).encode())
                self.assertEqual(single.status_code, 400, single.text[:300])
                self.assertEqual(single.json()["error"], "invalid_event")

    def test_conflict_is_409_and_a_batch_item(self):
        theirs = make_event(self.other_device.device_id)
        self.assertEqual(self.post("/ows/iot/event", json.dumps(theirs).encode(),
                                   token=self.other_token).status_code, 201)
        ours = dict(theirs, device_id=self.device.device_id)
        response = self.post("/ows/iot/event", json.dumps(ours).encode())
        self.assertEqual(response.status_code, 409)
        self.assertEqual(response.json()["error"], "conflict")
        self.assertEqual(response.json()["event_uid"], ours["event_uid"])
        fine = make_event(self.device.device_id)
        body = json.dumps({"events": [ours, fine]}).encode()
        results = self.post("/ows/iot/events", body).json()["results"]
        self.assertEqual([r["status"] for r in results], ["conflict", "created"])

    def test_body_over_the_limit_is_a_json_413(self):
        event = make_event(self.device.device_id)
        body = b'{"events": [' + json.dumps(event).encode() + b'], "pad": "'
        body += b"x" * MAX_BODY_BYTES + b'"}'
        for path in ("/ows/iot/events", "/ows/iot/event"):
            response = self.post(path, body)
            self.assertEqual(response.status_code, 413, path)
            self.assertTrue(response.headers["Content-Type"].startswith("application/json"))
            self.assertEqual(response.json()["error"], "payload_too_large")
            self.assertEqual(response.json()["max_bytes"], MAX_BODY_BYTES)
        self.assertFalse(self.Event.search([("event_uid", "=", event["event_uid"])]))
