"""``POST /ows/iot/status`` (``odoo-api.md``, "live state"), checked over plain HTTP.

Part of the contract suite: it runs against ``FakeOdoo`` by default and unchanged against a real
Odoo (``odoo/run_addon_tests.sh``). Statuses are latest-wins per bridge, so every test sends
``sent_at`` at or after the current time (or deliberately before what it sent itself); a real
database can be reused between runs.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.contract._client import (
    SENT_AT,
    Api,
    Response,
    Target,
    discovered_plug,
    make_status,
    new_uid,
    now_ts,
    status_device,
)
from tests.contract.test_odoo_contract import BAD_AUTH, assert_json, assert_unauthorized

STATES = ["idle", "starting", "working", "standby", "stopping"]


def config_version(api: Api) -> str:
    version = assert_json(api.get_config(), 200)["config_version"]
    assert isinstance(version, str)
    return version


def assert_ok(resp: Response, api: Api, unknown: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = assert_json(resp, 200)
    assert body == {
        "status": "ok",
        "config_version": config_version(api),
        "unknown_devices": unknown or [],
    }
    return body


def assert_stale(resp: Response, api: Api) -> None:
    assert assert_json(resp, 200) == {"status": "stale", "config_version": config_version(api)}


def assert_invalid_status(resp: Response) -> str:
    body = assert_json(resp, 400)
    assert body["error"] == "invalid_status"
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body["detail"]


# --------------------------------------------------------------------------- authentication


@pytest.mark.parametrize("authorization", BAD_AUTH)
def test_status_refuses_bad_auth(api: Api, target: Target, authorization: str | None) -> None:
    status = make_status([status_device(target.device_id)])
    assert_unauthorized(api.post_status(status, authorization=authorization))


def test_status_unauthorized_even_for_invalid_body(api: Api) -> None:
    assert_unauthorized(api.post_status(b"{not json", token=None))


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize("state", STATES)
def test_status_ok_for_every_detector_state(api: Api, target: Target, state: str) -> None:
    status = make_status([status_device(target.device_id, state)])
    assert_ok(api.post_status(status), api)


def test_status_without_devices_or_discoveries(api: Api) -> None:
    assert_ok(api.post_status(make_status()), api)


def test_status_with_every_nullable_key_null(api: Api, target: Target) -> None:
    status = make_status(
        [
            status_device(
                target.device_id,
                "idle",
                online=None,
                last_seen=None,
                power_w=None,
                session_id=None,
                session_started_at=None,
            )
        ],
        [discovered_plug("announce/" + new_uid(), device_id=None, model=None, parser_type=None)],
    )
    status["bridge"].update(queue_depth=None, oldest_queued_age_s=None, config_version=None)
    assert_ok(api.post_status(status), api)


def test_status_answer_carries_the_current_config_version(api: Api, target: Target) -> None:
    status = make_status([status_device(target.device_id)])
    status["bridge"]["config_version"] = "not-the-current-one"
    body = assert_ok(api.post_status(status), api)
    assert body["config_version"] == assert_json(api.get_config(), 200)["config_version"]


def test_status_lists_devices_not_of_this_bridge(api: Api, target: Target) -> None:
    missing = "no-such-device-" + new_uid()
    status = make_status(
        [
            status_device(missing, "idle"),
            status_device(target.device_id),
            status_device(target.foreign_device_id, "standby"),
        ]
    )
    assert_ok(api.post_status(status), api, unknown=[missing, target.foreign_device_id])


def test_status_ignores_unknown_keys_everywhere(api: Api, target: Target) -> None:
    status = make_status(
        [status_device(target.device_id, temperature_c=41.5)],
        [discovered_plug("announce/" + new_uid(), rssi=-61)],
    )
    status["something_new"] = {"nested": [1, 2]}
    status["bridge"]["hostname"] = "bridge-1"
    assert_ok(api.post_status(status), api)


def test_status_discoveries_with_odd_but_valid_content(api: Api) -> None:
    details = {"mac": "8CAAB54B98DF", "nested": {"list": [1, "two", None, True]}, "x": "y" * 3000}
    status = make_status(
        discovered=[
            discovered_plug("tele/" + new_uid() + "/LWT", source="tasmota_lwt", details=details),
            discovered_plug("shellies/" + new_uid(), parser_type="a_parser_from_the_future"),
            discovered_plug("t/" + new_uid(), source="something_new", details={}),
        ]
    )
    assert_ok(api.post_status(status), api)


def test_status_limits_are_inclusive(api: Api) -> None:
    status = make_status(
        [status_device(f"no-such-device-{i}-{new_uid()}", "idle") for i in range(2000)],
        [discovered_plug(f"limit/{i}/{new_uid()}") for i in range(500)],
    )
    status["bridge"]["problems"] = ["p" * 500] * 100
    status["bridge"]["warnings"] = ["w"] * 100
    body = assert_json(api.post_status(status), 200)
    assert body["status"] == "ok"
    assert body["unknown_devices"] == [d["device_id"] for d in status["devices"]]


# --------------------------------------------------------------------------- latest wins


def test_status_older_than_the_stored_one_is_stale(api: Api, target: Target) -> None:
    devices = [status_device(target.device_id)]
    assert_ok(api.post_status(make_status(devices)), api)
    assert_stale(api.post_status(make_status(devices, sent_at=SENT_AT.before_last(10))), api)
    # Nothing of the stale one was stored: one between the two is still stale.
    assert_stale(api.post_status(make_status(devices, sent_at=SENT_AT.before_last(5))), api)
    assert_ok(api.post_status(make_status(devices)), api)


def test_status_with_the_same_sent_at_is_applied_again(api: Api, target: Target) -> None:
    status = make_status([status_device(target.device_id)])
    assert_ok(api.post_status(status), api)
    assert_ok(api.post_status(status), api)


def test_stale_answer_does_not_look_at_devices(api: Api) -> None:
    assert_ok(api.post_status(make_status()), api)
    late = make_status(
        [status_device("no-such-device-" + new_uid())], sent_at=SENT_AT.before_last(30)
    )
    assert_stale(api.post_status(late), api)


def test_a_stored_sent_at_far_ahead_of_odoo_does_not_block(api: Api, target: Target) -> None:
    devices = [status_device(target.device_id)]
    assert_ok(api.post_status(make_status(devices, sent_at=now_ts(86400))), api)
    # The bridge's clock was a day ahead and is right again: heard at once.
    assert_ok(api.post_status(make_status(devices)), api)
    assert_stale(api.post_status(make_status(devices, sent_at=SENT_AT.before_last(10))), api)


def test_invalid_status_stores_nothing(api: Api, target: Target) -> None:
    assert_ok(api.post_status(make_status()), api)
    broken = make_status(
        [status_device(target.device_id, "dancing")], sent_at=SENT_AT.next(ahead_s=60)
    )
    assert_invalid_status(api.post_status(broken))
    # Had the broken one's sent_at been stored, this one would be stale.
    assert_ok(api.post_status(make_status(sent_at=SENT_AT.before_last(30))), api)


def test_concurrent_statuses_keep_the_latest(api: Api, target: Target) -> None:
    n = 6
    statuses = [make_status([status_device(target.device_id)]) for _ in range(n)]
    barrier = threading.Barrier(n)
    answers: list[Response] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def send(status: dict[str, Any]) -> None:
        try:
            barrier.wait(timeout=10)
            resp = api.post_status(status)
            with lock:
                answers.append(resp)
        except BaseException as exc:  # reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=send, args=(s,)) for s in statuses]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(r.status for r in answers) == [200] * n, [r.raw[:200] for r in answers]
    assert {r.json()["status"] for r in answers} <= {"ok", "stale"}
    # Whatever the order of arrival, the newest is the one stored.
    assert_stale(api.post_status(make_status(sent_at=SENT_AT.before_last(0.001))), api)


# --------------------------------------------------------------------------- refused


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set (or with ``_MISSING`` delete) the key at a dotted path; ``devices.0.state``."""

    def mutate(status: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = status
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _MISSING:
            del node[int(last) if last.isdigit() else last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _duplicate(key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(status: dict[str, Any]) -> None:
        status[key].append(dict(status[key][0]))

    return mutate


_MISSING: Any = object()

INVALID_STATUSES = [
    pytest.param(_set("sent_at", _MISSING), "sent_at", id="sent_at-missing"),
    pytest.param(_set("sent_at", "2026-01-31T10:30:15Z"), "sent_at", id="sent_at-no-millis"),
    pytest.param(_set("sent_at", "2026-02-30T10:30:15.000Z"), "sent_at", id="sent_at-no-such-day"),
    pytest.param(_set("sent_at", 1769855415.123), "sent_at", id="sent_at-number"),
    pytest.param(_set("bridge", _MISSING), "bridge", id="bridge-missing"),
    pytest.param(_set("bridge", []), "bridge", id="bridge-list"),
    pytest.param(_set("bridge.version", _MISSING), "bridge.version", id="version-missing"),
    pytest.param(_set("bridge.version", ""), "bridge.version", id="version-empty"),
    pytest.param(_set("bridge.version", 1), "bridge.version", id="version-number"),
    pytest.param(_set("bridge.started_at", None), "bridge.started_at", id="started_at-null"),
    pytest.param(_set("bridge.uptime_s", -1), "bridge.uptime_s", id="uptime-negative"),
    pytest.param(_set("bridge.uptime_s", "60"), "bridge.uptime_s", id="uptime-string"),
    pytest.param(_set("bridge.uptime_s", True), "bridge.uptime_s", id="uptime-bool"),
    pytest.param(_set("bridge.uptime_s", 10**400), "bridge.uptime_s", id="uptime-huge-int"),
    pytest.param(_set("bridge.mqtt_connected", 1), "bridge.mqtt_connected", id="mqtt-number"),
    pytest.param(_set("bridge.mqtt_connected", None), "bridge.mqtt_connected", id="mqtt-null"),
    pytest.param(_set("bridge.queue_depth", -1), "bridge.queue_depth", id="queue-negative"),
    pytest.param(_set("bridge.queue_depth", 2.5), "bridge.queue_depth", id="queue-fraction"),
    pytest.param(_set("bridge.queue_depth", 2**31), "bridge.queue_depth", id="queue-huge"),
    pytest.param(_set("bridge.queue_depth", _MISSING), "bridge.queue_depth", id="queue-missing"),
    pytest.param(
        _set("bridge.oldest_queued_age_s", -0.5), "bridge.oldest_queued_age_s", id="age-negative"
    ),
    pytest.param(_set("bridge.problems", "disk full"), "bridge.problems", id="problems-string"),
    pytest.param(_set("bridge.problems", [1]), "bridge.problems[0]", id="problems-number"),
    pytest.param(_set("bridge.warnings", None), "bridge.warnings", id="warnings-null"),
    pytest.param(_set("bridge.warnings", ["w"] * 101), "bridge.warnings", id="warnings-101"),
    pytest.param(_set("bridge.problems", ["p" * 501]), "bridge.problems[0]", id="problem-501"),
    pytest.param(_set("bridge.config_version", 17), "bridge.config_version", id="cfg-number"),
    pytest.param(_set("devices", _MISSING), "devices", id="devices-missing"),
    pytest.param(_set("devices", {}), "devices", id="devices-object"),
    pytest.param(_set("devices.0", "dev"), "devices[0]", id="device-string"),
    pytest.param(_set("devices.0.device_id", ""), "devices[0].device_id", id="device_id-empty"),
    pytest.param(_set("devices.0.device_id", 7), "devices[0].device_id", id="device_id-number"),
    pytest.param(_set("devices.0.state", "running"), "devices[0].state", id="state-unknown"),
    pytest.param(_set("devices.0.state", _MISSING), "devices[0].state", id="state-missing"),
    pytest.param(_set("devices.0.online", "true"), "devices[0].online", id="online-string"),
    pytest.param(_set("devices.0.online", _MISSING), "devices[0].online", id="online-missing"),
    pytest.param(_set("devices.0.last_seen", "now"), "devices[0].last_seen", id="last_seen-words"),
    pytest.param(_set("devices.0.power_w", "120"), "devices[0].power_w", id="power-string"),
    pytest.param(_set("devices.0.power_w", False), "devices[0].power_w", id="power-bool"),
    pytest.param(_set("devices.0.power_w", -(10**309)), "devices[0].power_w", id="power-huge-int"),
    pytest.param(_set("devices.0.session_id", ""), "devices[0].session_id", id="session-empty"),
    pytest.param(
        _set("devices.0.session_started_at", "2026-01-31T10:30:15.123+01:00"),
        "devices[0].session_started_at",
        id="session_started_at-offset",
    ),
    pytest.param(_duplicate("devices"), "devices[1].device_id", id="device-twice"),
    pytest.param(_set("discovered", _MISSING), "discovered", id="discovered-missing"),
    pytest.param(_set("discovered.0.topic", ""), "discovered[0].topic", id="topic-empty"),
    pytest.param(_set("discovered.0.topic", "shellies/+"), "discovered[0].topic", id="topic-plus"),
    pytest.param(_set("discovered.0.topic", "t/#"), "discovered[0].topic", id="topic-hash"),
    pytest.param(_set("discovered.0.topic", "t" * 256), "discovered[0].topic", id="topic-256"),
    pytest.param(_set("discovered.0.model", 3), "discovered[0].model", id="model-number"),
    pytest.param(_set("discovered.0.model", _MISSING), "discovered[0].model", id="model-missing"),
    pytest.param(
        _set("discovered.0.device_id", "d" * 256), "discovered[0].device_id", id="dev-id-256"
    ),
    pytest.param(_set("discovered.0.source", None), "discovered[0].source", id="source-null"),
    pytest.param(
        _set("discovered.0.first_seen", None), "discovered[0].first_seen", id="first_seen-null"
    ),
    pytest.param(_set("discovered.0.details", None), "discovered[0].details", id="details-null"),
    pytest.param(
        _set("discovered.0.details", {"blob": "x" * 5000}),
        "discovered[0].details",
        id="details-too-big",
    ),
    pytest.param(_duplicate("discovered"), "discovered[1].topic", id="topic-twice"),
    pytest.param(_set("bridge.warnings", ["a\x00b"]), "status", id="nul-in-a-string"),
    pytest.param(_set("discovered.0.details", {"k\x00": 1}), "status", id="nul-in-a-key"),
]


@pytest.mark.parametrize(("mutate", "key"), INVALID_STATUSES)
def test_invalid_status(
    api: Api, target: Target, mutate: Callable[[dict[str, Any]], None], key: str
) -> None:
    status = make_status([status_device(target.device_id)], [discovered_plug("t/" + new_uid())])
    mutate(status)
    detail = assert_invalid_status(api.post_status(status))
    assert detail.startswith(key), detail


def test_status_over_the_list_limits_is_refused(api: Api) -> None:
    too_many = make_status([status_device(f"d-{i}", "idle") for i in range(2001)])
    assert assert_invalid_status(api.post_status(too_many)).startswith("devices")
    too_many = make_status(discovered=[discovered_plug(f"t/{i}") for i in range(501)])
    assert assert_invalid_status(api.post_status(too_many)).startswith("discovered")


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
        pytest.param(b"[]", id="json-array"),
        pytest.param(b"null", id="json-null"),
        pytest.param(b'{"sent_at": NaN}', id="nan"),
    ],
)
def test_invalid_status_body(api: Api, body: bytes) -> None:
    assert_invalid_status(api.post_status(body))


def test_non_finite_power_is_refused(api: Api, target: Target) -> None:
    status = make_status([status_device(target.device_id)])
    raw = json.dumps(status).encode().replace(b'"power_w": 120.5', b'"power_w": Infinity')
    assert b"Infinity" in raw
    detail = assert_invalid_status(api.post_status(raw))
    assert detail.startswith("devices[0].power_w"), detail
