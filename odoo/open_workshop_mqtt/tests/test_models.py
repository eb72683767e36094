from psycopg2 import IntegrityError

from odoo.exceptions import AccessError, ValidationError
from odoo.tests import new_test_user, tagged
from odoo.tools import mute_logger

from ..models.iot_bridge import hash_token
from .common import IotCase


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestDeviceConstraints(IotCase):

    def _create(self, **overrides):
        vals = {
            "bridge_id": self.bridge.id,
            "device_id": "dev-constraint",
            "machine_name": "M",
            "mqtt_topic": "m/status/pm1:0",
        }
        vals.update(overrides)
        return self.Device.create(vals)

    def assert_refused_on_create(self, **overrides):
        """SQL constraints refuse at INSERT (IntegrityError), Python ones after it."""
        with mute_logger("odoo.sql_db"):
            try:
                with self.cr.savepoint():
                    self._create(**overrides)
            except (IntegrityError, ValidationError):
                return
        self.fail(f"device with {overrides} was accepted")

    def test_thresholds_on_create(self):
        self.assert_refused_on_create(standby_threshold_w=-1)
        self.assert_refused_on_create(standby_threshold_w=100, working_threshold_w=100)
        self.assert_refused_on_create(standby_threshold_w=150, working_threshold_w=100)
        self._create(standby_threshold_w=0, working_threshold_w=0.5)

    def test_timings_on_create(self):
        self.assert_refused_on_create(start_debounce_s=-0.1)
        self.assert_refused_on_create(stop_debounce_s=-1)
        self.assert_refused_on_create(message_timeout_s=0)
        self.assert_refused_on_create(message_timeout_s=-5)
        self._create(start_debounce_s=0, stop_debounce_s=0, message_timeout_s=0.1)

    def test_constraints_on_write(self):
        with self.assertRaises(ValidationError):
            self.device.write({"working_threshold_w": 10})  # standby 20 >= working 10
        with self.assertRaises(ValidationError):
            self.device.write({"stop_debounce_s": -1})
        with self.assertRaises(ValidationError):
            self.device.write({"message_timeout_s": 0})
        with self.assertRaises(ValidationError):
            self.device.write({"parser_channel": "one"})
        with self.assertRaises(ValidationError):
            self.device.write({"mqtt_topic": "shelly/+/status"})

    def test_device_id_unique(self):
        self.assert_refused_on_create(device_id=self.device.device_id)
        # also across bridges
        self.assert_refused_on_create(device_id=self.device.device_id,
                                      bridge_id=self.other_bridge.id)


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestConfig(IotCase):

    def test_config_payload(self):
        self.device.write({"parser_channel": "1", "parser_energy_unit": "kWh",
                           "working_threshold_w": 100.5})
        payload = self.bridge._config_payload()
        self.assertIsInstance(payload["config_version"], str)
        self.assertEqual(payload["devices"], [{
            "device_id": "shellypmminig3-aaaa",
            "mqtt_topic": "shaperorigin/status/pm1:0",
            "parser_type": "shelly_pm_mini_g3",
            "machine_name": "Shaper Origin",
            "session_config": {
                "strategy": "power_threshold",
                "standby_threshold_w": 20,
                "working_threshold_w": 100.5,
                "start_debounce_s": 3,
                "stop_debounce_s": 15,
                "message_timeout_s": 20,
            },
            "parser_config": {"channel": 1, "energy_unit": "kWh"},
        }])

    def test_no_parser_config_when_unset(self):
        self.assertNotIn("parser_config", self.bridge._config_payload()["devices"][0])

    def test_config_version_changes_with_devices(self):
        def version(bridge):
            return bridge._config_payload()["config_version"]

        v0, other0 = version(self.bridge), version(self.other_bridge)
        self.device.write({"stop_debounce_s": 20})
        v1 = version(self.bridge)
        self.assertNotEqual(v0, v1)
        self.assertEqual(version(self.other_bridge), other0)
        new = self.Device.create({"bridge_id": self.bridge.id, "device_id": "d2",
                                  "machine_name": "M2", "mqtt_topic": "m2/x"})
        v2 = version(self.bridge)
        self.assertNotEqual(v1, v2)
        new.active = False
        v3 = version(self.bridge)
        self.assertNotEqual(v2, v3)
        self.assertEqual([d["device_id"] for d in self.bridge._config_payload()["devices"]],
                         ["shellypmminig3-aaaa"])
        new.write({"bridge_id": self.other_bridge.id})  # moving changes both bridges
        self.assertNotEqual(version(self.bridge), v3)
        self.assertNotEqual(version(self.other_bridge), other0)
        v4 = version(self.bridge)
        self.assertEqual(version(self.bridge), v4)  # stable without changes


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestTokens(IotCase):

    def test_token_stored_hashed(self):
        self.assertTrue(self.token)
        self.assertGreaterEqual(len(self.token), 40)
        self.env.cr.execute("SELECT token_hash, token_prefix FROM ows_iot_bridge WHERE id = %s",
                            (self.bridge.id,))
        stored_hash, prefix = self.env.cr.fetchone()
        self.assertEqual(stored_hash, hash_token(self.token))
        self.assertNotIn(self.token, stored_hash)
        self.assertTrue(self.token.startswith(prefix))
        self.assertLess(len(prefix), len(self.token) // 2)

    def test_authenticate(self):
        self.assertEqual(self.Bridge._authenticate_token(self.token), self.bridge)
        self.assertEqual(self.Bridge._authenticate_token(self.other_token), self.other_bridge)
        self.assertFalse(self.Bridge._authenticate_token("nope"))
        self.assertFalse(self.Bridge._authenticate_token(""))
        self.assertFalse(self.Bridge._authenticate_token(None))
        self.assertFalse(self.Bridge._authenticate_token(hash_token(self.token)))

    def test_rotation(self):
        new_token = self.bridge._generate_token()
        self.assertNotEqual(new_token, self.token)
        self.assertFalse(self.Bridge._authenticate_token(self.token))
        self.assertEqual(self.Bridge._authenticate_token(new_token), self.bridge)

    def test_revoke_and_archive(self):
        self.bridge.action_revoke_token()
        self.assertFalse(self.bridge.has_token)
        self.assertFalse(self.Bridge._authenticate_token(self.token))
        token = self.bridge._generate_token()
        self.bridge.active = False
        self.assertFalse(self.Bridge._authenticate_token(token))

    def test_wizard_shows_token_once(self):
        action = self.bridge.action_generate_token()
        wizard = self.env["ows.iot.bridge.token.wizard"].browse(action["res_id"])
        self.assertTrue(wizard.rotated)
        self.assertEqual(self.Bridge._authenticate_token(wizard.token), self.bridge)
        self.assertFalse(self.Bridge._authenticate_token(self.token))
        wizard.action_done()
        self.assertFalse(wizard.token)
        self.assertTrue(self.bridge.has_token)


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestAccess(IotCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.user = new_test_user(cls.env, "iot_user", groups="open_workshop_mqtt.group_iot_user")
        cls.manager = new_test_user(
            cls.env, "iot_manager", groups="open_workshop_mqtt.group_iot_manager"
        )
        cls.stranger = new_test_user(cls.env, "iot_stranger", groups="base.group_user")

    def test_user_reads_only(self):
        device = self.device.with_user(self.user)
        self.assertEqual(device.machine_name, "Shaper Origin")
        self.assertEqual(device.state, "idle")
        with self.assertRaises(AccessError):
            device.write({"machine_name": "x"})
        with self.assertRaises(AccessError):
            self.bridge.with_user(self.user).action_generate_token()
        with self.assertRaises(AccessError):
            self.bridge.with_user(self.user).token_hash  # noqa: B018

    def test_manager_configures(self):
        self.device.with_user(self.manager).write({"machine_name": "Shaper 2"})
        action = self.bridge.with_user(self.manager).action_generate_token()
        wizard = self.env["ows.iot.bridge.token.wizard"].with_user(self.manager).browse(
            action["res_id"])
        self.assertTrue(wizard.token)
        # the token shown once is visible to its creator only
        other_manager = new_test_user(
            self.env, "iot_manager2", groups="open_workshop_mqtt.group_iot_manager"
        )
        self.assertFalse(
            self.env["ows.iot.bridge.token.wizard"].with_user(other_manager).search(
                [("id", "=", wizard.id)])
        )

    def test_stranger_sees_nothing(self):
        with self.assertRaises(AccessError):
            self.Device.with_user(self.stranger).search([])

    def test_multi_company_rule(self):
        company2 = self.env["res.company"].create({"name": "Other Workshop"})
        foreign = self.Bridge.create({"name": "Far bridge", "company_id": company2.id})
        self.assertNotIn(foreign, self.Bridge.with_user(self.manager).search([]))
        self.assertIn(self.bridge, self.Bridge.with_user(self.manager).search([]))


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestViews(IotCase):

    def test_views_render_for_user(self):
        user = new_test_user(self.env, "iot_viewer", groups="open_workshop_mqtt.group_iot_user")
        for model, view_types in (
            ("ows.iot.device", ["kanban", "list", "form", "search"]),
            ("ows.machine.session", ["list", "pivot", "graph", "form", "search"]),
            ("ows.iot.event", ["list", "form", "search"]),
            ("ows.iot.bridge", ["list", "form", "search"]),
            ("ows.iot.discovered.plug", ["list", "form", "search"]),
        ):
            views = self.env[model].with_user(user).get_views([(False, v) for v in view_types])
            self.assertEqual(set(views["views"]), set(view_types), model)

    def test_pivot_measures(self):
        arch = self.Session.get_views([(False, "pivot")])["views"]["pivot"]["arch"]
        # rows are the machine record (a rename does not split its history), measures are
        # shown in the addon's units (17 s, 1.55 Wh), not as 00:00 and 0.00 kWh
        self.assertIn('<field name="device_id" type="row"/>', arch)
        self.assertIn('name="duration_s" string="Duration" type="measure" widget="ows_duration"', arch)
        self.assertIn('name="energy_wh" string="Energy" type="measure" widget="ows_energy"', arch)
        self.assertIn('interval="month"', arch)

    def test_menus(self):
        root = self.env.ref("open_workshop_mqtt.menu_workshop_iot_root")
        self.assertEqual(root.name, "Workshop IoT")
        names = set(self.env["ir.ui.menu"].search([("id", "child_of", root.id)]).mapped("name"))
        self.assertTrue({"Machines", "Sessions", "Bridges", "Events"} <= names)
