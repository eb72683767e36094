# Seeds two bridges with a device each for the contract suite (ours paired with a badge
# reader, which needs open_workshop_mqtt_badge installed); run through
#   odoo-bin shell -d DB --no-http < odoo/seed_contract.py
# It prints CONTRACT_* assignments (tokens in clear: test database only) on stdout.
# `env` is provided by odoo-bin shell.
import uuid

suffix = uuid.uuid4().hex[:8]
Bridge = env["ows.iot.bridge"]  # noqa: F821
Device = env["ows.iot.device"]  # noqa: F821
ours = Bridge.create({"name": f"contract-{suffix}", "mqtt_broker": "mqtt://127.0.0.1:1883"})
theirs = Bridge.create({"name": f"foreign-{suffix}", "mqtt_broker": "mqtt://127.0.0.2:1883"})
device = Device.create({
    "bridge_id": ours.id,
    "device_id": f"shellypmminig3-{suffix}",
    "machine_name": "Contract Machine",
    "mqtt_topic": f"contract-{suffix}/status/pm1:0",
    "parser_type": "shelly_pm_mini_g3",
    "parser_channel": "0",
})
foreign = Device.create({
    "bridge_id": theirs.id,
    "device_id": f"shellyplus-{suffix}",
    "machine_name": "Foreign Machine",
    "mqtt_topic": f"foreign-{suffix}/status/switch:0",
    "parser_type": "shelly_gen2",
})
if "badge_reader_topic" in Device._fields:  # open_workshop_mqtt_badge: a Tasmota reader
    device.badge_reader_topic = f"contract-{suffix}/reader/SENSOR"
token = ours._generate_token()
foreign_token = theirs._generate_token()
env.cr.commit()  # noqa: F821
print(f"CONTRACT_ODOO_TOKEN={token}")
print(f"CONTRACT_DEVICE_ID={device.device_id}")
print(f"CONTRACT_FOREIGN_DEVICE_ID={foreign.device_id}")
print(f"CONTRACT_FOREIGN_TOKEN={foreign_token}")
