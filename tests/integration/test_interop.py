"""Interop, tested: the bridge process against each broker it is documented to work with.

Every test starts its own brokers on free ports and runs the same two things through the real
bridge process to the test Odoo (``docs/deployment.md``, "Interop matrix", names each test):

1. a session end to end;
2. ``kill -9`` of the bridge in the middle of a session, at the worst moment: the bridge is
   frozen (SIGSTOP) while readings reach its socket, so the broker has sent them and holds them
   unacknowledged when the process dies; more readings arrive while it is down. The session
   reaches Odoo exactly once, and every reading reaches it (``FORWARD_MEASUREMENTS``: each
   reading is also an event, with a counter value no other reading has), none twice.

Then what is particular to each broker: mosquitto TLS requiring a client certificate, a
mosquitto whose ACL refuses one device topic (SUBACK) and silently starves another, NATS's MQTT
listener, and a 3-node NATS cluster that loses the node the bridge is connected to.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import signal
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iot_bridge.tools.broker import Mosquitto, free_port
from tests.integration.conftest import (
    TICK,
    BridgeFactory,
    BridgeProcess,
    Plugs,
    Target,
    assert_sessions_whole,
    events_of,
    open_session,
    publish,
    session,
    wait_until,
)
from tests.support.certs import KEY_PASSWORD, OPENSSL, Pki, make_pki
from tests.support.fake_odoo import FakeOdoo
from tests.support.nats import NATS_SERVER, NatsCluster, NatsNode

DYNSEC = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")


def frames(name: str, watts: float, energies: range) -> list[tuple[str, bytes] | None]:
    """One Shelly status frame per tick, each with its own energy counter value."""
    from tests.integration.conftest import frame

    return [m for e in energies for m in (frame(name, watts, float(e)), None)]


def measured(odoo: FakeOdoo, name: str) -> list[float]:
    """The counter values (Wh) of ``name``'s readings as Odoo stored them, in arrival order."""
    device_id = f"shellypmminig3-{name}"
    return [
        round(e["payload"]["total_energy_kwh"] * 1000.0, 3)
        for e in events_of(odoo, "power_measurement")
        if e["device_id"] == device_id
    ]


def session_through_kill9(bridge: BridgeProcess, odoo: FakeOdoo, target: Target) -> None:
    """Steps 1 and 2 of the module's docstring, for whatever broker ``target`` is."""
    publish(target, session("alpha"), gap=TICK)
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 1, 15, "alpha's session")

    open_session(target, odoo, "beta")  # energies 200..207
    bridge.freeze()
    publish(target, frames("beta", 300.0, range(300, 304)), gap=TICK)  # sent to a frozen bridge
    bridge.kill9()
    publish(target, frames("beta", 300.0, range(304, 308)), gap=TICK)  # queued while it is down
    bridge.start()
    bridge.connected()
    publish(target, frames("beta", 300.0, range(308, 311)) + frames("beta", 1.0, range(311, 322)),
            gap=TICK)  # fmt: skip
    wait_until(lambda: len(events_of(odoo, "run_stop")) == 2, 20, "beta's session")
    assert_sessions_whole(odoo)
    starts = [e["device_id"] for e in events_of(odoo, "run_start")]
    assert starts == ["shellypmminig3-alpha", "shellypmminig3-beta"]
    assert [e["payload"]["reason"] for e in events_of(odoo, "run_stop")] == ["normal", "normal"]
    # every reading of beta's session reached Odoo, none twice (redeliveries of what the dead
    # process had committed are recognised; what it had not are taken)
    published = [float(e) for e in range(200, 208)] + [float(e) for e in range(300, 322)]
    wait_until(lambda: set(measured(odoo, "beta")) >= set(published), 15, "every reading")
    got = measured(odoo, "beta")
    assert sorted(got) == sorted(set(got)), f"a reading stored twice: {sorted(got)}"


def start(factory: BridgeFactory, url: str, odoo: FakeOdoo, **env: str) -> BridgeProcess:
    """The bridge on ``url``, every reading also forwarded (what ``measured`` reads)."""
    bridge = factory(url, odoo, FORWARD_MEASUREMENTS="true", **env).start()
    bridge.connected()
    return bridge


# -- mosquitto, TLS with a client certificate -----------------------------------------------


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command line tool")
def test_mosquitto_tls_requiring_a_client_certificate(
    tmp_path: Path, odoo: FakeOdoo, bridge_factory: BridgeFactory
) -> None:
    pki = make_pki(tmp_path / "pki")
    tls = (f"cafile {pki.ca}\ncertfile {pki.server_cert}\nkeyfile {pki.server_key}\n"
           "require_certificate true\n")  # fmt: skip
    with Mosquitto(tmp_path / "broker", extra=tls) as broker:
        url = f"mqtts://127.0.0.1:{broker.port}"
        without = bridge_factory(url, odoo, MQTT_CA_FILE=str(pki.ca))
        without.start()
        without.wait_health(lambda h: h["mqtt_last_error"] is not None)
        refused = without.health()
        without.kill9()
        assert refused is not None
        assert refused["mqtt_connected"] is False
        # TLS 1.3: the certificate is checked after the handshake; the alert, or a reset
        assert refused["mqtt_last_error"].startswith(
            "closed before CONNACK: client certificate required? (MQTT_CERT_FILE); "
        ), refused["mqtt_last_error"]
        bridge = start(
            bridge_factory,
            url,
            odoo,
            MQTT_CA_FILE=str(pki.ca),
            MQTT_CERT_FILE=str(pki.client_cert),
            MQTT_KEY_FILE=str(pki.client_key_encrypted),
            MQTT_KEY_PASSWORD=KEY_PASSWORD,
        )
        assert bridge.health()["mqtt_broker"] == url  # type: ignore[index]
        session_through_kill9(bridge, odoo, device_tls(broker.port, pki))


def device_tls(port: int, pki: Pki) -> Plugs:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    ctx.load_cert_chain(pki.client_bundle)
    return Plugs(port, tls=ctx)
