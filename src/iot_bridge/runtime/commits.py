"""What the intake commits together, and the log lines of what was committed.

Split from ``intake.py``: a :class:`CommitGroup` is what has been detected since the last commit
began (events, the QoS 1 packet ids to acknowledge once it is on disk); :func:`log_event` and
:func:`log_message` are the original's INFO and DEBUG lines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from iot_bridge.events import Event

log = logging.getLogger("iot_bridge.intake")


@dataclass(slots=True)
class CommitGroup:
    """What has been detected since the last commit began."""

    events: list[Event]
    acks: dict[int, list[int]]  # connection generation -> QoS 1 packet ids
    messages: int = 0
    unacked: int = 0
    since: float | None = None  # when the first of it arrived (the commit window runs from here)

    @classmethod
    def empty(cls) -> CommitGroup:
        return cls([], {})


def log_message(topic: str, power: float | None) -> None:
    """The original's DEBUG line; messages without a power value say so."""
    if power is None:
        log.debug("Message received: topic=%s (no power value)", topic)
    else:
        log.debug("Message received: topic=%s, power=%sW", topic, power)


def log_event(event: Event) -> None:
    p: dict[str, Any] = dict(event.payload)
    if event.event_type == "run_start":
        log.info("Session started: device=%s, session_id=%s", event.device_id, p["session_id"])
    elif event.event_type == "run_stop":
        log.info(
            "Session stopped: device=%s, session_id=%s, reason=%s, duration=%ss",
            event.device_id,
            p["session_id"],
            p["reason"],
            p["duration_s"],
        )
