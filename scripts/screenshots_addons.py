"""The business addons' part of ``scripts/screenshots.py``: their seed, scans and screens.

On top of the core's machines (``screenshots.MACHINES``): a member with a badge; the laser
cutter paired with a Tasmota PN532 reader, priced per working hour and linked to a maintenance
equipment whose "every 250 working hours" plan the day's sessions cross; the CNC router paired
with a reader too. Before each laser session the member's badge is scanned (a real PN532
``tele/<t>/SENSOR`` payload from ``tests/fixtures``), before the first CNC session a badge
nobody holds. After the sessions the billing wizard invoices the month so far. The bridge runs
with ``FORWARD_MEASUREMENTS=true``, so the laser's Tuning tab has readings to chart. The plan's
crossing needs at least 35 s of laser work: two ``full_session`` runs at the default interval
of 2 s give about 48.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parents[1]
TASMOTA = REPO / "tests" / "fixtures" / "payloads" / "tasmota"
ADDONS = [
    "open_workshop_mqtt_badge",
    "open_workshop_mqtt_billing",
    "open_workshop_mqtt_maintenance",
    "open_workshop_mqtt_tuning",
]
MEMBER = "Mia Hoffmann"
MEMBER_SCAN = TASMOTA / "pn532_pr4791_tele_sensor.json"  # UID 94D8FC5F: the member's badge
UNKNOWN_SCAN = TASMOTA / "pn532_docs_tele_sensor_7byte_auth.json"  # UID 53BB1F05110001
READERS = {  # machine prefix -> (reader topic, the scans before its sessions, by round)
    "laser": ("tele/tasmota_5A3B2C/SENSOR", [MEMBER_SCAN, MEMBER_SCAN]),
    "cnc": ("tele/tasmota_8E11F0/SENSOR", [UNKNOWN_SCAN]),
}
ENV = {"FORWARD_MEASUREMENTS": "true"}  # the power_measurement events the Tuning tab charts
SEED = """
Device = env["ows.iot.device"]
def machine(prefix):
    return Device.search([("device_id", "=", f"shellypmminig3-{prefix}")])
for prefix, topic in %(readers)r.items():
    machine(prefix).write({"badge_reader_topic": topic, "badge_reader_format": "tasmota"})
member = env["res.partner"].create({
    "name": %(member)r, "email": "mia.hoffmann@example.org", "city": "Hamburg",
})
env["ows.badge"].create({"uid": %(uid)r, "partner_id": member.id})
laser = machine("laser")
product = env["product.product"].create({
    "name": "Laser cutter time", "type": "service", "lst_price": 24.0,
})
laser.write({
    "billing_product_id": product.id, "billing_basis": "working_hour", "billing_rate": 24.0,
    "billing_minimum": 5.0, "billing_rounding": 0.25,
})
equipment = env["maintenance.equipment"].create({
    "name": "Laser cutter", "model": "CO2 60 W", "serial_no": "LC-2019-0417",
    "category_id": env["maintenance.equipment.category"].create({"name": "Workshop machines"}).id,
    "maintenance_team_id": env.ref("maintenance.equipment_team_maintenance").id,
    "technician_user_id": env.ref("base.user_admin").id,
    # 249:59:25 before the bridge: the day's (simulated, short) working time crosses 250 h
    "ows_hours_offset": 249 + 59 / 60 + 25 / 3600, "ows_service_interval_h": 250.0,
})
laser.equipment_id = equipment
env.cr.commit()
"""


class Rpc(Protocol):
    def call(self, model: str, method: str, *args: Any, **kwargs: Any) -> Any: ...


def seed() -> str:
    """The addons' seed, run in ``odoo-bin shell`` after the core's."""
    uid = json.loads(MEMBER_SCAN.read_text())["PN532"]["UID"]
    readers = {prefix: topic for prefix, (topic, _) in READERS.items()}
    return SEED % {"readers": readers, "member": MEMBER, "uid": uid}


def scans(prefix: str, round_no: int) -> list[tuple[str, str]]:
    """The reader message to publish before the machine's session number ``round_no``."""
    topic, payloads = READERS.get(prefix, ("", []))
    if round_no >= len(payloads):
        return []
    return [(topic, payloads[round_no].read_text().strip())]


READY = (
    "the addons' records in Odoo (two sessions with a member, an unknown badge, 50 laser "
    "readings, the maintenance request: it needs --interval 1.5 or more)"
)


def ready(rpc: Rpc) -> bool:
    """Odoo has what the addons' screens show (the invoice comes after, from ``invoice``)."""
    sessions = rpc.call("ows.machine.session", "search_count", [["partner_id", "!=", False]])
    unknown = rpc.call("ows.badge", "search_count", [["partner_id", "=", False]])
    requests = rpc.call("maintenance.request", "search_count", [["ows_service_index", ">", 0]])
    readings = rpc.call(
        "ows.iot.event",
        "search_count",
        [
            ["event_type", "=", "power_measurement"],
            ["device_id.device_id", "=", "shellypmminig3-laser"],
        ],
    )
    return bool(sessions >= 2 and unknown >= 1 and requests >= 1 and readings >= 50)


def invoice(rpc: Rpc) -> int:
    """The billing wizard over the month so far; the id of the member's draft invoice."""
    today = datetime.now(UTC).date()
    wizard = rpc.call(
        "ows.session.invoice.wizard",
        "create",
        {"date_from": today.replace(day=1).isoformat(), "date_to": today.isoformat()},
    )
    rpc.call("ows.session.invoice.wizard", "action_invoice", [wizard])
    invoices = rpc.call("ows.session.invoice.wizard", "read", [wizard], ["invoice_ids"])
    ids: list[int] = invoices[0]["invoice_ids"]
    if len(ids) != 1:
        raise SystemExit(f"screenshots: the billing wizard made {len(ids)} invoices, not 1")
    return ids[0]


def _one(rpc: Rpc, model: str, domain: list[Any]) -> int:
    found: list[int] = rpc.call(model, "search", domain, limit=1)
    if not found:
        raise SystemExit(f"screenshots: no {model} matching {domain}")
    return found[0]


def _tab(name: str) -> str:
    """JavaScript that opens the form's notebook page ``name`` and scrolls to it."""
    return (
        f"document.querySelector('.o_notebook a.nav-link[name={name}]').click();"
        "setTimeout(() => document.querySelector('.o_notebook').scrollIntoView(), 500);"
    )


def shots(rpc: Rpc, action: str) -> list[tuple[str, str, str]]:
    """(path, file, JavaScript run before the shot) of the addons' screens."""
    move = invoice(rpc)
    laser = _one(rpc, "ows.iot.device", [["device_id", "=", "shellypmminig3-laser"]])
    equipment = _one(rpc, "maintenance.equipment", [["name", "=", "Laser cutter"]])
    request = _one(rpc, "maintenance.request", [["equipment_id", "=", equipment]])
    return [
        ("/odoo/action-open_workshop_mqtt.action_machine_session", "badge-sessions.png", ""),
        ("/odoo/action-open_workshop_mqtt_badge.action_badge_unknown", "unknown-badges.png", ""),
        (f"/odoo/action-account.action_move_out_invoice_type/{move}", "billing-invoice.png", ""),
        (
            f"/odoo/action-maintenance.hr_equipment_action/{equipment}",
            "maintenance-equipment.png",
            _tab("ows_working_hours"),
        ),
        (
            f"/odoo/action-maintenance.hr_equipment_request_action/{request}",
            "maintenance-request.png",
            "",
        ),
        (f"/odoo/action-{action}/{laser}", "tuning-chart.png", _tab("tuning")),
    ]
