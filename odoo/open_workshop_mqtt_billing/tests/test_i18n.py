from odoo.tests import tagged

from .common import PERIOD, BillingCase


@tagged("post_install", "-at_install", "open_workshop_mqtt_billing")
class TestGerman(BillingCase):
    """i18n/de.po loads: the invoice lines speak German too."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["res.lang"]._activate_lang("de_DE")
        cls.env["ir.module.module"]._load_module_terms(["open_workshop_mqtt_billing"], ["de_DE"])
        cls.de = cls.env(context={"lang": "de_DE"})

    def test_fields_and_menus(self):
        Field = self.de["ir.model.fields"]
        self.assertEqual(Field._get("ows.iot.device", "billing_minimum").field_description,
                         "Mindestbetrag")
        self.assertEqual(self.de.ref("open_workshop_mqtt_billing.menu_invoice_sessions").name,
                         "Sitzungen abrechnen")

    def test_invoice_in_the_members_language(self):
        self.alice.lang = "de_DE"
        self.device.billing_minimum = 10.0
        self.session_done(self.device, self.alice, 0, working_s=300)
        invoices, _skipped = self.Invoicer.invoice_period(*PERIOD)
        names = invoices.invoice_line_ids.mapped("name")
        self.assertTrue(any("Laser (1 Sitzung, je Arbeitsstunde)" in n for n in names), names)
        self.assertTrue(any("Mindestbetrag von 10.00" in n for n in names), names)
