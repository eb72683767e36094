"""``iot-bridge demo``: a private mosquitto, the Shelly simulator and the bridge in standalone
mode, all on this machine; prints the sessions the bridge detected. Nothing to configure."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from iot_bridge.errors import BrokerError
from iot_bridge.runtime.service import Bridge
from iot_bridge.settings import Broker, Settings
from iot_bridge.tools.broker import Mosquitto, free_port
from iot_bridge.tools.replay import SESSION_FIELDS, write_table

SCENARIOS = ("full_session", "timeout", "flapping", "offline")
INTERVAL = 0.25


def demo_devices() -> dict[str, object]:
    return {
        "config_version": "demo",
        "devices": [
            {
                "device_id": f"demo-{name}",
                "mqtt_topic": f"demo/{name}/status/pm1:0",
                "parser_type": "shelly_pm_mini_g3",
                "machine_name": f"Demo machine ({name})",
                "session_config": {
                    "strategy": "power_threshold",
                    "standby_threshold_w": 20,
                    "working_threshold_w": 100,
                    "start_debounce_s": 3 * INTERVAL,
                    "stop_debounce_s": 6 * INTERVAL,
                    "message_timeout_s": 10 * INTERVAL,
                },
            }
            for name in SCENARIOS
        ],
    }


async def run_demo(workdir: Path) -> int:
    from iot_bridge.tools.simulator import add_arguments, simulate

    broker = Mosquitto(workdir / "broker")
    try:
        broker.start()
    except BrokerError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    try:
        devices_file = workdir / "devices.json"
        devices_file.write_text(json.dumps(demo_devices(), indent=2))
        settings = Settings(
            mqtt_brokers=(Broker("127.0.0.1", broker.port),),
            mqtt_tls=False,
            mqtt_client_id="iot-bridge-demo",
            devices_file=devices_file,
            data_dir=workdir / "data",
            health_host="127.0.0.1",
            health_port=free_port(),
        )
        bridge = Bridge(settings)
        task = asyncio.create_task(bridge.run())
        while not bridge.mqtt.connected:
            await asyncio.sleep(0.05)
        print(f"demo: broker on 127.0.0.1:{broker.port}, bridge health on "
              f"http://127.0.0.1:{settings.health_port}/health")  # fmt: skip
        sims = []
        for name in SCENARIOS:
            ap = argparse.ArgumentParser()
            add_arguments(ap)
            args = ap.parse_args(["--broker", "127.0.0.1", "--port", str(broker.port),
                                  "--no-tls", "--scenario", name, "--prefix", f"demo/{name}",
                                  "--interval", str(INTERVAL)])  # fmt: skip
            sims.append(simulate(args))
        await asyncio.gather(*sims)
        deadline = time.monotonic() + 30 * INTERVAL
        while bridge.pipeline.open_sessions() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2 * INTERVAL)
        bridge.stop()
        await task
        events = bridge_events(settings.data_dir)
    finally:
        broker.kill()
    stops = [e for e in events if e["event_type"] == "run_stop"]
    print(f"demo: {len(events)} events in the local store, {len(stops)} sessions:")
    rows = [{k: e["payload"][k] for k in SESSION_FIELDS} for e in stops]
    write_table(rows, sys.stdout, devices=[e["device_id"] for e in stops])
    print("(demo-flapping crossed the working threshold every frame: no session, as expected)")
    return 0


def bridge_events(data_dir: Path) -> list[dict[str, Any]]:
    from iot_bridge.outbox.store import Store

    store = Store(data_dir / "bridge.db")
    try:
        return store.all_events()
    finally:
        store.close()


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="iot-bridge-demo-") as tmp,
        contextlib.suppress(KeyboardInterrupt),
    ):
        return asyncio.run(run_demo(Path(tmp)))
    return 130
