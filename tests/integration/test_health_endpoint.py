"""The health port cannot be used against the bridge: the measurement of issue 10 as a test.

On ``main`` before this change, 300 slow connections to ``/health`` of a bridge started with
``ulimit -n 256`` made delivery to Odoo fail with "Too many open files", and asyncio logged
"socket.accept() out of system resource" hundreds of thousands of times. Here the same bridge
process (same limit, same 300 connections that never send a request) keeps delivering sessions,
keeps answering ``/health``, and writes a few log lines.
"""

from __future__ import annotations

import contextlib
import resource
import socket
import time
from collections.abc import Iterator

from iot_bridge.tools.broker import Mosquitto
from tests.integration.conftest import (
    TICK,
    BridgeFactory,
    assert_sessions_whole,
    publish,
    session,
    wait_until,
)
from tests.support.fake_odoo import FakeOdoo

FD_LIMIT = 256
SLOW_CLIENTS = 300


@contextlib.contextmanager
def child_fd_limit(limit: int) -> Iterator[None]:
    """Children started inside inherit ``ulimit -n limit``; this process gets its own back."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def slow_client(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setblocking(False)  # the kernel completes it whenever the bridge's backlog has room
    sock.connect_ex(("127.0.0.1", port))
    return sock


def test_slow_health_clients_with_few_file_descriptors_do_not_stop_delivery(
    broker: Mosquitto, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    bridge = bridge_factory(broker, odoo)
    with child_fd_limit(FD_LIMIT):
        bridge.start()
    bridge.connected()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4 * SLOW_CLIENTS), hard))
    clients = [slow_client(bridge.health_port) for _ in range(SLOW_CLIENTS)]
    try:
        log_before = len(bridge.log())
        publish(broker, session("alpha", "beta", "gamma"), gap=TICK)
        wait_until(lambda: len(odoo.stored_events()) == 6, 30, "delivery during the flood")
        assert_sessions_whole(odoo)
        deadline = time.monotonic() + 30  # /health answers, at its turn among the slow ones
        health = None
        while health is None and time.monotonic() < deadline:
            health = bridge.health()
        assert health is not None
        assert health["queue_depth"] == 0
        assert health["problems"] == []
        log = bridge.log()[log_before:]
        assert "Too many open files" not in log
        assert "socket.accept() out of system resource" not in log
        assert len(log) < 10_000, log[-2000:]
    finally:
        for sock in clients:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
