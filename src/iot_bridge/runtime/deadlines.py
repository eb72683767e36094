"""The devices' next deadlines (debounce ends, message timeouts) as one heap. Pure.

Split from ``pipeline.py``. A heap with lazy deletion: a device is pushed only when its
deadline moves *earlier*; a message timeout that moves later is found stale when popped and
re-pushed then, so a stream of readings does not grow the heap. An entry is stale when its
device was replaced or removed (``live`` is false) or its deadline is no longer the one the
device has scheduled.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator

from iot_bridge.runtime.tracked import TrackedDevice


class Deadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TrackedDevice]] = []
        self._tie = itertools.count()

    def clear(self) -> None:
        self._heap.clear()

    def schedule(self, device: TrackedDevice, now: float | None = None) -> None:
        """Push ``device``'s deadline if it is earlier than the one it has in the heap.
        ``now``: the detector just handled a message at ``now``, so an entry due by then was
        already handled inline and is stale."""
        deadline = device.detector.next_deadline()
        if now is not None and device.scheduled is not None and device.scheduled <= now:
            device.scheduled = None
        if deadline is not None and (device.scheduled is None or deadline < device.scheduled):
            device.scheduled = deadline
            heapq.heappush(self._heap, (deadline, next(self._tie), device))

    def next(self) -> float | None:
        """The earliest deadline of any device (stale entries on top are dropped)."""
        heap = self._heap
        while heap:
            deadline, _, device = heap[0]
            if device.live and device.scheduled == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def due(self, now: float) -> Iterator[TrackedDevice]:
        """The devices whose deadline is due by ``now``, earliest first, each taken off the
        heap; the caller advances each and schedules it again (which may push while this
        iterates: the heap is read afresh at every step)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, device = heapq.heappop(heap)
            if not device.live or device.scheduled != deadline:
                continue
            device.scheduled = None
            yield device
