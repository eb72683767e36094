"""The bridge <-> Odoo REST contract (v1): GET /ows/iot/config, POST /ows/iot/event(s).

Plain ``type='http'`` routes with JSON in and out (not JSON-RPC), so that status codes carry the
meaning: 201 created, 200 duplicate, 400 invalid_event, 404 unknown_device, 409 conflict,
413 payload_too_large, 401 unauthorized. One bad event of a batch is that event's result, never a
500 for the batch.
"""

import functools
import json
import logging

import psycopg2
from werkzeug.exceptions import RequestEntityTooLarge

from odoo import SUPERUSER_ID, http
from odoo.http import request

from ..models.iot_event import CONFLICT, CREATED, DUPLICATE, MAX_BATCH, UNKNOWN_DEVICE

_logger = logging.getLogger(__name__)

ROUTE_OPTIONS = {
    "type": "http", "auth": "public", "csrf": False, "save_session": False, "readonly": False,
}


MAX_BODY_BYTES = 4 * 1024 * 1024  # docs/odoo-api.md: bodies over it are answered 413
DRAIN_LIMIT = 16 * 1024 * 1024  # read (and drop) at most this much of a body that is too large


class _BadRequest(Exception):
    pass


class _TooLarge(Exception):
    def __init__(self, length):
        super().__init__(length)
        self.length = length


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


def _system():
    """The environment the bridge's calls run in. The routes are ``auth="public"`` (the bearer
    token is checked here), and what a bridge writes — sessions, scans, maintenance requests
    and their messages — is the system's doing: authored by OdooBot, not by the public user."""
    return request.env(user=SUPERUSER_ID, su=True)


def _authenticate():
    """The calling bridge, or None."""
    token = _bearer_token()
    if not token:
        return None
    bridge = _system()["ows.iot.bridge"]._authenticate_token(token)
    if not bridge:
        return None
    bridge._touch_last_contact()
    return bridge


def _too_large(length):
    return _json(413, {
        "error": "payload_too_large",
        "detail": f"request body of {length} bytes is over the limit of {MAX_BODY_BYTES} bytes",
        "max_bytes": MAX_BODY_BYTES,
    })


def _read_body():
    """The request body, at most MAX_BODY_BYTES. A larger one is still read to its end (up to
    DRAIN_LIMIT, werkzeug refuses beyond) and dropped, so that the client gets the JSON 413
    instead of a connection reset while it is still sending. The body is kept (``cache``):
    Odoo replays a request whose transaction hit a serialization failure, and the replay must
    read the same body again."""
    httprequest = request.httprequest
    length = httprequest.content_length
    httprequest.max_content_length = DRAIN_LIMIT
    try:
        data = httprequest.get_data(cache=True)
    except RequestEntityTooLarge:
        raise _TooLarge(length or DRAIN_LIMIT) from None
    if len(data) > MAX_BODY_BYTES:
        raise _TooLarge(len(data))
    return data


def _read_json():
    data = _read_body()
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _BadRequest(f"body is not valid JSON: {type(exc).__name__}") from exc


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
        except _TooLarge as exc:
            return _too_large(exc.length)
        except _BadRequest as exc:
            return _invalid(str(exc))
        status, detail = _system()["ows.iot.event"]._ingest(bridge, event)
        uid = event.get("event_uid") if isinstance(event, dict) else None
        if status == CREATED:
            return _json(201, {"status": CREATED, "event_uid": uid})
        if status == DUPLICATE:
            return _json(200, {"status": DUPLICATE, "event_uid": uid})
        if status == UNKNOWN_DEVICE:
            return _json(404, {
                "error": UNKNOWN_DEVICE, "device_id": event.get("device_id"), "detail": detail,
            })
        if status == CONFLICT:
            return _json(409, {"error": CONFLICT, "event_uid": uid, "detail": detail})
        return _invalid(detail)

    @http.route("/ows/iot/events", methods=["POST"], **ROUTE_OPTIONS)
    @_guarded
    def iot_events(self, **kwargs):
        bridge = _authenticate()
        if not bridge:
            return _unauthorized()
        try:
            body = _read_json()
        except _TooLarge as exc:
            return _too_large(exc.length)
        except _BadRequest as exc:
            return _invalid(str(exc))
        if not isinstance(body, dict) or not isinstance(body.get("events"), list):
            return _invalid('body must be {"events": [...]}')
        events = body["events"]
        if len(events) > MAX_BATCH:
            return _invalid(f"at most {MAX_BATCH} events per batch, got {len(events)}")
        results = []
        for event, (status, detail) in zip(
            events, _system()["ows.iot.event"]._ingest_batch(bridge, events)
        ):
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
        outcome, body = _system()["ows.iot.status"]._ingest(bridge, status)
        return _json(400 if outcome == "invalid_status" else 200, body)
