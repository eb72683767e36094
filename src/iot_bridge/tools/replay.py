"""Run a recording through parser and detector with the recording's clock.

Operators use it to tune thresholds on their own recordings: the same :class:`Pipeline` as the
service, fed from a JSON-lines file of ``{"t": <unix s>, "topic": ..., "payload": "<raw>"}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

from iot_bridge.devices import DeviceConfig, DeviceSet
from iot_bridge.errors import RecordingError
from iot_bridge.events import Event
from iot_bridge.runtime.pipeline import Pipeline
from iot_bridge.sessions.detector import SessionDetector

SESSION_FIELDS = (
    "session_id",
    "started_at",
    "stopped_at",
    "duration_s",
    "working_s",
    "standby_s",
    "energy_wh",
    "energy_source",
    "max_power_w",
    "avg_power_w",
    "reason",
)


TABLE_HEADER = ("#", "started_at", "stopped_at", "duration", "working", "standby", "energy_wh",
                "source", "max_w", "avg_w", "reason")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Message:
    t: float
    topic: str
    payload: bytes


def read_recording(lines: Iterable[str | bytes]) -> Iterator[Message]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise RecordingError(f"line {number}: invalid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise RecordingError(f"line {number}: expected an object")
        t, topic, payload = doc.get("t"), doc.get("topic"), doc.get("payload")
        if not isinstance(t, int | float) or isinstance(t, bool) or not isinstance(topic, str):
            raise RecordingError(f"line {number}: needs a numeric 't' and a string 'topic'")
        if isinstance(payload, str):
            raw = payload.encode()
        elif payload is not None:  # a JSON payload stored as JSON, not as a string: accept it
            raw = orjson.dumps(payload)
        else:
            raise RecordingError(f"line {number}: needs a 'payload'")
        yield Message(float(t), topic, raw)


def replay(device: DeviceConfig, messages: Iterable[Message]) -> list[dict[str, Any]]:
    """Sessions found, as ``run_stop`` payloads; one still open at the end has reason ``open``."""
    pipeline = Pipeline()
    pipeline.apply(DeviceSet(None, (device,)), 0.0)
    stops: list[Event] = []
    last_t: float | None = None
    for msg in messages:
        if last_t is not None and msg.t < last_t:
            raise RecordingError(f"recording goes back in time at t={msg.t}")
        last_t = msg.t
        stops += (e for e in pipeline.handle(msg.topic, msg.payload, msg.t) if _is_stop(e))
    if last_t is None:
        return []
    stops += (e for e in pipeline.advance(last_t) if _is_stop(e))
    sessions = [{k: e.payload[k] for k in SESSION_FIELDS} for e in stops]
    det = pipeline.detector(device.device_id)
    if det.session_open:
        # close a copy at the end of the file, so the real detector stays untouched
        probe = SessionDetector.from_state(device.device_id, device.session, det.to_state())
        (stop,) = probe.remove(last_t)
        sessions.append({k: stop.payload[k] for k in SESSION_FIELDS} | {"reason": "open"})
    return sessions


def _is_stop(event: Event) -> bool:
    return event.event_type == "run_stop"


def write_table(
    sessions: list[dict[str, Any]], out: IO[str], devices: list[str] | None = None
) -> None:
    """Sessions as an aligned table; ``devices`` adds a first column naming each one's device."""
    header: tuple[str, ...] = TABLE_HEADER
    if devices is not None:
        header = ("device", *header)
    rows: list[tuple[str, ...]] = [header]
    for i, s in enumerate(sessions, 1):
        energy = "-" if s["energy_wh"] is None else f"{s['energy_wh']:.1f}"
        rows.append(
            (
                str(i),
                s["started_at"],
                s["stopped_at"],
                _hms(s["duration_s"]),
                _hms(s["working_s"]),
                _hms(s["standby_s"]),
                energy,
                s["energy_source"] or "-",
                "-" if s["max_power_w"] is None else f"{s['max_power_w']:.0f}",
                "-" if s["avg_power_w"] is None else f"{s['avg_power_w']:.0f}",
                s["reason"],
            )
        )
        if devices is not None:
            rows[-1] = (devices[i - 1], *rows[-1])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")
    out.write(f"{len(sessions)} session(s)\n")


def _hms(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
