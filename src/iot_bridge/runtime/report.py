"""What ``GET /health`` says: one pure function from the facts the service gathers.

The one place that decides the bridge's status. The service collects :class:`HealthFacts` (each
fact from the part of the bridge that owns it) and :func:`health_report` turns them into the
document. Two kinds of findings, each by name:

- ``problems``: the bridge is not doing its job (readings are not taken, events not delivered).
  Any problem makes ``status`` ``"degraded"`` and the answer ``503``: an orchestrator may restart
  the bridge, a monitor pages someone.
- ``warnings``: the bridge does its job, but something needs a human (a refused subscription, a
  dead letter, a device entry that was rejected). ``status`` stays ``"ok"`` and the answer ``200``:
  restarting would not fix any of them.

:func:`health_metrics` renders the same findings as Prometheus series, so that every one of them
has an alert rule (``deploy/prometheus/alerts.yml``).

Nothing here shows a secret or the body of another system's answer: error texts arrive as a status
code and a short reason (``odoo_api/client.py``) and are cut to one short line here as well.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from iot_bridge.devices import DeviceSet
from iot_bridge.odoo_api.client import MAX_BATCH
from iot_bridge.odoo_api.delivery import DeliveryStatus
from iot_bridge.outbox.store import QueueStats

if TYPE_CHECKING:
    from iot_bridge.runtime.heartbeat import StatusCounters

PROBLEMS = (
    "store_not_writable",  # the store takes no writes: readings stay unacknowledged at the broker
    "mqtt_disconnected",
    "no_device_config",  # no device list could be loaded at all
    "no_usable_device",  # a device list, but every entry in it was rejected
    "odoo_auth_failed",  # Odoo refuses the token
    "odoo_unreachable",  # Odoo did not take events for longer than HEALTH_ODOO_DOWN_AFTER
    "queue_too_old",  # the oldest undelivered event waited longer than HEALTH_MAX_QUEUE_AGE
)
WARNINGS = (
    "odoo_retrying",  # Odoo's last answer was a failure; retrying, not (yet) for long
    "odoo_batch_reduced",  # a 413 made the batch smaller: a proxy's body limit is too low
    "odoo_splitting_batch",  # a batch keeps failing with 5xx: looking for the event that breaks it
    "new_dead_letters",  # an event was dead-lettered within HEALTH_DEAD_LETTER_WARN
    "subscriptions_refused",  # the broker refused a device topic (SUBACK failure, ACL)
    "subscriptions_silent",  # a device topic delivered nothing for long while connected
    "config_errors",  # a device entry (or the last config fetch) was rejected
    "device_errors",  # a device's message could not be used in the last 15 min (reason shown)
    "backlog_end_guessed",  # the broker did not return the catch-up marker (docs/sessions.md)
)
DEVICE_ERRORS_SHOWN = 50
DEVICE_ERROR_WARN_S = 900.0  # a device's unusable message warns for this long
TEXT_CHARS = 200
DEAD_LETTER_REASONS = {400: "invalid_event", 404: "unknown_device", 409: "conflict"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class HealthFacts:
    now: float
    started: float
    standalone: bool
    max_queue_age_s: float
    mqtt_connected: bool
    mqtt_reconnects: int
    mqtt_last_error: str | None
    store_error: str | None  # None while the store takes writes
    stats: QueueStats | None  # None when the store could not be read
    config: DeviceSet | None  # None before any device config was loaded
    config_problem: str | None  # why the last config fetch failed, if it did
    delivery: DeliveryStatus | None  # None in standalone mode
    active_sessions: int
    last_message_at: float | None
    odoo_down_after_s: float = 300.0  # HEALTH_ODOO_DOWN_AFTER
    dead_letter_warn_s: float = 86_400.0  # HEALTH_DEAD_LETTER_WARN
    refused_subscriptions: Sequence[str] = ()  # filters the broker refused in its SUBACK
    silent_subscriptions: Sequence[str] = ()  # filters that delivered nothing for long, connected
    device_errors: Mapping[str, int] = field(default_factory=dict)  # device id -> messages
    device_last_error: Mapping[str, str] = field(default_factory=dict)  # device id -> reason
    device_error_at: Mapping[str, float] = field(default_factory=dict)  # device id -> when
    backlog_marker_echoed: bool = True  # the broker returned the last catch-up marker
    mqtt_broker: str | None = None  # the node connected to (URL without credentials)
    status: StatusCounters | None = None  # the heartbeat's (None: no heartbeat)
    discovered: int | None = None  # plugs heard announcing (None: discovery off)


def findings(f: HealthFacts) -> tuple[list[str], list[str]]:
    """``(problems, warnings)``, each a list of names from :data:`PROBLEMS` / :data:`WARNINGS`."""
    problems: list[str] = []
    warnings: list[str] = []
    if f.store_error is not None or f.stats is None:
        problems.append("store_not_writable")
    if not f.mqtt_connected:
        problems.append("mqtt_disconnected")
    if f.config is None:
        problems.append("no_device_config")
    elif not f.config.devices:  # every entry rejected (or none given): nothing is metered
        problems.append("no_usable_device")
    d = f.delivery
    if d is not None:
        if d.auth_failed:
            problems.append("odoo_auth_failed")
        down_for = _down_for(f)
        if down_for is not None and down_for > f.odoo_down_after_s:
            problems.append("odoo_unreachable")
        elif d.odoo_reachable is False and not d.auth_failed:
            warnings.append("odoo_retrying")
        if d.batch_size < MAX_BATCH:
            warnings.append("odoo_batch_reduced")
        if d.splitting:
            warnings.append("odoo_splitting_batch")
    stats = f.stats
    if stats is not None:
        oldest = stats.oldest_created_at
        if d is not None and oldest is not None and f.now - oldest > f.max_queue_age_s:
            problems.append("queue_too_old")
        last = stats.last_dead_letter_at
        if last is not None and f.now - last <= f.dead_letter_warn_s:
            warnings.append("new_dead_letters")
    if f.refused_subscriptions:
        warnings.append("subscriptions_refused")
    if f.silent_subscriptions:
        warnings.append("subscriptions_silent")
    if (f.config is not None and f.config.errors) or f.config_problem:
        warnings.append("config_errors")
    if any(f.now - at <= DEVICE_ERROR_WARN_S for at in f.device_error_at.values()):
        warnings.append("device_errors")
    if not f.backlog_marker_echoed:
        warnings.append("backlog_end_guessed")
    return problems, warnings


def health_report(f: HealthFacts) -> dict[str, Any]:
    problems, warnings = findings(f)
    status = f.delivery
    stats = f.stats
    oldest_age = None
    if stats is not None and stats.oldest_created_at is not None:
        oldest_age = round(f.now - stats.oldest_created_at, 3)
    config_errors = [_short(e) for e in f.config.errors] if f.config else []
    if f.config_problem:
        config_errors.append(_short(f.config_problem))
    last = f.last_message_at
    down_for = _down_for(f)
    last_dead = None if stats is None else stats.last_dead_letter_at
    return {
        "status": "ok" if not problems else "degraded",
        "problems": problems,
        "warnings": warnings,
        "mqtt_connected": f.mqtt_connected,
        "mqtt_broker": f.mqtt_broker if f.mqtt_connected else None,
        "odoo_reachable": None if status is None else status.odoo_reachable,
        "odoo_auth_failed": bool(status and status.auth_failed),
        "odoo_unreachable_s": None if down_for is None else round(down_for, 3),
        "devices_configured": len(f.config.devices) if f.config else 0,
        "active_sessions": f.active_sessions,
        "uptime_seconds": round(f.now - f.started),
        "mode": "standalone" if f.standalone else "odoo",
        "queue_depth": None if stats is None else stats.depth,
        "oldest_queued_age_s": oldest_age,
        "dead_letters": None if stats is None else stats.dead_letters,
        "dead_letters_by_reason": None if stats is None else _by_reason(stats),
        "last_dead_letter_age_s": None if last_dead is None else round(f.now - last_dead, 3),
        "dropped_measurements": None if stats is None else stats.dropped_measurements,
        "db_ok": "store_not_writable" not in problems,
        "store_error": _short(f.store_error),
        "config_version": f.config.config_version if f.config else None,
        "config_errors": config_errors,
        "subscriptions_refused": sorted(f.refused_subscriptions),
        "subscriptions_silent": sorted(f.silent_subscriptions),
        "device_errors": _device_errors(f),
        "last_msg_age_s": None if last is None else round(f.now - last, 3),
        "mqtt_reconnects": f.mqtt_reconnects,
        "mqtt_last_error": _short(f.mqtt_last_error),
        "odoo_last_error": None if status is None else _short(status.last_error),
        "odoo_batch_size": None if status is None else status.batch_size,
        # the heartbeat (POST /ows/iot/status): statuses sent, refused (400) and why the last
        # one was; a 404 (an older addon) shows as route_missing
        "odoo_status": None
        if f.status is None
        else {
            "sent": f.status.sent,
            "taken": f.status.taken,
            "refused": f.status.refused,
            "last_refusal": _short(f.status.last_refusal),
            "route_missing": f.status.route_missing,
        },
        "discovered_plugs": f.discovered,
    }


def _device_errors(f: HealthFacts) -> dict[str, dict[str, Any]]:
    """Per device: how many of its messages could not be used, and why the last one not (the
    devices with most errors first, at most :data:`DEVICE_ERRORS_SHOWN`)."""
    worst = sorted(f.device_errors.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        device_id: {"count": count, "last_error": _short(f.device_last_error.get(device_id))}
        for device_id, count in worst[:DEVICE_ERRORS_SHOWN]
    }


def health_metrics(report: dict[str, Any]) -> str:
    """The findings of a :func:`health_report` as Prometheus text: one series per known name,
    0 or 1, so an alert rule can name exactly what it watches."""
    problems, warnings = set(report["problems"]), set(report["warnings"])
    lines = ["# TYPE iot_bridge_health_problem gauge"]
    lines += [f'iot_bridge_health_problem{{problem="{n}"}} {int(n in problems)}' for n in PROBLEMS]
    lines.append("# TYPE iot_bridge_health_warning gauge")
    lines += [f'iot_bridge_health_warning{{warning="{n}"}} {int(n in warnings)}' for n in WARNINGS]
    gauges = {
        "odoo_unreachable_seconds": report["odoo_unreachable_s"] or 0,
        "subscriptions_refused": len(report["subscriptions_refused"]),
        "subscriptions_silent": len(report["subscriptions_silent"]),
        "config_errors": len(report["config_errors"]),
    }
    for name, value in gauges.items():
        lines += [f"# TYPE iot_bridge_{name} gauge", f"iot_bridge_{name} {value:g}"]
    return "\n".join(lines) + "\n"


def _down_for(f: HealthFacts) -> float | None:
    d = f.delivery
    if d is None or d.odoo_reachable is not False or d.unreachable_since is None:
        return None
    return max(0.0, f.now - d.unreachable_since)


def _by_reason(stats: QueueStats) -> dict[str, int]:
    out: dict[str, int] = {}
    for status, count in stats.dead_letters_by_status:
        reason = DEAD_LETTER_REASONS.get(status) or (
            "server_error" if status >= 500 else f"http_{status}"
        )
        out[reason] = out.get(reason, 0) + count
    return out


def _short(text: str | None) -> str | None:
    """One line of at most TEXT_CHARS characters."""
    if text is None:
        return None
    line = _CONTROL.sub(" ", text).strip()
    return line if len(line) <= TEXT_CHARS else line[: TEXT_CHARS - 1] + "…"
