"""POST /ows/iot/status: the bridge's latest-wins live state (odoo-api.md, "live state").

A status is not an event: nothing of it is kept as history. It overwrites the live fields of
the bridge and of the devices it lists, upserts the plugs the bridge discovered, and tells open
machine boards over the bus. The check that makes it latest-wins is one conditional UPDATE of the
bridge row, so of two concurrent statuses of one bridge the older cannot overwrite the newer: the
later transaction waits for the row, then fails to serialize and Odoo replays the request, which
then finds the newer ``sent_at`` and answers ``stale``.
"""

import json
import math
from datetime import timedelta

from psycopg2.extras import Json

from odoo import api, fields, models

from .iot_event import parse_contract_ts
from .res_config_settings import alert_settings

STATUS_STATES = ("idle", "starting", "working", "standby", "stopping")
MAX_STATUS_DEVICES = 2000
MAX_STATUS_DISCOVERED = 500
MAX_STATUS_MESSAGES = 100
MAX_STATUS_MESSAGE_LEN = 500
MAX_DISCOVERED_STR = 255
MAX_DETAILS_JSON = 4096
MAX_QUEUE_DEPTH = 2**31 - 1
# A stored sent_at further ahead of Odoo's clock than this does not order statuses.
STATUS_MAX_AHEAD = timedelta(minutes=5)

OK = "ok"
STALE = "stale"
INVALID_STATUS = "invalid_status"

_TS_RULE = "must be a UTC timestamp 'YYYY-MM-DDTHH:MM:SS.mmmZ'"
_LIMIT = f"{MAX_DISCOVERED_STR} characters"
_BRIDGE_NULLABLE = ("queue_depth", "oldest_queued_age_s", "config_version")
_DEVICE_NULLABLE = ("online", "last_seen", "power_w", "session_id", "session_started_at")
_DISCOVERED_NULLABLE = ("device_id", "model", "parser_type")


def _is_number(value):
    """A JSON number a float can hold (not a boolean, not NaN/Infinity, not 10**400)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _is_text(value, limit=None):
    return isinstance(value, str) and bool(value.strip()) and (limit is None or len(value) <= limit)


def _missing(obj, keys, where):
    """Every key of the contract's table is required, the nullable ones too (as null)."""
    for key in keys:
        if key not in obj:
            return f"{where}.{key} is missing"
    return None


def _validate_bridge(bridge):
    if not isinstance(bridge, dict):
        return "bridge must be a JSON object"
    reason = _missing(bridge, _BRIDGE_NULLABLE, "bridge")
    if reason:
        return reason
    if not _is_text(bridge.get("version")):
        return "bridge.version must be a non-empty string"
    if parse_contract_ts(bridge.get("started_at")) is None:
        return f"bridge.started_at {_TS_RULE}"
    uptime = bridge.get("uptime_s")
    if not _is_number(uptime) or uptime < 0:
        return "bridge.uptime_s must be a number >= 0"
    if not isinstance(bridge.get("mqtt_connected"), bool):
        return "bridge.mqtt_connected must be true or false"
    depth = bridge.get("queue_depth")
    if depth is not None and (
        not isinstance(depth, int) or isinstance(depth, bool) or not 0 <= depth <= MAX_QUEUE_DEPTH
    ):
        return f"bridge.queue_depth must be an integer from 0 to {MAX_QUEUE_DEPTH} or null"
    age = bridge.get("oldest_queued_age_s")
    if age is not None and (not _is_number(age) or age < 0):
        return "bridge.oldest_queued_age_s must be a number >= 0 or null"
    for key in ("problems", "warnings"):
        items = bridge.get(key)
        if not isinstance(items, list) or len(items) > MAX_STATUS_MESSAGES:
            return f"bridge.{key} must be a list of at most {MAX_STATUS_MESSAGES} strings"
        for i, item in enumerate(items):
            if not isinstance(item, str) or len(item) > MAX_STATUS_MESSAGE_LEN:
                return (
                    f"bridge.{key}[{i}] must be a string of at most "
                    f"{MAX_STATUS_MESSAGE_LEN} characters"
                )
    version = bridge.get("config_version")
    if version is not None and not isinstance(version, str):
        return "bridge.config_version must be a string or null"
    return None


def _validate_device(device, where):
    if not isinstance(device, dict):
        return f"{where} must be a JSON object"
    if not _is_text(device.get("device_id")):
        return f"{where}.device_id must be a non-empty string"
    if device.get("state") not in STATUS_STATES:
        return f"{where}.state must be one of " + ", ".join(STATUS_STATES)
    reason = _missing(device, _DEVICE_NULLABLE, where)
    if reason:
        return reason
    online = device.get("online")
    if online is not None and not isinstance(online, bool):
        return f"{where}.online must be true, false or null"
    for key in ("last_seen", "session_started_at"):
        value = device.get(key)
        if value is not None and parse_contract_ts(value) is None:
            return f"{where}.{key} {_TS_RULE} or null"
    power = device.get("power_w")
    if power is not None and not _is_number(power):
        return f"{where}.power_w must be a number or null"
    session_id = device.get("session_id")
    if session_id is not None and not _is_text(session_id):
        return f"{where}.session_id must be a non-empty string or null"
    return None


def _validate_discovered(entry, where):
    if not isinstance(entry, dict):
        return f"{where} must be a JSON object"
    topic = entry.get("topic")
    if not _is_text(topic, MAX_DISCOVERED_STR) or "+" in topic or "#" in topic:
        return f"{where}.topic must be a non-empty string of at most {_LIMIT} without wildcards"
    reason = _missing(entry, _DISCOVERED_NULLABLE, where)
    if reason:
        return reason
    for key in _DISCOVERED_NULLABLE:
        value = entry.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > MAX_DISCOVERED_STR):
            return f"{where}.{key} must be a string of at most {_LIMIT} or null"
    if not _is_text(entry.get("source"), MAX_DISCOVERED_STR):
        return f"{where}.source must be a non-empty string of at most {_LIMIT}"
    for key in ("first_seen", "last_seen"):
        if parse_contract_ts(entry.get(key)) is None:
            return f"{where}.{key} {_TS_RULE}"
    details = entry.get("details")
    if not isinstance(details, dict):
        return f"{where}.details must be a JSON object"
    if len(json.dumps(details, separators=(",", ":"), ensure_ascii=False)) > MAX_DETAILS_JSON:
        return f"{where}.details must be at most {MAX_DETAILS_JSON} characters as JSON"
    return None


def _has_nul(value):
    """Whether a NUL character hides in any string (keys too): PostgreSQL stores none."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def validate_status(status):
    """None for a valid status body, else the reason, naming the first offending key."""
    if not isinstance(status, dict):
        return "status must be a JSON object"
    if _has_nul(status):
        return "status must not contain NUL characters (\\u0000)"
    if parse_contract_ts(status.get("sent_at")) is None:
        return f"sent_at {_TS_RULE}"
    reason = _validate_bridge(status.get("bridge"))
    if reason:
        return reason
    return _validate_list(
        status.get("devices"), "devices", MAX_STATUS_DEVICES, "device_id", _validate_device
    ) or _validate_list(
        status.get("discovered"), "discovered", MAX_STATUS_DISCOVERED, "topic",
        _validate_discovered,
    )


def _validate_list(items, name, limit, key, validate):
    """A list of at most ``limit`` entries, each valid, ``key`` unique among them."""
    if not isinstance(items, list) or len(items) > limit:
        return f"{name} must be a list of at most {limit} entries"
    seen = set()
    for i, item in enumerate(items):
        reason = validate(item, f"{name}[{i}]")
        if reason:
            return reason
        if item[key] in seen:
            return f"{name}[{i}].{key} {item[key]!r} is listed twice"
        seen.add(item[key])
    return None


_DEVICE_ROW = (
    "(%s::int, %s::varchar, %s::varchar, %s::timestamp, %s::float8, %s::varchar, %s::timestamp)"
)
# {values}: one _DEVICE_ROW per device; the first parameter is Odoo's clock.
_DEVICE_UPDATE = """
    WITH clock(now) AS (SELECT %s::timestamp)
    UPDATE ows_iot_device AS d SET
        live_state = v.state,
        plug_online = v.online,
        offline_since = CASE
            WHEN v.online = 'offline' AND d.plug_online = 'offline'
                THEN COALESCE(d.offline_since, clock.now)
            WHEN v.online = 'offline' THEN clock.now
        END,
        last_seen = GREATEST(d.last_seen, v.last_seen),
        live_power_known = v.power IS NOT NULL,
        live_power_w = COALESCE(v.power, 0),
        live_session_ref = v.session_id,
        live_session_started_at = v.session_started_at,
        live_status_at = clock.now
    FROM clock, (VALUES {values})
        AS v(id, state, online, last_seen, power, session_id, session_started_at)
    WHERE d.id = v.id
"""


class IotStatus(models.AbstractModel):
    _name = "ows.iot.status"
    _description = "IoT bridge status (live state, never stored as history)"

    @api.model
    def _ingest(self, bridge, status, now=None):
        """Apply one status of ``bridge``; return ``(outcome, answer body)``.

        ``outcome`` is ``ok``, ``stale`` or ``invalid_status`` (the controller's 200 / 200 /
        400). ``now`` is Odoo's clock (naive UTC), an input for tests.
        """
        reason = validate_status(status)
        if reason is not None:
            return INVALID_STATUS, {"error": INVALID_STATUS, "detail": reason}
        now = now or fields.Datetime.now()
        if not self._store_bridge_status(bridge, status, now):
            return STALE, {"status": STALE, "config_version": str(bridge.config_version)}
        devices, unknown = self._store_device_states(bridge, status["devices"], now)
        self.env["ows.iot.discovered.plug"]._upsert_from_status(bridge, status["discovered"], now)
        settings = alert_settings(self.env)
        if devices:
            devices._board_notify_live(now, settings)
        if bridge.alert_since or any(
            d.alert_since and not d._plug_trouble(now, settings) for d in devices
        ):
            # an incident has ended: the health check closes it now rather than within a minute
            self.env.ref("open_workshop_mqtt.ir_cron_iot_health")._trigger()
        return OK, {
            "status": OK,
            "config_version": str(bridge.config_version),
            "unknown_devices": unknown,
        }

    @api.model
    def _store_bridge_status(self, bridge, status, now):
        """Overwrite the bridge's live fields, unless a newer status was stored before."""
        info = status["bridge"]
        sent_at = parse_contract_ts(status["sent_at"])
        cr = self.env.cr
        bridge.flush_recordset()
        cr.execute(
            """
            UPDATE ows_iot_bridge SET
                status_sent_at = %(sent_at)s, last_status_at = %(now)s,
                bridge_version = %(version)s, bridge_started_at = %(started_at)s,
                bridge_uptime_s = %(uptime)s, mqtt_connected = %(mqtt)s,
                queue_known = %(queue_known)s, queue_depth = %(queue_depth)s,
                oldest_queued_age_s = %(age)s, status_problems = %(problems)s,
                status_warnings = %(warnings)s, reported_config_version = %(config_version)s
            WHERE id = %(id)s
              AND (status_sent_at IS NULL OR status_sent_at <= %(sent_at)s
                   OR status_sent_at > %(ahead)s)
            RETURNING id
            """,
            {
                "id": bridge.id,
                "sent_at": sent_at,
                "now": now,
                "ahead": now + STATUS_MAX_AHEAD,
                "version": info["version"],
                "started_at": parse_contract_ts(info["started_at"]),
                "uptime": float(info["uptime_s"]),
                "mqtt": info["mqtt_connected"],
                "queue_known": info["queue_depth"] is not None,
                "queue_depth": info["queue_depth"] or 0,
                "age": float(info["oldest_queued_age_s"] or 0.0),
                "problems": Json(info["problems"]),
                "warnings": Json(info["warnings"]),
                "config_version": info["config_version"],
            },
            log_exceptions=False,  # a concurrent status fails to serialize: Odoo replays it
        )
        stored = cr.fetchone() is not None
        if stored:
            bridge.invalidate_recordset()  # and what is computed from it
        return stored

    @api.model
    def _store_device_states(self, bridge, entries, now):
        """Overwrite the live state of the listed devices that are this bridge's active ones.

        Returns (the devices written, the device ids that were not this bridge's, in order).
        ``last_seen`` never moves back (a bridge that restarted knows nothing yet and says
        null); ``offline_since`` is when Odoo first heard the plug was offline.
        """
        Device = self.env["ows.iot.device"]
        wanted = [entry["device_id"] for entry in entries]
        known = {
            device.device_id: device
            for device in Device.search([("bridge_id", "=", bridge.id), ("device_id", "in", wanted)])
        }
        unknown = [device_id for device_id in wanted if device_id not in known]
        rows = []
        for entry in entries:
            device = known.get(entry["device_id"])
            if not device:
                continue
            online = entry["online"]
            power = entry["power_w"]
            rows.append((
                device.id,
                entry["state"],
                None if online is None else ("online" if online else "offline"),
                parse_contract_ts(entry["last_seen"]),
                None if power is None else float(power),
                entry["session_id"],
                parse_contract_ts(entry["session_started_at"]),
            ))
        written = Device.browse([row[0] for row in rows])
        if not rows:
            return written, unknown
        written.flush_recordset()
        for chunk in range(0, len(rows), 500):
            part = rows[chunk:chunk + 500]
            values = ", ".join([_DEVICE_ROW] * len(part))
            self.env.cr.execute(
                _DEVICE_UPDATE.format(values=values),
                [now] + [value for row in part for value in row],
                log_exceptions=False,
            )
        written.invalidate_recordset()  # and what is computed from it
        return written, unknown
