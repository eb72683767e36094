import psycopg2

from odoo import api, fields, models

from .iot_event import CREATED, INSERT_COLUMNS, session_of, stored_answer

ROW = "(" + ", ".join(["%s"] * (INSERT_COLUMNS.count(",") + 1)) + ")"


class IotEventBatch(models.Model):
    """``POST /ows/iot/events``: a batch answered event by event, in request order.

    One event costs ``_ingest`` six SQL statements (its ownership check, two savepoints, the
    INSERT and their releases), and those round trips, not Python, are what a batch of
    forwarded measurements spends its time on. Events of a type that needs no processing
    (``_bulk_event_types``) are therefore stored together: one ownership query and one INSERT
    for all of them, with the same answers ``_ingest`` gives. Everything else — session events,
    an addon's own types, a batch that repeats an ``event_uid`` — takes ``_ingest`` one by one.
    """

    _inherit = "ows.iot.event"

    @api.model
    def _bulk_event_types(self):
        """Event types whose ``_process_event`` does nothing: storing them is all there is.
        An addon that makes one of them do something removes it here."""
        return {"power_measurement"}

    @api.model
    def _ingest_batch(self, bridge, events):
        """``[(status, detail), ...]`` for ``events``, in their order."""
        device_cache = {}
        results = [None] * len(events)
        bulk = []
        uids = [e.get("event_uid") if isinstance(e, dict) else None for e in events]
        repeats = len({u for u in uids if isinstance(u, str)}) < sum(
            isinstance(u, str) for u in uids
        )
        if not repeats:  # with a repeated uid, the order of the events decides: one by one
            bulk_types = self._bulk_event_types()
            for i, event in enumerate(events):
                if isinstance(event, dict) and event.get("event_type") in bulk_types:
                    results[i] = self._bulk_candidate(bridge, event, device_cache, bulk, i)
        if bulk:
            self._store_bulk(bridge, bulk, results)
        for i, event in enumerate(events):
            if results[i] is None:
                results[i] = self._ingest(bridge, event, device_cache)
        return results

    def _bulk_candidate(self, bridge, event, device_cache, bulk, index):
        """An answer now, or None with the event queued in ``bulk`` for the shared INSERT."""
        answer, device = self._precheck(bridge, event, device_cache)
        if answer is None:
            bulk.append((index, event, device))
        return answer

    def _store_bulk(self, bridge, bulk, results):
        """Answer what is stored already, INSERT the rest at once. If PostgreSQL refuses the
        INSERT (a value the checks let through), nothing of it stays and the events are left
        unanswered, for ``_ingest`` to store one by one with one savepoint each."""
        cr = self.env.cr
        cr.execute(
            "SELECT event_uid, bridge_id, device_id FROM ows_iot_event WHERE event_uid = ANY(%s)",
            ([event["event_uid"] for _i, event, _device in bulk],),
        )
        owners = {uid: (bridge_id, device_id) for uid, bridge_id, device_id in cr.fetchall()}
        new = []
        for index, event, device in bulk:
            owner = owners.get(event["event_uid"])
            if owner is None:
                new.append((index, event, device))
            else:
                results[index] = stored_answer(owner, bridge, device)
        if not new:
            return
        now = fields.Datetime.now()
        self.env.flush_all()
        try:
            with cr.savepoint(flush=False):
                values = ", ".join(
                    cr.mogrify(ROW, self._row(bridge, device, event, session_of(event), now))
                    .decode()
                    for _index, event, device in new
                )
                cr.execute(
                    f"INSERT INTO ows_iot_event ({INSERT_COLUMNS}) VALUES {values}"
                    " ON CONFLICT (event_uid) DO NOTHING RETURNING event_uid",
                    log_exceptions=False,
                )
                stored = cr.fetchall()
        except (psycopg2.DataError, ValueError, OverflowError, TypeError):
            return
        stored = {uid for (uid,) in stored}
        for index, event, _device in new:
            # not stored: another transaction stored it since our snapshot; _ingest tells
            results[index] = (CREATED, None) if event["event_uid"] in stored else None
