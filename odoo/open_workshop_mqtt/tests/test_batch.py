"""The batch path (models/iot_event_batch.py): measurements stored together give the answers
``_ingest`` gives one by one, in request order, and cost a handful of statements per batch."""

import uuid

from odoo.tests import tagged

from .common import IotCase, make_event, run_start


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestBatch(IotCase):

    def _measurement(self, device=None, **payload):
        return make_event((device or self.device).device_id, payload=payload or None)

    def _stored(self, events):
        uids = [e["event_uid"] for e in events]
        return set(self.Event.search([("event_uid", "in", uids)]).mapped("event_uid"))

    def test_answers_in_request_order_as_one_by_one(self):
        earlier = self._measurement()
        theirs = make_event(self.other_device.device_id)
        self.assertEqual(self.Event._ingest(self.bridge, earlier), ("created", None))
        self.assertEqual(self.Event._ingest(self.other_bridge, theirs), ("created", None))
        bad_ts = self._measurement()
        bad_ts["ts"] = "yesterday"
        fresh = [self._measurement() for _ in range(3)]
        start = run_start(self.device.device_id, str(uuid.uuid4()))
        batch = [fresh[0], earlier, dict(theirs, device_id=self.device.device_id), bad_ts,
                 make_event("nobody-knows-me"), start, fresh[1], fresh[2]]
        results = self.Event._ingest_batch(self.bridge, batch)
        self.assertEqual([status for status, _detail in results], [
            "created", "duplicate", "conflict", "invalid_event", "unknown_device", "created",
            "created", "created",
        ])
        self.assertIn("ts", results[3][1])
        self.assertEqual(self._stored(fresh + [start]), {e["event_uid"] for e in fresh + [start]})
        session = self.Session.search([("session_id", "=", start["payload"]["session_id"])])
        self.assertEqual(session.state, "running")

    def test_a_repeated_uid_is_answered_in_order(self):
        first = self._measurement()
        again = dict(first)
        elsewhere = dict(first, device_id=self.other_device.device_id)
        results = self.Event._ingest_batch(self.bridge, [first, again, elsewhere])
        # other_device is another bridge's: unknown here; the repeat is a duplicate
        self.assertEqual([r[0] for r in results], ["created", "duplicate", "unknown_device"])

    def test_a_full_batch_costs_a_few_statements(self):
        events = [self._measurement(apower=float(i)) for i in range(500)]
        self.env.flush_all()
        before = self.env.cr.sql_log_count
        results = self.Event._ingest_batch(self.bridge, events)
        statements = self.env.cr.sql_log_count - before
        self.assertEqual({r for r in results}, {("created", None)})
        self.assertEqual(len(self._stored(events)), 500)
        # one by one it is six per event (3 000); together: lookup, savepoint, INSERT, release
        self.assertLessEqual(statements, 10)

    def test_what_postgresql_refuses_is_that_events_answer_and_the_rest_is_stored(self):
        # a lone surrogate passes the checks and json.dumps, and jsonb refuses it: the shared
        # INSERT fails as a whole, and the events are stored one by one instead
        good = [self._measurement() for _ in range(3)]
        broken = self._measurement(note="\ud800")
        results = self.Event._ingest_batch(self.bridge, [good[0], broken, good[1], good[2]])
        self.assertEqual([r[0] for r in results],
                         ["created", "invalid_event", "created", "created"])
        self.assertEqual(self._stored(good + [broken]), {e["event_uid"] for e in good})
