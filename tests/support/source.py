"""A message source for tests: the test pushes items, the intake pulls them, acks are recorded.

Implements :class:`iot_bridge.mqtt.source.MessageSource` without a broker, so the intake and
the pipeline can be driven in simulated time (with :class:`tests.support.clock.FakeClock`)."""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from iot_bridge.mqtt import packets as pk
from iot_bridge.mqtt.source import CaughtUp, Connected, Disconnected, Received, SourceItem


@dataclass
class FakeSource:
    now: Callable[[], float]
    items: collections.deque[SourceItem] = field(default_factory=collections.deque)
    acks: list[tuple[float, int, list[int]]] = field(default_factory=list)  # (at, gen, ids)
    filters: set[str] = field(default_factory=set)
    paused: bool = False
    pauses: int = 0
    generation: int = 0
    on_ack: Callable[[int, Sequence[int]], None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    _next_id: int = 0

    # -- MessageSource ------------------------------------------------------------------------

    async def get(self) -> SourceItem:
        while not self.items:
            self._ready.clear()
            await self._ready.wait()
        return self.items.popleft()

    def ack(self, generation: int, packet_ids: Sequence[int]) -> None:
        if self.on_ack is not None:
            self.on_ack(generation, packet_ids)
        self.acks.append((self.now(), generation, list(packet_ids)))

    def pause(self) -> None:
        self.paused = True
        self.pauses += 1
        self.disconnect(observed=False)

    def resume(self) -> None:
        self.paused = False

    async def set_filters(self, filters: Iterable[str]) -> None:
        self.filters = set(filters)

    # -- what the test does ---------------------------------------------------------------------

    def push(self, item: SourceItem) -> None:
        self.items.append(item)
        self._ready.set()

    def connect(self, session_present: bool = True, caught_up: bool = True) -> None:
        self.generation += 1
        self.push(Connected(self.now(), self.generation, session_present))
        if caught_up:
            self.catch_up()

    def catch_up(self, echoed: bool = True) -> None:
        self.push(CaughtUp(self.now(), self.generation, echoed))

    def disconnect(self, observed: bool = True) -> None:
        self.push(Disconnected(self.now(), "test", observed))

    def publish(
        self, *messages: tuple[str, bytes], qos: int = 1, retain: bool = False
    ) -> list[int]:
        """One batch arriving now; returns the packet ids given to its QoS 1 messages."""
        batch = []
        ids = []
        for topic, payload in messages:
            packet_id = None
            if qos:
                self._next_id = self._next_id % 65535 + 1
                packet_id = self._next_id
                ids.append(packet_id)
            batch.append(pk.Publish(topic, payload, qos, packet_id, retain, False))
        self.push(Received(self.now(), self.generation, batch))
        return ids

    def acked_ids(self) -> list[int]:
        return [i for _, gen, ids in self.acks if gen == self.generation for i in ids]


def pm1(watts: float, energy: float = 100.0) -> bytes:
    """A Shelly PM Mini Gen3 ``status/pm1:0`` object (no device time of its own)."""
    return json.dumps(
        {"id": 0, "apower": watts, "voltage": 230.0, "aenergy": {"total": energy}}
    ).encode()


def notify(watts: float, ts: float, energy: float | None = None) -> bytes:
    """A Shelly ``NotifyStatus`` delta with the device's ``params.ts``."""
    comp: dict[str, object] = {"id": 0, "apower": watts}
    if energy is not None:
        comp["aenergy"] = {"total": energy}
    return json.dumps({"method": "NotifyStatus", "params": {"ts": ts, "pm1:0": comp}}).encode()
