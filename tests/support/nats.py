"""Private ``nats-server`` instances with JetStream and an MQTT listener, for interop tests.

Like ``iot_bridge.tools.broker.Mosquitto``: free loopback ports, a private work directory per
node, and a node can be stopped, killed (``kill -9``) and started again with its data. A
:class:`NatsCluster` is three (or more) such nodes routed to each other, JetStream clustered, MQTT
on every node, so a test can give the bridge every node's MQTT URL and kill the one it uses.

NATS's MQTT support needs JetStream and a ``server_name``; in a cluster its streams are
replicated (up to 3), so a session and its unacknowledged messages survive the loss of a node
once the cluster has a meta leader again (``wait_ready`` waits for that).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

from iot_bridge.tools.broker import free_port

NATS_SERVER = shutil.which("nats-server") or (
    "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
)


class NatsNode:
    def __init__(
        self, workdir: Path, name: str, *, cluster: str | None = None, ack_wait: str = "30s"
    ) -> None:
        """``ack_wait``: how long NATS waits for a PUBACK before it sends a message again, on
        any connection of the session (30 s is its default)."""
        self.workdir = workdir
        self.name = name
        self.cluster = cluster
        self.ack_wait = ack_wait
        self.replicas = 1  # set by NatsCluster
        self.port = free_port()
        self.mqtt_port = free_port()
        self.http_port = free_port()
        self.cluster_port = free_port()
        self.routes: list[int] = []
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.mqtt_port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "nats.log"

    def config(self) -> str:
        lines = [
            f"server_name: {self.name}",
            f"listen: 127.0.0.1:{self.port}",
            f"http: 127.0.0.1:{self.http_port}",
            "jetstream {",
            f'  store_dir: "{self.workdir / "jetstream"}"',
            "  max_memory_store: 64MB",
            "  max_file_store: 512MB",
            "}",
            "mqtt {",
            f"  listen: 127.0.0.1:{self.mqtt_port}",
            f"  ack_wait: {self.ack_wait}",
            # in a cluster: every node holds the sessions and messages (NATS otherwise picks
            # the replicas from the nodes it sees when it creates the streams: 2 of 3 when one
            # route is late, and an R2 stream stops when it loses a node)
            *([f"  stream_replicas: {self.replicas}"] if self.replicas > 1 else []),
            "}",
        ]
        if self.cluster is not None:
            routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in self.routes)
            lines += [
                "cluster {",
                f"  name: {self.cluster}",
                f"  listen: 127.0.0.1:{self.cluster_port}",
                f"  routes: [{routes}]",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> NatsNode:
        if NATS_SERVER is None:
            raise RuntimeError("nats-server is not installed (Debian: apt-get install nats-server)")
        conf = self.workdir / "nats.conf"
        conf.write_text(self.config())
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [NATS_SERVER, "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT
        )
        return self

    def healthy(self) -> bool:
        """JetStream up (and, in a cluster, a meta leader known): ``/healthz`` answers 200."""
        url = f"http://127.0.0.1:{self.http_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"nats-server {self.name} exited: {self.log_path.read_text()}")
            if self.healthy():
                return
            time.sleep(0.1)
        raise RuntimeError(f"nats-server {self.name} not healthy within {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """``kill -9``: no goodbye to the cluster, as when a machine dies."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> NatsNode:
        self.start()
        self.wait_ready()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.kill()


class NatsCluster:
    """``size`` nodes routed to each other (every node lists every other as a route)."""

    def __init__(
        self, workdir: Path, size: int = 3, name: str = "iot-test", ack_wait: str = "30s"
    ) -> None:
        self.nodes = [
            NatsNode(workdir / f"n{i}", f"n{i}", cluster=name, ack_wait=ack_wait)
            for i in range(size)
        ]
        for node in self.nodes:
            node.routes = [other.cluster_port for other in self.nodes if other is not node]
            node.replicas = min(3, size)

    @property
    def mqtt_urls(self) -> list[str]:
        return [node.mqtt_url for node in self.nodes]

    def start(self, timeout: float = 60.0) -> NatsCluster:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_ready(timeout)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:  # fmt: skip
        self.stop()
