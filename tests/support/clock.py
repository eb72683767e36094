"""A clock for tests: time moves only when the test moves it.

``FakeClock`` implements :class:`iot_bridge.clock.Clock`. Timers and sleepers registered with it
run when :meth:`FakeClock.advance` (or :meth:`FakeClock.run_until`) passes their time, one at a
time and in time order, and after each the event loop is given the chance to run whatever they
woke (``settle``). So a test of a 65 s Odoo outage takes milliseconds and sees every retry at its
exact simulated moment.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable


class _Timer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


async def settle(rounds: int = 50) -> None:
    """Let every task that can run, run, until the loop has nothing ready (bounded).

    Reads the loop's private ready queue: a test helper, never used by the bridge itself."""
    loop = asyncio.get_running_loop()
    for _ in range(rounds):
        await asyncio.sleep(0)
        if not getattr(loop, "_ready", None):
            await asyncio.sleep(0)
            if not getattr(loop, "_ready", None):
                return


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._timers: list[tuple[float, int, _Timer]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> _Timer:
        timer = _Timer(when, callback)
        heapq.heappush(self._timers, (when, next(self._seq), timer))
        return timer

    async def sleep_until(self, when: float) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        timer = self.call_at(when, wake)
        try:
            await fut
        finally:
            timer.cancel()

    async def sleep(self, delay: float) -> None:
        await self.sleep_until(self._now + max(0.0, delay))

    def next_timer(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        return self._timers[0][0] if self._timers else None

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, firing every timer on the way in order."""
        await self.run_until(self._now + seconds)

    async def run_until(self, when: float) -> None:
        await settle()
        while True:
            due = self.next_timer()
            if due is None or due > when:
                break
            _, _, timer = heapq.heappop(self._timers)
            self._now = max(self._now, timer.when)
            timer.callback()
            await settle()
        self._now = max(self._now, when)
        await settle()
