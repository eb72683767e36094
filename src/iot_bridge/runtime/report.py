"""What ``GET /health`` says: one pure function from the facts the service gathers.

The one place that decides the bridge's status. The service collects :class:`HealthFacts` (each
fact from the part of the bridge that owns it) and :func:`health_report` turns them into the
document: ``status`` is ``"ok"`` (HTTP 200) while the bridge does its job and ``"degraded"``
(HTTP 503) when it does not, and ``problems`` names every reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iot_bridge.devices import DeviceSet
from iot_bridge.odoo_api.delivery import DeliveryStatus
from iot_bridge.outbox.store import QueueStats


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


def health_report(f: HealthFacts) -> dict[str, Any]:
    db_ok = f.store_error is None and f.stats is not None
    problems: list[str] = []
    if not db_ok:
        problems.append("store_not_writable")
    if not f.mqtt_connected:
        problems.append("mqtt_disconnected")
    if f.config is None:
        problems.append("no_device_config")
    elif not f.config.devices:  # every entry rejected (or none given): nothing is metered
        problems.append("no_usable_device")
    status = f.delivery
    if status is not None and status.auth_failed:
        problems.append("odoo_auth_failed")
    stats = f.stats
    oldest_age = None
    if stats is not None and stats.oldest_created_at is not None:
        oldest_age = round(f.now - stats.oldest_created_at, 3)
        if status is not None and oldest_age > f.max_queue_age_s:
            problems.append("queue_too_old")
    config_errors = list(f.config.errors) if f.config else []
    if f.config_problem:
        config_errors.append(f.config_problem)
    last = f.last_message_at
    return {
        "status": "ok" if not problems else "degraded",
        "problems": problems,
        "mqtt_connected": f.mqtt_connected,
        "odoo_reachable": None if status is None else status.odoo_reachable,
        "odoo_auth_failed": bool(status and status.auth_failed),
        "devices_configured": len(f.config.devices) if f.config else 0,
        "active_sessions": f.active_sessions,
        "uptime_seconds": round(f.now - f.started),
        "mode": "standalone" if f.standalone else "odoo",
        "queue_depth": None if stats is None else stats.depth,
        "oldest_queued_age_s": oldest_age,
        "dead_letters": None if stats is None else stats.dead_letters,
        "dropped_measurements": None if stats is None else stats.dropped_measurements,
        "db_ok": db_ok,
        "store_error": f.store_error,
        "config_version": f.config.config_version if f.config else None,
        "config_errors": config_errors,
        "last_msg_age_s": None if last is None else round(f.now - last, 3),
        "mqtt_reconnects": f.mqtt_reconnects,
        "mqtt_last_error": f.mqtt_last_error,
        "odoo_last_error": None if status is None else status.last_error,
    }
