"""The screenshots of the README, taken from a real run (``scripts/screenshots`` runs this).

Brings up everything for real, on free ports, in a scratch directory: a fresh Odoo 18 database
with the core addon and the four business addons (``$ODOO_HOME``, default ``/opt/odoo18``, as
``odoo/run_addon_tests.sh`` uses it), a private mosquitto, the bridge in Odoo mode with a short
``STATUS_INTERVAL`` and forwarded measurements, the Shelly simulator for sessions on two
machines, a third machine left working, badge scans at the readers of the two, and plugs that
announce themselves (Shelly Gen1 and Gen2, Tasmota). Once Odoo has the sessions and the
discovered plugs, headless Chromium (driven over the DevTools protocol, logged in as admin)
takes ``docs/screenshots/*.png``: the machine board with live state, a machine's form, the
sessions pivot, the discovered plugs, and the addons' screens (``screenshots_addons.py``:
attributed sessions, unknown badges, a draft invoice, the maintenance equipment and its
request, the Tuning tab). Everything started is stopped and the database dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import screenshots_addons as addons

from iot_bridge.clock import SYSTEM_CLOCK
from iot_bridge.mqtt.connection import Endpoint, open_connection
from iot_bridge.tools.broker import Mosquitto, free_port
from iot_bridge.tools.simulator import pm1_frame

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "screenshots"
ODOO_HOME = Path(os.environ.get("ODOO_HOME", "/opt/odoo18"))
ODOO_PYTHON = os.environ.get("ODOO_PYTHON", str(ODOO_HOME / ".venv/bin/python"))
ADDON = "open_workshop_mqtt"
ACTION = f"{ADDON}.action_iot_device"
MACHINES = [  # (prefix, machine name, scenario run by the simulator; None: left working)
    ("laser", "Laser cutter", "full_session"),
    ("cnc", "CNC router", "offline"),
    ("shaperorigin", "Shaper Origin", None),
]
SEED = """
Bridge = env["ows.iot.bridge"]
Device = env["ows.iot.device"]
bridge = Bridge.create({"name": "Workshop bridge", "mqtt_broker": "mqtt://127.0.0.1"})
for prefix, name in %(machines)r:
    Device.create({
        "bridge_id": bridge.id, "device_id": f"shellypmminig3-{prefix}", "machine_name": name,
        "mqtt_topic": f"{prefix}/status/pm1:0", "parser_type": "shelly_pm_mini_g3",
        "start_debounce_s": 1, "stop_debounce_s": 3, "message_timeout_s": 30,
    })
token = bridge._generate_token()
env.cr.commit()
print("SCREENSHOT_TOKEN=" + token)
"""
ANNOUNCEMENTS = [
    (
        "shellies/announce",
        json.dumps(
            {
                "id": "shellyplug-s-7c87ce65a1b2",
                "model": "SHPLG-S",
                "mac": "7C87CE65A1B2",
                "ip": "192.168.8.93",
                "new_fw": False,
                "fw_ver": "20220809-123240/v1.12-g99f7e0b",
            }
        ),
    ),
    ("shellyplus1pm-4417939341dc/online", "true"),
    ("tele/tasmota_9CF9D1/LWT", "Online"),
]


def log(msg: str) -> None:
    print(f"== {msg}", flush=True)


def wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        time.sleep(0.5)
    raise SystemExit(f"screenshots: timed out after {timeout:.0f} s waiting for {what}")


def odoo_args(db: str, work: Path) -> list[str]:
    host = os.environ.get("PGHOST", "127.0.0.1")
    port = os.environ.get("PGPORT", "5432")
    user = os.environ.get("PGUSER") or os.environ.get("USER") or "root"
    return [
        ODOO_PYTHON,
        str(ODOO_HOME / "odoo-bin"),
        f"--db_host={host}",
        f"--db_port={port}",
        f"--db_user={user}",
        "-d",
        db,
        f"--db-filter=^{db}$",
        f"--addons-path={ODOO_HOME / 'odoo/addons'},{REPO / 'odoo'}",
        f"--data-dir={work / 'odoo-data'}",
        "--http-interface=127.0.0.1",
        "--without-demo=all",
        "--max-cron-threads=0",
        "--log-level=warn",
    ]


@contextlib.contextmanager
def process(cmd: list[str], logfile: Path, **kw: Any) -> Iterator[subprocess.Popen[bytes]]:
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, **kw)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class Rpc:
    """Odoo's JSON-RPC as admin (the fresh database's admin/admin)."""

    def __init__(self, url: str, db: str) -> None:
        self.url = url
        self.db = db
        self.session_id = ""

    def _post(self, path: str, params: dict[str, Any]) -> Any:
        body = json.dumps({"jsonrpc": "2.0", "method": "call", "params": params}).encode()
        req = urllib.request.Request(self.url + path, body, {"Content-Type": "application/json"})
        if self.session_id:
            req.add_header("Cookie", f"session_id={self.session_id}")
        with urllib.request.urlopen(req, timeout=30) as resp:
            for header in resp.headers.get_all("Set-Cookie") or []:
                if header.startswith("session_id="):
                    self.session_id = header.split(";", 1)[0].split("=", 1)[1]
            doc = json.loads(resp.read())
        if "error" in doc:
            raise RuntimeError(doc["error"].get("data", {}).get("message", doc["error"]))
        return doc["result"]

    def login(self) -> None:
        self._post(
            "/web/session/authenticate", {"db": self.db, "login": "admin", "password": "admin"}
        )

    def call(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any:
        params = {"model": model, "method": method, "args": list(args), "kwargs": kwargs}
        return self._post("/web/dataset/call_kw", params)


def publish(port: int, messages: list[tuple[str, str]], retain: bool = False) -> None:
    async def go() -> None:
        ep = Endpoint("127.0.0.1", port, f"shots-{time.monotonic_ns()}", clean_session=True)
        conn = await open_connection(ep, SYSTEM_CLOCK)
        try:
            for topic, payload in messages:
                await conn.publish(topic, payload.encode(), qos=1, retain=retain)
        finally:
            await conn.disconnect()

    asyncio.run(go())


def keep_working(port: int, prefix: str, stop: threading.Event) -> None:
    """A machine at work until ``stop``: one pm1:0 frame a second, 450-620 W."""
    energy = 2310.0
    publish(port, [(f"{prefix}/online", "true")], retain=True)
    i = 0
    while not stop.is_set():
        watts = 450.0 + 170.0 * ((i % 7) / 6)
        energy += watts / 3600
        publish(port, [(f"{prefix}/status/pm1:0", json.dumps(pm1_frame(watts, energy)))])
        i += 1
        stop.wait(1.0)


def twice(port: int, prefix: str, scenario: str, interval: float) -> None:
    """Two sessions of ``scenario`` in a row (the pivot has something to add up), each after
    the badge scan the addons want at the machine's reader, if any."""
    for round_no in range(2):
        scans = addons.scans(prefix, round_no)
        if scans:
            publish(port, scans)
        simulate(port, prefix, scenario, interval)


def simulate(port: int, prefix: str, scenario: str, interval: float) -> None:
    cmd = [
        sys.executable,
        "-m",
        "iot_bridge",
        "simulate",
        "--broker",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-tls",
        "--prefix",
        prefix,
        "--scenario",
        scenario,
        "--interval",
        str(interval),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)


async def shoot(url: str, session_id: str, shots: list[tuple[str, str, str]], work: Path) -> None:
    """Each (path, file, JavaScript run first) as a PNG, through headless Chromium's DevTools
    protocol."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("screenshots: needs Debian's chromium (apt-get install chromium)")
    port = free_port()
    cmd = [
        browser,
        "--headless=new",
        f"--remote-debugging-port={port}",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--window-size=1440,900",
        f"--user-data-dir={work / 'chromium'}",
        "about:blank",
    ]
    with process(cmd, work / "chromium.log"):
        targets = wait(
            lambda: json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json").read()),
            30,
            "chromium's DevTools",
        )
        page = next(t for t in targets if t["type"] == "page")
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws,
        ):
            seq = 0

            async def cdp(method: str, **params: Any) -> Any:
                nonlocal seq
                seq += 1
                await ws.send_json({"id": seq, "method": method, "params": params})
                async with asyncio.timeout(60):
                    while True:
                        msg = await ws.receive_json()
                        if msg.get("id") == seq:
                            if "error" in msg:
                                raise RuntimeError(f"{method}: {msg['error']}")
                            return msg.get("result", {})

            await cdp("Network.enable")
            await cdp("Network.setCookie", name="session_id", value=session_id, url=url)
            await cdp(
                "Emulation.setDeviceMetricsOverride",
                width=1440,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            await cdp("Page.navigate", url=url + "/odoo")  # the first load builds the assets
            await asyncio.sleep(10)
            for path, name, script in shots:
                await cdp("Page.navigate", url=url + path)
                await asyncio.sleep(6)  # the web client loads its assets and renders the view
                if script:  # e.g. open a notebook page
                    await cdp("Runtime.evaluate", expression=script)
                    await asyncio.sleep(3)
                # a notification about the session (bus reconnects) is not part of the view
                await cdp("Runtime.evaluate", expression=_HIDE_NOTIFICATIONS)
                shot = await cdp("Page.captureScreenshot", format="png")
                (OUT / name).write_bytes(base64.b64decode(shot["data"]))
                log(f"docs/screenshots/{name}")


_HIDE_NOTIFICATIONS = (
    "document.querySelectorAll('.o_notification_manager .o_notification').forEach(n => n.remove())"
)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory and db")
    ap.add_argument("--interval", type=float, default=2.0, help="simulator seconds per frame")
    args = ap.parse_args()
    if not (ODOO_HOME / "odoo-bin").is_file() or not Path(ODOO_PYTHON).is_file():
        raise SystemExit(f"screenshots: needs an Odoo 18 at {ODOO_HOME} (set ODOO_HOME)")
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ows_screens."))
    db = f"ows_screens_{os.getpid()}_{int(time.time())}"
    base = odoo_args(db, work)
    stop = threading.Event()
    started = time.monotonic()
    try:
        subprocess.run(["createdb", db], check=True)
        installed = ",".join([ADDON, *addons.ADDONS])
        log(f"odoo: installing {installed} on a fresh database {db}")
        with open(work / "install.log", "wb") as install_log:
            subprocess.run(
                [*base, "-i", installed, "--stop-after-init"],
                check=True,
                stdout=install_log,
                stderr=subprocess.STDOUT,
            )
        seed = SEED % {"machines": [m[:2] for m in MACHINES]} + addons.seed()
        seeded = subprocess.run(
            [*base[:2], "shell", *base[2:], "--no-http"],
            input=seed,
            capture_output=True,
            text=True,
            check=True,
        )
        token = next(
            line.split("=", 1)[1]
            for line in seeded.stdout.splitlines()
            if line.startswith("SCREENSHOT_TOKEN=")
        )
        http_port = free_port()
        url = f"http://127.0.0.1:{http_port}"
        serve = [*base, f"--http-port={http_port}", f"--gevent-port={free_port()}", "--workers=0"]
        with (
            process(serve, work / "odoo.log"),
            Mosquitto(work / "broker") as broker,
        ):
            log(f"odoo on {url}, mosquitto on {broker.port}")
            wait(
                lambda: urllib.request.urlopen(url + "/web/login", timeout=2).status == 200,
                120,
                "Odoo to serve",
            )
            env = {
                **os.environ,
                "MQTT_URL": broker.url,
                "ODOO_URL": url,
                "ODOO_TOKEN": token,
                "STATUS_INTERVAL": "3",
                "DATA_DIR": str(work / "bridge"),
                "HEALTH_PORT": "0",
                "MQTT_CLIENT_ID": "iot-bridge-screenshots",
                "LOG_LEVEL": "INFO",
                **addons.ENV,
            }
            bridge = [sys.executable, "-m", "iot_bridge", "run"]
            with process(bridge, work / "bridge.log", env=env, cwd=work):
                rpc = Rpc(url, db)
                rpc.login()
                wait(
                    lambda: rpc.call("ows.iot.bridge", "search_read", [], ["last_contact"])[0][
                        "last_contact"
                    ],
                    60,
                    "the bridge's first contact",
                )
                log("bridge heard; plugs announce, the simulator runs")
                publish(broker.port, ANNOUNCEMENTS)
                runs = [
                    threading.Thread(
                        target=twice, args=(broker.port, prefix, scenario, args.interval)
                    )
                    for prefix, _, scenario in MACHINES
                    if scenario is not None
                ]
                for run in runs:
                    run.start()
                for run in runs:
                    run.join()
                worker = threading.Thread(
                    target=keep_working, args=(broker.port, MACHINES[-1][0], stop), daemon=True
                )
                worker.start()
                wait(
                    lambda: (
                        rpc.call("ows.machine.session", "search_count", [["state", "=", "done"]])
                        >= 4
                    ),
                    120,
                    "four finished sessions in Odoo",
                )
                wait(
                    lambda: rpc.call("ows.iot.discovered.plug", "search_count", []) >= 3,
                    60,
                    "three discovered plugs in Odoo",
                )
                working = f"shellypmminig3-{MACHINES[-1][0]}"
                machine = wait(
                    lambda: rpc.call(
                        "ows.iot.device",
                        "search_read",
                        [["device_id", "=", working], ["live_state", "=", "working"]],
                        ["id"],
                    ),
                    60,
                    "the working machine's live state",
                )[0]["id"]
                wait(lambda: addons.ready(rpc), 60, addons.READY)
                time.sleep(3)
                shots = [
                    (f"/odoo/action-{ACTION}", "machine-board.png", ""),
                    (f"/odoo/action-{ACTION}/{machine}", "machine-form.png", ""),
                    (
                        f"/odoo/action-{ADDON}.action_machine_session_analysis",
                        "sessions-pivot.png",
                        "",
                    ),
                    (
                        f"/odoo/action-{ADDON}.action_iot_discovered_plug",
                        "discovered-plugs.png",
                        "",
                    ),
                    *addons.shots(rpc, ACTION),
                ]
                asyncio.run(shoot(url, rpc.session_id, shots, work))
                stop.set()
    finally:
        stop.set()
        if not args.keep:
            subprocess.run(["dropdb", "--if-exists", db], check=False, capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"kept {work} and database {db}")
    log(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    sys.exit(main())
