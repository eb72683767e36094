"""Badge readers (``parsers/badge.py``): what each message scans, and UID normalisation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iot_bridge.errors import ParseError
from iot_bridge.parsers.badge import ReaderConfig, Scan, normalise_uid, parse_scan

TASMOTA = ReaderConfig("tele/reader/SENSOR", "tasmota")
GENERIC = ReaderConfig("door/scan", "generic", "card.uid")


@pytest.mark.parametrize(
    ("raw", "uid"),
    [
        ("04:a2:3b:1c", "04A23B1C"),
        ("04-A2-3B-1C", "04A23B1C"),
        (" 94d8fc5f ", "94D8FC5F"),
        ("0043202D", "0043202D"),
        ("member 17", "MEMBER 17"),  # not hex pairs: as read, upper-cased
    ],
)
def test_uids_are_normalised_as_odoo_does(raw: str, uid: str) -> None:
    assert normalise_uid(raw) == uid


@pytest.mark.parametrize("raw", ["", "   ", "A" * 129])
def test_empty_or_overlong_uids_are_errors(raw: str) -> None:
    with pytest.raises(ParseError, match="badge UID"):
        normalise_uid(raw)


def test_tasmota_readers_name_themselves() -> None:
    scan = parse_scan(b'{"Time":"2019-01-02T22:07:10","PN532":{"UID":"94D8FC5F"}}', TASMOTA)
    assert scan == Scan("94D8FC5F", "PN532", "2019-01-02T22:07:10")
    rc = parse_scan(b'{"RC522":{"UID":"BA839D07","Data":"","Type":"MIFARE 1KB"}}', TASMOTA)
    assert rc == Scan("BA839D07", "RC522", None)


def test_a_reader_message_without_a_card_is_no_scan_but_keeps_its_time() -> None:
    scan = parse_scan(b'{"Time":"2020-10-13T19:28:40","Uptime":"0T00:00:50"}', TASMOTA)
    assert scan == Scan(None, None, "2020-10-13T19:28:40")
    echo = parse_scan(b'{"PN532":{"COMMAND":"S"}}', TASMOTA)
    assert echo.badge_uid is None


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b'{"PN532":"94D8FC5F"}', "PN532 must be a JSON object"),
        (b'{"PN532":{"UID":1234}}', "PN532.UID must be a string"),
        (b"[1]", "must be a JSON object"),
        (b"{broken", "invalid JSON"),
    ],
)
def test_malformed_tasmota_scans_are_errors(payload: bytes, error: str) -> None:
    with pytest.raises(ParseError, match=error):
        parse_scan(payload, TASMOTA)


def test_generic_readers_read_the_uid_at_its_path() -> None:
    assert parse_scan(b'{"card":{"uid":"04:a2:3b:1c"}}', GENERIC).badge_uid == "04A23B1C"
    assert parse_scan(b'{"card":{"uid":12345}}', GENERIC).badge_uid == "12345"
    assert parse_scan(b'{"other":1}', GENERIC).badge_uid is None
    assert parse_scan(b'"0043202D"', GENERIC).badge_uid == "0043202D"
    with pytest.raises(ParseError, match="must be a string"):
        parse_scan(b'{"card":{"uid":[1]}}', GENERIC)


# -- real reader payloads (tests/fixtures/payloads, "badge" in expected_readings.json) ---------

FIXTURES = Path(__file__).parent / "fixtures"
EXPECTED: dict[str, Any] = json.loads((FIXTURES / "expected_readings.json").read_text())


def _reader_cases() -> list[Any]:
    out = []
    for name, cases in EXPECTED.items():
        for i, case in enumerate(cases if not name.startswith("_") else []):
            if "badge" in case:
                out.append(pytest.param(name, case, id=f"{name}#{i}"))
    return out


def _payload(name: str, case: dict[str, Any]) -> bytes:
    raw = (FIXTURES / "payloads" / name).read_bytes()
    doc = json.loads(raw) if raw.strip().startswith(b"{") else None
    if isinstance(doc, dict) and "_envelope" in doc:
        return str(doc["payload_text"]).encode()
    return raw


@pytest.mark.parametrize(("name", "case"), _reader_cases())
def test_real_reader_payloads_scan_as_expected(name: str, case: dict[str, Any]) -> None:
    expect = case["badge"]
    payload = _payload(name, case)
    if expect is None:  # not a scan: either nothing, or a message the reader broke
        try:
            scan = parse_scan(payload, TASMOTA if "tasmota" in name else GENERIC)
        except ParseError:
            return
        assert scan.badge_uid is None
        return
    reader = ReaderConfig(case["topic"], expect["format"], expect.get("uid_path"))
    scan = parse_scan(payload, reader)
    assert scan.badge_uid == expect["badge_uid"]
    assert scan.reader == expect["reader"]


def test_there_are_real_payloads_for_every_reader_model() -> None:
    models = {c["badge"]["reader"] for _, cases in EXPECTED.items() if isinstance(cases, list)
              for c in cases if isinstance(c, dict) and c.get("badge")}  # fmt: skip
    assert {"PN532", "RDM6300", "RC522", None} <= models
