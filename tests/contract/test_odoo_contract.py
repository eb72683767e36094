"""The bridge <-> Odoo REST contract (``odoo-api.md``), checked over plain HTTP.

Runs against ``FakeOdoo`` by default and unchanged against a real Odoo when the ``CONTRACT_*``
variables are set (see ``conftest.py``). Every test uses fresh event uids, so a real database can
be reused between runs. Only behaviour the contract promises is checked here; fault knobs of the
fake belong elsewhere.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from tests.contract._client import (
    Api,
    Response,
    Target,
    badge_scan,
    make_event,
    new_badge_uid,
    new_uid,
    run_start,
    run_stop,
)

SESSION_CONFIG_KEYS = {
    "strategy",
    "standby_threshold_w",
    "working_threshold_w",
    "start_debounce_s",
    "stop_debounce_s",
    "message_timeout_s",
}
PARSER_TYPES = {"shelly_pm_mini_g3", "shelly_gen2", "shelly_gen1", "tasmota", "generic"}
BADGE_READER_FORMATS = {"tasmota", "generic"}


def assert_json(resp: Response, status: int) -> Any:
    assert resp.status == status, (resp.status, resp.raw[:500])
    assert resp.content_type.startswith("application/json"), resp.content_type
    return resp.json()


def assert_unauthorized(resp: Response) -> None:
    assert assert_json(resp, 401) == {"error": "unauthorized"}


def assert_invalid(resp: Response) -> None:
    body = assert_json(resp, 400)
    assert body["error"] == "invalid_event"
    assert "detail" in body


def assert_created(resp: Response, uid: str) -> None:
    body = assert_json(resp, 201)
    assert body["status"] == "created"
    assert body["event_uid"] == uid


def assert_duplicate(resp: Response, uid: str) -> None:
    body = assert_json(resp, 200)
    assert body["status"] == "duplicate"
    assert body["event_uid"] == uid


# --------------------------------------------------------------------------- authentication

BAD_AUTH = [
    pytest.param(None, id="missing"),
    pytest.param("Bearer not-the-token-" + "x" * 20, id="unknown-token"),
    pytest.param("Bearer ", id="empty-bearer"),
    pytest.param("Basic dXNlcjpwYXNz", id="basic-scheme"),
    pytest.param("not-even-a-scheme", id="no-scheme"),
]


@pytest.mark.parametrize("authorization", BAD_AUTH)
def test_config_refuses_bad_auth(api: Api, authorization: str | None) -> None:
    assert_unauthorized(api.get_config(authorization=authorization))


@pytest.mark.parametrize("authorization", BAD_AUTH)
def test_event_refuses_bad_auth_and_stores_nothing(
    api: Api, target: Target, authorization: str | None
) -> None:
    event = make_event(target.device_id)
    assert_unauthorized(api.post_event(event, authorization=authorization))
    # Nothing was stored: the same event with the right token is new.
    assert_created(api.post_event(event), event["event_uid"])


@pytest.mark.parametrize("authorization", BAD_AUTH)
def test_batch_refuses_bad_auth_and_stores_nothing(
    api: Api, target: Target, authorization: str | None
) -> None:
    events = [make_event(target.device_id), make_event(target.device_id)]
    assert_unauthorized(api.post_events(events, authorization=authorization))
    body = assert_json(api.post_events(events), 200)
    assert [r["status"] for r in body["results"]] == ["created", "created"]


def test_unauthorized_even_for_invalid_body(api: Api) -> None:
    assert_unauthorized(api.post_event(b"{not json", token=None))
    assert_unauthorized(api.post_events(b"{not json", token=None))


# --------------------------------------------------------------------------- GET config


def test_config_shape(api: Api, target: Target) -> None:
    body = assert_json(api.get_config(), 200)
    assert isinstance(body, dict)
    assert isinstance(body["config_version"], str)
    assert body["config_version"]
    devices = body["devices"]
    assert isinstance(devices, list)
    by_id = {d["device_id"]: d for d in devices}
    assert len(by_id) == len(devices), "device_id must be unique"
    assert target.device_id in by_id
    for device in devices:
        assert isinstance(device["device_id"], str)
        assert isinstance(device["mqtt_topic"], str)
        assert device["mqtt_topic"]
        assert device["parser_type"] in PARSER_TYPES
        assert isinstance(device["machine_name"], str)
        session_config = device["session_config"]
        assert set(session_config) >= SESSION_CONFIG_KEYS
        assert session_config["strategy"] == "power_threshold"
        for key in SESSION_CONFIG_KEYS - {"strategy"}:
            value = session_config[key]
            assert isinstance(value, int | float)
            assert not isinstance(value, bool)
        assert 0 <= session_config["standby_threshold_w"] < session_config["working_threshold_w"]
        assert session_config["start_debounce_s"] >= 0
        assert session_config["stop_debounce_s"] >= 0
        assert session_config["message_timeout_s"] > 0
        if "parser_config" in device:
            parser_config = device["parser_config"]
            assert isinstance(parser_config, dict)
            assert set(parser_config) <= {"channel", "power_path", "energy_path", "energy_unit"}
            if "channel" in parser_config:
                assert isinstance(parser_config["channel"], int)
            if "energy_unit" in parser_config:
                assert parser_config["energy_unit"] in {"Wh", "kWh", "Wmin"}
        if "badge_reader" in device:
            assert_badge_reader(device["badge_reader"])


def assert_badge_reader(reader: Any) -> None:
    assert isinstance(reader, dict)
    assert isinstance(reader["mqtt_topic"], str)
    assert reader["mqtt_topic"]
    assert not set("+#") & set(reader["mqtt_topic"])
    assert reader["format"] in BADGE_READER_FORMATS
    if reader["format"] == "generic":
        assert set(reader) == {"mqtt_topic", "format", "uid_path"}
        assert isinstance(reader["uid_path"], str)
        assert reader["uid_path"]
        assert all(reader["uid_path"].split("."))
    else:
        assert set(reader) == {"mqtt_topic", "format"}


def test_config_serves_the_paired_badge_reader(api: Api, target: Target) -> None:
    """The contract device is paired with a Tasmota reader (seeded so on both servers)."""
    body = assert_json(api.get_config(), 200)
    device = next(d for d in body["devices"] if d["device_id"] == target.device_id)
    assert device["badge_reader"]["format"] == "tasmota"
    assert_badge_reader(device["badge_reader"])


def test_config_hides_other_bridges_devices(api: Api, target: Target) -> None:
    body = assert_json(api.get_config(), 200)
    assert target.foreign_device_id not in {d["device_id"] for d in body["devices"]}


def test_config_version_is_stable_without_changes(api: Api) -> None:
    first = assert_json(api.get_config(), 200)["config_version"]
    second = assert_json(api.get_config(), 200)["config_version"]
    assert first == second


# --------------------------------------------------------------------------- POST /ows/iot/event


@pytest.mark.parametrize("event_type", ["power_measurement", "run_start", "run_stop", "badge_scan"])
def test_event_created_then_duplicate(api: Api, target: Target, event_type: str) -> None:
    event = make_event(target.device_id, event_type)
    assert_created(api.post_event(event), event["event_uid"])
    assert_duplicate(api.post_event(event), event["event_uid"])
    assert_duplicate(api.post_event(event), event["event_uid"])


def test_duplicate_is_by_event_uid_only(api: Api, target: Target) -> None:
    event = make_event(target.device_id)
    assert_created(api.post_event(event), event["event_uid"])
    changed = make_event(target.device_id, payload={"apower": 1.0}, event_uid=event["event_uid"])
    assert_duplicate(api.post_event(changed), event["event_uid"])


def test_extra_keys_are_accepted(api: Api, target: Target) -> None:
    event = make_event(target.device_id)
    event["source"] = "bridge-1"
    event["payload"]["something_new"] = {"nested": [1, 2, 3]}
    assert_created(api.post_event(event), event["event_uid"])


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(event: dict[str, Any]) -> None:
        del event[key]

    return mutate


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(event: dict[str, Any]) -> None:
        event[key] = value

    return mutate


def _payload_session(value: Any, event_type: str) -> Callable[[dict[str, Any]], None]:
    def mutate(event: dict[str, Any]) -> None:
        event["event_type"] = event_type
        if value is _MISSING:
            event["payload"].pop("session_id", None)
        else:
            event["payload"]["session_id"] = value

    return mutate


_MISSING = object()

INVALID_MUTATIONS = [
    pytest.param(_drop("schema_version"), id="schema_version-missing"),
    pytest.param(_set("schema_version", "v2"), id="schema_version-v2"),
    pytest.param(_set("schema_version", 1), id="schema_version-number"),
    pytest.param(_drop("event_uid"), id="event_uid-missing"),
    pytest.param(_set("event_uid", ""), id="event_uid-empty"),
    pytest.param(_set("event_uid", 12345), id="event_uid-number"),
    pytest.param(_set("event_uid", None), id="event_uid-null"),
    pytest.param(_drop("ts"), id="ts-missing"),
    pytest.param(_set("ts", 1769855415.123), id="ts-number"),
    pytest.param(_set("ts", "2026-01-31 10:30:15"), id="ts-space"),
    pytest.param(_set("ts", "2026-01-31T10:30:15Z"), id="ts-no-millis"),
    pytest.param(_set("ts", "2026-01-31T10:30:15.123"), id="ts-no-zone"),
    pytest.param(_set("ts", "2026-01-31T10:30:15.123+01:00"), id="ts-offset"),
    pytest.param(_set("ts", "2026-02-30T10:30:15.123Z"), id="ts-no-such-day"),
    pytest.param(_set("ts", "yesterday"), id="ts-words"),
    pytest.param(_drop("device_id"), id="device_id-missing"),
    pytest.param(_set("device_id", 7), id="device_id-number"),
    pytest.param(_drop("event_type"), id="event_type-missing"),
    pytest.param(_set("event_type", "run_pause"), id="event_type-unknown"),
    pytest.param(_drop("payload"), id="payload-missing"),
    pytest.param(_set("payload", [1, 2]), id="payload-list"),
    pytest.param(_set("payload", "x"), id="payload-string"),
    pytest.param(_set("payload", None), id="payload-null"),
    pytest.param(_payload_session(_MISSING, "run_start"), id="run_start-no-session_id"),
    pytest.param(_payload_session(_MISSING, "run_stop"), id="run_stop-no-session_id"),
    pytest.param(_payload_session(42, "run_start"), id="run_start-session_id-number"),
    pytest.param(_payload_session(None, "run_stop"), id="run_stop-session_id-null"),
]


@pytest.mark.parametrize("mutate", INVALID_MUTATIONS)
def test_invalid_event(api: Api, target: Target, mutate: Callable[[dict[str, Any]], None]) -> None:
    event = make_event(target.device_id)
    mutate(event)
    assert_invalid(api.post_event(event))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xfe\x00garbage", id="not-utf8"),
        pytest.param(b"[1, 2, 3]", id="json-array"),
        pytest.param(b'"a string"', id="json-string"),
        pytest.param(b"null", id="json-null"),
    ],
)
def test_invalid_body(api: Api, body: bytes) -> None:
    assert_invalid(api.post_event(body))


def test_invalid_event_is_not_stored(api: Api, target: Target) -> None:
    event = make_event(target.device_id)
    broken = dict(event, ts="not a time")
    assert_invalid(api.post_event(broken))
    assert_created(api.post_event(event), event["event_uid"])


def test_unknown_device(api: Api) -> None:
    device_id = "no-such-device-" + new_uid()
    event = make_event(device_id)
    body = assert_json(api.post_event(event), 404)
    assert body["error"] == "unknown_device"
    assert body["device_id"] == device_id


def test_device_of_another_bridge_is_unknown(api: Api, target: Target) -> None:
    event = make_event(target.foreign_device_id)
    body = assert_json(api.post_event(event), 404)
    assert body["error"] == "unknown_device"
    assert body["device_id"] == target.foreign_device_id
    # The event was not stored: another try gets the same answer, not "duplicate".
    assert assert_json(api.post_event(event), 404)["error"] == "unknown_device"


def test_stop_before_start(api: Api, target: Target) -> None:
    session_id = new_uid()
    stop = run_stop(target.device_id, session_id)
    assert_created(api.post_event(stop), stop["event_uid"])
    start = run_start(target.device_id, session_id, started_at="2026-01-31T10:30:18.500Z")
    assert_created(api.post_event(start), start["event_uid"])
    assert_duplicate(api.post_event(stop), stop["event_uid"])
    assert_duplicate(api.post_event(start), start["event_uid"])


def test_session_start_then_stop(api: Api, target: Target) -> None:
    session_id = new_uid()
    start = run_start(target.device_id, session_id, started_at="2026-01-31T10:30:18.500Z")
    stop = run_stop(target.device_id, session_id)
    assert_created(api.post_event(start), start["event_uid"])
    assert_created(api.post_event(stop), stop["event_uid"])
    assert_duplicate(api.post_event(stop), stop["event_uid"])


def test_run_stop_with_minimal_payload(api: Api, target: Target) -> None:
    # The original spec's run_stop carries little more than the session id; it is valid.
    event = make_event(
        target.device_id,
        "run_stop",
        {"session_id": new_uid(), "power_w": 8.2, "reason": "normal", "duration_s": 187.3},
    )
    assert_created(api.post_event(event), event["event_uid"])


def test_concurrent_duplicates_store_once(api: Api, target: Target) -> None:
    event = make_event(target.device_id, "run_start")
    n = 6
    barrier = threading.Barrier(n)
    answers: list[Response] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def send() -> None:
        try:
            barrier.wait(timeout=10)
            resp = api.post_event(event)
            with lock:
                answers.append(resp)
        except BaseException as exc:  # reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    statuses = sorted(resp.status for resp in answers)
    assert statuses == [200] * (n - 1) + [201], [(r.status, r.raw[:200]) for r in answers]
    for resp in answers:
        assert resp.json()["event_uid"] == event["event_uid"]


# --------------------------------------------------------------------------- badge_scan


def test_badge_scan_of_an_unknown_badge_is_stored(api: Api, target: Target) -> None:
    event = badge_scan(target.device_id, new_badge_uid())
    assert_created(api.post_event(event), event["event_uid"])
    assert_duplicate(api.post_event(event), event["event_uid"])


@pytest.mark.parametrize("reader", ["PN532", "RDM6300", None])
def test_badge_scan_readers(api: Api, target: Target, reader: str | None) -> None:
    event = badge_scan(target.device_id, new_badge_uid(), reader=reader)
    assert_created(api.post_event(event), event["event_uid"])


def test_badge_scan_without_reader_key(api: Api, target: Target) -> None:
    event = badge_scan(target.device_id, new_badge_uid())
    del event["payload"]["reader"]
    assert_created(api.post_event(event), event["event_uid"])


def test_badge_scan_same_badge_twice_is_two_scans(api: Api, target: Target) -> None:
    uid = new_badge_uid()
    first = badge_scan(target.device_id, uid, "2026-03-02T09:00:00.000Z")
    second = badge_scan(target.device_id, uid, "2026-03-02T09:00:05.000Z")
    assert_created(api.post_event(first), first["event_uid"])
    assert_created(api.post_event(second), second["event_uid"])


def _badge_payload(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(event: dict[str, Any]) -> None:
        event["event_type"] = "badge_scan"
        event["payload"] = {"badge_uid": new_badge_uid(), "scanned_at": event["ts"],
                            "reader": "PN532"}  # fmt: skip
        for key, value in changes.items():
            if value is _MISSING:
                event["payload"].pop(key, None)
            else:
                event["payload"][key] = value

    return mutate


INVALID_BADGE_SCANS = [
    pytest.param(_badge_payload(badge_uid=_MISSING), id="badge_uid-missing"),
    pytest.param(_badge_payload(badge_uid=""), id="badge_uid-empty"),
    pytest.param(_badge_payload(badge_uid="   "), id="badge_uid-blank"),
    pytest.param(_badge_payload(badge_uid=4711), id="badge_uid-number"),
    pytest.param(_badge_payload(badge_uid=None), id="badge_uid-null"),
    pytest.param(_badge_payload(badge_uid="A" * 129), id="badge_uid-too-long"),
    pytest.param(_badge_payload(scanned_at=_MISSING), id="scanned_at-missing"),
    pytest.param(_badge_payload(scanned_at="2026-03-02 09:00:00"), id="scanned_at-space"),
    pytest.param(_badge_payload(scanned_at=1772442000), id="scanned_at-number"),
    pytest.param(_badge_payload(scanned_at="2026-02-30T09:00:00.000Z"), id="scanned_at-no-day"),
    pytest.param(_badge_payload(reader=532), id="reader-number"),
    pytest.param(_badge_payload(reader={"model": "PN532"}), id="reader-object"),
]


@pytest.mark.parametrize("mutate", INVALID_BADGE_SCANS)
def test_invalid_badge_scan(
    api: Api, target: Target, mutate: Callable[[dict[str, Any]], None]
) -> None:
    event = make_event(target.device_id)
    mutate(event)
    assert_invalid(api.post_event(event))
    results = assert_json(api.post_events([event]), 200)["results"]
    assert [r["status"] for r in results] == ["invalid_event"]


def test_badge_scan_of_another_bridges_device_is_unknown(api: Api, target: Target) -> None:
    event = badge_scan(target.foreign_device_id, new_badge_uid())
    assert assert_json(api.post_event(event), 404)["error"] == "unknown_device"


def test_batch_with_badge_scan_and_session(api: Api, target: Target) -> None:
    session_id = new_uid()
    scan = badge_scan(target.device_id, new_badge_uid(), "2026-03-02T10:00:00.000Z")
    start = run_start(target.device_id, session_id, started_at="2026-03-02T10:00:30.000Z")
    results = assert_json(api.post_events([scan, start, scan]), 200)["results"]
    assert [r["status"] for r in results] == ["created", "created", "duplicate"]


# --------------------------------------------------------------------------- batch


def test_batch_mixed_results_in_request_order(api: Api, target: Target) -> None:
    known = make_event(target.device_id)
    assert_created(api.post_event(known), known["event_uid"])
    new1 = make_event(target.device_id, "run_start")
    invalid = dict(make_event(target.device_id), ts="2026-01-31 10:30:15")
    unknown = make_event("no-such-device-" + new_uid())
    foreign = make_event(target.foreign_device_id)
    new2 = make_event(target.device_id, "run_stop")
    no_uid = make_event(target.device_id)
    del no_uid["event_uid"]
    events: list[Any] = [known, new1, invalid, unknown, foreign, new2, new1, no_uid, "junk"]
    body = assert_json(api.post_events(events), 200)
    results = body["results"]
    assert len(results) == len(events)
    assert [r["status"] for r in results] == [
        "duplicate",
        "created",
        "invalid_event",
        "unknown_device",
        "unknown_device",
        "created",
        "duplicate",
        "invalid_event",
        "invalid_event",
    ]
    uids = [e.get("event_uid") if isinstance(e, dict) else None for e in events]
    assert [r["event_uid"] for r in results[:7]] == uids[:7]
    assert results[7]["event_uid"] is None
    assert results[8]["event_uid"] is None
    for result in results:
        assert set(result) >= {"event_uid", "status", "detail"}
    assert results[2]["detail"]
    # What the batch stored is stored: the single form now says duplicate.
    assert_duplicate(api.post_event(new2), new2["event_uid"])
    # What it refused is not: a fixed invalid event is new.
    fixed = dict(invalid, ts="2026-01-31T10:30:15.000Z")
    assert_created(api.post_event(fixed), fixed["event_uid"])


def test_batch_all_created_keeps_order(api: Api, target: Target) -> None:
    events = [make_event(target.device_id) for _ in range(25)]
    results = assert_json(api.post_events(events), 200)["results"]
    assert [r["event_uid"] for r in results] == [e["event_uid"] for e in events]
    assert {r["status"] for r in results} == {"created"}
    results = assert_json(api.post_events(events), 200)["results"]
    assert [r["event_uid"] for r in results] == [e["event_uid"] for e in events]
    assert {r["status"] for r in results} == {"duplicate"}


def test_batch_stop_before_start(api: Api, target: Target) -> None:
    session_id = new_uid()
    stop = run_stop(target.device_id, session_id)
    start = run_start(target.device_id, session_id, started_at="2026-01-31T10:30:18.500Z")
    results = assert_json(api.post_events([stop, start]), 200)["results"]
    assert [r["status"] for r in results] == ["created", "created"]


def test_batch_of_500_is_accepted(api: Api, target: Target) -> None:
    events = [make_event(target.device_id) for _ in range(500)]
    results = assert_json(api.post_events(events), 200)["results"]
    assert len(results) == 500
    assert {r["status"] for r in results} == {"created"}


def test_batch_over_500_is_refused(api: Api, target: Target) -> None:
    events = [make_event(target.device_id) for _ in range(501)]
    assert_invalid(api.post_events(events))
    # Nothing of it was stored.
    assert_created(api.post_event(events[0]), events[0]["event_uid"])


def test_batch_empty(api: Api) -> None:
    assert assert_json(api.post_events([]), 200) == {"results": []}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b"", id="empty"),
        pytest.param(b"[]", id="json-array"),
        pytest.param(b"{}", id="no-events-key"),
        pytest.param(b'{"events": {"a": 1}}', id="events-not-a-list"),
    ],
)
def test_batch_invalid_body(api: Api, body: bytes) -> None:
    assert_invalid(api.post_events(body))


# --------------------------------------------------------------------------- routing


def test_unknown_path_is_404(api: Api) -> None:
    assert api.request("GET", "/ows/iot/no-such-endpoint").status == 404
    assert api.request("POST", "/ows/iot/no-such-endpoint", body=b"{}").status == 404


# --------------------------------------------------------------------------- event contents
# One bad value is that event's 400 invalid_event, alone and in a batch; never a 500.

MAX_PAYLOAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024
HUGE = "__HUGE__"  # replaced in the raw body: JSON numbers that no float can hold


def _payload(key: str, value: Any, event_type: str = "power_measurement") -> Mutation:
    def mutate(event: dict[str, Any]) -> None:
        if event_type != event["event_type"]:
            event["event_type"] = event_type
            event["payload"] = run_stop("x", new_uid())["payload"]
        event["payload"][key] = value

    return mutate


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


Mutation = Callable[[dict[str, Any]], None]

BAD_VALUES = [
    pytest.param(_payload("note", "a\x00b"), None, id="nul-in-payload-string"),
    pytest.param(_payload("a\x00b", 1), None, id="nul-in-payload-key"),
    pytest.param(_set("source", "bridge\x00"), None, id="nul-in-extra-key"),
    pytest.param(_payload("session_id", "s\x00", "run_stop"), None, id="nul-in-session_id"),
    pytest.param(_payload("big", HUGE), "1" + "0" * 400, id="integer-too-large-for-a-float"),
    pytest.param(_payload("big", HUGE), "1e400", id="float-overflow"),
    pytest.param(_payload("big", HUGE), "-1e16", id="number-out-of-range"),
    pytest.param(_payload("big", HUGE), "NaN", id="nan"),
    pytest.param(_payload("energy_wh", HUGE, "run_stop"), "1e999", id="energy-infinite"),
    pytest.param(_payload("duration_s", "187.3", "run_stop"), None, id="duration-string"),
    pytest.param(_payload("energy_wh", "6.25", "run_stop"), None, id="energy-string"),
    pytest.param(_payload("working_s", True, "run_stop"), None, id="working-boolean"),
    pytest.param(_payload("power_w", [1], "run_stop"), None, id="power-list"),
    pytest.param(_payload("blob", "x" * MAX_PAYLOAD_BYTES), None, id="payload-oversize"),
    pytest.param(_payload("deep", _nested(40)), None, id="payload-too-deep"),
]


def _raw(event: dict[str, Any], huge: str | None) -> bytes:
    body = json.dumps(event)
    if huge is not None:
        body = body.replace(f'"{HUGE}"', huge)
    return body.encode()


@pytest.mark.parametrize(("mutate", "huge"), BAD_VALUES)
def test_bad_value_is_invalid_event(
    api: Api, target: Target, mutate: Mutation, huge: str | None
) -> None:
    event = make_event(target.device_id)
    mutate(event)
    assert_invalid(api.post_event(_raw(event, huge)))


@pytest.mark.parametrize(("mutate", "huge"), BAD_VALUES)
def test_bad_value_in_a_batch_is_that_events_400(
    api: Api, target: Target, mutate: Mutation, huge: str | None
) -> None:
    before, bad, after = (make_event(target.device_id) for _ in range(3))
    mutate(bad)
    body = b'{"events": [' + b",".join(_raw(e, huge) for e in (before, bad, after)) + b"]}"
    results = assert_json(api.post_events(body), 200)["results"]
    assert [r["status"] for r in results] == ["created", "invalid_event", "created"]
    assert results[1]["detail"]
    assert_duplicate(api.post_event(after), after["event_uid"])


def test_payload_at_the_size_limit_is_accepted(api: Api, target: Target) -> None:
    event = make_event(target.device_id, payload={"blob": ""})
    event["payload"]["blob"] = "x" * (MAX_PAYLOAD_BYTES - len('{"blob":""}'))
    assert_created(api.post_event(event), event["event_uid"])


def test_session_numbers_may_be_null(api: Api, target: Target) -> None:
    event = run_stop(target.device_id, new_uid())
    event["payload"]["energy_wh"] = None
    event["payload"]["started_at"] = None
    assert_created(api.post_event(event), event["event_uid"])


@pytest.mark.parametrize("route", ["/ows/iot/event", "/ows/iot/events"])
def test_body_over_the_limit_is_413_and_stores_nothing(
    api: Api, target: Target, route: str
) -> None:
    event = make_event(target.device_id)
    pad = b"x" * MAX_BODY_BYTES
    body = b'{"events": [' + json.dumps(event).encode() + b'], "pad": "' + pad + b'"}'
    resp = api.request("POST", route, body=body)
    refused = assert_json(resp, 413)
    assert refused["error"] == "payload_too_large"
    assert refused["max_bytes"] == MAX_BODY_BYTES
    assert "x" * 100 not in json.dumps(refused)  # the body is not echoed
    assert_created(api.post_event(event), event["event_uid"])  # nothing was stored


# --------------------------------------------------------------------------- conflicts
# Ids belong to the bridge and device that stored them first; a claim by another is 409.


def assert_conflict(resp: Response, uid: str) -> None:
    body = assert_json(resp, 409)
    assert body["error"] == "conflict"
    assert body["event_uid"] == uid
    assert body["detail"]


def _as_foreign(event: dict[str, Any], target: Target) -> dict[str, Any]:
    return dict(event, device_id=target.foreign_device_id)


def test_event_uid_of_another_bridge_is_a_conflict(api: Api, target: Target) -> None:
    theirs = make_event(target.foreign_device_id, "run_start")
    assert_created(api.post_event(theirs, token=target.foreign_token), theirs["event_uid"])
    ours = dict(theirs, device_id=target.device_id)
    assert_conflict(api.post_event(ours), ours["event_uid"])
    results = assert_json(api.post_events([ours]), 200)["results"]
    assert [(r["event_uid"], r["status"]) for r in results] == [(ours["event_uid"], "conflict")]
    # the owner still gets its duplicate
    assert_duplicate(api.post_event(theirs, token=target.foreign_token), theirs["event_uid"])


def test_our_event_uid_claimed_by_another_bridge_is_a_conflict_for_it(
    api: Api, target: Target
) -> None:
    ours = make_event(target.device_id)
    assert_created(api.post_event(ours), ours["event_uid"])
    claim = _as_foreign(ours, target)
    assert_conflict(api.post_event(claim, token=target.foreign_token), ours["event_uid"])
    assert_duplicate(api.post_event(ours), ours["event_uid"])


def test_session_of_another_bridge_is_a_conflict(api: Api, target: Target) -> None:
    session_id = new_uid()
    theirs = run_start(target.foreign_device_id, session_id)
    assert_created(api.post_event(theirs, token=target.foreign_token), theirs["event_uid"])
    stop = run_stop(target.device_id, session_id)
    assert_conflict(api.post_event(stop), stop["event_uid"])
    start = run_start(target.device_id, session_id)
    fine = make_event(target.device_id)
    results = assert_json(api.post_events([start, fine]), 200)["results"]
    assert [r["status"] for r in results] == ["conflict", "created"]
    assert results[0]["detail"]
    # nothing of the refused events was stored: after the conflict they are still new to us
    assert_conflict(api.post_event(stop), stop["event_uid"])


def test_conflict_inside_one_batch(api: Api, target: Target) -> None:
    """The first event of a batch owns the session; a later one of another bridge conflicts."""
    session_id = new_uid()
    ours = run_start(target.device_id, session_id)
    results = assert_json(api.post_events([ours]), 200)["results"]
    assert results[0]["status"] == "created"
    theirs = run_stop(target.foreign_device_id, session_id)
    other = make_event(target.foreign_device_id)
    resp = api.post_events([theirs, other], token=target.foreign_token)
    assert [r["status"] for r in assert_json(resp, 200)["results"]] == ["conflict", "created"]
