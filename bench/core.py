"""Core cost per message: parse + route + detect, over a mix of Shelly and Tasmota payloads.

Prints microseconds per message for the bridge's pure core (``Pipeline.handle``) and, as the
baseline measured in the same process, for ``orjson.loads`` plus a bare threshold comparison:
the least any bridge must do. The budget is 3 µs per message (issue #2): the broker delivers
well over 100k messages/s to one subscriber here, so the core must never be the bottleneck.

    .venv/bin/python bench/core.py [--messages N]
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable

import orjson

from iot_bridge.devices import DeviceSet, device_from_json
from iot_bridge.runtime.pipeline import Pipeline

DEVICES = 200


def make_messages(n: int) -> tuple[list[tuple[str, bytes]], DeviceSet]:
    rng = random.Random(7)
    entries = []
    for i in range(DEVICES):
        if i % 2:
            entries.append({"device_id": f"pm-{i}", "mqtt_topic": f"plug{i}/status/pm1:0",
                            "parser_type": "shelly_pm_mini_g3"})  # fmt: skip
        else:
            entries.append({"device_id": f"tas-{i}", "mqtt_topic": f"tele/tas{i}/SENSOR",
                            "parser_type": "tasmota"})  # fmt: skip
    devices = DeviceSet("bench", tuple(device_from_json(e) for e in entries))
    messages = []
    power = [0.0] * DEVICES
    for _ in range(n):
        i = rng.randrange(DEVICES)
        if rng.random() < 0.02:  # a machine switches level now and then
            power[i] = rng.choice([0.5, 35.0, 450.0])
        p = round(power[i] + rng.uniform(-2, 2), 1)
        if i % 2:
            payload = {"id": 0, "voltage": 231.4, "current": round(p / 231.4, 3), "apower": p,
                       "freq": 50.0, "aenergy": {"total": 1234.567,
                       "by_minute": [0.0, 0.0, 0.0], "minute_ts": 1719917850}}  # fmt: skip
            messages.append((f"plug{i}/status/pm1:0", orjson.dumps(payload)))
        else:
            payload = {"Time": "2026-03-12T08:00:00", "ENERGY": {"Total": 1.234, "Power": p,
                       "Voltage": 231, "Current": round(p / 231, 3), "Factor": 0.95}}  # fmt: skip
            messages.append((f"tele/tas{i}/SENSOR", orjson.dumps(payload)))
    return messages, devices


def per_message_us(fn: Callable[[], None], n: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=200_000)
    n = ap.parse_args().messages
    messages, devices = make_messages(n)

    def baseline() -> None:
        loads = orjson.loads
        state = {}
        for topic, payload in messages:
            doc = loads(payload)
            p = doc["apower"] if "apower" in doc else doc["ENERGY"]["Power"]
            state[topic] = p >= 100.0

    def core() -> None:
        pipeline = Pipeline()
        pipeline.apply(devices, 0.0)
        t = 1_767_225_600.0
        handle = pipeline.handle
        for topic, payload in messages:
            t += 0.001
            handle(topic, payload, t)

    base = per_message_us(baseline, n)
    bridge = per_message_us(core, n)
    print(f"messages: {n} over {DEVICES} devices (Shelly PM Mini Gen3 + Tasmota)")
    print(f"baseline orjson.loads + threshold: {base:.2f} us/msg")
    print(f"bridge core parse+route+detect:    {bridge:.2f} us/msg  "
          f"(ratio {bridge / base:.2f}x baseline; budget 3.00 us)")  # fmt: skip


if __name__ == "__main__":
    main()
