"""Generate the bundled recording ``shaper_origin_day.jsonl`` (deterministic, seed fixed).

A Shaper Origin on a Shelly PM Mini Gen3 through one workshop day: idle, standby with the screen
on, cuts with pauses, a false start (spindle test), a long coffee break in standby, a Wi-Fi drop
in the middle of a cut (the message timeout ends that session), cuts that hover around the
working threshold, and the plug's LWT at closing time. Frames look like the device's
``<prefix>/status/pm1:0`` status objects; cadence is change-driven, at least every 10 s while the
machine draws power and once a minute while it is off.
"""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime

TOPIC = "shaperorigin/status/pm1:0"
ONLINE = "shaperorigin/online"
rng = random.Random(20260312)
day = datetime(2026, 3, 12, 7, 30, tzinfo=UTC).timestamp()

# (duration_s, level_w, noise_w); level 0 = machine off
PLAN: list[tuple[float, float, float]] = [
    (1900, 0.4, 0.3),  # 07:30 plug on, machine off
    (180, 31, 3),  # 08:02 machine on, screen, standby
    (260, 480, 60),
    (90, 33, 3),
    (340, 520, 70),
    (150, 32, 3),
    (200, 610, 50),
    (240, 31, 3),
    (120, 450, 40),
    (60, 30, 2),
    (1800, 0.6, 0.3),  # off
    (60, 32, 3),
    (2, 160, 5),
    (40, 31, 3),  # 09:10 spindle test: a false start
    (2900, 0.5, 0.3),
    (120, 33, 3),
    (400, 540, 60),
    (900, 34, 3),  # coffee break in standby
    (500, 580, 60),
    (100, 30, 2),
    (9000, 0.5, 0.3),
    (90, 32, 3),
    (600, 500, 50),  # 13:30 cut, then the Wi-Fi drops
]
AFTER_DROP: list[tuple[float, float, float]] = [
    (2400, 0.7, 0.3),
    (60, 31, 3),
    (420, 115, 25),
    (120, 31, 3),
    (300, 125, 20),  # light cuts near 100 W
    (60, 30, 2),
    (4000, 0.4, 0.3),
]


def frame(t: float, power: float, energy: float) -> dict[str, object]:
    volts = round(rng.uniform(229, 236), 1)
    minute = int(t // 60 * 60)
    return {
        "t": round(t, 3),
        "topic": TOPIC,
        "payload": json.dumps(
            {
                "id": 0,
                "voltage": volts,
                "current": round(power / volts, 3),
                "apower": round(power, 1),
                "freq": 50.0,
                "aenergy": {
                    "total": round(energy, 3),
                    "by_minute": [0.0, 0.0, 0.0],
                    "minute_ts": minute,
                },
                "ret_aenergy": {"total": 0.0, "by_minute": [0.0, 0.0, 0.0], "minute_ts": minute},
            },
            separators=(",", ":"),
        ),
    }


def run(
    plan: list[tuple[float, float, float]], t: float, energy: float, out: list[dict[str, object]]
) -> tuple[float, float]:
    for duration, level, noise in plan:
        end = t + duration
        cadence = 60.0 if level < 5 else 10.0
        while t < end:
            power = max(0.0, rng.gauss(level, noise))
            out.append(frame(t, power, energy))
            step = min(cadence * rng.uniform(0.8, 1.0), end - t)
            energy += power * step / 3600
            t += step
    return t, energy


def main() -> None:
    out: list[dict[str, object]] = [{"t": day - 1, "topic": ONLINE, "payload": "true"}]
    t, energy = run(PLAN, day, 1523.0, out)
    t += 1500  # the plug is silent: Wi-Fi gone for 25 minutes
    out.append({"t": round(t, 3), "topic": ONLINE, "payload": "true"})
    t, energy = run(AFTER_DROP, t + 1, energy, out)
    out.append({"t": round(t, 3), "topic": ONLINE, "payload": "false"})
    for line in out:
        sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
