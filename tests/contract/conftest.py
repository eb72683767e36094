"""Fixtures of the contract suite.

By default the suite runs against a ``FakeOdoo``. With ``CONTRACT_ODOO_URL``,
``CONTRACT_ODOO_TOKEN``, ``CONTRACT_DEVICE_ID`` (a device of that token's bridge),
``CONTRACT_FOREIGN_DEVICE_ID`` (a device of another bridge) and ``CONTRACT_FOREIGN_TOKEN`` (that
other bridge's token) set, the same tests run against that server instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.contract._client import Api, Target
from tests.support.fake_odoo import FakeOdoo

ENV_VARS = (
    "CONTRACT_ODOO_URL",
    "CONTRACT_ODOO_TOKEN",
    "CONTRACT_DEVICE_ID",
    "CONTRACT_FOREIGN_DEVICE_ID",
    "CONTRACT_FOREIGN_TOKEN",
)

FAKE_DEVICE_ID = "shellypmminig3-contract0001"
FAKE_FOREIGN_DEVICE_ID = "shellypmminig3-foreign0001"
FAKE_FOREIGN_TOKEN = "contract-foreign-token"


def _fake_devices(device_id: str = FAKE_DEVICE_ID) -> list[dict[str, object]]:
    return [
        {
            "device_id": device_id,
            "mqtt_topic": f"{device_id}/status/pm1:0",
            "parser_type": "shelly_pm_mini_g3",
            "machine_name": "Contract Machine",
            "session_config": {
                "strategy": "power_threshold",
                "standby_threshold_w": 20,
                "working_threshold_w": 100,
                "start_debounce_s": 3,
                "stop_debounce_s": 15,
                "message_timeout_s": 20,
            },
            "badge_reader": {"mqtt_topic": "contract/reader/SENSOR", "format": "tasmota"},
        }
    ]


@pytest.fixture(scope="session")
def target() -> Iterator[Target]:
    values = {name: os.environ.get(name, "") for name in ENV_VARS}
    if any(values.values()):
        missing = [name for name, value in values.items() if not value]
        if missing:
            pytest.fail("contract suite against a real server needs " + ", ".join(missing))
        yield Target(
            url=values["CONTRACT_ODOO_URL"].rstrip("/"),
            token=values["CONTRACT_ODOO_TOKEN"],
            device_id=values["CONTRACT_DEVICE_ID"],
            foreign_device_id=values["CONTRACT_FOREIGN_DEVICE_ID"],
            is_fake=False,
            foreign_token=values["CONTRACT_FOREIGN_TOKEN"],
        )
        return
    with FakeOdoo(
        token="contract-token",
        devices=_fake_devices(),
        other_bridges={FAKE_FOREIGN_TOKEN: _fake_devices(FAKE_FOREIGN_DEVICE_ID)},
    ) as fake:
        yield Target(
            url=fake.url,
            token=fake.token,
            device_id=FAKE_DEVICE_ID,
            foreign_device_id=FAKE_FOREIGN_DEVICE_ID,
            is_fake=True,
            foreign_token=FAKE_FOREIGN_TOKEN,
        )


@pytest.fixture
def api(target: Target) -> Api:
    return Api(target)
