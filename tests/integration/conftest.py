"""Real parts for the runtime tests: a private mosquitto per test, the test Odoo server over
real HTTP, and the bridge as its own process (so it can be SIGKILLed and SIGTERMed)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from iot_bridge.clock import SYSTEM_CLOCK
from iot_bridge.mqtt.connection import Endpoint, open_connection
from iot_bridge.tools.broker import Mosquitto, free_port
from iot_bridge.tools.simulator import pm1_frame
from tests.support.fake_odoo import FakeOdoo

ROOT = Path(__file__).resolve().parents[2]
FAST = {
    "strategy": "power_threshold",
    "standby_threshold_w": 20,
    "working_threshold_w": 100,
    "start_debounce_s": 0.5,
    "stop_debounce_s": 1.0,
    "message_timeout_s": 3.0,
}


def device(name: str, **session: float) -> dict[str, Any]:
    return {
        "device_id": f"shellypmminig3-{name}",
        "mqtt_topic": f"{name}/status/pm1:0",
        "parser_type": "shelly_pm_mini_g3",
        "machine_name": f"Machine {name}",
        "session_config": {**FAST, **session},
    }


def frame(name: str, watts: float, energy: float = 100.0) -> tuple[str, bytes]:
    return f"{name}/status/pm1:0", json.dumps(pm1_frame(watts, energy)).encode()


def metric(text: str, name: str) -> float:
    """One series of ``/metrics`` text; a labelled one as ``name{label="value"}``. A series
    that is not there (a counter never incremented) reads 0."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


@dataclass(frozen=True)
class Plugs:
    """Where the test's devices publish, and how they log in (a broker other than the plain
    private mosquitto: TLS with a client certificate, a user of an ACL, a NATS node)."""

    port: int
    host: str = "127.0.0.1"
    tls: ssl.SSLContext | None = None
    username: str | None = None
    password: str | None = None

    def endpoint(self, client_id: str) -> Endpoint:
        return Endpoint(self.host, self.port, client_id, self.username, self.password, self.tls,
                        clean_session=True)  # fmt: skip


Target = Mosquitto | Plugs


def plugs(target: Target) -> Plugs:
    return target if isinstance(target, Plugs) else Plugs(target.port)


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def publish(
    broker: Target,
    messages: Sequence[tuple[str, bytes] | None],
    qos: int = 1,
    gap: float = 0.0,
    retain: bool = False,
) -> None:
    """Publish with the project's own client (the broker has them when this returns at QoS 1).

    ``None`` in ``messages`` is a pause of ``gap`` seconds (a tick boundary)."""

    async def go() -> None:
        conn = await open_connection(
            plugs(broker).endpoint(f"pub-{time.monotonic_ns()}"), SYSTEM_CLOCK
        )
        try:
            for message in messages:
                if message is None:
                    await asyncio.sleep(gap)
                    continue
                await conn.publish(message[0], message[1], qos=qos, retain=retain)
        finally:
            await conn.disconnect()

    asyncio.run(go())


def session(
    *names: str, work_ticks: int = 8, off_ticks: int = 10
) -> list[tuple[str, bytes] | None]:
    """One complete session per device, interleaved, one frame per device per tick.

    With ``publish(..., gap=0.15)`` a tick is 0.15 s: 8 working ticks pass the 0.5 s start
    debounce, 10 off ticks the 1.0 s stop debounce (``FAST``)."""
    out: list[tuple[str, bytes] | None] = []
    plan = [0.5] + [300.0] * work_ticks + [1.0] * off_ticks
    for tick, watts in enumerate(plan):
        for name in names:
            out.append(frame(name, watts, 100.0 + min(tick, work_ticks + 1)))
        out.append(None)
    return out


TICK = 0.15


def notify(name: str, watts: float, energy: float, ts: float | None = None) -> tuple[str, bytes]:
    """A Shelly ``NotifyStatus`` on ``<name>/events/rpc``, stamped by the device's clock (this
    machine's: ``ts`` defaults to now)."""
    params = {"ts": time.time() if ts is None else ts,
              "pm1:0": {"id": 0, "apower": watts, "aenergy": {"total": energy}}}  # fmt: skip
    body = {"src": f"shellypmminig3-{name}", "method": "NotifyStatus", "params": params}
    return f"{name}/events/rpc", json.dumps(body).encode()


def publish_run(broker: Target, name: str, work_ticks: int = 8, off_ticks: int = 10) -> list[float]:
    """A run described by NotifyStatus frames, one per tick, each stamped when it is sent;
    returns the stamps (the first working frame's is the run's true start)."""
    stamps: list[float] = []

    async def go() -> None:
        conn = await open_connection(
            plugs(broker).endpoint(f"dev-{time.monotonic_ns()}"), SYSTEM_CLOCK
        )
        try:
            plan = [300.0] * work_ticks + [1.0] * off_ticks
            for i, watts in enumerate(plan):
                stamp = time.time()
                stamps.append(stamp)
                topic, body = notify(name, watts, 200.0 + min(i, work_ticks), stamp)
                await conn.publish(topic, body, qos=1)
                await asyncio.sleep(TICK)
        finally:
            await conn.disconnect()

    asyncio.run(go())
    return stamps


def working(name: str, ticks: int) -> list[tuple[str, bytes] | None]:
    """``ticks`` frames of 300 W, one per tick (a rising energy counter)."""
    return [m for i in range(ticks) for m in (frame(name, 300.0, 200.0 + i), None)]


def open_session(broker: Target, odoo: FakeOdoo, name: str) -> None:
    """Work long enough to pass the start debounce; returns once Odoo has the run_start."""
    before = len(events_of(odoo, "run_start"))
    publish(broker, working(name, 8), gap=TICK)
    wait_until(lambda: len(events_of(odoo, "run_start")) == before + 1, 10, f"{name} run_start")


class BridgeProcess:
    """``python -m iot_bridge run`` with a private DATA_DIR, health port and log file."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.health_port = free_port()
        self.env = {
            **os.environ,
            "DATA_DIR": str(tmp / "data"),
            "HEALTH_PORT": str(self.health_port),
            "HEALTH_HOST": "127.0.0.1",
            "MQTT_CLIENT_ID": "iot-bridge-test",
            "LOG_LEVEL": "INFO",
            "MQTT_RECONNECT_MAX": "1",
            "MQTT_KEEPALIVE": "2",
            "CONFIG_REFRESH_INTERVAL": "300",
            **env,
        }
        self.log_path = tmp / "bridge.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> BridgeProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "iot_bridge", "run"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.tmp,
        )
        self.starts += 1
        wait_until(lambda: self.health() is not None, 15, "the bridge's health endpoint")
        return self

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/health", timeout=2
            ) as resp:
                doc: dict[str, Any] = json.loads(resp.read())
                doc["http_status"] = resp.status
                return doc
        except urllib.error.HTTPError as exc:
            doc = json.loads(exc.read())
            doc["http_status"] = exc.code
            return doc
        except OSError:
            return None

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.health_port}/metrics"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return str(resp.read().decode())

    def wait_health(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15) -> None:
        def check() -> bool:
            doc = self.health()
            return doc is not None and predicate(doc)

        wait_until(check, timeout, "a health condition")

    def connected(self) -> None:
        self.wait_health(lambda h: h["mqtt_connected"] and h["devices_configured"] > 0)

    def freeze(self) -> None:
        """SIGSTOP: the process holds what reaches its socket, acknowledges nothing."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self) -> tuple[int, float]:
        assert self.proc is not None
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(15)
        return code, time.monotonic() - start

    def hup(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def odoo() -> Iterator[FakeOdoo]:
    devices = [device("alpha"), device("beta"), device("gamma")]
    with FakeOdoo(token="secret-bridge-token", devices=devices) as fake:
        yield fake


BridgeFactory = Callable[..., BridgeProcess]


@pytest.fixture
def bridge_factory(tmp_path: Path) -> Iterator[BridgeFactory]:
    made: list[BridgeProcess] = []

    def make(broker: Mosquitto | str, odoo: FakeOdoo | None = None, **env: str) -> BridgeProcess:
        """``broker``: a private mosquitto, or the ``MQTT_URL`` of something else."""
        base = {"MQTT_URL": broker if isinstance(broker, str) else broker.url}
        if odoo is not None:
            base |= {"ODOO_URL": odoo.url, "ODOO_TOKEN": odoo.token, "ODOO_TIMEOUT": "2"}
        proc = BridgeProcess(tmp_path, base | env)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.stop()


@pytest.fixture
def bridge(broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory) -> BridgeProcess:
    """The bridge in Odoo mode, connected, its three devices subscribed."""
    proc = bridge_factory(broker, odoo).start()
    proc.connected()
    return proc


def events_of(odoo: FakeOdoo, kind: str | None = None) -> list[dict[str, Any]]:
    return [e for e in odoo.stored_events() if kind is None or e["event_type"] == kind]


def assert_sessions_whole(odoo: FakeOdoo) -> None:
    """Every run_start has exactly one run_stop of its session, and no uid is stored twice."""
    uids = odoo.stored_uids()
    assert len(uids) == len(set(uids)), "an event was stored twice"
    starts = {e["payload"]["session_id"] for e in events_of(odoo, "run_start")}
    stops = [e["payload"]["session_id"] for e in events_of(odoo, "run_stop")]
    assert len(stops) == len(set(stops)), "a session was stopped twice"
    assert starts == set(stops), f"unpaired sessions: {starts ^ set(stops)}"
