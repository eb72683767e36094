"""Our MQTT client next to paho-mqtt 2.x, gmqtt and aiomqtt, each acknowledging after a commit.

One command: ``.venv/bin/python bench/mqtt_clients.py`` (a quiet machine, a few minutes);
``--quick`` for short steps (a smoke run, figures only indicative). Needs the optional ``bench``
dependencies: ``.venv/bin/pip install -e '.[bench]'``.

The bridge acknowledges a QoS 1 reading only after it is committed, in groups of a few
milliseconds. So every subscriber here does the same work per message, in the way its library
allows it:

- decode the JSON payload (``orjson``) and count it;
- collect the message's acknowledgement; every :data:`COMMIT_S` a "commit" (a no-op standing in
  for the SQLite group commit) releases the collected group, then the acknowledgements are sent:
  - ours: ``Connection.ack(ids)``, one socket write per group;
  - paho-mqtt 2.x: ``Client(manual_ack=True)``, ``ack(mid, qos)`` per message, driven by
    ``loop()`` in one thread (no callback thread, no locks contended);
  - gmqtt: an ``async`` ``on_message`` that awaits the group's commit (gmqtt sends the PUBACK
    when the coroutine returns: one task per message);
  - aiomqtt 2.x has no manual acknowledgement of its own: its paho client is switched to manual
    acks (``_client.manual_ack_set(True)``, a private attribute) and acked per message.

Figures, per client, in one run against one private mosquitto (persistence off, queues and
in-flight limits raised so the broker does not throttle): the highest sustained rate at QoS 0
and QoS 1 (paced steps of 1 000 device topics, the same pass rule as ``bench/e2e.py``: everything
received within 105 % of the step), and the CPU share of one core at 1 000 msg/s QoS 1.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e import Load, Receiver, cpu_seconds, sustained

from iot_bridge.clock import SYSTEM_CLOCK
from iot_bridge.mqtt import packets as pk
from iot_bridge.mqtt.connection import Endpoint, open_connection
from iot_bridge.tools.broker import Mosquitto

COMMIT_S = 0.002
DEVICES = 1000
TOPICS = "bench/+/status/pm1:0"
Subscriber = Callable[[int, int, Any, Any], None]


def ours(port: int, qos: int, count: Any, ready: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        pending: list[int] = []
        conn_box: list[Any] = []

        def commit_then_ack() -> None:
            ids = pending[:]
            pending.clear()
            conn_box[0].ack(ids)  # one write for the whole group

        def on_messages(msgs: list[pk.Publish], oversize: list[pk.Oversize], now: float) -> None:
            for m in msgs:
                orjson.loads(m.payload)
                if m.packet_id is not None:
                    if not pending:
                        loop.call_later(COMMIT_S, commit_then_ack)
                    pending.append(m.packet_id)
            count.value += len(msgs)

        ep = Endpoint("127.0.0.1", port, f"ours-{qos}", clean_session=True, keepalive=60)
        conn = await open_connection(ep, SYSTEM_CLOCK, on_messages)
        conn_box.append(conn)
        await conn.subscribe([TOPICS], qos)
        ready.set()
        await conn.closed

    asyncio.run(main())


def paho(port: int, qos: int, count: Any, ready: Any) -> None:
    import paho.mqtt.client as mqtt

    pending: list[tuple[int, int]] = []

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        orjson.loads(msg.payload)
        count.value += 1
        if msg.qos:
            pending.append((msg.mid, msg.qos))

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"paho-{qos}", clean_session=True,
        manual_ack=True,
    )  # fmt: skip
    client.on_message = on_message
    client.connect("127.0.0.1", port, keepalive=60)
    client.subscribe(TOPICS, qos)
    ready.set()
    committed = time.monotonic()
    while True:
        client.loop(timeout=COMMIT_S)
        now = time.monotonic()
        if pending and now - committed >= COMMIT_S:
            group = pending[:]
            pending.clear()
            for mid, q in group:  # paho acks one message per call
                client.ack(mid, q)
            committed = now


class GroupCommit:
    """A future per commit window: every awaiting message is released by the same commit."""

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None

    def wait(self) -> asyncio.Future[None]:
        if self._future is None:
            loop = asyncio.get_running_loop()
            fut = self._future = loop.create_future()

            def commit() -> None:
                self._future = None
                fut.set_result(None)

            loop.call_later(COMMIT_S, commit)
        return self._future


def gmqtt_sub(port: int, qos: int, count: Any, ready: Any) -> None:
    import gmqtt

    async def main() -> None:
        commits = GroupCommit()

        async def on_message(client: Any, topic: str, payload: bytes, q: int, props: Any) -> int:
            orjson.loads(payload)
            count.value += 1
            if q:
                await commits.wait()  # the PUBACK goes out when this returns
            return 0

        client = gmqtt.Client(f"gmqtt-{qos}", clean_session=True)
        client.on_message = on_message
        await client.connect("127.0.0.1", port, version=gmqtt.constants.MQTTv311, keepalive=60)
        client.subscribe(TOPICS, qos=qos)
        await asyncio.sleep(0.5)  # gmqtt's subscribe does not wait for the SUBACK
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def aiomqtt_sub(port: int, qos: int, count: Any, ready: Any) -> None:
    import aiomqtt

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with aiomqtt.Client(
            "127.0.0.1", port, identifier=f"aiomqtt-{qos}", clean_session=True, keepalive=60
        ) as client:
            paho_client = client._client  # no manual acks in aiomqtt's own API
            paho_client.manual_ack_set(True)
            pending: list[int] = []

            def commit_then_ack() -> None:
                group = pending[:]
                pending.clear()
                for mid in group:
                    paho_client.ack(mid, 1)

            await client.subscribe(TOPICS, qos)
            ready.set()
            async for message in client.messages:
                orjson.loads(message.payload)
                count.value += 1
                if message.qos:
                    if not pending:
                        loop.call_later(COMMIT_S, commit_then_ack)
                    pending.append(message.mid)

    asyncio.run(main())


CLIENTS: dict[str, Subscriber] = {
    "ours (iot_bridge.mqtt)": ours,
    "paho-mqtt 2.x (manual_ack)": paho,
    "gmqtt": gmqtt_sub,
    "aiomqtt 2.x (paho manual ack)": aiomqtt_sub,
}


def start(target: Subscriber, port: int, qos: int) -> Receiver:
    ctx = mp.get_context("fork")
    count, ready = ctx.Value("q", 0), ctx.Event()
    proc = ctx.Process(target=target, args=(port, qos, count, ready), daemon=True)
    proc.start()
    if not ready.wait(30):
        proc.kill()
        raise RuntimeError(f"{target.__name__} did not subscribe")
    time.sleep(0.2)

    def stop() -> None:
        proc.kill()
        proc.join()

    return Receiver(proc.pid or 0, lambda: int(count.value), stop)


def cpu_share(load: Load, rx: Receiver, rate: float, seconds: float) -> float:
    cpu0, t0 = cpu_seconds(rx.pid), time.monotonic()
    load.run(rate, seconds)
    time.sleep(0.2)
    return (cpu_seconds(rx.pid) - cpu0) / (time.monotonic() - t0) * 100


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in ("paho-mqtt", "gmqtt", "aiomqtt"):
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} missing (pip install -e '.[bench]')")
    return ", ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 s steps, few rates (a smoke run)")
    ap.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated names")
    args = ap.parse_args()
    step = 1.0 if args.quick else 3.0
    rates = {
        0: [2_000, 10_000, 30_000] if args.quick else
           [5_000, 10_000, 20_000, 40_000, 60_000, 80_000, 100_000, 150_000, 200_000, 300_000,
            400_000],
        1: [2_000, 10_000, 30_000] if args.quick else
           [5_000, 10_000, 20_000, 30_000, 40_000, 60_000, 80_000, 100_000, 150_000],
    }  # fmt: skip
    cpu_s = 3.0 if args.quick else 20.0
    chosen = [c.strip() for c in args.clients.split(",")]
    print(f"{'quick run, figures indicative only; ' if args.quick else ''}{versions()}")
    print(f"commit window {COMMIT_S * 1000:.0f} ms, {DEVICES} device topics, steps {step:g} s")
    table: dict[str, dict[str, str]] = {}
    with (
        tempfile.TemporaryDirectory() as tmp,
        Mosquitto(
            Path(tmp) / "broker", persistence=False, max_queued=1_000_000, max_inflight=0
        ) as broker,
    ):
        for name in chosen:
            target = CLIENTS[name]
            row = table.setdefault(name, {})
            for qos in (0, 1):
                print(f"  {name}, QoS {qos}:", flush=True)
                rx = start(target, broker.port, qos)
                load = Load(broker.port, DEVICES, qos)
                try:
                    best, cpu_us = sustained(load, rx, rates[qos], step)
                    row[f"qos{qos}"] = f"{best:,} msg/s ({cpu_us:.1f} µs CPU/msg)"
                    if qos == 1:
                        share = cpu_share(load, rx, 1000, cpu_s)
                        row["cpu1000"] = f"{share:.1f} % of a core"
                finally:
                    load.close()
                    rx.stop()
    print()
    head = f"CPU at 1 000 msg/s QoS 1 ({cpu_s:g} s)"
    print(f"| client | QoS 0 sustained | QoS 1 sustained | {head} |")
    print("|---|---|---|---|")
    for name, row in table.items():
        cells = [row.get(k, "-") for k in ("qos0", "qos1", "cpu1000")]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
