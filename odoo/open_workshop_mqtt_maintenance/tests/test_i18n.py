from odoo.tests import tagged

from .common import MaintenanceCase


@tagged("post_install", "-at_install", "open_workshop_mqtt_maintenance")
class TestGerman(MaintenanceCase):
    """i18n/de.po loads: the requests the counter opens are German for German users."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["res.lang"]._activate_lang("de_DE")
        cls.env["ir.module.module"]._load_module_terms(
            ["open_workshop_mqtt_maintenance"], ["de_DE"])
        cls.de = cls.env(context={"lang": "de_DE"})

    def test_fields(self):
        Field = self.de["ir.model.fields"]
        self.assertEqual(
            Field._get("maintenance.equipment", "ows_service_interval_h").field_description,
            "Wartung alle (Arbeitsstunden)")

    def test_request_in_the_companys_language(self):
        self.equipment.company_id.partner_id.lang = "de_DE"
        self.work(11.0)  # the bridge's request has no language of its own
        self.assertEqual(self.requests().name, "Wartung nach 10 Arbeitsstunden: CNC mill")
