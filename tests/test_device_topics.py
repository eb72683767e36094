"""A device entry whose topic the broker would refuse is rejected alone; the others run."""

from __future__ import annotations

import pytest

from iot_bridge.devices import device_set_from_json


def entry(device_id: str, topic: str, parser_type: str = "generic") -> dict[str, object]:
    return {"device_id": device_id, "mqtt_topic": topic, "parser_type": parser_type}


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("a/#/b", "'#' that is not the whole last level"),
        ("a/\0/b", "NUL"),
        ("#", "matches every topic"),
        ("$share/g/a/b", "shared subscription"),
        ("$SYS/broker/load", "reserved for the broker"),
        ("x" * 70_000, "70000 bytes long"),
        ("plug+/power", "'+' that is not a whole level"),
    ],
)
def test_a_bad_topic_rejects_only_its_device(topic: str, reason: str) -> None:
    devices = device_set_from_json(
        {"devices": [entry("good", "shop/saw/power"), entry("bad", topic)]}
    )
    assert [d.device_id for d in devices.devices] == ["good"]
    (error,) = devices.errors
    assert error.startswith("device 'bad': mqtt_topic ")
    assert reason in error
    assert len(error) < 300  # a 70 000-byte topic is not repeated in the log


def test_a_derived_subscription_is_checked_too() -> None:
    """Shelly Gen2 adds <prefix>/status/em1data:N to an em1:N topic: longer than the limit."""
    prefix = "p" * 65_520
    assert len(f"{prefix}/status/em1:0") <= 65_535
    devices = device_set_from_json(
        {"devices": [entry("gen2", f"{prefix}/status/em1:0", "shelly_gen2")]}
    )
    assert devices.devices == ()
    assert "bytes long" in devices.errors[0]


def test_wildcards_a_device_may_use() -> None:
    devices = device_set_from_json(
        {"devices": [entry("meter", "shop/+/power"), entry("all", "site/#")]}
    )
    assert [d.device_id for d in devices.devices] == ["meter", "all"]
