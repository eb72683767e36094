from odoo.exceptions import ValidationError
from odoo.tests import tagged

from .common import BadgeCase


@tagged("post_install", "-at_install", "open_workshop_mqtt_badge")
class TestGerman(BadgeCase):
    """i18n/de.po loads: fields, selections, menus, views and messages in German."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["res.lang"]._activate_lang("de_DE")
        cls.env["ir.module.module"]._load_module_terms(["open_workshop_mqtt_badge"], ["de_DE"])
        cls.de = cls.env(context={"lang": "de_DE"})

    def test_fields_menus_selections(self):
        Field = self.de["ir.model.fields"]
        self.assertEqual(Field._get("ows.machine.session", "partner_id").field_description,
                         "Mitglied")
        self.assertEqual(self.de.ref("open_workshop_mqtt_badge.menu_badge_unknown").name,
                         "Unbekannte Ausweise")
        states = dict(self.de["ows.badge.scan"]._fields["state"]._description_selection(self.de))
        self.assertEqual(states["unknown"], "Unbekannter Ausweis")
        arch = self.de["ows.badge"].get_view(
            self.de.ref("open_workshop_mqtt_badge.view_badge_list_unknown").id)["arch"]
        self.assertIn("Mitglied zuordnen", arch)

    def test_messages(self):
        with self.assertRaisesRegex(ValidationError, "Ausweisleser"):
            self.device.with_env(self.de).badge_reader_topic = "tele/+/SENSOR"
