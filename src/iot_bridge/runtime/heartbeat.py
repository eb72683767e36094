"""The heartbeat: ``POST /ows/iot/status`` (``docs/odoo-api.md``, "live state").

A status is latest-wins state, not an event, so it lives outside the outbox: it is built when
it is sent, never queued behind events, never retried (the next one is the retry, and says
everything again). It goes out every ``STATUS_INTERVAL`` and promptly when a device's detector
state or online state changes, at most one every :data:`MIN_GAP_S` (changes in that window go
out together in the next one): :class:`StatusTimer` decides when, on the injected clock, in
the project's ``get_timer()`` / ``handle_timer(now)`` manner, so tests run it on a fake clock.

What the status says is gathered, not decided, here: problems, warnings, queue depth and config
version are those of ``/health`` (``report.py``, the one place that decides them), the devices'
live state is the pipeline's :class:`~iot_bridge.runtime.tracked.DeviceView`, the discovered
plugs are :mod:`~iot_bridge.runtime.discovery`'s. :func:`build_status` keeps every string and
list within the contract's limits, so no device name or announcement can get a status refused.

Odoo's answer (``client.post_status``): ``ok`` / ``stale`` count Odoo reachable and, when the
``config_version`` differs from the running one or devices are unknown, ask for the config at
once; ``400`` is logged with its detail and counted for ``/health``; ``401`` is an auth failure
as for events; ``404`` (an older addon) pauses statuses for :data:`MISSING_ROUTE_RETRY_S`;
``429`` and ``5xx`` change nothing (something answered); a timeout or a connection error
counts Odoo unreachable, as a failed event delivery would (issue 11: ``/health``'s
``odoo_reachable`` true to the minute, not only learnt when an event is sent). None is resent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from iot_bridge.clock import Clock, Timer, timeout
from iot_bridge.errors import OdooAuthError, OdooUnavailable
from iot_bridge.events import format_ts
from iot_bridge.odoo_api.client import OdooClient, StatusAnswer
from iot_bridge.runtime.tracked import DeviceView

log = logging.getLogger("iot_bridge.status")

MIN_GAP_S = 2.0  # at most one status every 2 s
MISSING_ROUTE_RETRY_S = 600.0  # an Odoo without the route is asked again after 10 minutes
MAX_DEVICES = 2000
MAX_MESSAGES = 100
MAX_MESSAGE_CHARS = 500
MAX_ID_CHARS = 255


class StatusTimer:
    """When the next status is due. Pure: it is told the time, it never reads a clock."""

    def __init__(self, interval: float, start: float, min_gap: float = MIN_GAP_S) -> None:
        """``interval`` 0: no statuses at all. The first one is due at ``start``."""
        self.interval = interval
        self.min_gap = min_gap
        self._due: float | None = start if interval > 0 else None
        self._last_sent: float | None = None
        self._paused_until: float | None = None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` will next say "send" (``None``: never)."""
        return self._due

    def handle_timer(self, now: float) -> bool:
        """Whether a status is due at ``now``; the caller then sends it and calls :meth:`sent`."""
        return self._due is not None and now >= self._due

    def sent(self, now: float) -> None:
        self._last_sent = now
        if self._due is not None:
            self._due = now + self.interval

    def changed(self, now: float) -> None:
        """A device's state or online state changed: send soon, but not within ``min_gap`` of
        the last status (nor while paused for a missing route)."""
        if self._due is None:
            return
        if self._paused_until is not None and now < self._paused_until:
            return
        soonest = now if self._last_sent is None else max(now, self._last_sent + self.min_gap)
        self._due = min(self._due, soonest)

    def pause(self, now: float, seconds: float) -> None:
        """Nothing for ``seconds``, prompt changes included (Odoo has no such route)."""
        if self._due is None:
            return
        self._paused_until = now + seconds
        self._due = now + seconds


def _clean(text: str, limit: int) -> str:
    return text.replace("\x00", "")[:limit]


def _messages(items: Sequence[Any]) -> list[str]:
    return [_clean(str(m), MAX_MESSAGE_CHARS) for m in items[:MAX_MESSAGES]]


def _ts(t: float | None) -> str | None:
    return None if t is None else format_ts(t)


def build_status(
    *,
    now: float,
    started: float,
    version: str,
    report: dict[str, Any],
    views: Sequence[DeviceView],
    discovered: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """The status body, exactly the contract's table; ``report`` is a ``/health`` report."""
    depth = report.get("queue_depth")
    age = report.get("oldest_queued_age_s")
    config_version = report.get("config_version")
    devices: list[dict[str, Any]] = []
    for view in views:
        if not view.device_id or "\x00" in view.device_id:
            continue  # cannot be an Odoo device id; would get the whole status refused
        if len(devices) >= MAX_DEVICES:
            break
        devices.append(
            {
                "device_id": view.device_id,
                "state": view.state if view.state in _STATES else "idle",
                "online": view.online,
                "last_seen": _ts(view.last_seen),
                "power_w": view.power_w,
                "session_id": view.session_id or None,
                "session_started_at": _ts(view.session_started_at) if view.session_id else None,
            }
        )
    return {
        "sent_at": format_ts(now),
        "bridge": {
            "version": _clean(version, MAX_ID_CHARS) or "unknown",
            "started_at": format_ts(started),
            "uptime_s": round(max(0.0, now - started), 3),
            "mqtt_connected": bool(report.get("mqtt_connected")),
            "queue_depth": depth if isinstance(depth, int) and 0 <= depth < 2**31 else None,
            "oldest_queued_age_s": max(0.0, float(age)) if age is not None else None,
            "problems": _messages(report.get("problems") or ()),
            "warnings": _messages(report.get("warnings") or ()),
            "config_version": None
            if config_version is None
            else _clean(str(config_version), MAX_MESSAGE_CHARS),
        },
        "devices": devices,
        "discovered": list(discovered[:500]),
    }


# the detector's states a status may carry (an offline detector is idle for Odoo)
_STATES = frozenset({"idle", "starting", "working", "standby", "stopping"})


@dataclass
class StatusCounters:
    """What ``/health`` shows of the heartbeat."""

    sent: int = 0
    taken: int = 0  # ok or stale
    refused: int = 0  # 400 invalid_status
    last_refusal: str | None = None  # its detail
    route_missing: bool = False  # the last answer was 404


class Heartbeat:
    def __init__(
        self,
        client: OdooClient,
        clock: Clock,
        *,
        interval: float,
        request_timeout: float,
        started: float,
        version: str,
        report: Callable[[], Awaitable[dict[str, Any]]],
        views: Callable[[], Sequence[DeviceView]],
        discovered: Callable[[], Sequence[dict[str, Any]]],
        running_version: Callable[[], str | None],
        answered: Callable[[bool, bool, str], None],
        refetch: Callable[[], None],
    ) -> None:
        """``report``: the ``/health`` report; ``running_version``: the ``config_version`` of
        the config the bridge runs; ``answered(ok, auth, error)``: tell ``/health`` what Odoo
        did; ``refetch``: fetch the config now."""
        self.client = client
        self.clock = clock
        self.timer = StatusTimer(interval, clock.now())
        self.request_timeout = request_timeout
        self.started = started
        self.version = version
        self._report = report
        self._views = views
        self._discovered = discovered
        self._running_version = running_version
        self._answered = answered
        self._refetch = refetch
        self.counters = StatusCounters()
        self._wake = asyncio.Event()

    def changed(self) -> None:
        """A device's detector state or online state changed (or the device set did)."""
        self.timer.changed(self.clock.now())
        self._wake.set()

    async def run(self) -> None:
        timer: Timer | None = None
        try:
            while True:
                when = self.timer.get_timer()
                if when is None:
                    return  # STATUS_INTERVAL=0
                now = self.clock.now()
                if self.timer.handle_timer(now):
                    await self.send(now)
                    continue
                timer = self.clock.call_at(when, self._wake.set)
                await self._wake.wait()
                self._wake.clear()
                timer.cancel()
                timer = None
        finally:
            if timer is not None:
                timer.cancel()

    async def send(self, now: float) -> StatusAnswer | None:
        """Build and send one status and act on the answer; ``None`` when there was none."""
        self.timer.sent(now)
        body = build_status(
            now=now,
            started=self.started,
            version=self.version,
            report=await self._report(),
            views=self._views(),
            discovered=self._discovered(),
        )
        self.counters.sent += 1
        try:
            async with timeout(self.clock, self.request_timeout + 1.0):
                answer = await self.client.post_status(orjson.dumps(body))
        except OdooAuthError as exc:
            self._answered(False, True, str(exc))
            return None
        except (OdooUnavailable, TimeoutError) as exc:  # transient: the next status is due anyway
            reason = str(exc) or "POST /ows/iot/status: timed out"
            log.debug("status not taken: %s", reason)
            if not isinstance(exc, OdooUnavailable) or exc.status is None:
                # no answer at all (timeout, connection refused): Odoo is not reachable, and
                # /health says so within one heartbeat, not only when an event is due
                self._answered(False, False, reason)
            return None
        self._act(answer, now)
        return answer

    def _act(self, answer: StatusAnswer, now: float) -> None:
        c = self.counters
        c.route_missing = answer.kind == "missing"
        if answer.kind in ("ok", "stale"):
            c.taken += 1
            self._answered(True, False, "")
            moved = answer.config_version is not None and (
                answer.config_version != self._running_version()
            )  # an answer without a version says nothing about it (not a fetch per status)
            if answer.unknown_devices or moved:
                log.info(
                    "Odoo's config differs (version %s, %d unknown devices): fetching it now",
                    answer.config_version,
                    len(answer.unknown_devices),
                )
                self._refetch()
        elif answer.kind == "invalid":
            c.refused += 1
            c.last_refusal = answer.detail
            log.warning("Odoo refused the status (invalid_status): %s", answer.detail)
        else:
            log.warning(
                "Odoo has no %s (an older addon?): no statuses for %.0f s",
                "POST /ows/iot/status",
                MISSING_ROUTE_RETRY_S,
            )
            self.timer.pause(now, MISSING_ROUTE_RETRY_S)


async def run_quietly(beat: Heartbeat) -> None:
    """:meth:`Heartbeat.run`, where a bug in building a status must not end the bridge."""
    while True:
        try:
            await beat.run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("heartbeat failed; sending the next one as usual")
            with contextlib.suppress(Exception):
                beat.timer.sent(beat.clock.now())
