"""The counterpart of the container smoke test (``deploy/smoke-test.sh``).

``serve`` starts a private mosquitto (``iot_bridge.tools.broker.Mosquitto``, persistence on,
loopback, a free port) and the test Odoo server (``tests.support.fake_odoo.FakeOdoo``) with one
device, then writes ``stack.json`` (ports, URL, token) into the work directory and keeps
``odoo-state.json`` (stored events and sessions as Odoo sees them) current until it gets SIGTERM or
SIGINT, when it stops both. ``check`` reads ``odoo-state.json`` and says whether the expected
sessions arrived exactly once; ``wait`` polls until a condition holds.

Run it with the repository's virtualenv and the repository root on ``PYTHONPATH``:

    PYTHONPATH=. .venv/bin/python deploy/smoke_stack.py serve --workdir /tmp/smoke --prefix smoke
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

TOKEN = "smoke-test-token"


def device(prefix: str) -> dict[str, Any]:
    return {
        "device_id": f"shellypmminig3-{prefix}",
        "mqtt_topic": f"{prefix}/status/pm1:0",
        "parser_type": "shelly_pm_mini_g3",
        "machine_name": f"Smoke test machine {prefix}",
        "session_config": {
            "strategy": "power_threshold",
            "standby_threshold_w": 20,
            "working_threshold_w": 100,
            "start_debounce_s": 0.5,
            "stop_debounce_s": 1.0,
            "message_timeout_s": 5.0,
        },
    }


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
    os.replace(tmp, path)


def deployed_config(deploy: Path, data: Path, port: int, tls_port: int) -> str:
    """The deployment's own ``mosquitto/mosquitto.conf`` (with the passwd, ACL and certificates
    that ``deploy/setup.sh`` made), changed only in its paths and ports: the compose file mounts
    it at ``/mosquitto/config/``, which is ``deploy`` here, on 127.0.0.1 and free ports."""
    import getpass

    text = (deploy / "mosquitto" / "mosquitto.conf").read_text()
    changes = {
        "\nlistener 1883\n": f"\nlistener {port} 127.0.0.1\n",
        "\nlistener 8883\n": f"\nlistener {tls_port} 127.0.0.1\n",
        "/mosquitto/config/": f"{deploy}/mosquitto/",
        "/mosquitto/certs/": f"{deploy}/mosquitto/certs/",
        "/mosquitto/data/": f"{data}/",
    }
    for old, new in changes.items():
        if old not in text:
            raise SystemExit(f"deploy/mosquitto/mosquitto.conf has no {old.strip()!r} any more")
        text = text.replace(old, new)
    # as root, mosquitto would switch to its own user, which cannot read these files
    return f"user {getpass.getuser()}\n{text}"


def serve(args: argparse.Namespace) -> int:
    from iot_bridge.tools.broker import Mosquitto, free_port
    from tests.support.fake_odoo import FakeOdoo

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    port, tls_port = free_port(), None
    config = None
    if args.deploy_dir:
        tls_port = free_port()
        data = workdir / "broker"
        data.mkdir(parents=True, exist_ok=True)
        config = deployed_config(Path(args.deploy_dir).resolve(), data, port, tls_port)
    with (
        Mosquitto(workdir / "broker", port=port, persistence=True, config=config) as broker,
        FakeOdoo(token=TOKEN, devices=[device(args.prefix)]) as odoo,
    ):
        _write_json(
            workdir / "stack.json",
            {
                "mqtt_port": broker.port,
                "mqtt_tls_port": tls_port,
                "mqtt_url": broker.url,
                "odoo_url": odoo.url,
                "odoo_token": TOKEN,
                "device_id": device(args.prefix)["device_id"],
                "pid": os.getpid(),
            },
        )
        print(f"smoke stack: mqtt {broker.url}, odoo {odoo.url}", flush=True)
        last: Any = None
        while not stop.wait(0.1):
            state = {
                "events": odoo.stored_events(),
                "sessions": odoo.sessions(),
                "posts": [
                    {"path": r.path, "status": r.status, "uids": r.event_uids}
                    for r in odoo.requests()
                    if r.method == "POST"
                ],
            }
            if state != last:
                _write_json(workdir / "odoo-state.json", state)
                last = state
    print("smoke stack: stopped", flush=True)
    return 0


def _load(workdir: str) -> dict[str, Any]:
    path = Path(workdir) / "odoo-state.json"
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"events": [], "sessions": {}, "posts": []}
    return doc


def problems(state: dict[str, Any], sessions: int) -> list[str]:
    """What is wrong with Odoo's state if exactly ``sessions`` whole sessions are expected."""
    out: list[str] = []
    events: list[dict[str, Any]] = state["events"]
    uids = [e["event_uid"] for e in events]
    if len(uids) != len(set(uids)):
        out.append("an event_uid was stored twice")
    starts = [e["payload"]["session_id"] for e in events if e["event_type"] == "run_start"]
    stops = [e["payload"]["session_id"] for e in events if e["event_type"] == "run_stop"]
    if len(starts) != sessions or len(set(starts)) != sessions:
        out.append(f"expected {sessions} run_start, got {len(starts)} ({len(set(starts))} ids)")
    if len(stops) != sessions or len(set(stops)) != sessions:
        out.append(f"expected {sessions} run_stop, got {len(stops)} ({len(set(stops))} ids)")
    if set(starts) != set(stops):
        out.append(f"unpaired sessions: {sorted(set(starts) ^ set(stops))}")
    done = [s for s in state["sessions"].values() if s["state"] == "done"]
    if len(done) != sessions:
        out.append(f"expected {sessions} finished sessions in Odoo, got {len(done)}")
    return out


def summary(state: dict[str, Any]) -> str:
    lines = []
    for s in sorted(state["sessions"].values(), key=lambda s: str(s["started_at"])):
        lines.append(
            f"  session {s['session_id'][:12]}… {s['state']}: started {s['started_at']}, "
            f"stopped {s['stopped_at']}, duration {s['duration_s']} s, "
            f"energy {s['energy_wh']} Wh, reason {s['stop_reason']}"
        )
    kinds: dict[str, int] = {}
    for e in state["events"]:
        kinds[e["event_type"]] = kinds.get(e["event_type"], 0) + 1
    statuses: dict[int, int] = {}
    for p in state["posts"]:
        statuses[p["status"]] = statuses.get(p["status"], 0) + 1
    lines.append(f"  stored events by type: {kinds}; POST answers by status: {statuses}")
    return "\n".join(lines)


def check(args: argparse.Namespace) -> int:
    state = _load(args.workdir)
    found = problems(state, args.sessions)
    print(summary(state))
    if found:
        for problem in found:
            print(f"  FAIL: {problem}")
        return 1
    print(f"  OK: {args.sessions} sessions, each run_start and run_stop stored exactly once")
    return 0


def wait(args: argparse.Namespace) -> int:
    """Wait until Odoo holds ``--starts`` run_start and ``--stops`` run_stop events."""
    deadline = time.monotonic() + args.timeout
    while True:
        events = _load(args.workdir)["events"]
        starts = sum(e["event_type"] == "run_start" for e in events)
        stops = sum(e["event_type"] == "run_stop" for e in events)
        if starts >= args.starts and stops >= args.stops:
            return 0
        if time.monotonic() > deadline:
            print(
                f"timed out after {args.timeout:g} s: Odoo has {starts} run_start "
                f"(want {args.starts}) and {stops} run_stop (want {args.stops})",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--workdir", required=True)
    p.add_argument("--prefix", default="smoke")
    p.add_argument("--deploy-dir", help="run the deployment's mosquitto.conf from this deploy/")
    p.set_defaults(func=serve)
    p = sub.add_parser("check")
    p.add_argument("--workdir", required=True)
    p.add_argument("--sessions", type=int, required=True)
    p.set_defaults(func=check)
    p = sub.add_parser("wait")
    p.add_argument("--workdir", required=True)
    p.add_argument("--starts", type=int, default=0)
    p.add_argument("--stops", type=int, default=0)
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(func=wait)
    args = ap.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
