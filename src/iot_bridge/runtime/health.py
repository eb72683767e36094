"""``GET /health`` and ``GET /metrics``: a small HTTP server that cannot be used against the bridge.

The port is for a health check and a Prometheus scrape, nothing else, so the server is built
for that and bounded everywhere (a general web framework is not: it accepts every connection
and waits for slow clients as long as they like, and under file-descriptor exhaustion asyncio's
own accept loop logs a line per attempt):

- it listens on ``HEALTH_HOST``, ``127.0.0.1`` by default (the container's health check runs
  inside the container; a Prometheus in another container needs ``0.0.0.0`` said explicitly);
- at most :data:`MAX_CONNECTIONS` connections at a time; beyond that nothing is accepted (the
  kernel's small backlog holds the rest), so it can never take the file descriptors that
  delivery and the store need;
- a client has :data:`HEADER_TIMEOUT_S` for its whole request head (at most
  :data:`MAX_HEAD_BYTES`) and :data:`RESPONSE_TIMEOUT_S` to take the answer; then it is cut off;
- one answer per connection (``Connection: close``); only GET and HEAD;
- concurrent requests share one report (one store query at a time, whatever the request rate);
- an ``accept()`` that fails (EMFILE...) pauses accepting for a second and is logged through
  the log throttle (``iot_bridge.throttle``) like everything else.

What ``/health`` says is decided in ``report.py``; ``/metrics`` is the service's text followed
by the report's findings as series (``report.health_metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from iot_bridge.runtime.report import health_metrics

log = logging.getLogger("iot_bridge.health")

Report = Callable[[], Awaitable[dict[str, Any]]]
MetricsText = Callable[[], Awaitable[str]]

MAX_CONNECTIONS = 16
BACKLOG = 16
HEADER_TIMEOUT_S = 5.0
RESPONSE_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 8192
ACCEPT_RETRY_S = 1.0
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}  # fmt: skip


class HealthServer:
    def __init__(
        self,
        host: str,
        port: int,
        report: Report,
        metrics: MetricsText,
        *,
        max_connections: int = MAX_CONNECTIONS,
        header_timeout: float = HEADER_TIMEOUT_S,
        response_timeout: float = RESPONSE_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.port = port
        self._report = report
        self._metrics = metrics
        self.max_connections = max_connections
        self._header_timeout = header_timeout
        self._response_timeout = response_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._sock: socket.socket | None = None
        self._acceptor: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._pending_report: asyncio.Future[dict[str, Any]] | None = None
        self.peak_connections = 0  # the most connections open at once (tests read it)
        self.timed_out = 0  # connections cut off for being slow

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    async def start(self) -> int:
        """Bind and start serving; returns the port (useful with ``port=0``)."""
        infos = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        self._acceptor = asyncio.get_running_loop().create_task(
            self._accept_loop(sock), name="health-accept"
        )
        return self.port

    async def stop(self) -> None:
        """Stop accepting and cut what is open (a scrape must not hold up SIGTERM)."""
        tasks = [t for t in (self._acceptor, *self._connections) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:
                self._slots.release()
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN):
                    continue
                cause = "out of resources" if exc.errno in _OUT_OF_RESOURCES else "failed"
                log.error(
                    "health server: accept() %s (%s); not accepting for %.0f s",
                    cause,
                    exc.strerror or exc,
                    ACCEPT_RETRY_S,
                )
                await asyncio.sleep(ACCEPT_RETRY_S)
                continue
            task = loop.create_task(self._serve(conn))
            self._connections.add(task)
            self.peak_connections = max(self.peak_connections, len(self._connections))
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._connections.discard(task)
        self._slots.release()

    async def _serve(self, conn: socket.socket) -> None:
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self._header_timeout):
                reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_HEAD_BYTES)
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    head = b""
                    status, ctype, body = 431, "text/plain", b"request head too large\n"
            if head:
                async with asyncio.timeout(self._response_timeout):
                    method, status, ctype, body = await self._answer(head)
                    if method == "HEAD":
                        writer.write(_head(status, ctype, len(body)))
                    else:
                        writer.write(_head(status, ctype, len(body)) + body)
                    await writer.drain()
            else:
                writer.write(_head(status, ctype, len(body)) + body)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await writer.drain()
        except TimeoutError:
            self.timed_out += 1
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            if writer is not None:
                writer.close()
            else:
                conn.close()

    async def _answer(self, head: bytes) -> tuple[str, int, str, bytes]:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return "GET", 400, "text/plain", b"bad request line\n"
        method, target = parts[0], parts[1]
        path = target.split("?", 1)[0]
        if path not in ("/health", "/metrics"):
            return method, 404, "text/plain", b"not found: try /health or /metrics\n"
        if method not in ("GET", "HEAD"):
            return method, 405, "text/plain", b"GET or HEAD only\n"
        try:
            report = await self._shared_report()
            if path == "/health":
                code = 200 if not report["problems"] else 503
                return method, code, "application/json", orjson.dumps(report)
            text = await self._metrics() + health_metrics(report)
            return method, 200, "text/plain; version=0.0.4; charset=utf-8", text.encode()
        except Exception as exc:  # a broken store must not kill the server; said in the log
            log.error("health server: cannot answer %s: %s: %s", path, type(exc).__name__, exc)
            return method, 500, "text/plain", b"internal error (see the bridge log)\n"

    async def _shared_report(self) -> dict[str, Any]:
        """One report at a time; requests that arrive meanwhile get the same one."""
        pending = self._pending_report
        if pending is None or pending.done():
            pending = asyncio.ensure_future(self._report())
            self._pending_report = pending
        return await asyncio.shield(pending)


def _head(status: int, content_type: str, length: int) -> bytes:
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
