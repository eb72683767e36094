from odoo.exceptions import UserError
from odoo.tests import tagged

from .test_tuning import TuningCase


@tagged("post_install", "-at_install", "open_workshop_mqtt_tuning")
class TestGerman(TuningCase):
    """i18n/de.po loads (the chart's own strings are checked by the tour's German run)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["res.lang"]._activate_lang("de_DE")
        cls.env["ir.module.module"]._load_module_terms(["open_workshop_mqtt_tuning"], ["de_DE"])
        cls.de = cls.env(context={"lang": "de_DE"})

    def test_field_and_message(self):
        Field = self.de["ir.model.fields"]
        self.assertEqual(Field._get("ows.iot.device", "tuning_replay_entry").field_description,
                         "Geräteeintrag für iot-bridge replay")
        self.forward([300.0] * 60)
        with self.assertRaisesRegex(UserError, "Schwellenvorschlag"):
            self.device.with_env(self.de).action_apply_tuning_suggestion()
