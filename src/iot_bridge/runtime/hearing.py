"""The bridge's hearing: connected, and caught up with the broker's backlog. Pure.

Split from ``pipeline.py``. Deadlines fire on the wall clock only while the bridge hears
(:attr:`Hearing.hearing`); while it catches up (``window`` is the outage being replayed) what
arrives late is placed at its event time (``sessions/timeline.py``) and decided there.
"""

from __future__ import annotations

from collections.abc import Iterable

from iot_bridge.runtime.tracked import TrackedDevice


class Hearing:
    def __init__(self, marker: bool) -> None:
        # a new pipeline hears (replay); the intake says otherwise at once
        self.connected = True
        self.window: tuple[float | None, float] | None = None  # outage being caught up
        self.outage: tuple[float | None, bool] | None = None  # (since, observed) while down
        self.untimed_late = marker  # the broker returned our marker the last time

    @property
    def hearing(self) -> bool:
        return self.connected and self.window is None

    def disconnected(self, at: float | None, observed: bool) -> None:
        self.connected = False
        self.window = None
        if self.outage is None:
            self.outage = (at, observed)

    def connected_at(
        self, at: float, session_present: bool, devices: Iterable[TrackedDevice]
    ) -> list[str]:
        """Connected again: forgive open sessions the time the bridge could not hear and the
        broker cannot replay; returns the devices forgiven (their state changed)."""
        since, observed = self.outage or (None, False)
        self.outage = None
        self.connected = True
        forgiven = []
        for device in devices:
            det = device.detector
            if not det.session_open:
                continue
            start = since if since is not None else det.last_seen
            if start is not None and (observed or not session_present):
                det.forgive(start, at)
                forgiven.append(device.device_id)
        self.window = (since, at)
        return forgiven

    def caught_up(self, echoed: bool, devices: Iterable[TrackedDevice]) -> None:
        self.window = None
        self.untimed_late = echoed
        for device in devices:
            device.timeline.end_catch_up()
