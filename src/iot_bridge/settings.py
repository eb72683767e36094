"""Service settings from the environment, validated as a whole, frozen, secrets hidden.

The names are the original's (``ODOO_URL``, ``ODOO_TOKEN``, ``MQTT_URL``, ``MQTT_USERNAME``,
``MQTT_PASSWORD``, ``LOG_LEVEL``, ``CONFIG_REFRESH_INTERVAL``) plus what production needs. A bad
value stops the start with one message naming the variable (exit code 2 in the CLI).

:data:`VARIABLES` is the one list of them: :func:`load` takes every default from it, ``run
--help`` / ``check-config --help`` print it, and a test holds the README's configuration table
to it, so the code, the help and the README cannot drift apart. A new variable is one entry
there plus the line in :func:`load` that reads it.
"""

from __future__ import annotations

import math
import os
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from iot_bridge.errors import SettingsError
from iot_bridge.mqtt.packets import DEFAULT_MAX_PACKET, MAX_PACKET
from iot_bridge.runtime.discovery import DEFAULT_TOPICS as DEFAULT_DISCOVERY_TOPICS
from iot_bridge.topics import filter_problem

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class Variable:
    """One environment variable.

    ``default`` is the value :func:`load` uses when the variable is unset or blank, written as
    an operator would write it and parsed by the same code as a set value. ``None`` means
    there is no such value, and ``unset`` says in words what happens then ("required", "none",
    a computed value). ``meaning`` is one line of Markdown (backticks only).
    """

    name: str
    default: str | None
    meaning: str
    unset: str = "none"

    @property
    def shown_default(self) -> str:
        return self.unset if self.default is None else self.default


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "MQTT_URL",
        None,
        "`mqtt://host:1883` or `mqtts://host:8883`; a cluster: its nodes' URLs, comma-separated",
        "(required)",
    ),
    Variable(
        "MQTT_USERNAME",
        None,
        "broker user, for every URL (or in `MQTT_URL`: `mqtt://user:pw@host`)",
    ),
    Variable("MQTT_PASSWORD", None, "broker password, for every URL (or in `MQTT_URL`)"),
    Variable(
        "MQTT_CLIENT_ID",
        None,
        "keep it stable: the broker keeps the session under it",
        "`iot-bridge-<hostname>`",
    ),
    Variable("MQTT_CA_FILE", None, "CA bundle for `mqtts://`", "system CAs"),
    Variable(
        "MQTT_CERT_FILE",
        None,
        "client certificate (PEM, may hold the key and the chain) for brokers that require one",
    ),
    Variable("MQTT_KEY_FILE", None, "the client certificate's private key, if not in its file"),
    Variable("MQTT_KEY_PASSWORD", None, "password of an encrypted `MQTT_KEY_FILE`"),
    Variable("MQTT_KEEPALIVE", "30", "seconds; a silent broker is given up after 1.5 x this"),
    Variable(
        "MQTT_RECONNECT_MAX", "60", "seconds; cap of the jittered exponential reconnect backoff"
    ),
    Variable(
        "MQTT_ORDERED_SESSION",
        "true",
        "`false` for brokers whose subscriptions deliver apart and resend on a timer (NATS):"
        " the backlog's end is then guessed (`docs/deployment.md`, interop matrix)",
    ),
    Variable(
        "MQTT_MAX_PACKET",
        "1048576",
        "bytes; a larger message is skipped as it streams in, counted and acknowledged",
    ),
    Variable(
        "ODOO_URL", None, "Odoo base URL, e.g. `http://odoo:8069`; without it: standalone mode"
    ),
    Variable("ODOO_TOKEN", None, "the bridge's token (required with `ODOO_URL`)"),
    Variable("ODOO_TIMEOUT", "10", "seconds per Odoo request"),
    Variable(
        "DEVICES_FILE",
        None,
        "devices in the `GET /ows/iot/config` shape (required in standalone mode)",
    ),
    Variable("DATA_DIR", "data", "the SQLite store (`bridge.db`) and the cached Odoo config"),
    Variable("CONFIG_REFRESH_INTERVAL", "300", "seconds between config fetches (also on SIGHUP)"),
    Variable(
        "HEALTH_HOST",
        "127.0.0.1",
        "address of the `/health` and `/metrics` server (`0.0.0.0` where Prometheus scrapes)",
    ),
    Variable("HEALTH_PORT", "8080", "port of the `/health` and `/metrics` server (0: any)"),
    Variable(
        "HEALTH_MAX_QUEUE_AGE",
        "900",
        "seconds; `/health` turns 503 when the oldest undelivered event is older",
    ),
    Variable(
        "HEALTH_ODOO_DOWN_AFTER",
        "300",
        "seconds; `/health` turns 503 when Odoo has failed for longer (a warning before)",
    ),
    Variable(
        "HEALTH_DEAD_LETTER_WARN",
        "86400",
        "seconds; `/health` warns this long after an event was dead-lettered",
    ),
    Variable(
        "HEALTH_SILENT_AFTER",
        "3600",
        "seconds; `/health` warns of a device topic that delivered nothing this long",
    ),
    Variable(
        "STATUS_INTERVAL",
        "30",
        "seconds between heartbeats to Odoo (`POST /ows/iot/status`, also promptly on a device's"
        " state change, at most one per 2 s); 0: none",
    ),
    Variable(
        "DISCOVERY",
        "true",
        "listen for plugs announcing themselves and list those not configured in the heartbeat"
        " (Odoo's Discovered plugs)",
    ),
    Variable(
        "DISCOVERY_TOPICS",
        ",".join(DEFAULT_DISCOVERY_TOPICS),
        "the announcement topic filters discovery subscribes, comma-separated (never `#`)",
    ),
    Variable(
        "FORWARD_MEASUREMENTS", "false", "also send every reading as a `power_measurement` event"
    ),
    Variable("LOG_LEVEL", "INFO", "`DEBUG`, `INFO`, `WARNING` or `ERROR`"),
)
ENVIRONMENT: dict[str, Variable] = {v.name: v for v in VARIABLES}


@dataclass(frozen=True, slots=True)
class Broker:
    """One broker address of ``MQTT_URL`` (a node of a cluster), with the credentials the bridge
    logs in with there."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def url(self, tls: bool) -> str:
        """Without credentials: safe to log and to show in ``/health``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if tls else 'mqtt'}://{host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    mqtt_brokers: tuple[Broker, ...]  # tried in turn; at least one
    mqtt_tls: bool  # one scheme for all of them: a failover never drops TLS
    mqtt_client_id: str = "iot-bridge"
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None  # client certificate (PEM, may hold the chain)
    mqtt_key_file: Path | None = None  # its private key, if not in the certificate file
    mqtt_key_password: str | None = field(default=None, repr=False)
    mqtt_keepalive: int = 30
    odoo_url: str | None = None
    odoo_token: str | None = field(default=None, repr=False)
    odoo_timeout: float = 10.0
    devices_file: Path | None = None
    data_dir: Path = Path("data")
    health_host: str = "127.0.0.1"  # the container's check runs inside; Prometheus: 0.0.0.0
    health_port: int = 8080
    log_level: str = "INFO"
    config_refresh_interval: float = 300.0
    forward_measurements: bool = False
    max_queue_age_s: float = 900.0  # /health turns 503 when the oldest queued event is older
    reconnect_max_s: float = 60.0
    mqtt_max_packet: int = DEFAULT_MAX_PACKET  # larger PUBLISHes are skipped unread, counted
    mqtt_ordered_session: bool = True  # a resumed session is one ordered queue (not NATS)
    odoo_down_after_s: float = 300.0  # /health turns 503 when Odoo failed for longer
    dead_letter_warn_s: float = 86_400.0  # /health warns this long after a new dead letter
    silent_after_s: float = 3600.0  # /health warns of a device topic silent this long
    status_interval: float = 30.0  # heartbeat to Odoo; 0: none
    discovery: bool = True
    discovery_topics: tuple[str, ...] = DEFAULT_DISCOVERY_TOPICS

    @property
    def standalone(self) -> bool:
        """No Odoo: devices from ``DEVICES_FILE``, events stay in the local store."""
        return self.odoo_url is None

    @property
    def mqtt_url(self) -> str:
        """The broker URLs without credentials, comma-separated as ``MQTT_URL`` takes them."""
        return ",".join(b.url(self.mqtt_tls) for b in self.mqtt_brokers)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.mqtt_tls:
            return None
        ctx = ssl.create_default_context(
            cafile=str(self.mqtt_ca_file) if self.mqtt_ca_file else None
        )
        if self.mqtt_cert_file is not None:
            ctx.load_cert_chain(
                self.mqtt_cert_file,
                self.mqtt_key_file,
                password=self.mqtt_key_password.encode() if self.mqtt_key_password else b"",
            )
        return ctx


def sample_path(name: str) -> Path:
    """A file shipped in ``iot_bridge/samples/`` (the sample device list, a recording)."""
    return Path(str(resources.files("iot_bridge") / "samples" / name))


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (shorter to copy)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _get(env: Mapping[str, str], name: str) -> str | None:
    """The variable's value as set, stripped; ``None`` when unset or blank."""
    value = env.get(name)
    return None if value is None or value.strip() == "" else value.strip()


def _value(env: Mapping[str, str], name: str) -> str:
    """The value as set, else the variable's default from :data:`VARIABLES`."""
    value = _get(env, name)
    if value is not None:
        return value
    default = ENVIRONMENT[name].default
    assert default is not None, f"{name} has no default"
    return default


def _number(env: Mapping[str, str], name: str, minimum: float) -> float:
    raw = _value(env, name)
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or not value >= minimum:
        raise SettingsError(f"{name} must be a finite number >= {minimum:g}, got {raw!r}")
    return value


def _port(env: Mapping[str, str], name: str) -> int:
    value = _number(env, name, 0)
    if value != int(value) or value > 65535:
        raise SettingsError(f"{name} must be a port number 0..65535, got {_value(env, name)!r}")
    return int(value)


def _flag(env: Mapping[str, str], name: str) -> bool:
    raw = _value(env, name).lower()
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise SettingsError(f"{name} must be true or false, got {env.get(name)!r}")


MQTT_STRING_MAX = 65535  # bytes: MQTT strings carry a two-byte length


def _mqtt_string(name: str, value: str | None, *, text: bool = True) -> str | None:
    """A client id, username or password as MQTT will send it: UTF-8, at most 65 535 bytes;
    client id and username are MQTT UTF-8 strings, which must not contain NUL."""
    if value is None:
        return None
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise SettingsError(f"{name} is not valid UTF-8") from None
    if size > MQTT_STRING_MAX:
        raise SettingsError(f"{name} is {size} bytes in UTF-8; MQTT allows at most 65535")
    if text and "\x00" in value:
        raise SettingsError(f"{name} must not contain a NUL character")
    return value


def _tls_files(env: Mapping[str, str], tls: bool) -> tuple[Path | None, Path | None, str | None]:
    """``MQTT_CERT_FILE``, ``MQTT_KEY_FILE``, ``MQTT_KEY_PASSWORD``, loaded once to prove that
    they fit together (a wrong password or a key of another certificate fails here, in one
    line, not at the first connect)."""
    cert, key = _get(env, "MQTT_CERT_FILE"), _get(env, "MQTT_KEY_FILE")
    password = env.get("MQTT_KEY_PASSWORD") or None
    if cert is None:
        for name, value in (("MQTT_KEY_FILE", key), ("MQTT_KEY_PASSWORD", password)):
            if value is not None:
                raise SettingsError(f"{name} needs MQTT_CERT_FILE (the client certificate)")
        return None, None, None
    if not tls:
        raise SettingsError(
            "MQTT_CERT_FILE needs an mqtts:// MQTT_URL (client certificates are TLS)"
        )
    for name, value in (("MQTT_CERT_FILE", cert), ("MQTT_KEY_FILE", key)):
        if value is not None and not _readable(value):
            raise SettingsError(f"{name} {value!r} is not a readable file")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
            cert, key, password=password.encode() if password else b""
        )
    except ssl.SSLError as exc:
        what = "MQTT_KEY_PASSWORD does not decrypt the key, or " if password else ""
        raise SettingsError(
            f"MQTT_CERT_FILE/MQTT_KEY_FILE: {what}not a PEM certificate with its matching key"
            f" ({exc.reason or exc.__class__.__name__})"
        ) from None
    return Path(cert), Path(key) if key else None, password


def _readable(path: str) -> bool:
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def _max_packet(env: Mapping[str, str]) -> int:
    value = _number(env, "MQTT_MAX_PACKET", 1024)
    if value != int(value) or value > MAX_PACKET:
        raise SettingsError(
            f"MQTT_MAX_PACKET must be a whole number of bytes 1024..{MAX_PACKET}, "
            f"got {_value(env, 'MQTT_MAX_PACKET')!r}"
        )
    return int(value)


MIN_STATUS_INTERVAL = 2.0  # the contract's "at most one every 2 s"


def _status_interval(env: Mapping[str, str]) -> float:
    value = _number(env, "STATUS_INTERVAL", 0)
    if 0 < value < MIN_STATUS_INTERVAL:
        raise SettingsError(
            f"STATUS_INTERVAL must be 0 (no heartbeat) or at least {MIN_STATUS_INTERVAL:g}"
            f" seconds, got {_value(env, 'STATUS_INTERVAL')!r}"
        )
    return value


def _discovery_topics(env: Mapping[str, str]) -> tuple[str, ...]:
    """Each a filter a device could have (``topics.filter_problem``: no ``$``, no shared
    subscription, nothing that matches every topic, so never ``#``)."""
    parts = [part.strip() for part in _value(env, "DISCOVERY_TOPICS").split(",")]
    if "" in parts:
        raise SettingsError("DISCOVERY_TOPICS has an empty entry (two commas, or one at an end)")
    for part in parts:
        problem = filter_problem(part)
        if problem is not None:
            raise SettingsError(f"DISCOVERY_TOPICS entry {part!r} {problem}")
    return tuple(dict.fromkeys(parts))


def _shown_url(raw: str) -> str:
    """``raw`` as an error message may show it: the password replaced by ``***``."""
    try:
        url = urlsplit(raw)
        if url.password is None:
            return raw
        netloc = url.netloc.rpartition("@")
        user = netloc[0].partition(":")[0]
        return urlunsplit(url._replace(netloc=f"{user}:***@{netloc[2]}"))
    except ValueError:
        return "(not shown: it does not parse as a URL)"


def _parse_mqtt_url(raw: str) -> tuple[str, int, bool, str | None, str | None]:
    """One URL of ``MQTT_URL``: ``(host, port, tls, user, password)``."""
    try:
        url = urlsplit(raw)
        port = url.port
    except ValueError as exc:
        raise SettingsError(f"MQTT_URL {_shown_url(raw)!r} is not a valid URL: {exc}") from None
    if url.scheme in ("ws", "wss"):
        raise SettingsError(
            f"MQTT_URL {_shown_url(raw)!r}: MQTT over WebSockets is not supported; use the"
            " broker's MQTT port (mqtt://host:1883 or mqtts://host:8883)"
        )
    if url.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise SettingsError(
            f"MQTT_URL must start with mqtt:// or mqtts://, got {_shown_url(raw)!r}"
        )
    if not url.hostname:
        raise SettingsError("MQTT_URL needs a host, e.g. mqtt://mosquitto:1883")
    if port == 0:
        raise SettingsError("MQTT_URL port must be 1..65535, got 0")
    if url.path not in ("", "/") or url.query or url.fragment:
        raise SettingsError(
            f"MQTT_URL {_shown_url(raw)!r} has a path or query; only scheme://user:pw@host:port"
        )
    tls = url.scheme in ("mqtts", "ssl")
    user = unquote(url.username) if url.username else None
    password = unquote(url.password) if url.password else None
    return url.hostname, port or (8883 if tls else 1883), tls, user, password


def _brokers(env: Mapping[str, str]) -> tuple[tuple[Broker, ...], bool]:
    """``MQTT_URL``: one URL, or a cluster's nodes separated by commas (a comma in a password
    is written ``%2C``). Every URL has the same scheme, so a node that fails never sends the
    bridge from TLS to plain text; ``MQTT_USERNAME`` / ``MQTT_PASSWORD``, when set, are the
    login on every node, else each URL's own."""
    raw = _get(env, "MQTT_URL")
    if raw is None:
        raise SettingsError("MQTT_URL is required, e.g. mqtt://mosquitto:1883")
    parts = [part.strip() for part in raw.split(",")]
    if "" in parts:
        raise SettingsError("MQTT_URL has an empty entry (two commas, or one at an end)")
    env_user = _mqtt_string("MQTT_USERNAME", _get(env, "MQTT_USERNAME"))
    env_password = _mqtt_string("MQTT_PASSWORD", _get(env, "MQTT_PASSWORD"), text=False)
    brokers: list[Broker] = []
    schemes: set[bool] = set()
    for part in parts:
        host, port, tls, user, password = _parse_mqtt_url(part)
        schemes.add(tls)
        broker = Broker(
            host,
            port,
            env_user or _mqtt_string("MQTT_USERNAME", user),
            env_password or _mqtt_string("MQTT_PASSWORD", password, text=False),
        )
        if any((b.host, b.port) == (host, port) for b in brokers):  # hostname: lower case
            raise SettingsError(f"MQTT_URL names {broker.url(tls)} twice")
        brokers.append(broker)
    if len(schemes) > 1:
        raise SettingsError(
            "MQTT_URL mixes mqtt:// and mqtts:// URLs; use one scheme for every node (a"
            " failover must not fall back to plain text)"
        )
    return tuple(brokers), schemes.pop()


def load(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    brokers, tls = _brokers(env)

    odoo_url = _get(env, "ODOO_URL")
    token = _get(env, "ODOO_TOKEN")
    if odoo_url is not None:
        try:
            parts = urlsplit(odoo_url)
            _ = parts.port  # raises ValueError for a port that is not a number in range
        except ValueError as exc:
            raise SettingsError(f"ODOO_URL is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"ODOO_URL must be an http(s) URL with a host, got {odoo_url!r}")
        if token is None:
            raise SettingsError("ODOO_TOKEN is required when ODOO_URL is set")
    devices_file = _get(env, "DEVICES_FILE")
    if odoo_url is None and devices_file is None:
        sample = _shown_path(sample_path("devices.json"))
        raise SettingsError(
            "DEVICES_FILE is required without ODOO_URL (standalone mode needs a device list;"
            f" to try the sample one: DEVICES_FILE={sample})"
        )

    level = _value(env, "LOG_LEVEL").upper()
    if level not in LOG_LEVELS:
        raise SettingsError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    ca_file = _get(env, "MQTT_CA_FILE")
    if ca_file is not None and not Path(ca_file).is_file():
        raise SettingsError(f"MQTT_CA_FILE {ca_file!r} is not a readable file")
    client_id = _get(env, "MQTT_CLIENT_ID") or f"iot-bridge-{socket.gethostname()}"[:64]
    cert_file, key_file, key_password = _tls_files(env, tls)
    return Settings(
        mqtt_brokers=brokers,
        mqtt_tls=tls,
        mqtt_client_id=_mqtt_string("MQTT_CLIENT_ID", client_id) or client_id,
        mqtt_ca_file=Path(ca_file) if ca_file else None,
        mqtt_cert_file=cert_file,
        mqtt_key_file=key_file,
        mqtt_key_password=key_password,
        mqtt_keepalive=int(_number(env, "MQTT_KEEPALIVE", 1)),
        odoo_url=odoo_url.rstrip("/") if odoo_url else None,
        odoo_token=token,
        odoo_timeout=_number(env, "ODOO_TIMEOUT", 0.1),
        devices_file=Path(devices_file) if devices_file else None,
        data_dir=Path(_value(env, "DATA_DIR")),
        health_host=_value(env, "HEALTH_HOST"),
        health_port=_port(env, "HEALTH_PORT"),
        log_level=level,
        config_refresh_interval=_number(env, "CONFIG_REFRESH_INTERVAL", 1.0),
        forward_measurements=_flag(env, "FORWARD_MEASUREMENTS"),
        max_queue_age_s=_number(env, "HEALTH_MAX_QUEUE_AGE", 1.0),
        reconnect_max_s=_number(env, "MQTT_RECONNECT_MAX", 0.1),
        mqtt_max_packet=_max_packet(env),
        mqtt_ordered_session=_flag(env, "MQTT_ORDERED_SESSION"),
        odoo_down_after_s=_number(env, "HEALTH_ODOO_DOWN_AFTER", 1.0),
        dead_letter_warn_s=_number(env, "HEALTH_DEAD_LETTER_WARN", 1.0),
        silent_after_s=_number(env, "HEALTH_SILENT_AFTER", 1.0),
        status_interval=_status_interval(env),
        discovery=_flag(env, "DISCOVERY"),
        discovery_topics=_discovery_topics(env),
    )
