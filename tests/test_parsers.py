"""Parser tests: every shared payload fixture, malformed input, robustness, subscriptions."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_bridge.errors import ParseError
from iot_bridge.parsers import PARSERS, ParserOptions, Reading
from iot_bridge.parsers.base import MAX_PAYLOAD_BYTES, device_seconds

FIXTURES = Path(__file__).parent / "fixtures"
PAYLOADS = FIXTURES / "payloads"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected_readings.json").read_text())
FIELDS = ("power_w", "energy_wh", "voltage_v", "current_a", "online", "device_ts", "coarse")


def _options(raw: dict[str, Any] | None) -> ParserOptions:
    return ParserOptions(**(raw or {}))


def _payload(name: str, case: dict[str, Any]) -> bytes:
    """The MQTT payload of a fixture: the envelope's ``payload_text`` or the file bytes."""
    raw = (PAYLOADS / name).read_bytes()
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and "_envelope" in doc:
        assert "wrap" not in case
        return str(doc["payload_text"]).encode()
    if "wrap" in case:
        before, after = case["wrap"]
        return str(before).encode() + raw.rstrip(b"\n") + str(after).encode()
    return raw


def _cases() -> list[Any]:
    params = []
    for name, cases in EXPECTED.items():
        if name.startswith("_"):
            continue
        for i, case in enumerate(cases):
            params.append(pytest.param(name, case, id=f"{name}#{i}"))
    return params


def _assert_reading(result: Reading | None, expect: dict[str, Any]) -> None:
    assert isinstance(result, Reading), f"expected a reading, got {result!r}"
    got = result.as_dict()
    assert set(expect) == set(FIELDS)
    for field in FIELDS:
        want = expect[field]
        if want is None or isinstance(want, bool):
            assert got[field] is want, field
        elif isinstance(want, str):
            assert got[field] == want, field
        else:
            assert got[field] == pytest.approx(want, rel=1e-9, abs=1e-9), field


@pytest.mark.parametrize(("name", "case"), _cases())
def test_fixture(name: str, case: dict[str, Any]) -> None:
    parser = PARSERS[case["parser_type"]]
    payload = _payload(name, case)
    options = _options(case.get("options"))
    expect = case["expect"]
    if isinstance(expect, dict) and "error" in expect:
        with pytest.raises(ParseError) as info:
            parser.parse(case["topic"], payload, options)
        assert expect["error"] in str(info.value)
        return
    result = parser.parse(case["topic"], payload, options)
    if expect is None:
        assert result is None
    else:
        _assert_reading(result, expect)


def test_every_fixture_has_an_expectation_and_vice_versa() -> None:
    files = {
        p.relative_to(PAYLOADS).as_posix()
        for p in PAYLOADS.rglob("*")
        if p.is_file() and p.name != "SOURCES.md"
    }
    expected = {k for k in EXPECTED if not k.startswith("_")}
    assert files == expected
    assert (PAYLOADS / "SOURCES.md").is_file()
    for name, cases in EXPECTED.items():
        if name.startswith("_"):
            continue
        assert cases, name
        family = name.split("/")[0]
        for case in cases:
            assert case["parser_type"] in PARSERS
            assert family in case["parser_type"] or (
                family == "shelly_gen2" and case["parser_type"] == "shelly_pm_mini_g3"
            )


def test_envelope_topics_are_kept_when_real() -> None:
    """An envelope's own topic is used as is unless it is a ``<topic>`` placeholder."""
    for name, cases in EXPECTED.items():
        if name.startswith("_"):
            continue
        doc = json.loads((PAYLOADS / name).read_bytes())
        if isinstance(doc, dict) and "_envelope" in doc and "<" not in doc["topic"]:
            assert {c["topic"] for c in cases} == {doc["topic"]}, name


# --- malformed input, table-driven per family -----------------------------------------------

BIG = b"[" + b"0," * (MAX_PAYLOAD_BYTES // 2) + b"0]"
SW = "shellies/plug/status/switch:0"
EV = "shellies/plug/events/rpc"
MALFORMED: list[tuple[str, str, bytes, dict[str, Any], str]] = [
    # shelly_gen2
    ("shelly_gen2", SW, b"{", {}, "invalid JSON"),
    ("shelly_gen2", SW, b'{"apower":NaN}', {}, "invalid JSON"),
    ("shelly_gen2", SW, b'{"apower":Infinity}', {}, "invalid JSON"),
    ("shelly_gen2", SW, b'{"apower":1e400}', {}, "invalid JSON"),
    ("shelly_gen2", SW, b'{"apower":"12.5"}', {}, "switch:0.apower must be a number, got str"),
    ("shelly_gen2", SW, b'{"apower":null}', {}, "got NoneType"),
    ("shelly_gen2", SW, b'{"apower":true}', {}, "got bool"),
    ("shelly_gen2", SW, b'{"aenergy":{"total":"1"}}', {}, "aenergy.total must be a number"),
    ("shelly_gen2", SW, b'{"aenergy":[1]}', {}, "aenergy must be an object"),
    ("shelly_gen2", SW, b'{"aenergy":null}', {}, "aenergy is null"),
    ("shelly_gen2", SW, b"[1,2]", {}, "must be a JSON object"),
    ("shelly_gen2", SW, b"\xff\xfe", {}, "invalid JSON"),
    ("shelly_gen2", SW, BIG, {}, "byte limit"),
    ("shelly_gen2", "shellies/plug/status/em1:0", b'{"act_power":false}', {}, "got bool"),
    ("shelly_gen2", "x/status/em1data:0", b'{"total_act_energy":"9"}', {}, "total_act_energy"),
    ("shelly_gen2", EV, b'{"method":"NotifyStatus"}', {}, "params must be a JSON object"),
    ("shelly_gen2", EV, b'{"params":{}}', {}, "no string 'method'"),
    ("shelly_gen2", EV, b'{"method":"NotifyStatus","params":{"switch:0":7}}', {}, "switch:0"),
    ("shelly_gen2", EV, b'{"method":"NotifyStatus","params":{"switch:0":null}}', {}, "null"),
    ("shelly_gen2", EV, b'"NotifyStatus"', {}, "must be a JSON object"),
    ("shelly_gen2", "shellies/plug/status/rpc", b'{"result":3}', {}, "'result'"),
    ("shelly_gen2", "shellies/plug/online", b"yes", {}, "'true' or 'false'"),
    ("shelly_gen2", "shellies/plug/online", b"\xff", {}, "'true' or 'false'"),
    ("shelly_gen2", "tele/plug/SENSOR", b"{}", {}, "not a Shelly Gen2 topic"),
    ("shelly_gen2", "shellies/plug/relay/0/power", b"1", {}, "not a Shelly Gen2 topic"),
    # shelly_gen1
    ("shelly_gen1", "shellies/p/relay/0/power", b"abc", {}, "not a number"),
    ("shelly_gen1", "shellies/p/relay/0/power", b"nan", {}, "not finite"),
    ("shelly_gen1", "shellies/p/relay/0/power", b"inf", {}, "not finite"),
    ("shelly_gen1", "shellies/p/relay/0/power", b"", {}, "not a number"),
    ("shelly_gen1", "shellies/p/relay/0/energy", b"\xff\xfe", {}, "not a number"),
    ("shelly_gen1", "shellies/p/relay/0/power", b"1" * (MAX_PAYLOAD_BYTES + 1), {}, "limit"),
    ("shelly_gen1", "shellies/p/emeter/0/total", b"true", {}, "not a number"),
    ("shelly_gen1", "shellies/p/emeter/0/voltage", b"null", {}, "not a number"),
    ("shelly_gen1", "shellies/p/online", b"1", {}, "'true' or 'false'"),
    ("shelly_gen1", "shellies/p/info", b"[]", {}, "must be a JSON object"),
    ("shelly_gen1", "shellies/p/info", b'{"meters":{}}', {}, "meters must be a list"),
    ("shelly_gen1", "shellies/p/info", b'{"meters":[1]}', {}, "meters[0] must be an object"),
    ("shelly_gen1", "shellies/p/info", b'{"meters":[{"power":"1"}]}', {}, "power must be"),
    ("shelly_gen1", "shellies/p/info", b'{"meters":[{"total":true}]}', {}, "total must be"),
    ("shelly_gen1", "plug/status/switch:0", b"1", {}, "must start with 'shellies/'"),
    # tasmota
    ("tasmota", "tele/t/SENSOR", b"{", {}, "invalid JSON"),
    ("tasmota", "tele/t/SENSOR", b"[]", {}, "must be a JSON object"),
    ("tasmota", "tele/t/SENSOR", b'{"ENERGY":[1]}', {}, "ENERGY must be a JSON object"),
    ("tasmota", "tele/t/SENSOR", b'{"ENERGY":null}', {}, "ENERGY must be a JSON object"),
    ("tasmota", "tele/t/SENSOR", b'{"ENERGY":{"Power":"954"}}', {}, "ENERGY.Power must be"),
    ("tasmota", "tele/t/SENSOR", b'{"ENERGY":{"Power":null}}', {}, "ENERGY.Power is null"),
    ("tasmota", "tele/t/SENSOR", b'{"ENERGY":{"Total":false}}', {}, "ENERGY.Total must be"),
    ("tasmota", "tele/t/SENSOR", b'{"ENERGY":{"Power":[1,"2"]}}', {"channel": 1}, "Power[1]"),
    ("tasmota", "tele/t/SENSOR", b'{"ENERGY":{"Power":[1]}}', {"channel": 1}, "out of range"),
    ("tasmota", "tele/t/SENSOR", b'{"ENERGY":{"Power":{"Phase1":1}}}', {"channel": 1}, "Phase2"),
    ("tasmota", "tele/t/SENSOR", b'{"ENERGY":{"Power":{"Phase1":[]}}}', {}, "Power.Phase1"),
    ("tasmota", "tele/t/SENSOR", BIG, {}, "byte limit"),
    ("tasmota", "tele/t/SENSOR", b"\xc3\x28", {}, "invalid JSON"),
    ("tasmota", "stat/t/STATUS10", b'{"ENERGY":{}}', {}, "StatusSNS"),
    ("tasmota", "stat/t/STATUS8", b'{"StatusSNS":[]}', {}, "StatusSNS"),
    ("tasmota", "stat/t/RESULT", b"7", {}, "must be a JSON object"),
    ("tasmota", "tele/t/LWT", b"online", {}, "'Online' or 'Offline'"),
    ("tasmota", "shellies/p/relay/0/power", b"1", {}, "not a Tasmota topic"),
    ("tasmota", "telex/t/SENSOR", b"{}", {}, "not a Tasmota topic"),
    # generic
    ("generic", "g/power", b"", {}, "invalid JSON"),
    ("generic", "g/power", b"20.5 W", {}, "invalid JSON"),
    ("generic", "g/power", b"NaN", {}, "invalid JSON"),
    ("generic", "g/power", b'"20.5"', {}, "got str"),
    ("generic", "g/power", b"true", {}, "got bool"),
    ("generic", "g/power", b"null", {}, "got NoneType"),
    ("generic", "g/power", b'{"watt":1}', {}, "power_path 'power' not found"),
    ("generic", "g/power", b'{"power":null}', {}, "is null"),
    ("generic", "g/power", b'{"power":{"x":1}}', {}, "got dict"),
    ("generic", "g/power", b'{"a":{"b":[1,2]}}', {"power_path": "a.b.2"}, "'a.b.2' not found"),
    ("generic", "g/power", b'{"a":{"b":[1,2]}}', {"power_path": "a.b.x"}, "not found"),
    ("generic", "g/power", b'{"a":3}', {"power_path": "a.b"}, "not found"),
    ("generic", "g/power", b'{"power":1,"e":"x"}', {"energy_path": "e"}, "energy_path 'e'"),
    (
        "generic",
        "g/power",
        b'{"power":1,"e":1}',
        {"energy_path": "e", "energy_unit": "MWh"},
        "unknown energy_unit",
    ),
    ("generic", "g/power", BIG, {}, "byte limit"),
    ("generic", "g/power", b"\x80", {}, "invalid JSON"),
]


@pytest.mark.parametrize(
    ("parser_type", "topic", "payload", "options", "error"),
    MALFORMED,
    ids=[f"{m[0]}-{i}" for i, m in enumerate(MALFORMED)],
)
def test_malformed_input_raises_parse_error(
    parser_type: str, topic: str, payload: bytes, options: dict[str, Any], error: str
) -> None:
    with pytest.raises(ParseError) as info:
        PARSERS[parser_type].parse(topic, payload, _options(options))
    assert error in str(info.value)


# --- robustness: random input never raises anything but ParseError --------------------------

TOPICS: dict[str, list[str]] = {
    "shelly_gen2": [
        "p/status/switch:0",
        "p/status/pm1:0",
        "p/status/em1:0",
        "p/status/em1data:0",
        "p/status/rpc",
        "p/events/rpc",
        "p/online",
        "p/rpc",
        "p/status/sys",
    ],
    "shelly_gen1": [
        "shellies/p/relay/0/power",
        "shellies/p/relay/0/energy",
        "shellies/p/relay/power",
        "shellies/p/emeter/0/total",
        "shellies/p/emeter/0/voltage",
        "shellies/p/emeter/0/pf",
        "shellies/p/online",
        "shellies/p/info",
    ],
    "tasmota": [
        "tele/t/SENSOR",
        "t/tele/SENSOR",
        "stat/t/STATUS8",
        "stat/t/STATUS10",
        "stat/t/RESULT",
        "tele/t/STATE",
        "tele/t/LWT",
    ],
    "generic": ["g/power"],
}
TOPICS["shelly_pm_mini_g3"] = TOPICS["shelly_gen2"]

_keys = st.sampled_from(
    [
        "apower", "voltage", "current", "aenergy", "total", "act_power", "total_act_energy",
        "method", "params", "result", "switch:0", "pm1:0", "em1:0", "em1data:0", "id", "output",
        "ENERGY", "StatusSNS", "Power", "Total", "Voltage", "Current", "Phase1", "meters",
        "emeters", "power", "is_valid", "value", "0",
    ]
)  # fmt: skip
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["NotifyStatus", "NotifyFullStatus", "NotifyEvent", "x", ""])
)
_json = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=6),
    max_leaves=25,
)


def _check(result: object) -> None:
    assert result is None or isinstance(result, Reading)
    if isinstance(result, Reading):
        for field in FIELDS[:4]:
            value = getattr(result, field)
            assert value is None or (type(value) is float and math.isfinite(value))
        assert result.online is None or type(result.online) is bool


@settings(max_examples=400, deadline=None)
@given(
    parser_type=st.sampled_from(sorted(PARSERS)),
    data=st.data(),
    doc=_json,
    raw=st.binary(max_size=200),
    use_raw=st.booleans(),
    channel=st.integers(min_value=0, max_value=3),
    path=st.sampled_from(["power", "ENERGY.Power", "0.value", "a.0.b", "switch:0.apower"]),
)
def test_random_input_only_reading_none_or_parse_error(
    *,
    parser_type: str,
    data: st.DataObject,
    doc: Any,
    raw: bytes,
    use_raw: bool,
    channel: int,
    path: str,
) -> None:
    topic = data.draw(st.sampled_from(TOPICS[parser_type]) | st.text(max_size=40))
    payload = raw if use_raw else orjson.dumps(doc)
    options = ParserOptions(channel=channel, power_path=path, energy_path=path)
    try:
        result = PARSERS[parser_type].parse(topic, payload, options)
    except ParseError:
        return
    _check(result)


@settings(max_examples=200, deadline=None)
@given(doc=_json, key=_keys, channel=st.integers(min_value=0, max_value=2))
def test_random_component_frames_only_reading_none_or_parse_error(
    doc: Any, key: str, channel: int
) -> None:
    """Random objects placed where the parsers look, so deep branches are reached."""
    options = ParserOptions(channel=channel)
    frames = [
        ("shelly_gen2", EV, {"method": "NotifyStatus", "params": {f"switch:{channel}": doc}}),
        ("shelly_gen2", EV, {"method": "NotifyFullStatus", "params": {f"em1:{channel}": doc}}),
        ("shelly_gen2", SW, {"apower": 1, "aenergy": doc, key: doc}),
        ("tasmota", "tele/t/SENSOR", {"ENERGY": doc}),
        ("tasmota", "tele/t/SENSOR", {"ENERGY": {"Power": doc, key: doc}}),
        ("tasmota", "stat/t/STATUS10", {"StatusSNS": {"ENERGY": {key: doc}}}),
        ("shelly_gen1", "shellies/p/info", {"meters": [doc, doc, doc]}),
        ("shelly_gen1", "shellies/p/info", {"emeters": doc}),
    ]
    for parser_type, topic, frame in frames:
        try:
            result = PARSERS[parser_type].parse(topic, orjson.dumps(frame), options)
        except ParseError:
            continue
        _check(result)


# --- subscriptions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parser_type", "topic", "expected"),
    [
        (
            "shelly_gen2",
            "shellyplugpmg3-aabbccddeeff/status/pm1:0",
            (
                "shellyplugpmg3-aabbccddeeff/status/pm1:0",
                "shellyplugpmg3-aabbccddeeff/events/rpc",
                "shellyplugpmg3-aabbccddeeff/online",
            ),
        ),
        (
            "shelly_pm_mini_g3",
            "shelly-ht/plug-01/status/switch:1",
            (
                "shelly-ht/plug-01/status/switch:1",
                "shelly-ht/plug-01/events/rpc",
                "shelly-ht/plug-01/online",
            ),
        ),
        (
            "shelly_gen2",
            "em/status/em1:1",
            ("em/status/em1:1", "em/status/em1data:1", "em/events/rpc", "em/online"),
        ),
        ("shelly_gen2", "pfx/events/rpc", ("pfx/events/rpc", "pfx/online")),
        ("shelly_gen2", "+/status/switch:0", ("+/status/switch:0", "+/events/rpc", "+/online")),
        ("shelly_gen2", "pfx/#", ("pfx/#",)),
        (
            "shelly_gen1",
            "shellies/shelly-plug-s1/relay/0/power",
            (
                "shellies/shelly-plug-s1/relay/0/power",
                "shellies/shelly-plug-s1/relay/0/energy",
                "shellies/shelly-plug-s1/online",
            ),
        ),
        (
            "shelly_gen1",
            "shellies/shellies/shellyem3/emeter/2/power",
            (
                "shellies/shellies/shellyem3/emeter/2/power",
                "shellies/shellies/shellyem3/emeter/2/total",
                "shellies/shellies/shellyem3/online",
            ),
        ),
        (
            "shelly_gen1",
            "shellies/p/relay/1",
            (
                "shellies/p/relay/1",
                "shellies/p/relay/1/power",
                "shellies/p/relay/1/energy",
                "shellies/p/online",
            ),
        ),
        ("shelly_gen1", "shellies/p/info", ("shellies/p/info", "shellies/p/online")),
        (
            "shelly_gen1",
            "shellies/+/relay/0/power",
            ("shellies/+/relay/0/power", "shellies/+/relay/0/energy", "shellies/+/online"),
        ),
        (
            "tasmota",
            "tele/tasmota_9CF9D1/SENSOR",
            ("tele/tasmota_9CF9D1/SENSOR", "tele/tasmota_9CF9D1/LWT", "tele/tasmota_9CF9D1/STATE"),
        ),
        (
            "tasmota",
            "switch_2/tele/SENSOR",
            ("switch_2/tele/SENSOR", "switch_2/tele/LWT", "switch_2/tele/STATE"),
        ),
        ("tasmota", "stat/pow1/STATUS8", ("stat/pow1/STATUS8", "tele/pow1/LWT", "tele/pow1/STATE")),
        ("tasmota", "tele/+/SENSOR", ("tele/+/SENSOR", "tele/+/LWT", "tele/+/STATE")),
        ("tasmota", "tele/#", ("tele/#",)),
        ("generic", "home/+/power", ("home/+/power",)),
    ],
)
def test_subscriptions(parser_type: str, topic: str, expected: tuple[str, ...]) -> None:
    assert PARSERS[parser_type].subscriptions(topic) == expected


def test_registry() -> None:
    assert set(PARSERS) == {"shelly_pm_mini_g3", "shelly_gen2", "shelly_gen1", "tasmota", "generic"}
    assert PARSERS["shelly_pm_mini_g3"] is PARSERS["shelly_gen2"]


def test_subscriptions_always_start_with_the_configured_topic() -> None:
    for parser_type, topics in TOPICS.items():
        for topic in topics:
            subs = PARSERS[parser_type].subscriptions(topic)
            assert subs[0] == topic
            assert len(subs) == len(set(subs))


# --- multi-channel -------------------------------------------------------------------------

DUAL = b'{"Time":"2020","ENERGY":{"Total":[2.813,0.254],"Power":[52,5],"Voltage":235,"Current":[0.3,0.05]}}'  # noqa: E501


@pytest.mark.parametrize(
    ("channel", "expected"),
    [(0, Reading(52.0, 2813.0, 235.0, 0.3)), (1, Reading(5.0, 254.0, 235.0, 0.05))],
)
def test_tasmota_array_channels(channel: int, expected: Reading) -> None:
    result = PARSERS["tasmota"].parse("tele/dual/SENSOR", DUAL, ParserOptions(channel=channel))
    assert result is not None
    for field in FIELDS[:5]:
        assert getattr(result, field) == pytest.approx(getattr(expected, field))
    assert result.device_ts == json.loads(DUAL)["Time"]  # as sent; seconds only when needed


def test_tasmota_phase_dict_picks_the_channel() -> None:
    payload = b'{"ENERGY":{"Power":{"Phase1":10,"Phase2":20,"Phase3":30},"Total":{"Phase1":1,"Phase2":2,"Phase3":3},"Voltage":{"Phase1":230,"Phase2":231,"Phase3":232}}}'  # noqa: E501
    parse = PARSERS["tasmota"].parse
    assert parse("tele/t/SENSOR", payload, ParserOptions(channel=2)) == Reading(30.0, 3000.0, 232.0)
    assert parse("tele/t/SENSOR", payload, ParserOptions()) == Reading(10.0, 1000.0, 230.0)


def test_shelly_switch_channel_1() -> None:
    parse = PARSERS["shelly_gen2"].parse
    body = b'{"id":1,"output":true,"apower":120.5,"voltage":230.1,"current":0.6,"aenergy":{"total":42.0}}'  # noqa: E501
    one = ParserOptions(channel=1)
    assert parse("pro4pm/status/switch:1", body, one) == Reading(120.5, 42.0, 230.1, 0.6)
    assert parse("pro4pm/status/switch:1", body, ParserOptions()) is None
    assert parse("pro4pm/status/switch:0", body, one) is None
    frame = (
        b'{"method":"NotifyStatus","params":{"ts":1.0,"switch:0":{"apower":9.0},'
        b'"switch:1":{"apower":11.5,"current":0.071}}}'
    )
    assert parse("pro4pm/events/rpc", frame, one) == Reading(
        power_w=11.5, current_a=0.071, device_ts=1.0
    )
    assert parse("pro4pm/events/rpc", frame, ParserOptions()) == Reading(power_w=9.0, device_ts=1.0)
    assert parse("pro4pm/events/rpc", frame, ParserOptions(channel=2)) is None


def test_shelly_em1_channel_1_status_topics() -> None:
    parse = PARSERS["shelly_gen2"].parse
    one = ParserOptions(channel=1)
    em1 = b'{"id":1,"current":0.194,"voltage":242.8,"act_power":-332.2,"aprt_power":47.2}'
    data = b'{"id":1,"total_act_energy":2768.67,"total_act_ret_energy":25.49}'
    assert parse("em/status/em1:1", em1, one) == Reading(-332.2, None, 242.8, 0.194)
    assert parse("em/status/em1data:1", data, one) == Reading(energy_wh=2768.67)
    assert parse("em/status/em1:0", em1, one) is None
    assert parse("em/status/em1data:1", data, ParserOptions()) is None


def test_shelly_status_rpc_result_and_notify_event() -> None:
    parse = PARSERS["shelly_gen2"].parse
    rpc = b'{"result":{"pm1:0":{"id":0,"apower":5.5,"aenergy":{"total":1.5}}}}'
    assert parse("plug/status/rpc", rpc, ParserOptions()) == Reading(5.5, 1.5)
    event = b'{"method":"NotifyEvent","params":{"events":[{"component":"input:0"}]}}'
    assert parse("plug/events/rpc", event, ParserOptions()) is None
    assert parse("plug/rpc", b"{}", ParserOptions()) is None


def test_shelly_gen1_emeter_and_device_level_relay() -> None:
    parse = PARSERS["shelly_gen1"].parse
    two = ParserOptions(channel=2)
    em3 = "shellies/shellies/shellyem3/emeter"
    assert parse(f"{em3}/2/power", b"-12.5", two) == Reading(power_w=-12.5)
    assert parse(f"{em3}/2/total", b"1000.5", two) == Reading(energy_wh=1000.5)
    assert parse(f"{em3}/2/voltage", b"230.35", two) == Reading(voltage_v=230.35)
    assert parse(f"{em3}/2/current", b"0.0", two) == Reading(current_a=0.0)
    assert parse(f"{em3}/2/energy", b"94736", two) == Reading()
    assert parse(f"{em3}/1/power", b"1", two) is None
    assert parse("shellies/sw2/relay/power", b"7.5", ParserOptions()) == Reading(power_w=7.5)
    energy = parse("shellies/sw2/relay/energy", b"60", ParserOptions())
    assert energy == Reading(energy_wh=1.0)


def test_generic_units_and_bare_number() -> None:
    parse = PARSERS["generic"].parse
    doc = b'{"ENERGY":{"Power":954,"Total":0.127}}'
    kwh = ParserOptions(power_path="ENERGY.Power", energy_path="ENERGY.Total", energy_unit="kWh")
    assert parse("t", doc, kwh) == Reading(954.0, 127.0)
    wmin = ParserOptions(power_path="ENERGY.Power", energy_path="ENERGY.Total", energy_unit="Wmin")
    result = parse("t", doc, wmin)
    assert result is not None
    assert result.energy_wh == pytest.approx(0.127 / 60)
    missing = ParserOptions(power_path="ENERGY.Power", energy_path="ENERGY.Nope")
    assert parse("t", doc, missing) == Reading(954.0)
    assert parse("t", b"20.58", ParserOptions()) == Reading(20.58)
    assert parse("t", b"-3", ParserOptions()) == Reading(-3.0)
    nested = b'{"params":{"switch:0":{"apower":11.5}}}'
    assert parse("t", nested, ParserOptions(power_path="params.switch:0.apower")) == Reading(11.5)


# -- hostile input: nesting, sizes and numbers no plug sends ----------------------------------

_PLACES: list[Callable[[Any], Any]] = [
    # where each family looks, so the nesting is reached by the code that reads it
    lambda deep: {"apower": deep},
    lambda deep: {"aenergy": deep},
    lambda deep: {"method": "NotifyStatus", "params": {"ts": 1.0, "switch:0": deep}},
    lambda deep: {"method": "NotifyStatus", "params": {"pm1:0": {"apower": deep}}},
    lambda deep: {"result": {"switch:0": deep}},
    lambda deep: {"ENERGY": deep},
    lambda deep: {"ENERGY": {"Power": deep}},
    lambda deep: {"StatusSNS": {"ENERGY": deep}},
    lambda deep: {"ANALOG": {"CTEnergy1": deep}},
    lambda deep: {"meters": [deep]},
    lambda deep: {"power": deep},
    lambda deep: deep,
]


def _nested(depth: int, kind: str) -> bytes:
    if kind == "list":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("depth", [64, 1000, 5000, 60_000])
@pytest.mark.parametrize("kind", ["list", "object"])
@pytest.mark.parametrize("parser_type", sorted(PARSERS))
def test_deep_nesting_is_refused_or_read_never_raised(
    parser_type: str, kind: str, depth: int
) -> None:
    """A ~2 KB payload nested 1000 deep once crashed the fast decoder with RecursionError."""
    marker = b"123456789"
    for place in _PLACES:
        payload = orjson.dumps(place(marker.decode())).replace(b'"123456789"', _nested(depth, kind))
        for topic in TOPICS[parser_type]:
            options = ParserOptions(power_path="power")
            try:
                result = PARSERS[parser_type].parse(topic, payload, options)
            except ParseError:
                continue
            _check(result)


@pytest.mark.parametrize(
    "number", [b"1e308", b"-1e308", b"18446744073709551615", b"1" + b"0" * 400, b"-0", b"1e-320"]
)
@pytest.mark.parametrize("parser_type", sorted(PARSERS))
def test_huge_and_odd_numbers_are_numbers_or_errors(parser_type: str, number: bytes) -> None:
    for place in _PLACES:
        payload = orjson.dumps(place("X")).replace(b'"X"', number)
        for topic in TOPICS[parser_type]:
            try:
                result = PARSERS[parser_type].parse(topic, payload, ParserOptions())
            except ParseError:
                continue
            _check(result)
        try:  # bare text payloads (Gen1, generic)
            result = PARSERS[parser_type].parse(TOPICS[parser_type][0], number, ParserOptions())
        except ParseError:
            continue
        _check(result)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1661517385.44, 1661517385.44),
        (1.61, 1.61),  # Shelly before NTP: seconds since boot, still a clock
        (1526991820, 1526991820.0),
        ("2018-05-22T12:23:40", 1526991820.0),  # Tasmota local time, read as UTC
        ("2018-05-22T14:23:40+02:00", 1526991820.0),  # a zone is what it says
        ("2018-05-22T12:23:40.250", 1526991820.25),
        ("", None),
        ("2018-13-22T12:23:40", None),
        ("yesterday at noon", None),
        (float("inf"), None),
    ],
)
def test_device_seconds(value: float | str, seconds: float | None) -> None:
    assert device_seconds(value) == seconds


@pytest.mark.parametrize(
    ("parser_type", "topic", "payload", "options"),
    [
        ("tasmota", "tele/t/SENSOR", b'{"ENERGY":{"Power":5,"Total":1.8e305}}', {}),
        ("tasmota", "tele/t/SENSOR", b'{"ANALOG":{"CTEnergy1":{"Power":5,"Energy":1.8e305}}}', {}),
        ("generic", "g/p", b'{"p":5,"e":1.8e305}',
         {"power_path": "p", "energy_path": "e", "energy_unit": "kWh"}),
    ],
)  # fmt: skip
def test_a_counter_that_overflows_in_wh_is_an_error(
    parser_type: str, topic: str, payload: bytes, options: dict[str, Any]
) -> None:
    """Found by the fuzz: a kWh counter near the float limit became infinite Wh."""
    with pytest.raises(ParseError, match="out of range"):
        PARSERS[parser_type].parse(topic, payload, ParserOptions(**options))
