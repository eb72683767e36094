"""Client-certificate TLS settings, MQTT string lengths, and the data directory's permissions.

The certificates are made per test run with ``openssl`` (``tests/support/certs.py``); the TLS
tests do a real handshake over loopback against a server that requires a client certificate.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iot_bridge.errors import SettingsError
from iot_bridge.outbox.store import Store
from iot_bridge.runtime.config_source import ConfigSource
from iot_bridge.settings import Settings, load
from tests.support.certs import KEY_PASSWORD, OPENSSL, Pki, make_pki
from tests.support.fake_odoo import FakeOdoo

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command line tool")

BASE = {"MQTT_URL": "mqtts://127.0.0.1:8883", "DEVICES_FILE": "/etc/devices.json"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_env(pki: Pki, **extra: str) -> dict[str, str]:
    return {**BASE, "MQTT_CA_FILE": str(pki.ca), **extra}


def settings_error(env: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as info:
        load(env)
    message = str(info.value)
    assert "\n" not in message  # one line, for the CLI's "configuration error: ..."
    return message


class RequireClientCert:
    """A TLS server on 127.0.0.1 that demands a client certificate signed by the test CA and
    reports the peer's common name (or the handshake error) per connection."""

    def __init__(self, pki: Pki) -> None:
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
        self.ctx.load_cert_chain(pki.server_cert, pki.server_key)
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.peers: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    subject = dict(x[0] for x in tls.getpeercert()["subject"])  # type: ignore[index,misc]
                    self.peers.append(str(subject["commonName"]))
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError) as exc:
                self.peers.append(f"refused: {type(exc).__name__}")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(pki: Pki) -> Iterator[RequireClientCert]:
    s = RequireClientCert(pki)
    yield s
    s.close()


def handshake(settings: Settings, port: int) -> bytes:
    async def go() -> bytes:
        ctx = settings.ssl_context()
        assert ctx is not None
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
        )
        try:
            return await asyncio.wait_for(reader.read(2), 5)
        finally:
            writer.close()

    return asyncio.run(go())


# -- client certificates -------------------------------------------------------------------------


def test_client_certificate_and_key(pki: Pki, server: RequireClientCert) -> None:
    s = load(tls_env(pki, MQTT_CERT_FILE=str(pki.client_cert), MQTT_KEY_FILE=str(pki.client_key)))
    assert (s.mqtt_cert_file, s.mqtt_key_file) == (pki.client_cert, pki.client_key)
    assert handshake(s, server.port) == b"ok"
    assert server.peers == ["iot-bridge-client"]


def test_encrypted_key_with_its_password(pki: Pki, server: RequireClientCert) -> None:
    s = load(tls_env(pki, MQTT_CERT_FILE=str(pki.client_cert),
                     MQTT_KEY_FILE=str(pki.client_key_encrypted),
                     MQTT_KEY_PASSWORD=KEY_PASSWORD))  # fmt: skip
    assert KEY_PASSWORD not in repr(s)
    assert handshake(s, server.port) == b"ok"
    assert server.peers == ["iot-bridge-client"]


def test_certificate_and_key_in_one_file(pki: Pki, server: RequireClientCert) -> None:
    s = load(tls_env(pki, MQTT_CERT_FILE=str(pki.client_bundle)))
    assert s.mqtt_key_file is None
    assert handshake(s, server.port) == b"ok"


def test_without_a_client_certificate_the_broker_refuses(
    pki: Pki, server: RequireClientCert
) -> None:
    s = load(tls_env(pki))
    try:
        data = handshake(s, server.port)
    except (ssl.SSLError, ConnectionError) as exc:
        data = repr(exc).encode()
    assert data != b"ok"  # TLS 1.3: the refusal may show only as a closed connection
    deadline = time.monotonic() + 5
    while not server.peers and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.peers[0].startswith("refused: ")


def test_wrong_key_password(pki: Pki) -> None:
    message = settings_error(tls_env(pki, MQTT_CERT_FILE=str(pki.client_cert),
                                     MQTT_KEY_FILE=str(pki.client_key_encrypted),
                                     MQTT_KEY_PASSWORD="not-it"))  # fmt: skip
    assert "MQTT_KEY_PASSWORD" in message
    assert "not-it" not in message


def test_encrypted_key_without_a_password(pki: Pki) -> None:
    message = settings_error(tls_env(pki, MQTT_CERT_FILE=str(pki.client_cert),
                                     MQTT_KEY_FILE=str(pki.client_key_encrypted)))  # fmt: skip
    assert message.startswith("MQTT_CERT_FILE/MQTT_KEY_FILE: ")


def test_key_of_another_certificate(pki: Pki) -> None:
    message = settings_error(
        tls_env(pki, MQTT_CERT_FILE=str(pki.other_cert), MQTT_KEY_FILE=str(pki.client_key))
    )
    assert "matching key" in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param({"MQTT_KEY_FILE": "/x.key"}, "MQTT_KEY_FILE needs MQTT_CERT_FILE", id="key"),
        pytest.param(
            {"MQTT_KEY_PASSWORD": "p"}, "MQTT_KEY_PASSWORD needs MQTT_CERT_FILE", id="password"
        ),
        pytest.param(
            {"MQTT_CERT_FILE": "/nonexistent.crt"},
            "MQTT_CERT_FILE '/nonexistent.crt' is not a readable file",
            id="missing-cert",
        ),
        pytest.param({"MQTT_CERT_FILE": "/"}, "is not a readable file", id="cert-is-a-dir"),
    ],
)
def test_tls_setting_errors(pki: Pki, extra: dict[str, str], expected: str) -> None:
    assert expected in settings_error(tls_env(pki, **extra))


def test_client_certificate_needs_mqtts(pki: Pki) -> None:
    env = {**tls_env(pki, MQTT_CERT_FILE=str(pki.client_bundle)), "MQTT_URL": "mqtt://h:1883"}
    assert "needs an mqtts:// MQTT_URL" in settings_error(env)


# -- MQTT string lengths ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["MQTT_CLIENT_ID", "MQTT_USERNAME", "MQTT_PASSWORD"])
def test_mqtt_strings_up_to_65535_bytes(name: str) -> None:
    load({**BASE, name: "a" * 65535})
    message = settings_error({**BASE, name: "a" * 65536})
    assert message == f"{name} is 65536 bytes in UTF-8; MQTT allows at most 65535"
    # bytes, not characters: 32768 two-byte characters are too many
    assert "65536 bytes" in settings_error({**BASE, name: "ä" * 32768})


@pytest.mark.parametrize("name", ["MQTT_CLIENT_ID", "MQTT_USERNAME"])
def test_nul_in_mqtt_text(name: str) -> None:
    assert settings_error({**BASE, name: "a\x00b"}) == f"{name} must not contain a NUL character"


def test_password_is_binary_data_nul_allowed() -> None:
    assert load({**BASE, "MQTT_PASSWORD": "a\x00b"}).mqtt_brokers[0].password == "a\x00b"


def test_username_that_is_not_utf8() -> None:
    # os.environ turns undecodable bytes into lone surrogates
    undecodable = b"user\xff".decode("utf-8", "surrogateescape")
    message = settings_error({**BASE, "MQTT_USERNAME": undecodable})
    assert message == "MQTT_USERNAME is not valid UTF-8"


def test_username_from_the_url_is_checked_too() -> None:
    url = "mqtt://" + "u" * 65536 + ":pw@broker:1883"
    assert settings_error({**BASE, "MQTT_URL": url}).startswith("MQTT_USERNAME is 65536 bytes")


# -- private files --------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_creates_a_private_directory_and_files(tmp_path: Path) -> None:
    data = tmp_path / "a" / "data"
    store = Store(data / "bridge.db")
    try:
        store.commit([], {"dev": {"phase": "idle"}})
        assert mode(data) == 0o700
        for name in ("bridge.db", "bridge.db-wal", "bridge.db-shm"):
            assert mode(data / name) == 0o600, name
    finally:
        store.close()


def test_store_narrows_files_an_older_version_left_readable(tmp_path: Path) -> None:
    tmp_path.chmod(0o750)  # the operator's choice for an existing directory is kept
    Store(tmp_path / "bridge.db").close()
    for name in ("bridge.db", "bridge.db-wal"):
        (tmp_path / name).touch()
        (tmp_path / name).chmod(0o644)
    store = Store(tmp_path / "bridge.db")
    try:
        assert mode(tmp_path / "bridge.db") == 0o600
        assert mode(tmp_path / "bridge.db-wal") == 0o600
    finally:
        store.close()
    assert mode(tmp_path) == 0o750


def test_config_cache_is_private(tmp_path: Path) -> None:
    device = {"device_id": "d1", "mqtt_topic": "d1/status/pm1:0", "parser_type": "shelly_gen2"}
    cache = tmp_path / "data" / "config-cache.json"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "config-cache.tmp").write_text("{}")  # a leftover of an older version
    (tmp_path / "data" / "config-cache.tmp").chmod(0o644)

    async def fetch() -> None:
        from iot_bridge.odoo_api.client import OdooClient

        client = OdooClient(odoo.url, odoo.token, timeout=5)
        try:
            await ConfigSource(client=client, devices_file=None, cache_path=cache).fetch()
        finally:
            await client.close()

    with FakeOdoo(devices=[device]) as odoo:
        asyncio.run(fetch())
    assert mode(cache) == 0o600
    assert b"d1/status/pm1:0" in cache.read_bytes()
