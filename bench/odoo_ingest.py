"""Real Odoo figures: a real Odoo 18 with the addon, 2 HTTP workers, the real bridge, a private
mosquitto. One command (see bench/README.md): ``.venv/bin/python bench/odoo_ingest.py``.

It prints, each next to a baseline measured in the same run:

- **events/s the batch endpoint stores** (``POST /ows/iot/events``, 500 events a request, as many
  clients as workers x 2), for forwarded measurements and for session events; the baseline is
  Odoo answering a trivial authenticated route (``GET /ows/iot/config`` of a one-device bridge)
  with the same clients;
- **latency from the MQTT publish that completes a debounce to the session readable in Odoo**
  (p50, p99), through the real bridge; devices have no debounce (``start_debounce_s = 0``), so
  the publish of the first working reading is the one that completes it. "Readable" is a JSON-RPC
  ``search_read`` of the admin finding the session (running after the start, done after the
  stop), polled every 2 ms. The baseline is the same poll after the bench posts the same event
  to Odoo itself (no MQTT, no bridge);
- **time to drain a one-hour outage backlog of 500 machines**: Odoo is cut off behind a proxy
  while every machine runs 4 sessions (an hour of a busy workshop: 8 run events each, 4 000 in
  all), then let back; timed from the moment Odoo is reachable (and from the first request the
  bridge sends it) until Odoo has every session. The baseline is the bench posting the same
  number of session events itself in batches of 500 on one connection.

``--quick`` runs every part with fewer devices, sessions and seconds (a smoke run: the figures
are printed but are not the targets' figures). It needs an Odoo 18 source tree at
``$ODOO_HOME`` (default ``/opt/odoo18``) and PostgreSQL with trust auth, like
``odoo/run_addon_tests.sh``; it creates and drops its own database.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from iot_bridge.tools.broker import Mosquitto, free_port

ROOT = Path(__file__).resolve().parents[1]
WORKERS = 2
BATCH = 500
TOPIC = "bench/odoo/{i}/status/pm1:0"
TARGETS = {"events_per_worker": 2000.0, "p99_ms": 100.0, "backlog_s": 60.0}

# Odoo's prefork mode (--workers) starts a gevent process; gevent 22.10 (Odoo 18's pin) imports
# pkg_resources, which setuptools 81+ no longer ships. Where it is missing, the Odoo this bench
# starts gets this stand-in on its path (nothing else is changed), or its gevent process would
# die and be respawned in a loop, eating a core.
PKG_RESOURCES_SHIM = """
from importlib.metadata import entry_points

def iter_entry_points(group, name=None):
    return [ep for ep in entry_points(group=group) if name is None or ep.name == name]
"""

SEED = """
import sys
Bridge, Device = env["ows.iot.bridge"], env["ows.iot.device"]
def devices(bridge, prefix, n):
    Device.create([{
        "bridge_id": bridge.id, "device_id": f"{prefix}-{i}", "machine_name": f"{prefix} {i}",
        "mqtt_topic": "%(topic)s".format(i=f"{prefix}-{i}"), "parser_type": "shelly_pm_mini_g3",
        "standby_threshold_w": 20, "working_threshold_w": 100, "start_debounce_s": 0,
        "stop_debounce_s": 0, "message_timeout_s": 3600} for i in range(n)])
main = Bridge.create({"name": "bench-main"})
devices(main, "bench", %(devices)d)
base = Bridge.create({"name": "bench-baseline"})
devices(base, "baseline", 1)
load = Bridge.create({"name": "bench-load"})
devices(load, "load", %(load_devices)d)
tokens = {b.name: b._generate_token() for b in (main, base, load)}
env.cr.commit()
for name, token in tokens.items():
    print(f"TOKEN {name} {token}")
"""


def now_ts() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def shelly(watts: float) -> bytes:
    return json.dumps({
        "id": 0, "voltage": 231.4, "current": round(watts / 231.4, 3), "apower": watts,
        "freq": 50.0, "aenergy": {"total": 1234.5, "by_minute": [0.0, 0.0, 0.0],
                                  "minute_ts": int(time.time())},
    }).encode()  # fmt: skip


def event(device_id: str, event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"schema_version": "v1", "event_uid": str(uuid.uuid4()), "ts": now_ts(),
            "device_id": device_id, "event_type": event_type, "payload": payload}  # fmt: skip


def session_events(device_id: str) -> list[dict[str, Any]]:
    """A run_start and the run_stop of a one-minute session (as the bridge sends them)."""
    sid, ts = str(uuid.uuid4()), now_ts()
    stop = {"session_id": sid, "power_w": 1.0, "reason": "normal", "started_at": ts,
            "stopped_at": ts, "duration_s": 60.0, "working_s": 50.0, "standby_s": 10.0,
            "energy_wh": 5.0, "energy_source": "counter", "max_power_w": 300.0,
            "avg_power_w": 250.0}  # fmt: skip
    return [
        event(device_id, "run_start", {"session_id": sid, "power_w": 300.0,
                                       "reason": "power_threshold", "started_at": ts}),
        event(device_id, "run_stop", stop),
    ]  # fmt: skip


# -- Odoo ----------------------------------------------------------------------------------


class Odoo:
    """A fresh database with the addons, served by odoo-bin with 2 workers."""

    def __init__(self, home: Path, work: Path, addons: str) -> None:
        self.home = home
        self.python = Path(os.environ.get("ODOO_PYTHON", home / ".venv/bin/python"))
        self.work = work
        self.addons = addons
        self.db = f"ows_bench_{os.getpid()}_{int(time.time())}"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        pg = {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGUSER": os.environ.get("USER", "root")}
        self.env = {**os.environ, **{k: os.environ.get(k, v) for k, v in pg.items()}}
        probe = [str(self.python), "-c", "import pkg_resources"]
        if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
            shim = work / "shim"
            shim.mkdir()
            (shim / "pkg_resources.py").write_text(PKG_RESOURCES_SHIM)
            self.env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(shim), os.environ.get("PYTHONPATH")]))  # fmt: skip
            print("  (Odoo's python has no pkg_resources: gevent gets a stand-in)")
        self.bin = [str(self.python), str(home / "odoo-bin")]
        self.args = [
            f"--db_host={self.env['PGHOST']}",
            f"--db_port={self.env['PGPORT']}", f"--db_user={self.env['PGUSER']}", "-d", self.db,
            f"--db-filter=^{self.db}$", f"--addons-path={home}/odoo/addons,{ROOT}/odoo",
            f"--data-dir={work}/data", "--http-interface=127.0.0.1", "--without-demo=all",
            "--max-cron-threads=0", f"--log-level={os.environ.get('BENCH_ODOO_LOG', 'warn')}",
        ]  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self, extra: list[str], stdin: str | None = None, command: str = "server") -> str:
        out = subprocess.run(
            [*self.bin, command, *self.args, *extra], input=stdin, capture_output=True,
            text=True, timeout=900, env=self.env, check=False,
        )  # fmt: skip
        if out.returncode != 0:
            raise RuntimeError(f"odoo-bin {extra[:2]} failed:\n{out.stderr[-3000:]}")
        return out.stdout

    def install(self, devices: int, load_devices: int) -> dict[str, str]:
        subprocess.run(["createdb", self.db], check=True, env=self.env)
        self._run(["-i", self.addons, "--stop-after-init", "--no-http"])
        script = SEED % {"devices": devices, "load_devices": load_devices, "topic": TOPIC}
        out = self._run(["--no-http"], stdin=script, command="shell")
        tokens = {}
        for line in out.splitlines():
            if line.startswith("TOKEN "):
                _, name, token = line.split()
                tokens[name] = token
        return tokens

    def serve(self) -> None:
        log = open(self.work / "odoo.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [*self.bin, "server", *self.args, f"--http-port={self.port}",
             f"--gevent-port={free_port()}", f"--workers={WORKERS}", "--limit-time-real=900"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, http.client.HTTPException):
                if Http(self.url).request("GET", "/ows/iot/config")[0] == 401:
                    return
            time.sleep(0.2)
        raise RuntimeError("odoo did not come up (see odoo.log)")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        subprocess.run(["dropdb", "--if-exists", self.db], check=False,
                       env=self.env, capture_output=True)  # fmt: skip


class Http:
    """One keep-alive connection; JSON in and out. Nothing is ever sent twice: a connection
    idle for a second is replaced first (Odoo's workers close idle ones after 2 s), and a
    failed request fails the measurement."""

    def __init__(self, url: str, token: str | None = None) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.conn = http.client.HTTPConnection(host, self.port, timeout=120)
        self.last_used = time.monotonic()
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        if time.monotonic() - self.last_used > 1.0:
            self.conn.close()
        self.conn.request(method, path, body=data, headers=self.headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        self.last_used = time.monotonic()
        cookie = resp.headers.get("Set-Cookie", "").split(";", 1)[0]
        if cookie.startswith("session_id="):
            self.headers["Cookie"] = cookie
        return resp.status, json.loads(raw) if raw else None

    def post_event(self, event: dict[str, Any]) -> None:
        status, body = self.request("POST", "/ows/iot/event", event)
        if status != 201:
            raise RuntimeError(f"POST /ows/iot/event: {status} {body}")


class Rpc(Http):
    """The admin over JSON-RPC: what a user of Odoo can read."""

    def __init__(self, url: str, db: str) -> None:
        super().__init__(url)
        status, body = self.request("POST", "/web/session/authenticate", {
            "jsonrpc": "2.0", "method": "call",
            "params": {"db": db, "login": "admin", "password": "admin"}})  # fmt: skip
        if status != 200 or "error" in body:
            raise RuntimeError(f"admin login failed: {body}")

    def call(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        status, body = self.request("POST", "/web/dataset/call_kw", {
            "jsonrpc": "2.0", "method": "call",
            "params": {"model": model, "method": method, "args": list(args),
                       "kwargs": kwargs}})  # fmt: skip
        if status != 200 or "error" in body:
            raise RuntimeError(f"{model}.{method}: {body}")
        return body["result"]

    def sessions(self, device_id: str, state: str | None = None) -> int:
        domain: list[list[str]] = [["device_id.device_id", "=", device_id]]
        if state:
            domain.append(["state", "=", state])
        return int(self.call("ows.machine.session", "search_count", domain))

    def until_more(self, device_id: str, state: str | None, before: int) -> float:
        """Seconds (monotonic) when Odoo reads more such sessions of the device than before."""
        return self.wait(lambda: self.sessions(device_id, state) > before)

    def wait(self, check: Callable[[], bool], timeout: float = 30.0, every: float = 0.002) -> float:
        """Seconds (monotonic) when ``check`` first held."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return time.monotonic()
            time.sleep(every)
        raise RuntimeError("timed out waiting for Odoo")


# -- MQTT and the bridge -------------------------------------------------------------------


class Publisher:
    """A minimal MQTT 3.1.1 QoS 1 publisher: independent of the bridge's own client."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = b"bench-odoo-publisher"
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client).to_bytes(2, "big") + client
        self.sock.sendall(b"\x10" + self._length(len(body)) + body)
        if self._read(4)[:2] != b"\x20\x02":
            raise RuntimeError("no CONNACK")
        self.packet_id = 0

    @staticmethod
    def _length(n: int) -> bytes:
        out = bytearray()
        while True:
            n, digit = divmod(n, 128)
            out.append(digit | (0x80 if n else 0))
            if not n:
                return bytes(out)

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise RuntimeError("broker closed the connection")
            data += chunk
        return data

    def publish(self, messages: list[tuple[str, bytes]]) -> None:
        """Send all, then wait for every PUBACK (the broker has them)."""
        out = bytearray()
        for topic, payload in messages:
            self.packet_id = self.packet_id % 65535 + 1
            t = topic.encode()
            body = len(t).to_bytes(2, "big") + t + self.packet_id.to_bytes(2, "big") + payload
            out += b"\x32" + self._length(len(body)) + body
        self.sock.sendall(out)
        self._read(4 * len(messages))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(b"\xe0\x00")
        self.sock.close()


class Proxy:
    """TCP between the bridge and Odoo that can play an Odoo outage."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.is_up = True
        self.first_request: float | None = None
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.is_up:
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            with self.lock:
                self.conns |= {client, upstream}
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        with contextlib.suppress(OSError):
            while True:
                ready, _, _ = select.select(list(peers), [], [], 1.0)
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed")
                    if sock is a and self.first_request is None and self.is_up:
                        self.first_request = time.monotonic()
                    peers[sock].sendall(data)
        for sock in (a, b):
            with contextlib.suppress(OSError):
                sock.close()
            with self.lock:
                self.conns.discard(sock)

    def down(self) -> None:
        self.is_up = False
        with self.lock:
            conns = list(self.conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def up(self) -> None:
        self.first_request = None
        self.is_up = True


@dataclass
class Bridge:
    work: Path
    mqtt_url: str
    odoo_url: str
    token: str
    health_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, devices: int) -> None:
        env = {**os.environ, "MQTT_URL": self.mqtt_url, "ODOO_URL": self.odoo_url,
               "ODOO_TOKEN": self.token, "DATA_DIR": str(self.work / "bridge-data"),
               "HEALTH_PORT": str(self.health_port), "HEALTH_HOST": "127.0.0.1",
               "MQTT_CLIENT_ID": "bench-odoo-bridge", "LOG_LEVEL": "WARNING"}  # fmt: skip
        log = open(self.work / "bridge.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen([sys.executable, "-m", "iot_bridge", "run"], env=env,
                                     stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            health = self.health()
            if (
                health
                and health.get("mqtt_connected")
                and (health.get("devices_configured") == devices)
            ):
                return
            time.sleep(0.1)
        raise RuntimeError("the bridge did not come up (see bridge.log)")

    def health(self) -> dict[str, Any] | None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.health_port, timeout=5)
            conn.request("GET", "/health")
            return dict(json.loads(conn.getresponse().read()))
        except (OSError, ValueError, http.client.HTTPException):
            return None

    def queued(self) -> int:
        health = self.health() or {}
        return int(health.get("queue_depth") or 0)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- measurements --------------------------------------------------------------------------


def in_threads(
    clients: int, seconds: float, work: Callable[[Http], int], url: str, token: str
) -> tuple[float, int]:
    """``clients`` threads each looping ``work`` on its own connection for ``seconds``;
    returns (elapsed, units done). A failing thread fails the measurement."""
    done = [0] * clients
    errors: list[BaseException] = []
    barrier = threading.Barrier(clients + 1, timeout=300)
    stop_at = [0.0]

    def loop(i: int) -> None:
        try:
            conn = Http(url, token)
            work(conn)  # warm the worker and the connection
            barrier.wait()
            while time.monotonic() < stop_at[0]:
                done[i] += work(conn)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    stop_at[0] = float("inf")  # set for real once everybody is warm
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait()
    start = time.monotonic()
    stop_at[0] = start + seconds
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed") from errors[0]
    return time.monotonic() - start, sum(done)


def batch_work(devices: list[str], kind: str) -> Callable[[Http], int]:
    counter = iter(range(10**9))

    def work(conn: Http) -> int:
        if kind == "measurements":
            events = [
                event(devices[next(counter) % len(devices)], "power_measurement",
                      {"apower": 120.5, "voltage": 231.0, "current": 0.52,
                       "total_energy_kwh": 12.3})
                for _ in range(BATCH)
            ]  # fmt: skip
        else:
            events = [e for _ in range(BATCH // 2)
                      for e in session_events(devices[next(counter) % len(devices)])]  # fmt: skip
        status, body = conn.request("POST", "/ows/iot/events", {"events": events})
        created = sum(r["status"] == "created" for r in body["results"]) if status == 200 else 0
        if created != len(events):
            statuses = sorted({r["status"] for r in body["results"]}) if status == 200 else []
            raise RuntimeError(f"batch stored {created} of {len(events)}: {status} {statuses}")
        return created

    return work


def throughput(rig: Rig, load_devices: list[str], seconds: float, clients: int) -> None:
    print(f"\n== batch endpoint: {clients} clients, {WORKERS} workers, {seconds:g} s each")

    def trivial(conn: Http) -> int:
        status, _body = conn.request("GET", "/ows/iot/config")
        return int(status == 200)

    elapsed, n = in_threads(clients, seconds, trivial, rig.odoo.url, rig.tokens["bench-baseline"])
    base = n / elapsed
    print(f"  baseline GET /ows/iot/config (1 device): {base:8.0f} requests/s")
    for kind in ("measurements", "sessions"):
        elapsed, n = in_threads(clients, seconds, batch_work(load_devices, kind), rig.odoo.url,
                                rig.tokens["bench-load"])  # fmt: skip
        rate = n / elapsed
        per_worker = rate / WORKERS
        verdict = "meets" if per_worker >= TARGETS["events_per_worker"] else "misses"
        print(f"  {kind:>12}: {rate:8.0f} events/s stored = {per_worker:6.0f} per worker "
              f"({verdict} >= {TARGETS['events_per_worker']:.0f}); a 500-event batch costs "
              f"{base / (rate / BATCH):.1f} baseline requests")  # fmt: skip


def timed(rpc: Rpc, device: str, state: str | None, send: Callable[[], None]) -> float:
    """Seconds from ``send()`` to Odoo reading one more such session of ``device``."""
    before = rpc.sessions(device, state)
    t0 = time.monotonic()
    send()
    return rpc.until_more(device, state, before) - t0


def latency(rig: Rig, devices: int, samples: int) -> Bridge:
    print(f"\n== latency: MQTT publish -> session readable in Odoo ({samples} sessions)")
    rpc, direct = rig.rpc(), Http(rig.odoo.url, rig.tokens["bench-main"])
    base: dict[str, list[float]] = {"run_start": [], "run_stop": []}
    got: dict[str, list[float]] = {"run_start": [], "run_stop": []}
    for i in range(samples):
        device = f"bench-{i % devices}"
        start, stop = session_events(device)
        base["run_start"].append(timed(rpc, device, None, partial(direct.post_event, start)))
        base["run_stop"].append(timed(rpc, device, "done", partial(direct.post_event, stop)))
    bridge = Bridge(rig.work, rig.broker.url, f"http://127.0.0.1:{rig.proxy.port}",
                    rig.tokens["bench-main"])  # fmt: skip
    bridge.start(devices)
    pub = Publisher(rig.broker.port)
    for i in range(samples):
        device = f"bench-{i % devices}"
        topic = TOPIC.format(i=device)
        got["run_start"].append(
            timed(rpc, device, None, partial(pub.publish, [(topic, shelly(300))]))
        )
        got["run_stop"].append(
            timed(rpc, device, "done", partial(pub.publish, [(topic, shelly(1))]))
        )
    pub.close()
    for name in ("run_start", "run_stop"):
        p50, p99 = percentile(got[name], 50) * 1000, percentile(got[name], 99) * 1000
        b50, b99 = percentile(base[name], 50) * 1000, percentile(base[name], 99) * 1000
        verdict = "meets" if p99 <= TARGETS["p99_ms"] else "misses"
        print(f"  {name}: p50 {p50:6.1f} ms, p99 {p99:6.1f} ms ({verdict} p99 <= "
              f"{TARGETS['p99_ms']:.0f} ms); baseline (the bench posts the event to Odoo): "
              f"p50 {b50:6.1f} ms, p99 {b99:6.1f} ms")  # fmt: skip
    return bridge


def backlog(rig: Rig, bridge: Bridge, devices: int, sessions: int) -> None:
    total = devices * sessions
    each = f"{sessions} session{'s' if sessions != 1 else ''}"
    print(f"\n== backlog: Odoo away while {devices} machines run {each} each "
          f"({2 * total} run events)")  # fmt: skip
    rpc = rig.rpc()
    domain = [["device_id.device_id", "like", "bench-%"], ["state", "=", "done"]]
    done_before = rpc.call("ows.machine.session", "search_count", domain)
    rig.proxy.down()
    pub = Publisher(rig.broker.port)
    for _ in range(sessions):
        for watts in (300.0, 1.0):
            pub.publish([(TOPIC.format(i=f"bench-{i}"), shelly(watts)) for i in range(devices)])
    pub.close()
    deadline = time.monotonic() + 300
    while bridge.queued() < 2 * total and time.monotonic() < deadline:
        time.sleep(0.1)
    print(f"  queued by the bridge while Odoo was away: {bridge.queued()} events")
    rig.proxy.up()
    t_up = time.monotonic()
    t_done = rpc.wait(lambda: rpc.call("ows.machine.session", "search_count", domain)
                      >= done_before + total, timeout=900, every=0.05)  # fmt: skip
    first = rig.proxy.first_request or t_up
    drained, from_first = t_done - t_up, t_done - first
    verdict = "meets" if drained <= TARGETS["backlog_s"] else "misses"
    print(f"  drained {drained:.2f} s after Odoo was back ({verdict} <= "
          f"{TARGETS['backlog_s']:.0f} s); {from_first:.2f} s from the bridge's first request "
          f"({2 * total / max(from_first, 1e-9):.0f} events/s)")  # fmt: skip
    direct = Http(rig.odoo.url, rig.tokens["bench-main"])
    events = [e for i in range(total) for e in session_events(f"bench-{i % devices}")]
    t0 = time.monotonic()
    for i in range(0, len(events), BATCH):
        status, _body = direct.request("POST", "/ows/iot/events", {"events": events[i : i + BATCH]})
        if status != 200:
            raise RuntimeError(f"baseline batch: {status}")
    took = time.monotonic() - t0
    print(f"  baseline: the bench posts the same {len(events)} events in batches of {BATCH} on "
          f"one connection: {took:.2f} s ({len(events) / took:.0f} events/s)")  # fmt: skip


@dataclass
class Rig:
    odoo: Odoo
    proxy: Proxy
    broker: Mosquitto
    tokens: dict[str, str]
    work: Path

    def rpc(self) -> Rpc:
        return Rpc(self.odoo.url, self.odoo.db)


@contextlib.contextmanager
def started(args: argparse.Namespace, devices: int, load_devices: int) -> Iterator[Rig]:
    work = Path(tempfile.mkdtemp(prefix="ows_bench_odoo_"))
    odoo = Odoo(Path(args.odoo_home), work, args.addons)
    broker = Mosquitto(work / "mosquitto", persistence=False, max_inflight=0)
    try:
        t0 = time.monotonic()
        tokens = odoo.install(devices, load_devices)
        odoo.serve()
        broker.start()
        print(
            f"  odoo {odoo.db} with {args.addons} installed and served in "
            f"{time.monotonic() - t0:.0f} s"
        )
        yield Rig(odoo, Proxy(odoo.port), broker, tokens, work)
    finally:
        broker.stop()
        odoo.stop()
        if args.keep:
            print(f"  logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer devices and seconds (smoke run)")
    ap.add_argument("--odoo-home", default=os.environ.get("ODOO_HOME", "/opt/odoo18"))
    ap.add_argument(
        "--addons", default="open_workshop_mqtt", help="addons to install (default: the core addon)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the logs and the work directory")
    ap.add_argument(
        "--parts",
        default="throughput,latency,backlog",
        help="comma-separated: throughput, latency, backlog (backlog needs latency)",
    )
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    # a SIGTERM (e.g. from timeout) cleans up like Ctrl-C: Odoo, the bridge, the database
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.quick:
        devices, sessions, samples, seconds = 50, 1, 10, 2.0
    else:
        devices, sessions, samples, seconds = 500, 4, 200, 20.0
    print(
        f"odoo_ingest: {'quick' if args.quick else 'full'} run, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    with started(args, devices, load_devices=100) as rig:
        if "throughput" in parts:
            throughput(rig, [f"load-{i}" for i in range(100)], seconds, 2 * WORKERS)
        if "latency" in parts:
            bridge = latency(rig, devices, samples)
            try:
                if "backlog" in parts:
                    backlog(rig, bridge, devices, sessions)
            finally:
                bridge.stop()


if __name__ == "__main__":
    main()
