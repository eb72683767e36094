"""The running bridge: one TaskGroup holding the MQTT client, the intake (the owner of the
pipeline), delivery to Odoo, config refresh and the health server; signals for stop
(SIGTERM/SIGINT) and reload (SIGHUP). This module wires the parts and answers ``/health``; it
makes no decisions about messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
from typing import Any

from iot_bridge import __version__
from iot_bridge.clock import SYSTEM_CLOCK, Clock, timeout
from iot_bridge.devices import DeviceSet
from iot_bridge.errors import ConfigUnavailable, StartupError, StoreError
from iot_bridge.mqtt.client import MqttClient
from iot_bridge.mqtt.connection import Endpoint
from iot_bridge.odoo_api.client import OdooClient
from iot_bridge.odoo_api.delivery import Delivery
from iot_bridge.outbox.store import Store
from iot_bridge.outbox.worker import DbWorker
from iot_bridge.runtime.config_source import ConfigSource
from iot_bridge.runtime.discovery import Discovery
from iot_bridge.runtime.health import HealthServer
from iot_bridge.runtime.heartbeat import Heartbeat, run_quietly
from iot_bridge.runtime.intake import Intake
from iot_bridge.runtime.metrics import Metrics, render
from iot_bridge.runtime.pipeline import Pipeline
from iot_bridge.runtime.report import HealthFacts, health_report
from iot_bridge.settings import Settings

log = logging.getLogger("iot_bridge")

SHUTDOWN_BUDGET_S = 8.0  # SIGTERM must end the process within 10 s
FIRST_CONFIG_WAIT_S = 5.0  # subscribe the first config in the first connection if it is quick


class Bridge:
    def __init__(self, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.clock = clock
        self.started = clock.now()
        self.metrics = Metrics()
        self.store = Store(settings.data_dir / "bridge.db")
        self.db = DbWorker()
        # discovery's list travels in the heartbeat: without one (standalone mode,
        # STATUS_INTERVAL=0) there is no one to tell, and nothing is subscribed for it
        heartbeat = settings.odoo_url is not None and settings.status_interval > 0
        self.discovery = (
            Discovery(settings.discovery_topics) if settings.discovery and heartbeat else None
        )
        self.pipeline = Pipeline(
            forward_measurements=settings.forward_measurements,
            marker=settings.mqtt_ordered_session,
            discovery=self.discovery,
        )
        self.odoo: OdooClient | None = None
        if settings.odoo_url is not None:
            assert settings.odoo_token is not None
            self.odoo = OdooClient(
                settings.odoo_url,
                settings.odoo_token,
                settings.odoo_timeout,
                on_latency=self.metrics.odoo_latency.observe,
                clock=clock,
            )
        self.delivery = (
            Delivery(self.odoo, self.store, self.db, self.metrics, clock=clock)
            if self.odoo
            else None
        )
        tls = settings.ssl_context()  # one context: every node is verified the same way
        self.mqtt = MqttClient(
            [
                Endpoint(
                    host=broker.host,
                    port=broker.port,
                    client_id=settings.mqtt_client_id,
                    username=broker.username,
                    password=broker.password,
                    tls=tls,
                    keepalive=settings.mqtt_keepalive,
                    max_packet=settings.mqtt_max_packet,
                )
                for broker in settings.mqtt_brokers
            ],
            clock,
            backoff_cap=settings.reconnect_max_s,
            ordered=settings.mqtt_ordered_session,
        )
        self.intake = Intake(
            self.pipeline,
            store=self.store,
            db=self.db,
            metrics=self.metrics,
            clock=clock,
            source=self.mqtt,
            wake_delivery=self.delivery.notify if self.delivery else lambda: None,
            on_live_change=self._live_changed,
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
        self.heartbeat: Heartbeat | None = None
        if self.odoo is not None and settings.status_interval > 0:
            self.heartbeat = Heartbeat(
                self.odoo,
                clock,
                interval=settings.status_interval,
                request_timeout=settings.odoo_timeout,
                started=self.started,
                version=__version__,
                report=self.health_report,
                views=self.pipeline.views,
                discovered=self.discovered,
                running_version=lambda: self.config.config_version if self.config else None,
                answered=self._odoo_answered,
                refetch=self._reload.set,
            )

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
        try:
            await self.health.start()
        except OSError as exc:  # taken between the preflight check and now
            where = f"HEALTH_PORT {self.settings.health_port} on {self.settings.health_host}"
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"{where} is already in use (another bridge running here?)"
                ) from None
            raise StartupError(f"cannot listen on {where}: {exc.strerror or exc}") from None
        try:
            async with asyncio.TaskGroup() as tg:
                intake = tg.create_task(self.intake.run(), name="intake")
                tasks = [tg.create_task(self.intake.feed(), name="intake-feed")]
                await self._initial_config()
                tasks.append(tg.create_task(self.mqtt.run(), name="mqtt"))
                tasks.append(tg.create_task(self._config_loop(), name="config"))
                if self.delivery is not None:
                    tasks.append(tg.create_task(self.delivery.run(), name="delivery"))
                if self.heartbeat is not None:
                    tasks.append(tg.create_task(run_quietly(self.heartbeat), name="heartbeat"))
                await self._stop.wait()
                log.info("Stopping: finishing intake and closing the store")
                self.mqtt.stop_reading()  # what arrived is committed and acknowledged
                self.intake.stop()
                with contextlib.suppress(TimeoutError):
                    async with timeout(self.clock, SHUTDOWN_BUDGET_S):
                        await asyncio.shield(intake)
                await self.mqtt.stop()
                intake.cancel()
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

    # -- config ---------------------------------------------------------------------------------

    async def _initial_config(self) -> None:
        try:
            async with timeout(self.clock, self.settings.odoo_timeout + 1):
                devices = await self.config_source.fetch()
        except (ConfigUnavailable, TimeoutError) as exc:
            self.config_problem = str(exc) or "config source timed out"
            self._odoo_answered(False, getattr(exc, "auth", False), self.config_problem)
            cached = self.config_source.load_cached()
            if cached is None:
                log.error("No device config yet (%s); retrying", self.config_problem)
                return
            log.warning("Odoo unreachable (%s); using the cached config", self.config_problem)
            devices = cached
        else:
            self._odoo_answered(True)
        self._apply(devices)
        # let the intake subscribe it before the first connection, so that one SUBSCRIBE
        # carries everything (bounded: a store that cannot be read fails the intake instead)
        with contextlib.suppress(TimeoutError):
            async with timeout(self.clock, FIRST_CONFIG_WAIT_S):
                await self.intake.idle.wait()

    async def _config_loop(self) -> None:
        while True:
            interval = self.settings.config_refresh_interval if self.config else 5.0
            with contextlib.suppress(TimeoutError):
                async with timeout(self.clock, interval):
                    await self._reload.wait()
            self._reload.clear()
            try:
                devices = await self.config_source.fetch()
            except ConfigUnavailable as exc:
                self.config_problem = str(exc)
                self._odoo_answered(False, exc.auth, self.config_problem)
                log.warning("Config refresh failed, keeping the current one: %s", exc)
                continue
            self.config_problem = None
            self._odoo_answered(True)
            if self.config is None or devices != self.config:
                self._apply(devices)

    def _odoo_answered(self, ok: bool, auth: bool = False, error: str = "") -> None:
        """The config fetch tells us about Odoo too: reachable, or refusing our token."""
        if self.delivery is not None:
            if ok:
                self.delivery.status.answered()
            else:
                self.delivery.status.failed(self.clock.now(), error, auth=auth)

    def _apply(self, devices: DeviceSet) -> None:
        self.config = devices
        for problem in devices.errors:
            log.warning("Device config rejected: %s", problem)
        log.info(
            "Config loaded: %d devices (version %s, from %s)",
            len(devices.devices),
            devices.config_version,
            self.config_source.describe,
        )
        self.intake.apply_config(devices)  # the pipeline then says live_changed (heartbeat)

    def _live_changed(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.changed()

    def discovered(self) -> list[dict[str, Any]]:
        """The status's ``discovered`` list (``[]`` with ``DISCOVERY=false``)."""
        if self.discovery is None:
            return []
        return self.discovery.entries(self.config, self.clock.now())

    # -- health and metrics ---------------------------------------------------------------------

    async def health_report(self) -> dict[str, Any]:
        try:
            stats = await self.db.call(self.store.stats)
        except StoreError:
            stats = None
        return health_report(
            HealthFacts(
                now=self.clock.now(),
                started=self.started,
                standalone=self.settings.standalone,
                max_queue_age_s=self.settings.max_queue_age_s,
                mqtt_connected=self.mqtt.connected,
                mqtt_broker=self.mqtt.endpoint.url,
                mqtt_reconnects=self.mqtt.reconnects,
                mqtt_last_error=self.mqtt.last_error,
                store_error=self.intake.store_error,
                stats=stats,
                config=self.config,
                config_problem=self.config_problem,
                delivery=self.delivery.status if self.delivery else None,
                active_sessions=self.pipeline.open_sessions(),
                last_message_at=self.intake.last_message_at,
                odoo_down_after_s=self.settings.odoo_down_after_s,
                dead_letter_warn_s=self.settings.dead_letter_warn_s,
                refused_subscriptions=sorted(self.mqtt.refused_subscriptions),
                silent_subscriptions=self.pipeline.silent_topics(
                    self.clock.now(), self.settings.silent_after_s, self.mqtt.connected_since
                ),
                device_errors=self.pipeline.stats.device_errors,
                device_last_error=self.pipeline.stats.last_error,
                device_error_at=self.pipeline.stats.last_error_at,
                # without a marker by configuration (NATS) the guess is no news
                backlog_marker_echoed=self.pipeline.backlog_marker_echoed
                or not self.settings.mqtt_ordered_session,
                status=self.heartbeat.counters if self.heartbeat else None,
                discovered=len(self.discovery) if self.discovery is not None else None,
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
            else self.clock.now() - stats.oldest_created_at,
            "dead_letters": float(stats.dead_letters),
            "active_sessions": float(self.pipeline.open_sessions()),
            "devices_configured": float(len(self.config.devices) if self.config else 0),
            "mqtt_connected": float(self.mqtt.connected),
            "store_ok": float(self.intake.store_error is None),
            # receive times (Unix s) of this process's first and latest MQTT message: alert on
            # a silent broker, measure how fast a backlog drained
            "first_message_timestamp_seconds": self.intake.first_message_at or 0.0,
            "last_message_timestamp_seconds": self.intake.last_message_at or 0.0,
            "discovered_plugs": float(len(self.discovery) if self.discovery is not None else 0),
        }
        counters = {
            "messages_total": float(pstats.messages),
            "messages_unrouted_total": float(pstats.unrouted),
            "messages_retained_total": float(pstats.retained),
            "messages_duplicate_total": float(pstats.duplicates),
            "mqtt_reconnects_total": float(self.mqtt.reconnects),
            "mqtt_redeliveries_skipped_total": float(self.mqtt.redeliveries_skipped),
            "odoo_errors_total": float(m.odoo_errors),
            "commits_total": float(m.commits),
            "dropped_measurements_total": float(stats.dropped_measurements),
            "messages_announcements_total": float(pstats.announcements),
        }
        if self.heartbeat is not None:  # POST /ows/iot/status
            counters["status_sent_total"] = float(self.heartbeat.counters.sent)
            counters["status_refused_total"] = float(self.heartbeat.counters.refused)
        labelled = {
            "parser:parse_errors_total": {k: float(v) for k, v in pstats.parse_errors.items()},
            "device:device_errors_total": {k: float(v) for k, v in pstats.device_errors.items()},
            "type:events_total": {k: float(v) for k, v in m.events.items()},
            "status:delivered_total": {k: float(v) for k, v in m.delivered.items()},
        }
        return render(m, gauges, counters, labelled)
