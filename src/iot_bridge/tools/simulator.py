"""Shelly PM Mini Gen3 simulator: publishes real-shaped ``<prefix>/status/pm1:0`` frames.

The original's flags (``--broker``, ``--port``, ``--no-tls``, ``--username``, ``--password``,
``--scenario``) plus ``--interval`` (seconds between frames; the scenarios are written in frames
so tests can run them fast) and ``--prefix``. Frames carry a rising ``aenergy.total`` like the
real device, so the bridge computes energy from the counter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from iot_bridge.clock import SYSTEM_CLOCK
from iot_bridge.errors import MqttError
from iot_bridge.mqtt.connection import Endpoint, open_connection

# scenario -> steps of (frames, watts); watts None = silence, "offline" = LWT false
Step = tuple[int, float | str | None]
SCENARIOS: dict[str, list[Step]] = {
    # a machine that is already working, then stops: one session, reason normal
    "session_end": [(8, 320.0), (8, 2.0)],
    # idle, standby, work, a pause in standby, work again, off: one session, reason normal
    "full_session": [(3, 0.5), (3, 35.0), (6, 450.0), (5, 40.0), (6, 520.0), (10, 1.0)],
    # working, then the plug falls silent: the session ends by message timeout
    "timeout": [(2, 0.5), (8, 400.0), (12, None)],
    # switched on but never working: no session
    "standby": [(3, 0.5), (15, 40.0), (3, 0.5)],
    # power flips around the working threshold every frame: no session (start debounce)
    "flapping": [(1, 0.5), *[(1, 90.0 if i % 2 else 110.0) for i in range(16)], (3, 0.5)],
    # working, then the device's LWT says offline: the session ends with reason offline
    "offline": [(2, 0.5), (8, 380.0), (1, "offline")],
}


@dataclass(frozen=True, slots=True)
class Frame:
    topic: str
    payload: bytes
    retain: bool = False


def pm1_frame(power_w: float, energy_wh: float, voltage: float = 231.4) -> dict[str, object]:
    minute = int(time.time() // 60 * 60)
    return {
        "id": 0,
        "voltage": voltage,
        "current": round(power_w / voltage, 3),
        "apower": round(power_w, 1),
        "freq": 50.0,
        "aenergy": {"total": round(energy_wh, 3), "by_minute": [0.0, 0.0, 0.0],
                    "minute_ts": minute},
        "ret_aenergy": {"total": 0.0, "by_minute": [0.0, 0.0, 0.0], "minute_ts": minute},
    }  # fmt: skip


def frames(scenario: str, prefix: str, interval: float) -> Iterator[Frame | None]:
    """The scenario as frames, one per interval; ``None`` is an interval of silence."""
    energy = 1523.0
    yield Frame(f"{prefix}/online", b"true", retain=True)
    for count, watts in SCENARIOS[scenario]:
        for _ in range(count):
            if watts is None:
                yield None
            elif watts == "offline":
                yield Frame(f"{prefix}/online", b"false", retain=True)
            else:
                assert isinstance(watts, float)
                energy += watts * interval / 3600
                body = json.dumps(pm1_frame(watts, energy), separators=(",", ":")).encode()
                yield Frame(f"{prefix}/status/pm1:0", body)


async def simulate(args: argparse.Namespace) -> int:
    tls = None
    if not args.no_tls:
        tls = ssl.create_default_context(cafile=args.ca_file)
    endpoint = Endpoint(
        host=args.broker,
        port=args.port,
        client_id=args.client_id or f"shelly-sim-{args.prefix}",
        username=args.username or None,
        password=args.password or None,
        tls=tls,
        clean_session=True,
    )
    try:
        conn = await open_connection(endpoint, SYSTEM_CLOCK)
    except MqttError as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 1
    sent = 0
    try:
        for frame in frames(args.scenario, args.prefix, args.interval):
            if frame is not None:
                await conn.publish(frame.topic, frame.payload, qos=args.qos, retain=frame.retain)
                sent += 1
                if args.verbose:
                    print(f"{frame.topic} {frame.payload.decode()}")
            await asyncio.sleep(args.interval)
    finally:
        await conn.disconnect()
    print(f"simulator: scenario {args.scenario} done, {sent} messages published")
    return 0


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--broker", default="localhost")
    ap.add_argument("--port", type=int, default=None, help="default 1883, or 8883 with TLS")
    ap.add_argument("--no-tls", action="store_true", help="plain TCP instead of TLS")
    ap.add_argument("--ca-file", default=None, help="CA bundle for the broker's certificate")
    ap.add_argument("--username", default="")
    ap.add_argument("--password", default="")
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default="full_session")
    ap.add_argument("--prefix", default="shaperorigin", help="the Shelly's MQTT topic prefix")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between frames")
    ap.add_argument("--qos", type=int, choices=[0, 1], default=1)
    ap.add_argument("--client-id", default=None)
    ap.add_argument("--verbose", "-v", action="store_true")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="shelly_simulator", description=__doc__)
    add_arguments(ap)
    args = ap.parse_args(argv)
    return run(args)


def run(args: argparse.Namespace) -> int:
    if args.port is None:
        args.port = 1883 if args.no_tls else 8883
    return asyncio.run(simulate(args))
