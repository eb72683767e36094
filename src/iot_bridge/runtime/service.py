"""The running bridge: one TaskGroup holding MQTT intake, group commits, timers, delivery to
Odoo, config refresh and the health server; signals for stop (SIGTERM/SIGINT) and reload (SIGHUP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from typing import Any

from iot_bridge.devices import DeviceSet
from iot_bridge.errors import ConfigUnavailable, StoreError
from iot_bridge.events import Event
from iot_bridge.mqtt.client import MqttClient
from iot_bridge.mqtt.connection import Connection, Endpoint
from iot_bridge.odoo_api.client import OdooClient
from iot_bridge.odoo_api.delivery import Delivery
from iot_bridge.outbox.store import Store
from iot_bridge.outbox.worker import DbWorker
from iot_bridge.runtime.config_source import ConfigSource
from iot_bridge.runtime.health import HealthServer
from iot_bridge.runtime.intake import Ingest
from iot_bridge.runtime.metrics import Metrics, render
from iot_bridge.runtime.pipeline import Pipeline
from iot_bridge.runtime.report import HealthFacts, health_report
from iot_bridge.settings import Settings

log = logging.getLogger("iot_bridge")

SHUTDOWN_BUDGET_S = 8.0  # SIGTERM must end the process within 10 s


class Bridge:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.started = time.time()
        self.metrics = Metrics()
        self.store = Store(settings.data_dir / "bridge.db")
        self.db = DbWorker()
        self.pipeline = Pipeline(forward_measurements=settings.forward_measurements)
        self.odoo: OdooClient | None = None
        if settings.odoo_url is not None:
            assert settings.odoo_token is not None
            self.odoo = OdooClient(
                settings.odoo_url,
                settings.odoo_token,
                settings.odoo_timeout,
                on_latency=self.metrics.odoo_latency.observe,
            )
        self.delivery = (
            Delivery(self.odoo, self.store, self.db, self.metrics) if self.odoo else None
        )
        self.ingest = Ingest(
            self.pipeline,
            self.store,
            self.db,
            self.metrics,
            on_committed=self._committed,
            on_store_failed=self._store_failed,
            on_store_recovered=self._store_recovered,
        )
        self.mqtt = MqttClient(
            Endpoint(
                host=settings.mqtt_host,
                port=settings.mqtt_port,
                client_id=settings.mqtt_client_id,
                username=settings.mqtt_username,
                password=settings.mqtt_password,
                tls=settings.ssl_context(),
                keepalive=settings.mqtt_keepalive,
            ),
            self.ingest.on_messages,
            on_connected=self._connected,
            on_disconnected=lambda reason: self.pipeline.pause(),
            backoff_cap=settings.reconnect_max_s,
        )
        self.config_source = ConfigSource(
            client=self.odoo,
            devices_file=settings.devices_file,
            cache_path=settings.data_dir / "config-cache.json",
        )
        self.config: DeviceSet | None = None
        self.config_problem: str | None = None
        self.health = HealthServer(
            settings.health_host, settings.health_port, self.health_report, self.metrics_text
        )
        self._reload = asyncio.Event()
        self._stop = asyncio.Event()

    # -- life cycle -----------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload.set)
        log.info(
            "Bridge started, connecting to MQTT... (%s, client id %s, %s mode)",
            self.settings.mqtt_url,
            self.settings.mqtt_client_id,
            "standalone" if self.settings.standalone else "Odoo",
        )
        await self.health.start()
        await self._initial_config()
        try:
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self.mqtt.run(), name="mqtt"),
                    tg.create_task(self.ingest.run_commits(), name="commits"),
                    tg.create_task(self.ingest.run_timers(), name="timers"),
                    tg.create_task(self.ingest.run_probe(), name="store-probe"),
                    tg.create_task(self._config_loop(), name="config"),
                ]
                if self.delivery is not None:
                    tasks.append(tg.create_task(self.delivery.run(), name="delivery"))
                await self._stop.wait()
                log.info("Stopping: finishing intake and closing the store")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drain(), SHUTDOWN_BUDGET_S)
                for task in tasks:
                    task.cancel()
        finally:
            await self.health.stop()
            if self.odoo is not None:
                await self.odoo.close()
            self.db.close()
            self.store.close()
            log.info("Bridge stopped")

    def stop(self) -> None:
        self._stop.set()

    async def _drain(self) -> None:
        conn = self.mqtt.connection
        if conn is not None:
            conn.pause_reading()  # stop intake; what arrived is committed and acknowledged
        await self.ingest.flush()
        await self.ingest.drained()
        await self.mqtt.stop()

    def _connected(self, conn: Connection) -> None:
        # a fresh message timeout for every open session (sessions.md, last section)
        self.pipeline.resume(time.time())
        self.ingest.add_events(())

    def _store_failed(self, reason: str) -> None:
        self.mqtt.hold()  # the broker keeps what we cannot store

    def _store_recovered(self) -> None:
        self.mqtt.release()

    def _committed(self, events: Sequence[Event]) -> None:
        if self.delivery is not None:
            self.delivery.notify()

    # -- config ---------------------------------------------------------------------------------

    async def _initial_config(self) -> None:
        try:
            devices = await asyncio.wait_for(
                self.config_source.fetch(), self.settings.odoo_timeout + 1
            )
        except (ConfigUnavailable, TimeoutError) as exc:
            self.config_problem = str(exc) or "config source timed out"
            self._odoo_answered(False, auth=getattr(exc, "auth", False))
            cached = self.config_source.load_cached()
            if cached is None:
                log.error("No device config yet (%s); retrying", self.config_problem)
                return
            log.warning("Odoo unreachable (%s); using the cached config", self.config_problem)
            devices = cached
        else:
            self._odoo_answered(True)
        await self._apply(devices)

    async def _config_loop(self) -> None:
        while True:
            interval = self.settings.config_refresh_interval if self.config else 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reload.wait(), interval)
            self._reload.clear()
            try:
                devices = await self.config_source.fetch()
            except ConfigUnavailable as exc:
                self.config_problem = str(exc)
                self._odoo_answered(False, auth=exc.auth)
                log.warning("Config refresh failed, keeping the current one: %s", exc)
                continue
            self.config_problem = None
            self._odoo_answered(True)
            if self.config is None or devices != self.config:
                await self._apply(devices)

    def _odoo_answered(self, ok: bool, auth: bool = False) -> None:
        """The config fetch tells us about Odoo too: reachable, or refusing our token."""
        if self.delivery is not None:
            self.delivery.status.odoo_reachable = ok
            self.delivery.status.auth_failed = auth

    async def _apply(self, devices: DeviceSet) -> None:
        first = self.config is None
        saved = await self.db.call(self.store.load_states) if first else None
        change = self.pipeline.apply(devices, time.time(), saved)
        self.config = devices
        for problem in devices.errors:
            log.warning("Device config rejected: %s", problem)
        log.info(
            "Config loaded: %d devices (version %s, from %s)",
            len(devices.devices),
            devices.config_version,
            self.config_source.describe,
        )
        self.ingest.add_events(change.events)
        await self.mqtt.set_filters(self.pipeline.subscriptions())

    # -- health and metrics --------------------------------------------------------------------

    async def health_report(self) -> dict[str, Any]:
        try:
            stats = await self.db.call(self.store.stats)
        except StoreError:
            stats = None
        return health_report(
            HealthFacts(
                now=time.time(),
                started=self.started,
                standalone=self.settings.standalone,
                max_queue_age_s=self.settings.max_queue_age_s,
                mqtt_connected=self.mqtt.connected,
                mqtt_reconnects=self.mqtt.reconnects,
                mqtt_last_error=self.mqtt.last_error,
                store_error=self.ingest.store_error,
                stats=stats,
                config=self.config,
                config_problem=self.config_problem,
                delivery=self.delivery.status if self.delivery else None,
                active_sessions=self.pipeline.open_sessions(),
                last_message_at=self.ingest.last_message_at,
            )
        )

    async def metrics_text(self) -> str:
        stats = await self.db.call(self.store.stats)
        pstats = self.pipeline.stats
        m = self.metrics
        gauges = {
            "queue_depth": float(stats.depth),
            "queue_oldest_age_seconds": 0.0
            if stats.oldest_created_at is None
            else time.time() - stats.oldest_created_at,
            "dead_letters": float(stats.dead_letters),
            "active_sessions": float(self.pipeline.open_sessions()),
            "devices_configured": float(len(self.config.devices) if self.config else 0),
            "mqtt_connected": float(self.mqtt.connected),
            "store_ok": float(self.ingest.store_error is None),
            # receive times (Unix s) of this process's first and latest MQTT message: alert on
            # a silent broker, measure how fast a backlog drained
            "first_message_timestamp_seconds": self.ingest.first_message_at or 0.0,
            "last_message_timestamp_seconds": self.ingest.last_message_at or 0.0,
        }
        counters = {
            "messages_total": float(pstats.messages),
            "messages_unrouted_total": float(pstats.unrouted),
            "mqtt_reconnects_total": float(self.mqtt.reconnects),
            "odoo_errors_total": float(m.odoo_errors),
            "commits_total": float(m.commits),
            "dropped_measurements_total": float(stats.dropped_measurements),
        }
        labelled = {
            "parser:parse_errors_total": {k: float(v) for k, v in pstats.parse_errors.items()},
            "type:events_total": {k: float(v) for k, v in m.events.items()},
            "status:delivered_total": {k: float(v) for k, v in m.delivered.items()},
        }
        return render(m, gauges, counters, labelled)
