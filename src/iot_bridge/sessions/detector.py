"""Run-session detection per device, exactly as ``docs/sessions.md`` defines it.

Pure and clock-free (in the manner of h11's state machine and aioquic's timers): every call takes
a time ``t`` in Unix seconds, nothing here reads a clock or does I/O, and events come back as
return values. Readings come with their *event time* (when the device measured them), so a
debounce or a timeout between two readings is decided in event time even when the readings
arrive late and all at once. The runtime asks :meth:`SessionDetector.next_deadline` when to
call :meth:`SessionDetector.advance`, so deadlines also fire for a device that falls silent —
but only while the bridge can hear the device (connected, and caught up with the broker's
backlog): what it cannot hear it does not decide.

The transition table :data:`TRANSITIONS` is the spec's table; the code around it only keeps the
books (timers, time and energy accounting). State round-trips through :meth:`to_state` /
:meth:`from_state` so that an open session survives a restart under the same ``session_id``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

from iot_bridge.devices import SessionConfig
from iot_bridge.events import Event, event_uid, format_ts, session_uid
from iot_bridge.sessions.totals import Totals


class State(enum.StrEnum):
    IDLE = "idle"
    STARTING = "starting"
    WORKING = "working"
    STANDBY = "standby"
    STOPPING = "stopping"


class Level(enum.StrEnum):
    OFF = "off"
    STANDBY = "standby"
    WORKING = "working"


class Input(enum.StrEnum):
    OFF = "off"  # a reading of level OFF
    STANDBY = "standby"
    WORKING = "working"
    DEBOUNCE_OFF = "debounce_off"  # a debounce deadline fired; last known level in the name
    DEBOUNCE_STANDBY = "debounce_standby"
    DEBOUNCE_WORKING = "debounce_working"
    TIMEOUT = "timeout"  # no message for message_timeout_s
    OFFLINE = "offline"  # the device's LWT / online=false
    REMOVED = "removed"  # the device left the config


class Action(enum.StrEnum):
    NONE = "none"
    MARK = "mark"  # since = t (a debounce starts)
    MARK_IF_CHANGED = "mark_if_changed"  # since = t only if the level differs from the last
    DISCARD = "discard"  # a false start: the candidate session is dropped
    OPEN = "open"  # emit run_start
    CLOSE_NORMAL = "normal"  # emit run_stop with this reason
    CLOSE_TIMEOUT = "timeout"
    CLOSE_OFFLINE = "offline"
    CLOSE_REMOVED = "device_removed"


OPEN_STATES = frozenset({State.WORKING, State.STANDBY, State.STOPPING})
_S, _I, _A = State, Input, Action

# (state, input) -> (next state, action). A pair that is absent changes nothing.
TRANSITIONS: dict[tuple[State, Input], tuple[State, Action]] = {
    (_S.IDLE, _I.WORKING): (_S.STARTING, _A.MARK),
    (_S.STARTING, _I.OFF): (_S.IDLE, _A.DISCARD),
    (_S.STARTING, _I.STANDBY): (_S.IDLE, _A.DISCARD),
    (_S.STARTING, _I.DEBOUNCE_WORKING): (_S.WORKING, _A.OPEN),
    (_S.STARTING, _I.TIMEOUT): (_S.IDLE, _A.DISCARD),
    (_S.STARTING, _I.OFFLINE): (_S.IDLE, _A.DISCARD),
    (_S.STARTING, _I.REMOVED): (_S.IDLE, _A.DISCARD),
    (_S.WORKING, _I.STANDBY): (_S.STOPPING, _A.MARK),
    (_S.WORKING, _I.OFF): (_S.STOPPING, _A.MARK),
    (_S.STANDBY, _I.WORKING): (_S.WORKING, _A.NONE),
    (_S.STANDBY, _I.OFF): (_S.STOPPING, _A.MARK),
    (_S.STOPPING, _I.WORKING): (_S.WORKING, _A.NONE),
    (_S.STOPPING, _I.STANDBY): (_S.STOPPING, _A.MARK_IF_CHANGED),
    (_S.STOPPING, _I.OFF): (_S.STOPPING, _A.MARK_IF_CHANGED),
    (_S.STOPPING, _I.DEBOUNCE_OFF): (_S.IDLE, _A.CLOSE_NORMAL),
    (_S.STOPPING, _I.DEBOUNCE_STANDBY): (_S.STANDBY, _A.NONE),
    **{(s, _I.TIMEOUT): (_S.IDLE, _A.CLOSE_TIMEOUT) for s in OPEN_STATES},
    **{(s, _I.OFFLINE): (_S.IDLE, _A.CLOSE_OFFLINE) for s in OPEN_STATES},
    **{(s, _I.REMOVED): (_S.IDLE, _A.CLOSE_REMOVED) for s in OPEN_STATES},
}

_READING_INPUT = {Level.OFF: Input.OFF, Level.STANDBY: Input.STANDBY, Level.WORKING: Input.WORKING}
_DEBOUNCE_INPUT = {
    Level.OFF: Input.DEBOUNCE_OFF,
    Level.STANDBY: Input.DEBOUNCE_STANDBY,
    Level.WORKING: Input.DEBOUNCE_WORKING,
}
_NO_EVENTS: tuple[Event, ...] = ()


@dataclass(slots=True)
class _Book:
    """Everything the detector remembers; a plain record so it serialises as it is."""

    state: State = State.IDLE
    level: Level | None = None  # last known level (None before the first power reading)
    power_w: float | None = None  # last known power
    since: float = 0.0  # start of the running debounce
    last_seen: float | None = None  # time of the last message from the device
    timeout_base: float | None = None  # the message timeout runs from here
    session_id: str | None = None
    started_at: float = 0.0
    working_since: float = 0.0
    totals: Totals | None = None  # live figures of the candidate/open session
    at_since: Totals | None = None  # the figures as of ``since`` while STOPPING
    estimated: bool = False  # the open session contains readings placed without a device time


_BOOK_FIELDS = frozenset(_Book.__dataclass_fields__)


class SessionDetector:
    """The state machine of one device. Not thread-safe; one owner calls it."""

    __slots__ = ("_b", "config", "device_id", "transitions")

    def __init__(self, device_id: str, config: SessionConfig) -> None:
        self.device_id = device_id
        self.config = config
        self._b = _Book()
        self.transitions = 0  # counts applied table rows: a cheap "did anything change?"

    # -- inspection ---------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._b.state

    @property
    def session_id(self) -> str | None:
        return self._b.session_id

    @property
    def power_w(self) -> float | None:
        """The last known power (a frame without power keeps it)."""
        return self._b.power_w

    @property
    def session_open(self) -> bool:
        return self._b.state in OPEN_STATES

    @property
    def last_seen(self) -> float | None:
        return self._b.last_seen

    @property
    def started_at(self) -> float:
        """When the open session started (meaningless while none is open)."""
        return self._b.started_at

    def next_deadline(self) -> float | None:
        """The earliest moment at which :meth:`advance` has something to do, or ``None``."""
        b = self._b
        debounce = self._debounce_deadline()
        if b.state is State.IDLE or b.timeout_base is None:
            return debounce
        timeout = b.timeout_base + self.config.message_timeout_s
        return timeout if debounce is None else min(debounce, timeout)

    # -- inputs -------------------------------------------------------------------------------

    def handle_reading(
        self,
        now: float,
        power_w: float | None,
        energy_wh: float | None = None,
        estimated: bool = False,
    ) -> tuple[Event, ...]:
        """A message the device sent at ``now`` (event time); ``power_w=None`` is a sign of life
        only. ``estimated``: the reading came late and without a usable device time. A time
        before the device's last message (the wall clock stepped back) counts as that moment:
        one device's time never goes backwards."""
        b = self._b
        last = b.last_seen
        if last is not None and now < last:
            now = last
        state = b.state
        cfg = self.config
        if state is State.IDLE:
            events = _NO_EVENTS  # no timers run in IDLE
        elif state is State.WORKING or state is State.STANDBY:
            # only the message timeout runs here; checked inline, it is the per-message path
            base = b.timeout_base
            due = base is not None and base + cfg.message_timeout_s <= now
            events = self.advance(now) if due else _NO_EVENTS
        else:
            events = self.advance(now)
        b.last_seen = now
        b.timeout_base = now
        if estimated and b.state is not State.IDLE:
            b.estimated = True
        totals = b.totals
        if totals is not None:
            totals.add(now, b.power_w, power_w, energy_wh)
        if power_w is None:
            return events
        b.power_w = power_w
        if power_w >= cfg.working_threshold_w:  # the level, inline: this is the hot path
            level = Level.WORKING
        elif power_w >= cfg.standby_threshold_w:
            level = Level.STANDBY
        else:
            level = Level.OFF
        previous, b.level = b.level, level
        state = b.state
        if state is State.IDLE:
            if level is not Level.WORKING:
                return events
            b.totals = Totals.begin(now, power_w, energy_wh)
            b.estimated = estimated
        elif level is previous:
            return events  # hot path: no row of the table reacts to an unchanged level
        more = self._fire(_READING_INPUT[level], now, previous)
        if b.state is state:
            return (*events, *more) if more else events
        more2 = self.advance(now)  # a debounce of 0 s decides at once
        if more or more2:
            return (*events, *more, *more2)
        return events

    def handle_offline(self, now: float) -> tuple[Event, ...]:
        events = self.advance(now)
        more = self._fire(Input.OFFLINE, now, self._b.level)
        return (*events, *more) if more else events

    def remove(self, now: float) -> tuple[Event, ...]:
        """The device left the config: an open session closes with ``device_removed``."""
        events = self.advance(now)
        more = self._fire(Input.REMOVED, now, self._b.level)
        return (*events, *more) if more else events

    def advance(self, now: float) -> tuple[Event, ...]:
        """Fire every deadline ``<= now`` in time order (debounce first on a tie)."""
        deadline = self.next_deadline()
        if deadline is None or deadline > now:
            return _NO_EVENTS
        events: tuple[Event, ...] = _NO_EVENTS
        while True:
            b = self._b
            b_state = b.state
            debounce = self._debounce_deadline()
            timeout = None
            if b.state is not State.IDLE and b.timeout_base is not None:
                timeout = b.timeout_base + self.config.message_timeout_s
            if (
                debounce is not None
                and debounce <= now
                and (timeout is None or debounce <= timeout)
            ):
                assert b.level is not None
                fired = self._fire(_DEBOUNCE_INPUT[b.level], debounce, b.level)
            elif timeout is not None and timeout <= now:
                fired = self._fire(Input.TIMEOUT, timeout, b.level)
            else:
                return events
            if fired:
                events = (*events, *fired)
            # every deadline leaves its state (the table has a row for each), so this ends
            assert self._b.state is not b_state, "a deadline fired without a transition"

    def forgive(self, start: float, end: float) -> None:
        """The bridge could not hear anything from ``start`` to ``end`` (the broker was gone,
        or kept nothing for us): that time is not the device's silence. The message timeout
        stops for it, so an open session gets the rest of its timeout after ``end``."""
        b = self._b
        base = b.timeout_base
        if b.state is State.IDLE or base is None or end <= start:
            return
        b.timeout_base = base + (end - start) if base < start else max(base, end)

    def update_config(self, config: SessionConfig) -> None:
        """New thresholds apply from the next reading on; an open session continues."""
        self.config = config

    # -- persistence --------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """A JSON-ready copy of everything the detector knows (persisted on every batch)."""
        b = self._b
        return {
            "state": b.state.value,
            "level": None if b.level is None else b.level.value,
            "power_w": b.power_w,
            "since": b.since,
            "last_seen": b.last_seen,
            "timeout_base": b.timeout_base,
            "session_id": b.session_id,
            "started_at": b.started_at,
            "working_since": b.working_since,
            "totals": None if b.totals is None else b.totals.to_state(),
            "at_since": None if b.at_since is None else b.at_since.to_state(),
            "estimated": b.estimated,
        }

    @classmethod
    def from_state(
        cls, device_id: str, config: SessionConfig, doc: dict[str, Any]
    ) -> SessionDetector:
        """Restore after a restart (also from a state written before ``estimated`` existed and
        while a ``paused`` flag did: the runtime now decides when timers may fire)."""
        det = cls(device_id, config)
        fields = {k: v for k, v in doc.items() if k in _BOOK_FIELDS}
        fields["state"] = State(doc["state"])
        fields["level"] = None if doc["level"] is None else Level(doc["level"])
        for key in ("totals", "at_since"):
            fields[key] = None if doc[key] is None else Totals.from_state(doc[key])
        det._b = _Book(**fields)
        return det

    # -- the machine --------------------------------------------------------------------------

    def _debounce_deadline(self) -> float | None:
        b = self._b
        if b.state is State.STARTING:
            return b.since + self.config.start_debounce_s
        if b.state is State.STOPPING:
            return b.since + self.config.stop_debounce_s
        return None

    def _fire(self, inp: Input, t: float, previous: Level | None) -> tuple[Event, ...]:
        b = self._b
        entry = TRANSITIONS.get((b.state, inp))
        if entry is None:
            return _NO_EVENTS
        new_state, action = entry
        self.transitions += 1
        old_state, b.state = b.state, new_state
        if old_state is State.WORKING and new_state is not State.WORKING:
            closes_at_last_message = action in (Action.CLOSE_TIMEOUT, Action.CLOSE_OFFLINE)
            stop_t = b.last_seen if closes_at_last_message else t
            assert b.totals is not None
            assert stop_t is not None
            b.totals.working_s += max(0.0, stop_t - b.working_since)
        elif new_state is State.WORKING and old_state is not State.WORKING:
            b.working_since = b.since if action is Action.OPEN else t
        if action is Action.NONE:
            return _NO_EVENTS
        if action is Action.MARK or (action is Action.MARK_IF_CHANGED and previous is not b.level):
            b.since = t
            assert b.totals is not None
            b.at_since = replace(b.totals)
            return _NO_EVENTS
        if action is Action.MARK_IF_CHANGED:
            return _NO_EVENTS
        if action is Action.DISCARD:
            b.totals = b.at_since = None
            b.estimated = False
            return _NO_EVENTS
        if action is Action.OPEN:
            b.started_at = b.since
            b.session_id = session_uid(self.device_id, b.started_at)
            b.at_since = None
            return (self._start_event(t),)
        return (self._stop_event(t, action),)

    def _start_event(self, t: float) -> Event:
        b = self._b
        assert b.session_id is not None
        payload = {
            "session_id": b.session_id,
            "power_w": b.power_w,
            "reason": "power_threshold",
            "started_at": format_ts(b.started_at),
            "timing": "estimated" if b.estimated else "measured",
        }
        uid = event_uid(self.device_id, "run_start", b.session_id)
        return Event(uid, t, self.device_id, "run_start", payload)

    def _stop_event(self, t: float, action: Action) -> Event:
        b = self._b
        assert b.session_id is not None
        assert b.totals is not None
        if action is Action.CLOSE_NORMAL:
            stopped_at, totals = b.since, b.at_since or b.totals
        elif action is Action.CLOSE_REMOVED:
            stopped_at, totals = t, b.totals
            totals.extend_to(t, b.power_w)
        else:  # timeout, offline: the session ends with the device's last message
            stopped_at, totals = b.last_seen or t, b.totals
        duration = max(0.0, stopped_at - b.started_at)
        working = min(totals.working_s, duration)
        energy, source = totals.energy()
        payload = {
            "session_id": b.session_id,
            "power_w": b.power_w,
            "reason": action.value,
            "started_at": format_ts(b.started_at),
            "stopped_at": format_ts(stopped_at),
            "duration_s": round(duration, 3),
            "working_s": round(working, 3),
            "standby_s": round(duration - working, 3),
            "energy_wh": None if energy is None else round(energy, 4),
            "energy_source": source,
            "max_power_w": totals.max_power_w,
            "avg_power_w": totals.avg_power(duration),
            "timing": "estimated" if b.estimated else "measured",
        }
        uid = event_uid(self.device_id, "run_stop", b.session_id)
        b.session_id = None
        b.totals = b.at_since = None
        b.estimated = False
        return Event(uid, t, self.device_id, "run_stop", payload)
