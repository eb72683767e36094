"""A log that cannot be flooded: one line per cause per interval, with a count.

A repeated failure (a broker that refuses every second, an ``accept()`` out of file descriptors,
asyncio's own "socket.accept() out of system resource" from its accept loop) must neither fill
the disk nor drown the one line that explains it. :class:`ThrottlingHandler` wraps the handlers
the CLI configures: a WARNING or ERROR line goes out the first time its cause is seen; repeats
within ``interval`` seconds are only counted; the count goes out as one line when the interval
is over (with the next log line of any kind, or at exit). INFO and DEBUG lines pass untouched:
they carry sessions and readings, and are not where floods come from.

The cause is the logger, the level and the first line of the message (asyncio puts the socket's
details on the lines after it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

INTERVAL_S = 60.0
MAX_CAUSES = 1000  # causes tracked at once; beyond that the oldest is reported and forgotten


@dataclass
class _Cause:
    until: float  # the end of this cause's interval
    record: logging.LogRecord  # the line that opened the interval
    repeats: int = 0


class ThrottlingHandler(logging.Handler):
    def __init__(
        self,
        target: logging.Handler,
        *,
        interval: float = INTERVAL_S,
        level: int = logging.WARNING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(target.level)
        self.target = target
        self.interval = interval
        self.throttle_level = level
        self._clock = clock
        self._causes: dict[tuple[str, int, str], _Cause] = {}
        self._next_expiry = float("inf")

    def emit(self, record: logging.LogRecord) -> None:
        now = self._clock()
        if now >= self._next_expiry:
            self._report_expired(now)
        if record.levelno < self.throttle_level:
            self.target.handle(record)
            return
        try:
            first_line = record.getMessage().split("\n", 1)[0]
        except Exception:  # a broken format string: let the target report it
            self.target.handle(record)
            return
        key = (record.name, record.levelno, first_line)
        cause = self._causes.get(key)
        if cause is not None:
            cause.repeats += 1
            return
        if len(self._causes) >= MAX_CAUSES:
            oldest = next(iter(self._causes))
            self._report(self._causes.pop(oldest))
        self._causes[key] = _Cause(now + self.interval, record)
        self._next_expiry = min(self._next_expiry, now + self.interval)
        self.target.handle(record)

    def flush(self) -> None:
        """Report every count still open (logging calls this at exit)."""
        for cause in self._causes.values():
            self._report(cause)
        self._causes.clear()
        self._next_expiry = float("inf")
        self.target.flush()

    def _report_expired(self, now: float) -> None:
        for key, cause in list(self._causes.items()):
            if cause.until <= now:
                del self._causes[key]
                self._report(cause)
        self._next_expiry = min((c.until for c in self._causes.values()), default=float("inf"))

    def _report(self, cause: _Cause) -> None:
        if not cause.repeats:
            return
        first = cause.record
        line = first.getMessage().split("\n", 1)[0]
        summary = logging.makeLogRecord(
            {
                "name": first.name,
                "levelno": first.levelno,
                "levelname": first.levelname,
                "msg": "%s (repeated %d more times within %.0f s)",
                "args": (line, cause.repeats, self.interval),
                "pathname": first.pathname,
                "lineno": first.lineno,
            }
        )
        self.target.handle(summary)


def throttle_root_handlers(interval: float = INTERVAL_S) -> None:
    """Wrap every handler of the root logger (once) in a :class:`ThrottlingHandler`."""
    root = logging.getLogger()
    root.handlers = [
        h if isinstance(h, ThrottlingHandler) else ThrottlingHandler(h, interval=interval)
        for h in root.handlers
    ]
