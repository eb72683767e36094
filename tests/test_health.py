"""``/health``: the report's rules (pure), the server's bounds (real sockets), the log throttle.

The report tests name each problem (503) and each warning (200); the server tests hold slow and
hostile clients against it and check that it never holds more than its cap of connections; the
throttle tests flood the log with one cause, asyncio's own accept error among them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import resource
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from iot_bridge.devices import DeviceSet, device_from_json
from iot_bridge.odoo_api.delivery import DeliveryStatus
from iot_bridge.outbox.store import QueueStats
from iot_bridge.runtime.health import HealthServer
from iot_bridge.runtime.report import (
    PROBLEMS,
    WARNINGS,
    HealthFacts,
    findings,
    health_metrics,
    health_report,
)
from iot_bridge.throttle import ThrottlingHandler

NOW = 1_800_000_000.0
R = TypeVar("R")

METER = device_from_json({"device_id": "m", "mqtt_topic": "m/power", "parser_type": "generic"})


def facts(**changes: Any) -> HealthFacts:
    base = HealthFacts(
        now=NOW,
        started=NOW - 3600,
        standalone=False,
        max_queue_age_s=900,
        mqtt_connected=True,
        mqtt_reconnects=0,
        mqtt_last_error=None,
        store_error=None,
        stats=QueueStats(0, None, 0, 0),
        config=DeviceSet(config_version="3", devices=(METER,)),
        config_problem=None,
        delivery=DeliveryStatus(odoo_reachable=True),
        active_sessions=0,
        last_message_at=NOW - 1,
    )
    return replace(base, **changes)


def test_all_well_is_ok_without_findings() -> None:
    report = health_report(facts())
    assert (report["status"], report["problems"], report["warnings"]) == ("ok", [], [])


def test_names_the_broker_connected_to_only_while_connected() -> None:
    node = "mqtt://nats-2.example:1883"
    assert health_report(facts(mqtt_broker=node))["mqtt_broker"] == node
    gone = health_report(facts(mqtt_broker=node, mqtt_connected=False))
    assert gone["mqtt_broker"] is None  # the node being tried is named in mqtt_last_error


def failing_delivery(since: float, **kw: Any) -> DeliveryStatus:
    status = DeliveryStatus(odoo_reachable=True)
    status.failed(since, "POST /ows/iot/events answered 502 (not the contract's answer: text/html)")
    for key, value in kw.items():
        setattr(status, key, value)
    return status


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"store_error": "disk full"}, "store_not_writable"),
        ({"stats": None}, "store_not_writable"),
        ({"mqtt_connected": False}, "mqtt_disconnected"),
        ({"config": None}, "no_device_config"),
        ({"delivery": DeliveryStatus(odoo_reachable=False, auth_failed=True)}, "odoo_auth_failed"),
        ({"delivery": failing_delivery(NOW - 301)}, "odoo_unreachable"),
        ({"stats": QueueStats(5, NOW - 901, 0, 0)}, "queue_too_old"),
        ({"config": DeviceSet(config_version="3", devices=(), errors=("d1: bad",))},
         "no_usable_device"),
    ],
)  # fmt: skip
def test_each_problem_is_named_and_503(changes: dict[str, Any], problem: str) -> None:
    problems, _ = findings(facts(**changes))
    assert problems == [problem]
    assert health_report(facts(**changes))["status"] == "degraded"


@pytest.mark.parametrize(
    ("changes", "warning"),
    [
        ({"delivery": failing_delivery(NOW - 299)}, "odoo_retrying"),
        ({"delivery": DeliveryStatus(odoo_reachable=True, batch_size=62)}, "odoo_batch_reduced"),
        ({"delivery": DeliveryStatus(odoo_reachable=True, splitting=True)}, "odoo_splitting_batch"),
        (
            {"stats": QueueStats(0, None, 1, 0, NOW - 3600, ((409, 1),))},
            "new_dead_letters",
        ),
        ({"refused_subscriptions": ("secret/#",)}, "subscriptions_refused"),
        ({"silent_subscriptions": ("laser/status/pm1:0",)}, "subscriptions_silent"),
        ({"config": DeviceSet(config_version="3", devices=(METER,), errors=("d1: bad parser",))},
         "config_errors"),
        ({"config_problem": "config from Odoo: GET /ows/iot/config answered 502"}, "config_errors"),
        ({"device_errors": {"m": 3}, "device_error_at": {"m": NOW - 60}}, "device_errors"),
        ({"backlog_marker_echoed": False}, "backlog_end_guessed"),
    ],
)  # fmt: skip
def test_each_warning_is_named_and_200(changes: dict[str, Any], warning: str) -> None:
    problems, warnings = findings(facts(**changes))
    assert (problems, warnings) == ([], [warning])
    assert health_report(facts(**changes))["status"] == "ok"


def test_device_errors_name_the_device_and_its_last_reason_and_fade() -> None:
    errors = {"m": 3, "n": 9}
    last = {"m": "m/power: invalid JSON: unexpected character", "n": "n/power: too big"}
    report = health_report(
        facts(device_errors=errors, device_last_error=last, device_error_at={"m": NOW - 901})
    )
    assert list(report["device_errors"]) == ["n", "m"]  # most errors first
    assert report["device_errors"]["m"] == {"count": 3, "last_error": last["m"]}
    assert report["warnings"] == []  # the last one was more than 15 minutes ago


def test_odoo_unreachable_after_the_setting() -> None:
    delivery = failing_delivery(NOW - 120)
    assert findings(facts(delivery=delivery, odoo_down_after_s=119))[0] == ["odoo_unreachable"]
    assert findings(facts(delivery=delivery, odoo_down_after_s=121))[1] == ["odoo_retrying"]
    report = health_report(facts(delivery=delivery))
    assert report["odoo_unreachable_s"] == 120.0
    assert report["odoo_last_error"] == (
        "POST /ows/iot/events answered 502 (not the contract's answer: text/html)"
    )


def test_old_dead_letters_are_no_longer_news() -> None:
    stats = QueueStats(0, None, 2, 0, NOW - 90_000, ((400, 1), (409, 1)))
    report = health_report(facts(stats=stats))
    assert report["warnings"] == []
    assert report["dead_letters"] == 2
    assert report["dead_letters_by_reason"] == {"invalid_event": 1, "conflict": 1}
    assert report["last_dead_letter_age_s"] == 90_000


def test_dead_letters_by_reason_names_the_splitter_s_finds() -> None:
    stats = QueueStats(0, None, 3, 0, NOW - 5, ((404, 1), (500, 1), (502, 1)))
    report = health_report(facts(stats=stats))
    assert report["dead_letters_by_reason"] == {"unknown_device": 1, "server_error": 2}
    assert "new_dead_letters" in report["warnings"]


def test_texts_are_one_short_line() -> None:
    body = "<html>" + "secret stack trace\n" * 100
    delivery = DeliveryStatus(odoo_reachable=False)
    delivery.failed(NOW, body)
    report = health_report(facts(delivery=delivery, mqtt_last_error=body, store_error=body,
                                 config_problem=body))  # fmt: skip
    for key in ("odoo_last_error", "mqtt_last_error", "store_error"):
        assert len(report[key]) <= 200
        assert "\n" not in report[key]
    assert all(len(e) <= 200 for e in report["config_errors"])


def test_metrics_name_every_problem_and_warning() -> None:
    report = health_report(facts(mqtt_connected=False, silent_subscriptions=("a/b",)))
    text = health_metrics(report)
    for name in PROBLEMS:
        value = int(name == "mqtt_disconnected")
        assert f'iot_bridge_health_problem{{problem="{name}"}} {value}\n' in text
    for name in WARNINGS:
        value = int(name == "subscriptions_silent")
        assert f'iot_bridge_health_warning{{warning="{name}"}} {value}\n' in text
    assert "iot_bridge_subscriptions_silent 1\n" in text
    assert "iot_bridge_odoo_unreachable_seconds 0\n" in text


# -- the server ---------------------------------------------------------------------------------


class Served:
    def __init__(self, report: dict[str, Any], **kw: Any) -> None:
        self.report = report
        self.reports = 0
        self.server = HealthServer("127.0.0.1", 0, self._report, self._metrics, **kw)

    async def _report(self) -> dict[str, Any]:
        self.reports += 1
        await asyncio.sleep(0.01)
        return self.report

    async def _metrics(self) -> str:
        return "# TYPE iot_bridge_up gauge\niot_bridge_up 1\n"


def serve(report: dict[str, Any], body: Callable[[Served], Awaitable[R]], **kw: Any) -> R:
    async def main() -> R:
        served = Served(report, **kw)
        await served.server.start()
        try:
            return await body(served)
        finally:
            await served.server.stop()

    return asyncio.run(main())


async def request(port: int, raw: bytes, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def connect_nowait(port: int) -> socket.socket:
    """A client connection that the kernel completes whenever the server's backlog has room
    (a blocking connect would stall the test's event loop while the server is full)."""
    sock = socket.socket()
    sock.setblocking(False)
    sock.connect_ex(("127.0.0.1", port))
    return sock


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def test_health_and_metrics_over_http() -> None:
    ok = health_report(facts())

    async def body(s: Served) -> None:
        port = s.server.port
        status, headers, data = await request(port, get("/health"))
        assert (status, headers["Content-Type"], headers["Connection"]) == (
            200, "application/json", "close",
        )  # fmt: skip
        assert json.loads(data) == ok
        status, _, data = await request(port, get("/metrics?x=1"))
        assert status == 200
        assert data.startswith(b"# TYPE iot_bridge_up gauge\niot_bridge_up 1\n")
        assert b'iot_bridge_health_problem{problem="mqtt_disconnected"} 0' in data
        status, headers, data = await request(port, get("/health", "HEAD"))
        assert (status, data, int(headers["Content-Length"]) > 10) == (200, b"", True)
        assert (await request(port, get("/health", "POST")))[0] == 405
        assert (await request(port, get("/admin")))[0] == 404
        assert (await request(port, b"garbage\r\n\r\n"))[0] == 400

    serve(ok, body)


def test_problems_answer_503() -> None:
    report = health_report(facts(mqtt_connected=False))

    async def body(s: Served) -> None:
        status, _, data = await request(s.server.port, get("/health"))
        assert status == 503
        assert json.loads(data)["problems"] == ["mqtt_disconnected"]

    serve(report, body)


def test_a_huge_request_head_is_refused() -> None:
    async def body(s: Served) -> None:
        raw = b"GET /health HTTP/1.1\r\nX-Junk: " + b"a" * 20_000 + b"\r\n\r\n"
        status, _, _ = await request(s.server.port, raw)
        assert status == 431

    serve(health_report(facts()), body)


def test_slow_clients_are_cut_off_and_never_exceed_the_cap() -> None:
    """40 clients that connect and send nothing (or one byte now and then): the server holds at
    most 8 of them, cuts each after the header timeout, and a real request still gets through."""

    async def body(s: Served) -> None:
        port = s.server.port
        idle = [connect_nowait(port) for _ in range(40)]
        drips = [connect_nowait(port) for _ in range(4)]
        try:
            start = time.monotonic()
            answer = asyncio.ensure_future(request(port, get("/health"), timeout=30))
            while not answer.done():
                for d in drips:  # a byte every 0.1 s never completes a head
                    with contextlib.suppress(OSError):
                        d.send(b"G")
                assert s.server.open_connections <= 8
                await asyncio.sleep(0.1)
            status, _, _ = await answer
            assert status == 200
            assert time.monotonic() - start < 40  # SYN retries while the backlog is full
            assert s.server.peak_connections == 8
            assert s.server.timed_out >= 8
        finally:
            for sock in idle + drips:
                sock.close()

    serve(health_report(facts()), body, max_connections=8, header_timeout=0.3)


def test_concurrent_requests_share_one_report() -> None:
    async def body(s: Served) -> None:
        answers = await asyncio.gather(*(request(s.server.port, get("/health")) for _ in range(8)))
        assert {a[0] for a in answers} == {200}
        assert s.reports < 8

    serve(health_report(facts()), body)


def test_a_failing_report_is_a_500_and_the_server_goes_on() -> None:
    async def body(s: Served) -> None:
        async def broken() -> dict[str, Any]:
            raise RuntimeError("store gone")

        s.server._report = broken
        assert (await request(s.server.port, get("/health")))[0] == 500
        s.server._report = s._report
        assert (await request(s.server.port, get("/health")))[0] == 200

    serve(health_report(facts()), body)


FD_STARVED = textwrap.dedent(
    """
    import asyncio, logging, resource, socket, sys, time
    from iot_bridge.cli import setup_logging
    from iot_bridge.runtime.health import HealthServer

    setup_logging("INFO")
    async def report():
        return {"problems": []}
    async def metrics():
        return ""

    async def main():
        # far more allowed connections than file descriptors: accept() runs out (EMFILE)
        server = HealthServer("127.0.0.1", 0, report, metrics, max_connections=500,
                              header_timeout=30)
        port = await server.start()
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        import os
        used = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (used + 20, hard))
        print(port, flush=True)
        # also what asyncio itself logs when its own accept loop runs out of descriptors
        loop = asyncio.get_running_loop()
        for _ in range(5000):
            loop.call_exception_handler({
                "message": "socket.accept() out of system resource",
                "exception": OSError(24, "Too many open files"),
            })
        await asyncio.sleep(float(sys.argv[1]))
        await server.stop()
        logging.shutdown()

    asyncio.run(main())
    """
)


def test_out_of_file_descriptors_is_a_few_log_lines() -> None:
    """The health server in a process with 20 spare file descriptors and 300 clients holding
    connections open: accept() fails with EMFILE again and again; the log gets one line per
    cause (and a count at the end), not one per attempt; the server keeps running."""
    proc = subprocess.Popen(
        [sys.executable, "-c", FD_STARVED, "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1024), hard))
    clients = []
    try:
        clients = [connect_nowait(port) for _ in range(300)]
        _, err = proc.communicate(timeout=30)
    finally:
        for c in clients:
            c.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    lines = [line for line in err.splitlines() if line.strip()]
    accept_lines = [line for line in lines if "health server: accept() out of resources" in line]
    asyncio_lines = [line for line in lines if "socket.accept() out of system resource" in line]
    assert proc.returncode == 0, err[-2000:]
    assert 1 <= len(accept_lines) <= 2, lines
    assert len(asyncio_lines) <= 2, lines  # the first, then "(repeated 4999 more times ...)"
    assert any("repeated 4999 more times" in line for line in asyncio_lines), lines
    assert len(err) < 20_000


# -- the throttle -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def throttled(clock: Clock) -> tuple[logging.Logger, io.StringIO, ThrottlingHandler]:
    out = io.StringIO()
    target = logging.StreamHandler(out)
    target.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler = ThrottlingHandler(target, interval=60, clock=clock)
    logger = logging.getLogger(f"throttle-test-{id(out)}")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    return logger, out, handler


def test_throttle_one_line_per_cause_per_interval_with_a_count() -> None:
    clock = Clock()
    log, out, handler = throttled(clock)
    for _ in range(1000):
        log.error("broker %s refused: %s", "b:1883", "not authorised")
    log.warning("another cause")
    assert out.getvalue().splitlines() == [
        "ERROR broker b:1883 refused: not authorised",
        "WARNING another cause",
    ]
    clock.t = 61
    log.info("a session started")  # any line lets the counts of expired causes out
    log.error("broker %s refused: %s", "b:1883", "not authorised")
    assert out.getvalue().splitlines()[2:] == [
        "ERROR broker b:1883 refused: not authorised (repeated 999 more times within 60 s)",
        "INFO a session started",
        "ERROR broker b:1883 refused: not authorised",
    ]
    log.error("broker %s refused: %s", "b:1883", "not authorised")
    handler.flush()  # at exit
    assert out.getvalue().splitlines()[-1].endswith("(repeated 1 more times within 60 s)")


def test_throttle_lets_info_and_debug_through() -> None:
    log, out, _ = throttled(Clock())
    for _ in range(5):
        log.info("Message received: topic=a, power=1.0W")
    assert len(out.getvalue().splitlines()) == 5


def test_throttle_keys_on_the_first_line() -> None:
    log, out, _ = throttled(Clock())
    for fd in range(100):
        log.error("socket.accept() out of system resource\nsocket: <fd=%d>", fd)
    assert len(out.getvalue().splitlines()) == 2  # the first record, with its detail line


def test_cli_logging_is_throttled(capfd: pytest.CaptureFixture[str]) -> None:
    code = textwrap.dedent(
        """
        import logging
        from iot_bridge.cli import setup_logging
        setup_logging("INFO")
        for _ in range(10000):
            logging.getLogger("iot_bridge.mqtt").warning("MQTT broker down")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, lines
    assert lines[1].endswith("MQTT broker down (repeated 9999 more times within 60 s)")
