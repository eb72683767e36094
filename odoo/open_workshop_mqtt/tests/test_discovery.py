from datetime import timedelta

from odoo.exceptions import AccessError
from odoo.tests import Form, new_test_user, tagged

from .common import T0, StatusCase, discovered, make_status, ts

GEN1 = "shellies/shelly1/relay/0/power"
GEN2 = "shellies/plus1pm/status/switch:0"
TASMOTA = "tele/tasmota_9CF9D1/SENSOR"


def gen2(at=T0):
    # from shellies/plus1pm/online = "true" (shared payload plus1pm_online_true.json)
    return discovered(GEN2, at=at, device_id="plus1pm", model=None, parser_type="shelly_gen2",
                      source="shelly_gen2_online", details={"online_topic": "shellies/plus1pm/online"})


def tasmota(at=T0):
    # from tele/tasmota_9CF9D1/LWT = "Online" (shared payload lwt_online.json)
    return discovered(TASMOTA, at=at, device_id="tasmota_9CF9D1", model=None,
                      parser_type="tasmota", source="tasmota_lwt", details={"lwt": "Online"})


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestDiscovery(StatusCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Plug = cls.env["ows.iot.discovered.plug"]

    def listed(self, bridge=None):
        """What "Discovered Plugs" lists (its default filter: state new)."""
        return self.Plug.search([("bridge_id", "=", (bridge or self.bridge).id),
                                 ("state", "=", "new")])

    def test_merged_per_bridge_and_topic(self):
        self.status(make_status(discovered_plugs=[discovered(GEN1), gen2(), tasmota()]))
        plugs = self.listed()
        self.assertEqual(set(plugs.mapped("topic")), {GEN1, GEN2, TASMOTA})
        plug = plugs.filtered(lambda p: p.topic == GEN1)
        self.assertEqual((plug.device_id, plug.device_model, plug.parser_type, plug.source),
                         ("shelly1", "SHSW-1", "shelly_gen1", "shelly_gen1_announce"))
        self.assertEqual(plug.source_label, "Shelly Gen1 announcement")
        self.assertIn('"fw_ver": "20220809-123240/v1.12-g99f7e0b"', plug.details_text)
        later = T0 + timedelta(minutes=10)
        entry = discovered(GEN1, at=later, first_seen=ts(later - timedelta(minutes=1)),
                           source="something_new")
        self.status(make_status(discovered_plugs=[entry], at=later), now=later)
        self.assertEqual(len(self.listed()), 3)  # absent from a status is not gone
        self.assertEqual(plug.first_seen, T0 - timedelta(hours=1))  # the earliest stays
        self.assertEqual(plug.last_seen, later - timedelta(seconds=5))
        self.assertEqual(plug.source_label, "something_new")
        # another bridge's plug on the same topic is another entry
        self.status(make_status(discovered_plugs=[discovered(GEN1)]), bridge=self.other_bridge)
        self.assertEqual(len(self.listed(self.other_bridge)), 1)

    def test_unknown_parser_suggestion_is_no_suggestion(self):
        entry = discovered(GEN1, parser_type="a_parser_from_the_future")
        self.status(make_status(discovered_plugs=[entry]))
        self.assertFalse(self.listed().parser_type)

    def test_configured_plugs_are_not_discoveries(self):
        by_topic = discovered(self.device.mqtt_topic, device_id="something-else")
        by_id = discovered("x/y", device_id=self.device.device_id)
        self.status(make_status(discovered_plugs=[by_topic, by_id]))
        self.assertFalse(self.listed())

    def test_dismissed_stays_dismissed(self):
        self.status(make_status(discovered_plugs=[discovered(GEN1)]))
        plug = self.listed()
        plug.action_dismiss()
        self.assertFalse(self.listed())
        later = T0 + timedelta(minutes=1)
        self.status(make_status(discovered_plugs=[discovered(GEN1, at=later)], at=later),
                    now=later)
        self.assertEqual(plug.state, "dismissed")
        self.assertEqual(plug.last_seen, later - timedelta(seconds=5))
        plug.action_restore()
        self.assertEqual(self.listed(), plug)

    def test_adopt_creates_the_machine_prefilled(self):
        self.status(make_status(discovered_plugs=[discovered(GEN1)]))
        plug = self.listed()
        version = self.bridge.config_version
        action = plug.action_adopt()
        self.assertEqual(action["res_model"], "ows.iot.device")
        form = Form(self.Device.with_context(**action["context"]))
        self.assertEqual(form.device_id, "shelly1")
        self.assertEqual(form.mqtt_topic, GEN1)
        self.assertEqual(form.parser_type, "shelly_gen1")
        self.assertEqual(form.bridge_id, self.bridge)
        self.assertFalse(form.machine_name)  # the admin names it
        self.assertEqual(form.working_threshold_w, 100)  # and checks the thresholds
        form.machine_name = "Band Saw"
        device = form.save()
        self.assertEqual(plug.state, "adopted")
        self.assertEqual(plug.adopted_device_ref, device)
        self.assertFalse(self.listed())
        # the bridge learns it with its next heartbeat: the answer's config_version moved on
        later = T0 + timedelta(seconds=30)
        _outcome, body = self.status(make_status(at=later), now=later)
        self.assertNotEqual(body["config_version"], str(version))
        self.assertIn(device.device_id,
                      [d["device_id"] for d in self.bridge._config_payload()["devices"]])
        # and reports it no more as a discovery; if it still does, it is not listed again
        self.status(make_status(discovered_plugs=[discovered(GEN1, at=later)], at=later),
                    now=later + timedelta(seconds=1))
        self.assertFalse(self.listed())

    def test_configured_by_hand_leaves_the_list(self):
        self.status(make_status(discovered_plugs=[gen2(), tasmota()]))
        self.Device.create({"bridge_id": self.bridge.id, "device_id": "plus1pm",
                            "machine_name": "Drill", "mqtt_topic": "drill/status/switch:0",
                            "parser_type": "shelly_gen2"})
        self.assertEqual(self.listed().mapped("topic"), [TASMOTA])
        other = self.Device.create({"bridge_id": self.bridge.id, "device_id": "lathe-2",
                                    "machine_name": "Lathe 2", "mqtt_topic": "x/y/z"})
        other.mqtt_topic = TASMOTA
        self.assertFalse(self.listed())

    def test_deleted_machine_brings_the_plug_back(self):
        self.status(make_status(discovered_plugs=[discovered(GEN1)]))
        plug = self.listed()
        device = self.Device.with_context(**plug.action_adopt()["context"]).create(
            {"machine_name": "Band Saw"})
        device.unlink()
        later = T0 + timedelta(minutes=1)
        self.status(make_status(discovered_plugs=[discovered(GEN1, at=later)], at=later),
                    now=later)
        self.assertEqual(plug.state, "new")

    def test_access(self):
        self.status(make_status(discovered_plugs=[discovered(GEN1)]))
        plug = self.listed()
        user = new_test_user(self.env, "iot_looker", groups="open_workshop_mqtt.group_iot_user")
        self.assertEqual(self.Plug.with_user(user).search([("id", "=", plug.id)]), plug)
        with self.assertRaises(AccessError):
            plug.with_user(user).action_dismiss()
        with self.assertRaises(AccessError):
            plug.with_user(user).action_adopt()
        company2 = self.env["res.company"].create({"name": "Other Workshop"})
        manager2 = new_test_user(self.env, "iot_far_manager",
                                 groups="open_workshop_mqtt.group_iot_manager",
                                 company_id=company2.id, company_ids=[(6, 0, [company2.id])])
        self.assertFalse(self.Plug.with_user(manager2).search([("id", "=", plug.id)]))
