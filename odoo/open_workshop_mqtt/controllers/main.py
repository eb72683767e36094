"""The bridge <-> Odoo REST contract (v1): GET /ows/iot/config, POST /ows/iot/event(s).

Plain ``type='http'`` routes with JSON in and out (not JSON-RPC), so that status codes carry the
meaning: 201 created, 200 duplicate, 400 invalid_event, 404 unknown_device, 401 unauthorized.
"""

import functools
import json
import logging

import psycopg2

from odoo import http
from odoo.http import request

from ..models.iot_event import CREATED, DUPLICATE, MAX_BATCH, UNKNOWN_DEVICE

_logger = logging.getLogger(__name__)

ROUTE_OPTIONS = {
    "type": "http", "auth": "public", "csrf": False, "save_session": False, "readonly": False,
}


class _BadRequest(Exception):
    pass


def _json(status, body):
    return request.make_json_response(body, status=status)


def _unauthorized():
    return _json(401, {"error": "unauthorized"})


def _invalid(detail):
    return _json(400, {"error": "invalid_event", "detail": detail})


def _bearer_token():
    header = request.httprequest.headers.get("Authorization") or ""
    scheme, _sep, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def _authenticate():
    """The calling bridge (sudo, as the controller acts for it), or None."""
    token = _bearer_token()
    if not token:
        return None
    bridge = request.env["ows.iot.bridge"].sudo()._authenticate_token(token)
    if not bridge:
        return None
    bridge._touch_last_contact()
    return bridge


def _read_json():
    data = request.httprequest.get_data(cache=True)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _BadRequest(f"body is not valid JSON: {exc}") from exc


def _guarded(handler):
    """Answer JSON whatever happens: let Odoo retry concurrency failures, turn anything else
    into a JSON 500 instead of Odoo's HTML error page."""

    @functools.wraps(handler)
    def wrapper(self, **kwargs):
        try:
            return handler(self, **kwargs)
        except (psycopg2.OperationalError, psycopg2.IntegrityError):
            raise  # serialization failures: odoo.service.model.retrying replays the request
        except Exception:
            _logger.exception("IoT API: unexpected error on %s", request.httprequest.path)
            request.env.cr.rollback()
            return _json(500, {"error": "server_error"})

    return wrapper


class IotApiController(http.Controller):

    @http.route("/ows/iot/config", methods=["GET"], **ROUTE_OPTIONS)
    @_guarded
    def iot_config(self, **kwargs):
        bridge = _authenticate()
        if not bridge:
            return _unauthorized()
        return _json(200, bridge._config_payload())

    @http.route("/ows/iot/event", methods=["POST"], **ROUTE_OPTIONS)
    @_guarded
    def iot_event(self, **kwargs):
        bridge = _authenticate()
        if not bridge:
            return _unauthorized()
        try:
            event = _read_json()
        except _BadRequest as exc:
            return _invalid(str(exc))
        status, detail = request.env["ows.iot.event"].sudo()._ingest(bridge, event)
        uid = event.get("event_uid") if isinstance(event, dict) else None
        if status == CREATED:
            return _json(201, {"status": CREATED, "event_uid": uid})
        if status == DUPLICATE:
            return _json(200, {"status": DUPLICATE, "event_uid": uid})
        if status == UNKNOWN_DEVICE:
            return _json(404, {
                "error": UNKNOWN_DEVICE, "device_id": event.get("device_id"), "detail": detail,
            })
        return _invalid(detail)

    @http.route("/ows/iot/events", methods=["POST"], **ROUTE_OPTIONS)
    @_guarded
    def iot_events(self, **kwargs):
        bridge = _authenticate()
        if not bridge:
            return _unauthorized()
        try:
            body = _read_json()
        except _BadRequest as exc:
            return _invalid(str(exc))
        if not isinstance(body, dict) or not isinstance(body.get("events"), list):
            return _invalid('body must be {"events": [...]}')
        events = body["events"]
        if len(events) > MAX_BATCH:
            return _invalid(f"at most {MAX_BATCH} events per batch, got {len(events)}")
        Event = request.env["ows.iot.event"].sudo()
        device_cache = {}
        results = []
        for event in events:
            status, detail = Event._ingest(bridge, event, device_cache)
            uid = event.get("event_uid") if isinstance(event, dict) else None
            results.append({
                "event_uid": uid if isinstance(uid, str) else None,
                "status": status,
                "detail": detail,
            })
        return _json(200, {"results": results})

    @http.route("/ows/iot/status", methods=["POST"], **ROUTE_OPTIONS)
    @_guarded
    def iot_status(self, **kwargs):
        """POST /ows/iot/status (docs/odoo-api.md, "live state"): the bridge's heartbeat,
        latest wins; 200 ok / stale, 400 invalid_status."""
        bridge = _authenticate()
        if not bridge:
            return _unauthorized()
        try:
            status = _read_json()
        except _BadRequest as exc:
            return _json(400, {"error": "invalid_status", "detail": str(exc)})
        outcome, body = request.env["ows.iot.status"].sudo()._ingest(bridge, status)
        return _json(400 if outcome == "invalid_status" else 200, body)
