"""End-to-end benchmark: private mosquitto -> the real bridge process -> a test Odoo sink.

One command (see bench/README.md): ``.venv/bin/python bench/e2e.py``. It prints, in one run:
the highest sustained rate at QoS 0 and QoS 1 (paced steps; a step passes when the receiver has
processed every message within 105 % of the step's length), the drain rate of a
1-minute backlog, CPU µs per message, the CPU share of one core at 1 000 msg/s, RSS with 1 000
and 10 000 devices, and the latency from the decision of a run_start/run_stop to the sink
receiving it (p50, p99). The baseline, measured in the same run with the same procedure, is a
bare subscriber of the same MQTT client code that only receives, decodes and acknowledges;
every bridge figure is printed next to it as a ratio.

The load generator writes pre-encoded PUBLISH packets straight to a socket, so it is never the
bottleneck; devices switch between 1 W and 300 W on a fixed schedule, so sessions open and close
at a steady fraction of the traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from iot_bridge.clock import SYSTEM_CLOCK
from iot_bridge.events import parse_ts
from iot_bridge.mqtt import packets as pk
from iot_bridge.mqtt.connection import Endpoint, open_connection
from iot_bridge.tools.broker import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support.fake_odoo import FakeOdoo  # noqa: E402

SLACK = 0.05  # a step passes if everything is received within 105 % of the step's length
PHASE_S = 10.0  # a device works for one 10 s phase in four: sessions open and close steadily


def device_entries(n: int) -> list[dict[str, Any]]:
    return [
        {
            "device_id": f"bench-{i}",
            "mqtt_topic": f"bench/{i}/status/pm1:0",
            "parser_type": "shelly_pm_mini_g3",
            "session_config": {
                "strategy": "power_threshold",
                "standby_threshold_w": 20,
                "working_threshold_w": 100,
                "start_debounce_s": 1,
                "stop_debounce_s": 2,
                "message_timeout_s": 60,
            },
        }
        for i in range(n)
    ]


def payload(watts: float) -> bytes:
    return orjson.dumps({
        "id": 0, "voltage": 231.4, "current": round(watts / 231.4, 3), "apower": watts,
        "freq": 50.0, "aenergy": {"total": 1234.567, "by_minute": [0.0, 0.0, 0.0],
                                  "minute_ts": 1719917850},
        "ret_aenergy": {"total": 0.0, "by_minute": [0.0, 0.0, 0.0], "minute_ts": 1719917850},
    })  # fmt: skip


class Load:
    """Pre-encoded PUBLISH packets, one per device and power level, sent round robin."""

    def __init__(self, port: int, devices: int, qos: int) -> None:
        self.devices = devices
        self.qos = qos
        off, work = payload(1.0), payload(300.0)
        self.packets = [
            [pk.publish(f"bench/{i}/status/pm1:0", body, qos, (i % 65535) + 1 if qos else None)
             for i in range(devices)]
            for body in (off, work)
        ]  # fmt: skip
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(pk.connect(f"bench-load-{qos}-{time.monotonic_ns()}",
                                     clean_session=True, keepalive=0))  # fmt: skip
        assert self.sock.recv(4)[0] >> 4 == pk.CONNACK
        self.sent = 0
        self._cursor = 0
        threading.Thread(target=self._drain, daemon=True).start()  # broker PUBACKs

    def _drain(self) -> None:
        try:
            while self.sock.recv(1 << 16):
                pass
        except OSError:
            pass

    def chunk(self, count: int) -> bytes:
        phase = int(time.time() // PHASE_S)
        out = []
        for _ in range(count):
            i = self._cursor
            self._cursor = (i + 1) % self.devices
            working = (phase + i) % 4 == 0
            out.append(self.packets[working][i])
        return b"".join(out)

    def run(self, rate: float, seconds: float) -> None:
        """Send ``rate`` msg/s for ``seconds``, paced in 5 ms slices."""
        start = time.monotonic()
        sent_here = 0
        while True:
            elapsed = time.monotonic() - start
            if elapsed >= seconds:
                break
            due = int(rate * min(elapsed + 0.005, seconds)) - sent_here
            if due > 0:
                self.sock.sendall(self.chunk(due))
                sent_here += due
            time.sleep(0.002)
        self.sent += sent_here

    def burst(self, count: int) -> None:
        for start in range(0, count, 5000):
            n = min(5000, count - start)
            self.sock.sendall(self.chunk(n))
        self.sent += count

    def close(self) -> None:
        self.sock.close()


# -- receivers -------------------------------------------------------------------------------


def bare_subscriber(
    port: int, qos: int, devices: int, *, count: Any, ready: Any, span: Any, persistent: bool
) -> None:
    """The baseline: our MQTT connection, orjson decode, ack; nothing else."""

    async def main() -> None:
        loads = orjson.loads

        holder: list[Any] = []

        def on_messages(msgs: list[pk.Publish], oversize: list[pk.Oversize], now: float) -> None:
            conn = holder[0]
            ids = []
            for m in msgs:
                loads(m.payload)
                if m.packet_id is not None:
                    ids.append(m.packet_id)
            if ids:
                conn.ack(ids)
            count.value += len(msgs)
            if span[0] == 0.0:
                span[0] = now
            span[1] = now

        ep = Endpoint("127.0.0.1", port, f"bare-{qos}-{persistent}",
                      clean_session=not persistent, keepalive=60)  # fmt: skip
        conn = await open_connection(ep, SYSTEM_CLOCK, on_messages, hold=True)
        holder.append(conn)
        conn.start_delivery()
        filters = [f"bench/{i}/status/pm1:0" for i in range(devices)]
        for i in range(0, len(filters), 200):
            await conn.subscribe(filters[i : i + 200], qos)
        ready.set()
        await conn.closed

    asyncio.run(main())


@dataclass
class Receiver:
    """A process whose messages count we can read and whose CPU we can measure."""

    pid: int
    count: Callable[[], int]
    stop: Callable[[], None]
    span: Callable[[], tuple[float, float]] | None = None  # first and last receive time


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def start_bare(port: int, qos: int, devices: int, persistent: bool = False) -> Receiver:
    ctx = mp.get_context("fork")
    count, ready, span = ctx.Value("q", 0), ctx.Event(), ctx.Array("d", 2)
    proc = ctx.Process(
        target=bare_subscriber,
        args=(port, qos, devices),
        kwargs={"count": count, "ready": ready, "span": span, "persistent": persistent},
    )
    proc.start()
    ready.wait(30)

    def stop() -> None:
        proc.kill()
        proc.join()

    return Receiver(proc.pid or 0, lambda: int(count.value), stop, lambda: (span[0], span[1]))


class Bridge:
    def __init__(self, tmp: Path, broker: Mosquitto, odoo: FakeOdoo, name: str) -> None:
        self.health_port = free_port()
        env = {**os.environ, "MQTT_URL": broker.url, "ODOO_URL": odoo.url,
               "ODOO_TOKEN": odoo.token, "DATA_DIR": str(tmp / f"data-{name}"),
               "HEALTH_PORT": str(self.health_port), "HEALTH_HOST": "127.0.0.1",
               "MQTT_CLIENT_ID": f"bench-bridge-{name}", "LOG_LEVEL": "WARNING"}  # fmt: skip
        self.env = env
        self.log = open(tmp / f"bridge-{name}.log", "ab")  # noqa: SIM115
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> Bridge:
        self.proc = subprocess.Popen([sys.executable, "-m", "iot_bridge", "run"], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)  # fmt: skip
        if not wait:
            return self
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            health = self.health()
            if health and health["mqtt_connected"] and health["devices_configured"]:
                return self
            time.sleep(0.1)
        raise RuntimeError("bridge did not come up")

    def health(self) -> dict[str, Any] | None:
        try:
            url = f"http://127.0.0.1:{self.health_port}/health"
            with urllib.request.urlopen(url, timeout=5) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read()))
        except OSError:
            return None

    def metric(self, name: str) -> float:
        url = f"http://127.0.0.1:{self.health_port}/metrics"
        try:
            r = urllib.request.urlopen(url, timeout=5)
        except OSError:
            return 0.0  # not up yet
        with r:
            for line in r.read().decode().splitlines():
                if line.startswith(f"iot_bridge_{name} "):
                    return float(line.split()[1])
        return 0.0

    def messages(self) -> int:
        return int(self.metric("messages_total"))

    def span(self) -> tuple[float, float]:
        return (
            self.metric("first_message_timestamp_seconds"),
            self.metric("last_message_timestamp_seconds"),
        )

    def receiver(self) -> Receiver:
        assert self.proc is not None
        return Receiver(self.proc.pid, self.messages, self.stop, self.span)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                print("  !! the bridge did not stop within 20 s of SIGTERM; killed", flush=True)
                self.proc.kill()
                self.proc.wait()


# -- measurements --------------------------------------------------------------------------


def wait_count(rx: Receiver, target: int, timeout: float) -> float | None:
    """Seconds until ``rx`` has processed ``target`` messages, None if not within timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if rx.count() >= target:
            return time.monotonic() - start
        time.sleep(0.01)
    return None


def sustained(load: Load, rx: Receiver, rates: list[int], step_s: float) -> tuple[int, float]:
    """The highest rate whose step the receiver keeps up with; CPU µs/msg at that rate."""
    best, best_cpu = 0, 0.0
    base = rx.count() - load.sent
    for rate in rates:
        cpu0, n0 = cpu_seconds(rx.pid), rx.count()
        start = time.monotonic()
        load.run(rate, step_s)
        # the whole step, sending included, must be done within 5 % of its length: a load
        # generator held back by a full socket counts as lagging too
        budget = step_s * (1 + SLACK) - (time.monotonic() - start)
        lag = wait_count(rx, load.sent + base, max(0.0, budget))
        if lag is None:
            wait_count(rx, load.sent + base, 30)  # let it catch up before we stop
            took = time.monotonic() - start
            print(f"    {rate:>7} msg/s: lags (the step took {took:.2f} s)", flush=True)
            break
        used = cpu_seconds(rx.pid) - cpu0
        best, best_cpu = rate, used / max(1, rx.count() - n0) * 1e6
        print(f"    {rate:>7} msg/s: ok ({best_cpu:.1f} µs CPU/msg)", flush=True)
    return best, best_cpu


def fmt_ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x of baseline" if base else "n/a"


@dataclass
class Rig:
    tmp: Path
    broker: Mosquitto
    odoo: FakeOdoo
    step_s: float
    results: dict[str, Any]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="shorter steps (a smoke run)")
    ap.add_argument("--parts", default="qos0,qos1,realistic,backlog,rss10k",
                    help="comma-separated subset, for tuning one figure")  # fmt: skip
    args = ap.parse_args()
    parts = args.parts.split(",")
    rates = {
        0: [25_000, 50_000, 100_000, 150_000, 200_000, 225_000, 250_000, 275_000, 300_000],
        1: [20_000, 40_000, 60_000, 80_000, 90_000, 100_000, 110_000, 120_000, 140_000],
    }
    with tempfile.TemporaryDirectory(prefix="iot-bench-") as tmp_name:
        tmp = Path(tmp_name)
        broker = Mosquitto(tmp / "broker", persistence=False, max_queued=10_000_000,
                           extra="max_queued_bytes 0\nmax_inflight_bytes 0")  # fmt: skip
        broker.start()
        odoo = FakeOdoo(token="bench-token", devices=device_entries(1000)).start()
        rig = Rig(tmp, broker, odoo, 1.0 if args.quick else 3.0, {})
        try:
            for part in parts:
                if part in ("qos0", "qos1"):
                    qos = int(part[-1])
                    throughput(rig, qos, rates[qos])
                else:
                    {"realistic": realistic, "backlog": backlog, "rss10k": rss_10k_devices}[part](
                        rig
                    )
        finally:
            odoo.stop()
            broker.kill()
    print()
    print(json.dumps(rig.results, indent=2))


def throughput(rig: Rig, qos: int, rates: list[int], devices: int = 1000) -> None:
    port = rig.broker.port
    print(f"QoS {qos}, {devices} devices, {rig.step_s:.0f} s steps", flush=True)
    print("  baseline (bare subscriber: receive + decode + ack)", flush=True)
    bare = start_bare(port, qos, devices)
    load = Load(port, devices, qos)
    b_rate, b_cpu = sustained(load, bare, rates, rig.step_s)
    bare.stop()
    load.close()
    print("  bridge (parse + detect + durable commit + ack + delivery)", flush=True)
    bridge = Bridge(rig.tmp, rig.broker, rig.odoo, f"q{qos}").start()
    load = Load(port, devices, qos)
    r_rate, r_cpu = sustained(load, bridge.receiver(), rates, rig.step_s)
    load.close()
    bridge.stop()
    rig.results[f"qos{qos}"] = {
        "bridge_msg_s": r_rate,
        "baseline_msg_s": b_rate,
        "ratio": round(r_rate / b_rate, 2) if b_rate else None,
        "bridge_cpu_us_per_msg": round(r_cpu, 2),
        "baseline_cpu_us_per_msg": round(b_cpu, 2),
    }
    print(f"  => QoS {qos}: bridge {r_rate} msg/s ({fmt_ratio(r_rate, b_rate)}), baseline "
          f"{b_rate} msg/s; CPU {r_cpu:.1f} vs {b_cpu:.1f} us/msg "
          f"({fmt_ratio(r_cpu, b_cpu)})", flush=True)  # fmt: skip


def cpu_share_at(rx: Receiver, load: Load, rate: float, seconds: float) -> float:
    cpu0, t0 = cpu_seconds(rx.pid), time.monotonic()
    load.run(rate, seconds)
    return (cpu_seconds(rx.pid) - cpu0) / (time.monotonic() - t0)


def realistic(rig: Rig) -> None:
    devices, port = 1000, rig.broker.port
    print("Realistic load: 1000 msg/s over 1000 devices for 20 s (QoS 1)", flush=True)
    bare = start_bare(port, 1, devices)
    load = Load(port, devices, 1)
    b_share = cpu_share_at(bare, load, 1000, 10.0)
    b_rss = rss_mb(bare.pid)
    bare.stop()
    load.close()
    bridge = Bridge(rig.tmp, rig.broker, rig.odoo, "real").start()
    assert bridge.proc is not None
    load = Load(port, devices, 1)
    before = len(rig.odoo.stored_events())
    share = cpu_share_at(bridge.receiver(), load, 1000, 20.0)
    time.sleep(3)
    latencies = event_latencies(rig.odoo, before)
    rss_1k = rss_mb(bridge.proc.pid)
    load.close()
    bridge.stop()
    p50 = statistics.median(latencies) * 1000 if latencies else float("nan")
    p99 = (statistics.quantiles(latencies, n=100)[98] * 1000
           if len(latencies) >= 2 else float("nan"))  # fmt: skip
    print(f"  => CPU {share * 100:.1f} % of one core (baseline {b_share * 100:.1f} %, "
          f"{fmt_ratio(share, b_share)}); {len(latencies)} session events, latency "
          f"decision->sink p50 {p50:.1f} ms, p99 {p99:.1f} ms; RSS {rss_1k:.0f} MB "
          f"(baseline {b_rss:.0f} MB)", flush=True)  # fmt: skip
    rig.results["realistic"] = {
        "cpu_share": round(share, 4),
        "baseline_cpu_share": round(b_share, 4),
        "events": len(latencies),
        "latency_p50_ms": round(p50, 1),
        "latency_p99_ms": round(p99, 1),
        "rss_mb_1k_devices": round(rss_1k, 1),
        "baseline_rss_mb": round(b_rss, 1),
    }


def drain_rate(rx: Receiver, total: int) -> float:
    """msg/s from the first processed message until ``total`` are processed."""
    assert rx.span is not None  # both receivers timestamp their own messages
    if wait_count(rx, total, 180) is None:
        return 0.0
    first, last = rx.span()
    return total / (last - first) if last > first else float("inf")


def backlog(rig: Rig, total: int = 60_000) -> None:
    devices, port = 1000, rig.broker.port
    print("Backlog: 60 s of 1000 msg/s queued while the receiver is down, then drained",
          flush=True)  # fmt: skip
    bare = start_bare(port, 1, devices, persistent=True)  # the session exists from now on
    bare.stop()
    load = Load(port, devices, 1)
    load.burst(total)
    time.sleep(1)
    bare = start_bare(port, 1, devices, persistent=True)
    b_drain = drain_rate(bare, total)
    bare.stop()
    bridge = Bridge(rig.tmp, rig.broker, rig.odoo, "real").start()
    bridge.stop()
    load.burst(total)
    time.sleep(1)
    load.close()
    bridge.start(wait=False)
    drain = drain_rate(bridge.receiver(), total)
    bridge.stop()
    print(f"  => drained {total} queued messages at {drain:.0f} msg/s (baseline "
          f"{b_drain:.0f} msg/s, {fmt_ratio(drain, b_drain)})", flush=True)  # fmt: skip
    rig.results["backlog_drain"] = {"bridge_msg_s": round(drain), "baseline_msg_s": round(b_drain)}


def rss_10k_devices(rig: Rig) -> None:
    print("RSS with 10 000 devices", flush=True)
    rig.odoo.set_devices(device_entries(10_000))
    bridge = Bridge(rig.tmp, rig.broker, rig.odoo, "10k").start()
    assert bridge.proc is not None
    load = Load(rig.broker.port, 10_000, 1)
    load.run(20_000, 2.0)  # every device seen, sessions opened
    wait_count(bridge.receiver(), load.sent, 30)
    rss_10k = rss_mb(bridge.proc.pid)
    load.close()
    bridge.stop()
    rig.odoo.set_devices(device_entries(1000))
    print(f"  => RSS {rss_10k:.0f} MB with 10 000 devices", flush=True)
    rig.results["rss_mb_10k_devices"] = round(rss_10k, 1)


def event_latencies(odoo: FakeOdoo, skip: int) -> list[float]:
    """Seconds from an event's decision (its ``ts``) to the sink's receipt of it (the sink
    stamps requests with its clock, Unix seconds)."""
    arrival: dict[str, float] = {}
    for req in odoo.requests():
        for uid in req.event_uids:
            if req.status in (200, 201):
                arrival.setdefault(uid, req.t)
    out = []
    for event in odoo.stored_events()[skip:]:
        if event["event_type"] in ("run_start", "run_stop"):
            decided = parse_ts(event["ts"])
            if event["event_uid"] in arrival:
                out.append(arrival[event["event_uid"]] - decided)
    return out


if __name__ == "__main__":
    main()
