from odoo import _, api, fields, models
from odoo.exceptions import ValidationError

BILLING_BASES = [
    ("working_hour", "Per working hour"),
    ("session_hour", "Per session hour"),
    ("kwh", "Per kWh"),
]


class IotDevice(models.Model):
    """A machine's price: one product, one rate per unit of the basis."""

    _inherit = "ows.iot.device"

    billing_product_id = fields.Many2one(
        "product.product", string="Invoiced Product", domain=[("type", "=", "service")],
        ondelete="restrict",
        help="The product on the invoice line (income account and taxes come from it). "
        "Without one the machine's sessions are not invoiced.",
    )
    billing_basis = fields.Selection(
        BILLING_BASES, string="Charged", default="working_hour", required=True,
        help="Working hours: time above the working threshold. Session hours: the whole "
        "session, standby included. kWh: the energy the device measured (sessions whose "
        "energy is unknown are never billed per kWh).",
    )
    billing_currency_id = fields.Many2one(related="company_id.currency_id",
                                          string="Billing Currency")
    billing_rate = fields.Monetary(string="Rate", currency_field="billing_currency_id",
                                   help="Price per unit of the basis (hour or kWh).")
    billing_minimum = fields.Monetary(
        string="Minimum Charge", currency_field="billing_currency_id",
        help="Charged at least per session; the difference appears as its own line.",
    )
    billing_rounding = fields.Float(
        string="Rounding Step", digits=(16, 4),
        help="Each session's quantity is rounded up to a multiple of this (e.g. 0.25 h: every "
        "started quarter hour). 0: no rounding.",
    )

    _sql_constraints = [
        ("billing_not_negative",
         "CHECK(COALESCE(billing_rate, 0) >= 0 AND COALESCE(billing_minimum, 0) >= 0"
         " AND COALESCE(billing_rounding, 0) >= 0)",
         "Rate, minimum charge and rounding step must not be negative."),
    ]

    @api.constrains("billing_rate", "billing_minimum", "billing_rounding")
    def _check_billing(self):
        for device in self:
            if min(device.billing_rate, device.billing_minimum, device.billing_rounding) < 0:
                raise ValidationError(_(
                    "%s: rate, minimum charge and rounding step must not be negative.",
                    device.device_id,
                ))

    @api.onchange("billing_product_id")
    def _onchange_billing_product_id(self):
        if self.billing_product_id and not self.billing_rate:
            self.billing_rate = self.billing_product_id.lst_price
