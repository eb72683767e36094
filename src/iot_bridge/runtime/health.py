"""``GET /health`` (the original's fields plus queue and store facts) and ``GET /metrics``.

``/health`` answers 200 while the bridge does its job and 503 when it does not: the store cannot
be written, the broker is unreachable, Odoo refuses the token, no device config could be loaded,
or the oldest queued event waited longer than ``HEALTH_MAX_QUEUE_AGE``. ``problems`` says which.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Report = Callable[[], Awaitable[dict[str, Any]]]
MetricsText = Callable[[], Awaitable[str]]


class HealthServer:
    def __init__(self, host: str, port: int, report: Report, metrics: MetricsText) -> None:
        self.host = host
        self.port = port
        self._report = report
        self._metrics = metrics
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/metrics", self._metrics_handler)
        # a scrape in flight must not hold up SIGTERM's 10 s budget
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server  # the bound port, also when HEALTH_PORT=0 asked for any
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _health(self, request: web.Request) -> web.Response:
        report = await self._report()
        status = 200 if report["status"] == "ok" else 503
        return web.json_response(report, status=status)

    async def _metrics_handler(self, request: web.Request) -> web.Response:
        return web.Response(text=await self._metrics(), content_type="text/plain", charset="utf-8")
