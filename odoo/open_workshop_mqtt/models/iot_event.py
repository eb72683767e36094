import json
import re
from datetime import datetime, timezone

import psycopg2
from psycopg2.extras import Json

from odoo import api, fields, models

EVENT_TYPES = [
    ("run_start", "Run start"),
    ("run_stop", "Run stop"),
    ("power_measurement", "Power measurement"),
]
EVENT_TYPE_KEYS = {key for key, _label in EVENT_TYPES}
SESSION_EVENT_TYPES = {"run_start", "run_stop"}
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
MAX_BATCH = 500
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_DEPTH = 32
MAX_ABS_NUMBER = 1e15
SESSION_NUMBERS = (
    "power_w", "duration_s", "working_s", "standby_s", "energy_wh", "max_power_w", "avg_power_w",
)

# Per-event outcomes (the batch form's "status", and the single form's answer).
CREATED = "created"
DUPLICATE = "duplicate"
INVALID = "invalid_event"
UNKNOWN_DEVICE = "unknown_device"
CONFLICT = "conflict"
UID_CONFLICT = "event_uid is already stored for another device or bridge"
SESSION_CONFLICT = "session_id belongs to another device or bridge"


INSERT_COLUMNS = (
    "event_uid, schema_version, event_type, ts, ts_raw, device_id, bridge_id, session_id,"
    " payload, create_uid, create_date, write_uid, write_date"
)


def stored_answer(owner, bridge, device):
    """The answer for an event whose ``event_uid`` is stored already, by ``owner`` = (bridge
    id, device id): a duplicate of our own, or another's uid (ids are uuid5 values of public
    inputs: another bridge must not claim them)."""
    return (DUPLICATE, None) if owner == (bridge.id, device.id) else (CONFLICT, UID_CONFLICT)


def session_of(event):
    """The event's ``session_id`` when it is a string (validated events only)."""
    session_id = event["payload"].get("session_id")
    return session_id if isinstance(session_id, str) else None


class SessionConflict(Exception):
    """The event's session is another device's: the event must not be stored."""


def parse_contract_ts(value):
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` -> naive UTC datetime (Odoo's convention), else None."""
    if not isinstance(value, str) or not TS_RE.match(value):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return None


def parse_any_ts(value):
    """Lenient ISO 8601 parsing for payload times (``...Z``, offsets, with or without
    fractions) -> naive UTC datetime, else None."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


def validate_event(event, event_types=EVENT_TYPE_KEYS):
    """None for a valid Unified Event Schema v1 event, else the reason.

    ``event_types`` are the accepted types: the core's, or (from ``_ingest``) every type
    registered on the ``event_type`` selection, including those added by other addons.
    """
    if not isinstance(event, dict):
        return "event must be a JSON object"
    if event.get("schema_version") != "v1":
        return "schema_version must be 'v1'"
    uid = event.get("event_uid")
    if not isinstance(uid, str) or not uid.strip():
        return "event_uid must be a non-empty string"
    if len(uid) > 255:
        return "event_uid must be at most 255 characters"
    if parse_contract_ts(event.get("ts")) is None:
        return "ts must be a UTC timestamp 'YYYY-MM-DDTHH:MM:SS.mmmZ'"
    device_id = event.get("device_id")
    if not isinstance(device_id, str) or not device_id.strip():
        return "device_id must be a non-empty string"
    event_type = event.get("event_type")
    if event_type not in event_types:
        return "event_type must be one of " + ", ".join(sorted(event_types))
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return "payload must be a JSON object"
    if event_type in SESSION_EVENT_TYPES:
        session_id = payload.get("session_id")
        if not isinstance(session_id, str) or not session_id.strip():
            return f"{event_type} payload needs a non-empty string session_id"
    reason = _check_values(event)
    if reason is not None:
        return reason
    if len(json.dumps(payload, separators=(",", ":"))) > MAX_PAYLOAD_BYTES:
        return f"payload is larger than {MAX_PAYLOAD_BYTES} bytes"
    if event_type in SESSION_EVENT_TYPES:
        for key in SESSION_NUMBERS:
            value = payload.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                return f"payload.{key} must be a number or null"
    return None


def _check_values(event):
    """What PostgreSQL cannot store, and what no float can hold, found before the INSERT: no NUL
    in any string (keys too), every number finite and within +-1e15, nesting bounded. Walks
    without recursion, so a deep document cannot exhaust the stack."""
    stack = [(event, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return "strings must not contain NUL characters"
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, (int, float)):
            if not (abs(value) <= MAX_ABS_NUMBER):  # NaN fails too
                return f"numbers must be finite and within +-{MAX_ABS_NUMBER:g}"
        elif isinstance(value, (dict, list)):
            if depth >= MAX_DEPTH:
                return f"values must not be nested deeper than {MAX_DEPTH} levels"
            if isinstance(value, dict):
                stack.extend((key, depth + 1) for key in value)
                stack.extend((item, depth + 1) for item in value.values())
            else:
                stack.extend((item, depth + 1) for item in value)
    return None


class IotEvent(models.Model):
    _name = "ows.iot.event"
    _description = "IoT Event"
    _order = "id desc"
    _rec_name = "event_uid"

    event_uid = fields.Char(string="Event UID", required=True, readonly=True)
    schema_version = fields.Char(readonly=True)
    event_type = fields.Selection(EVENT_TYPES, required=True, readonly=True, index=True)
    ts = fields.Datetime(string="Event Time", required=True, readonly=True, index=True)
    ts_raw = fields.Char(string="Event Time (as sent)", readonly=True)
    device_id = fields.Many2one(
        "ows.iot.device", required=True, readonly=True, ondelete="cascade", index=True
    )
    bridge_id = fields.Many2one("ows.iot.bridge", readonly=True, ondelete="set null", index=True)
    session_id = fields.Char(string="Session ID", readonly=True, index=True)
    payload = fields.Json(readonly=True)
    payload_text = fields.Text(string="Payload (JSON)", compute="_compute_payload_text")

    _sql_constraints = [
        ("event_uid_unique", "UNIQUE(event_uid)", "An event with this event_uid already exists."),
    ]

    @api.depends("payload")
    def _compute_payload_text(self):
        for event in self:
            event.payload_text = (
                json.dumps(event.payload, indent=2, sort_keys=True, ensure_ascii=False)
                if event.payload
                else ""
            )

    # ------------------------------------------------------------------ ingestion
    @api.model
    def _ingest(self, bridge, event, device_cache=None):
        """Validate and store one event for ``bridge``; return ``(status, detail)``.

        Idempotent on ``event_uid`` through the unique index: the INSERT is
        ``ON CONFLICT (event_uid) DO NOTHING``, so a uid stored before yields ``duplicate`` when
        it was stored for the same bridge and device, and ``conflict`` when not (ids are uuid5
        values of public inputs: another bridge must not claim them). A run_start/run_stop whose
        session is another device's is a ``conflict`` too. If a concurrent transaction committed
        the same uid after ours began (REPEATABLE READ), the INSERT fails to serialize and Odoo
        replays the request, which answers ``duplicate``. Everything one event writes runs
        in one savepoint, so the outcome of one event never spoils the next, and data that
        PostgreSQL still refuses is that event's ``invalid_event``, never the batch's 500.
        """
        answer, device = self._precheck(bridge, event, device_cache)
        if answer is not None:
            return answer
        owner = self._owner_of(event["event_uid"])
        if owner is not None:
            return stored_answer(owner, bridge, device)
        session_id = session_of(event)
        if event["event_type"] in SESSION_EVENT_TYPES and self._session_owner(session_id) not in (
            None, device.id,
        ):
            return CONFLICT, SESSION_CONFLICT
        # What came before is written, so only this event's writes are at stake below. The
        # savepoint does not flush by itself: a flushing savepoint also runs the precommit
        # hooks, which would send the board's once-per-transaction notices once per event.
        self.env.flush_all()
        try:
            with self.env.cr.savepoint(flush=False):
                result = self._store(bridge, device, event, session_id)
                self.env.flush_all()
            return result
        except SessionConflict:
            self.env.clear()  # drop this event's unwritten changes; the hooks stay
            return CONFLICT, SESSION_CONFLICT
        except (psycopg2.DataError, ValueError, OverflowError, TypeError) as exc:
            self.env.clear()
            return INVALID, f"cannot be stored: {type(exc).__name__}"

    def _precheck(self, bridge, event, device_cache=None):
        """The checks before the database: ``(answer, None)`` for an event refused as it is,
        else ``(None, device)``."""
        reason = validate_event(event, self._event_type_keys()) or self._validate_payload(event)
        if reason is not None:
            return (INVALID, reason), None
        device = self._find_device(bridge, event["device_id"], device_cache)
        if not device:
            reason = f"device {event['device_id']!r} is not known to this bridge"
            return (UNKNOWN_DEVICE, reason), None
        return None, device

    def _row(self, bridge, device, event, session_id, now):
        """The values of ``INSERT_COLUMNS`` for one event (also the batch path's rows)."""
        uid = self.env.uid
        return (
            event["event_uid"], event["schema_version"], event["event_type"],
            parse_contract_ts(event["ts"]), event["ts"], device.id, bridge.id,
            session_id, Json(event["payload"]), uid, now, uid, now,
        )

    def _store(self, bridge, device, event, session_id):
        cr = self.env.cr
        try:
            with cr.savepoint(flush=False):
                cr.execute(
                    f"""
                    INSERT INTO ows_iot_event ({INSERT_COLUMNS})
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                    ON CONFLICT (event_uid) DO NOTHING
                    RETURNING id
                    """,
                    self._row(bridge, device, event, session_id, fields.Datetime.now()),
                    log_exceptions=False,
                )
                row = cr.fetchone()
        except psycopg2.errors.UniqueViolation:
            return DUPLICATE, None
        # A SerializationFailure is not caught: it is no answer. It comes from the same uid
        # committed by a concurrent request after our snapshot, but just as well from the
        # foreign-key check of the bridge row that a concurrent request of the same bridge
        # updated (its last contact): an event never stored would be answered "duplicate" and
        # dropped by the bridge. Odoo replays the request, which then answers truthfully.
        if row is None:
            # stored between our ownership check and the INSERT (same transaction snapshot)
            owner = self._owner_of(event["event_uid"])
            return (DUPLICATE, None) if owner is None else stored_answer(owner, bridge, device)
        self._process_event(self.browse(row[0]), device, event)
        return CREATED, None

    # ------------------------------------------------------------------ event types (hooks)
    # Another addon adds an event type with ``selection_add`` on ``event_type`` and extends
    # ``_validate_payload`` and ``_process_event`` for it (calling super for the others).
    @api.model
    def _event_type_keys(self):
        """The accepted event types: the selection, as extended by the installed addons."""
        return {key for key, _label in self._fields["event_type"].selection}

    @api.model
    def _validate_payload(self, event):
        """Type-specific checks of an event that passed ``validate_event``: None or the reason."""
        return None

    @api.model
    def _process_event(self, record, device, event):
        """Act on an event stored just now (once per ``event_uid``)."""
        if event["event_type"] in SESSION_EVENT_TYPES:
            self.env["ows.machine.session"]._apply_event(record, device, event)

    @api.model
    def _owner_of(self, event_uid):
        """``(bridge id, device id)`` of the stored event ``event_uid``, or None."""
        self.env.cr.execute(
            "SELECT bridge_id, device_id FROM ows_iot_event WHERE event_uid = %s", (event_uid,)
        )
        row = self.env.cr.fetchone()
        return None if row is None else (row[0], row[1])

    @api.model
    def _session_owner(self, session_id):
        """The device id of the session ``session_id``, or None."""
        if session_id is None:
            return None
        self.env.cr.execute(
            "SELECT device_id FROM ows_machine_session WHERE session_id = %s", (session_id,)
        )
        row = self.env.cr.fetchone()
        return None if row is None else row[0]

    @api.model
    def _find_device(self, bridge, device_id, cache=None):
        if cache is not None and device_id in cache:
            return cache[device_id]
        # archived devices are still this bridge's: the run_stop that closes the session
        # of a device removed from the config (reason device_removed) must land
        device = (
            self.env["ows.iot.device"]
            .with_context(active_test=False)
            .search([("device_id", "=", device_id), ("bridge_id", "=", bridge.id)], limit=1)
        )
        if cache is not None:
            cache[device_id] = device
        return device
