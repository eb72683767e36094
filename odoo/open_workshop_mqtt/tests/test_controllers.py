import json
import uuid

from odoo.tests import HttpCase, tagged

from .common import IotCase, make_event, run_start, run_stop


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestIotApi(IotCase, HttpCase):
    """Every row of the answer table of odoo-api.md, over HTTP."""

    def request(self, method, path, body=None, token="__default__"):
        headers = {"Content-Type": "application/json"}
        token = self.token if token == "__default__" else token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if body is not None and not isinstance(body, bytes):
            body = json.dumps(body).encode()
        url = self.base_url() + path
        if method == "GET":
            return self.opener.get(url, headers=headers, timeout=30)
        return self.opener.post(url, data=body or b"", headers=headers, timeout=30)

    def post(self, event, **kw):
        return self.request("POST", "/ows/iot/event", event, **kw)

    def post_batch(self, events, **kw):
        body = {"events": events} if isinstance(events, list) else events
        return self.request("POST", "/ows/iot/events", body, **kw)

    def assertJson(self, response, status):
        self.assertEqual(response.status_code, status, response.text[:500])
        self.assertTrue(response.headers["Content-Type"].startswith("application/json"))
        return response.json()

    # ------------------------------------------------------------------ auth
    def test_401(self):
        event = make_event(self.device.device_id)
        for token in (None, "wrong", ""):
            for response in (
                self.request("GET", "/ows/iot/config", token=token),
                self.post(event, token=token),
                self.post_batch([event], token=token),
                self.post(b"{broken", token=token),
            ):
                self.assertEqual(self.assertJson(response, 401), {"error": "unauthorized"})
        response = self.opener.get(self.base_url() + "/ows/iot/config",
                                   headers={"Authorization": f"Basic {self.token}"})
        self.assertEqual(response.status_code, 401)
        self.assertFalse(self.Event.search([("event_uid", "=", event["event_uid"])]))

    def test_token_rotation(self):
        self.assertJson(self.request("GET", "/ows/iot/config"), 200)
        new_token = self.bridge._generate_token()
        self.assertJson(self.request("GET", "/ows/iot/config"), 401)
        self.assertJson(self.request("GET", "/ows/iot/config", token=new_token), 200)
        self.bridge.action_revoke_token()
        self.assertJson(self.request("GET", "/ows/iot/config", token=new_token), 401)

    def test_last_contact(self):
        self.assertFalse(self.bridge.last_contact)
        self.assertJson(self.request("GET", "/ows/iot/config"), 200)
        self.bridge.invalidate_recordset()
        self.assertTrue(self.bridge.last_contact)

    # ------------------------------------------------------------------ config
    def test_config(self):
        body = self.assertJson(self.request("GET", "/ows/iot/config"), 200)
        self.assertEqual(body, self.bridge._config_payload())
        self.assertEqual([d["device_id"] for d in body["devices"]], [self.device.device_id])
        other = self.assertJson(self.request("GET", "/ows/iot/config", token=self.other_token), 200)
        self.assertEqual([d["device_id"] for d in other["devices"]], [self.other_device.device_id])
        self.device.write({"working_threshold_w": 150})
        changed = self.assertJson(self.request("GET", "/ows/iot/config"), 200)
        self.assertNotEqual(changed["config_version"], body["config_version"])
        self.assertEqual(changed["devices"][0]["session_config"]["working_threshold_w"], 150)

    # ------------------------------------------------------------------ single event
    def test_created_and_duplicate(self):
        event = make_event(self.device.device_id)
        body = self.assertJson(self.post(event), 201)
        self.assertEqual(body, {"status": "created", "event_uid": event["event_uid"]})
        body = self.assertJson(self.post(event), 200)
        self.assertEqual(body, {"status": "duplicate", "event_uid": event["event_uid"]})
        self.assertEqual(self.Event.search_count([("event_uid", "=", event["event_uid"])]), 1)

    def test_invalid_event(self):
        event = make_event(self.device.device_id)
        cases = [
            b"{not json", b"", b"\xff\xfe", b"[1]", b"null",
            dict(event, schema_version="v0"),
            {k: v for k, v in event.items() if k != "event_uid"},
            dict(event, event_uid=7),
            dict(event, ts="2026-01-31 10:30:15"),
            dict(event, ts="2026-01-31T10:30:15.123+01:00"),
            dict(event, device_id=None),
            dict(event, event_type="run_pause"),
            dict(event, payload="x"),
            make_event(self.device.device_id, "run_start", {"power_w": 1}),
            make_event(self.device.device_id, "run_stop", {"session_id": 5}),
        ]
        for case in cases:
            body = self.assertJson(self.post(case), 400)
            self.assertEqual(body["error"], "invalid_event", case)
            self.assertTrue(body["detail"])
        self.assertJson(self.post(event), 201)

    def test_unknown_device(self):
        for device_id in ("ghost-device", self.other_device.device_id):
            event = make_event(device_id)
            body = self.assertJson(self.post(event), 404)
            self.assertEqual(body["error"], "unknown_device")
            self.assertEqual(body["device_id"], device_id)
        # the other bridge may write its own device
        self.assertJson(self.post(make_event(self.other_device.device_id),
                                  token=self.other_token), 201)

    def test_stop_before_start(self):
        sid = str(uuid.uuid4())
        self.assertJson(self.post(run_stop(self.device.device_id, sid)), 201)
        self.assertJson(self.post(run_start(self.device.device_id, sid)), 201)
        session = self.Session.search([("session_id", "=", sid)])
        self.assertEqual(session.state, "done")
        self.assertAlmostEqual(session.duration_s, 187.3)

    def test_session_over_http(self):
        sid = str(uuid.uuid4())
        self.assertJson(self.post(run_start(self.device.device_id, sid)), 201)
        self.assertEqual(self.Session.search([("session_id", "=", sid)]).state, "running")
        self.assertJson(self.post(run_stop(self.device.device_id, sid)), 201)
        session = self.Session.search([("session_id", "=", sid)])
        session.invalidate_recordset()
        self.assertEqual(session.state, "done")
        self.assertAlmostEqual(session.energy_wh, 6.25)

    # ------------------------------------------------------------------ batch
    def test_batch_results_in_order(self):
        known = make_event(self.device.device_id)
        self.assertJson(self.post(known), 201)
        sid = str(uuid.uuid4())
        new_stop = run_stop(self.device.device_id, sid)
        new_start = run_start(self.device.device_id, sid)
        invalid = dict(make_event(self.device.device_id), ts="yesterday")
        unknown = make_event("ghost-device")
        foreign = make_event(self.other_device.device_id)
        events = [known, new_stop, invalid, unknown, foreign, new_start, new_stop, "junk"]
        body = self.assertJson(self.post_batch(events), 200)
        results = body["results"]
        self.assertEqual([r["status"] for r in results], [
            "duplicate", "created", "invalid_event", "unknown_device", "unknown_device",
            "created", "duplicate", "invalid_event",
        ])
        self.assertEqual([r["event_uid"] for r in results[:7]],
                         [e["event_uid"] for e in events[:7]])
        self.assertIsNone(results[7]["event_uid"])
        self.assertTrue(results[2]["detail"])
        self.assertIsNone(results[1]["detail"])
        self.assertEqual(self.Session.search([("session_id", "=", sid)]).state, "done")

    def test_batch_limits_and_bad_bodies(self):
        events = [make_event(self.device.device_id) for _ in range(501)]
        self.assertEqual(self.assertJson(self.post_batch(events), 400)["error"], "invalid_event")
        self.assertFalse(self.Event.search([("event_uid", "=", events[0]["event_uid"])]))
        body = self.assertJson(self.post_batch(events[:500]), 200)
        self.assertEqual(len(body["results"]), 500)
        self.assertEqual({r["status"] for r in body["results"]}, {"created"})
        self.assertEqual(self.assertJson(self.post_batch([]), 200), {"results": []})
        for bad in (b"{nope", b"", b"[]", b"{}", b'{"events": 3}'):
            self.assertEqual(self.assertJson(self.post_batch(bad), 400)["error"], "invalid_event")

    def test_unknown_path(self):
        self.assertEqual(self.request("GET", "/ows/iot/nothing-here").status_code, 404)
        # wrong method on a known path is not served either
        self.assertIn(self.request("GET", "/ows/iot/event").status_code, (404, 405))


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestAuthorship(IotCase, HttpCase):
    """What a bridge writes is the system's doing: authored by OdooBot, not the public user
    the routes are reached as (a maintenance request's chatter says who opened it)."""

    def test_events_and_sessions_are_created_by_odoobot(self):
        session_id = str(uuid.uuid4())
        event = run_start(self.device.device_id, session_id)
        response = self.opener.post(
            self.base_url() + "/ows/iot/events", data=json.dumps({"events": [event]}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        self.assertEqual(response.status_code, 200, response.text[:300])
        root = self.env.ref("base.user_root")
        stored = self.Event.search([("event_uid", "=", event["event_uid"])])
        session = self.Session.search([("session_id", "=", session_id)])
        self.assertEqual((stored.create_uid, session.create_uid), (root, root))
