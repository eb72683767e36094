"""Time as an input: everything that waits, retries or times out asks a :class:`Clock`.

The session detector takes ``now`` as an argument; the code around it (the intake's commit
window and deadlines, delivery back-off, MQTT reconnects and keepalive) takes a clock object
instead of reading ``time.time()`` or calling ``asyncio.sleep``. Production uses
:class:`SystemClock`; tests pass a fake clock that only moves when the test moves it, so a
minute of Odoo outage is simulated in microseconds and the order of what happens is exact.

One time base everywhere: Unix seconds (``now()``), the same numbers that become event times.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol


class Timer(Protocol):
    """What :meth:`Clock.call_at` returns: something that can be cancelled."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float:
        """Unix seconds."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Run ``callback`` (on the event loop) once ``now() >= when``."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Return once ``now() >= when`` (at once if it already is)."""
        ...

    async def sleep(self, delay: float) -> None:
        """``sleep_until(now() + delay)``."""
        ...


class SystemClock:
    """The real clock: ``time.time()`` and the running event loop's timers."""

    def now(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        loop = asyncio.get_running_loop()
        return loop.call_later(max(0.0, when - time.time()), callback)

    async def sleep_until(self, when: float) -> None:
        delay = when - time.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def sleep(self, delay: float) -> None:
        await asyncio.sleep(max(0.0, delay))


SYSTEM_CLOCK = SystemClock()


@contextlib.asynccontextmanager
async def timeout(clock: Clock, delay: float) -> AsyncIterator[None]:
    """Like ``asyncio.timeout(delay)``, but on ``clock``: raises ``TimeoutError`` when the body
    has not finished ``delay`` seconds of that clock after it began."""
    task = asyncio.current_task()
    assert task is not None, "timeout() needs a running task"
    fired = False

    def expire() -> None:
        nonlocal fired
        fired = True
        task.cancel()

    timer = clock.call_at(clock.now() + delay, expire)
    try:
        yield
    except asyncio.CancelledError:
        if fired and task.uncancel() == 0:
            raise TimeoutError from None
        raise
    finally:
        timer.cancel()
