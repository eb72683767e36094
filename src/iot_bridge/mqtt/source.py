"""What the intake sees of MQTT: one stream of items, and acknowledgements going back.

The intake (``runtime/intake.py``) owns the pipeline and pulls :data:`SourceItem` values from a
:class:`MessageSource`: batches of received messages with the moment they arrived, and the
connection's life (up, down, caught up with the broker's backlog) as items of the same stream,
so that their order relative to the messages is exact. It acknowledges messages with
:meth:`MessageSource.ack` once their effects are committed, and stops the flow with
:meth:`MessageSource.pause` when it cannot store what it receives.

Our MQTT client (:class:`iot_bridge.mqtt.client.MqttClient`) implements this; tests drive the
intake with a fake source that implements the same five methods.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from iot_bridge.mqtt.packets import Oversize, Publish


@dataclass(frozen=True, slots=True)
class Received:
    """Messages that arrived together at ``at`` on connection number ``generation``.

    A QoS 1 message carries its packet id; ``ack(generation, ids)`` acknowledges it, and only
    on the connection it came in on (after a reconnect the broker redelivers instead)."""

    at: float
    generation: int
    messages: list[Publish]
    oversize: list[Oversize] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Connected:
    """A connection is up and subscribed. ``session_present`` is false when the broker kept no
    session for us (it restarted without persistence, or never knew us): then nothing it might
    have queued while we were away exists."""

    at: float
    generation: int
    session_present: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The connection ended at ``at``. ``observed``: it was lost (the broker went away or the
    network failed) rather than closed by the bridge itself (pause, stop)."""

    at: float
    reason: str
    observed: bool


@dataclass(frozen=True, slots=True)
class CaughtUp:
    """Everything the broker held for us when we connected has been delivered.

    ``echoed``: the broker returned the marker the source published right after subscribing,
    so this is exact; otherwise the source gave up waiting for it and this is a guess."""

    at: float
    generation: int
    echoed: bool


SourceItem = Received | Connected | Disconnected | CaughtUp


class MessageSource(Protocol):
    async def get(self) -> SourceItem:
        """The next item; waits while there is none."""
        ...

    def ack(self, generation: int, packet_ids: Sequence[int]) -> None:
        """Acknowledge QoS 1 messages of connection ``generation`` (ignored once it is gone)."""
        ...

    def pause(self) -> None:
        """Stop delivering: the broker keeps (and later redelivers) what is not acknowledged."""
        ...

    def resume(self) -> None:
        """Deliver again after :meth:`pause`."""
        ...

    async def set_filters(self, filters: Iterable[str]) -> None:
        """Make ``filters`` the subscription set (applied now if connected, else on connect)."""
        ...
