from odoo.exceptions import ValidationError
from odoo.tests import tagged

from .common import IotCase


@tagged("post_install", "-at_install")
class TestGerman(IotCase):
    """i18n/de.po loads: fields, selections, menus, views, server messages and the board's
    own (JavaScript) strings in German."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["res.lang"]._activate_lang("de_DE")
        cls.env["ir.module.module"]._load_module_terms(["open_workshop_mqtt"], ["de_DE"])
        cls.de = cls.env(context={"lang": "de_DE"})

    def test_fields_menus_selections_views(self):
        Field = self.de["ir.model.fields"]
        self.assertEqual(Field._get("ows.iot.device", "machine_name").field_description,
                         "Maschinenname")
        self.assertEqual(self.de.ref("open_workshop_mqtt.menu_workshop_iot_root").name,
                         "Werkstatt-IoT")
        self.assertEqual(self.de.ref("open_workshop_mqtt.menu_machines").name, "Maschinen")
        states = dict(self.de["ows.iot.device"]._fields["board_state"]
                      ._description_selection(self.de))
        self.assertEqual(states["unknown"], "Unbekannt")
        arch = self.de["ows.iot.bridge"].get_view(
            self.de.ref("open_workshop_mqtt.view_iot_bridge_form").id)["arch"]
        self.assertIn("Token erzeugen", arch)

    def test_messages(self):
        with self.assertRaisesRegex(ValidationError, "Funkstille"):
            self.de["res.config.settings"].create({"ows_iot_bridge_silence_minutes": 0})

    def test_board_strings_reach_the_web_client(self):
        translations, _params = self.env["ir.http"].get_translations_for_webclient(
            ["open_workshop_mqtt"], "de_DE")
        messages = {m["id"]: m["string"] for m in translations["open_workshop_mqtt"]["messages"]}
        self.assertEqual(messages["Plug last seen"], "Letzte Meldung der Steckdose:")
        self.assertEqual(messages["Idle"], "Inaktiv")
