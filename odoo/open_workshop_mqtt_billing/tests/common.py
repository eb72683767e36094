import uuid
from datetime import date

from odoo.addons.open_workshop_mqtt.tests.common import make_event
from odoo.addons.open_workshop_mqtt_badge.tests.common import BadgeCase, ts

PERIOD = (date(2026, 3, 1), date(2026, 3, 31))


class BillingCase(BadgeCase):
    """Two priced machines (a laser per working hour, a kiln per kWh), two members; the main
    company's chart of accounts is the one Odoo installed with account (generic)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env.user.tz = "UTC"
        cls.Invoicer = cls.env["ows.session.invoicer"]
        Product = cls.env["product.product"]
        cls.laser_product = Product.create({"name": "Laser cutter time", "type": "service",
                                            "lst_price": 30.0})
        cls.kiln_product = Product.create({"name": "Kiln energy", "type": "service"})
        cls.device.write({
            "machine_name": "Laser", "billing_product_id": cls.laser_product.id,
            "billing_basis": "working_hour", "billing_rate": 24.0,
            "billing_minimum": 5.0, "billing_rounding": 0.25,
        })
        cls.kiln = cls.Device.create({
            "bridge_id": cls.bridge.id, "device_id": "shelly-kiln", "machine_name": "Kiln",
            "mqtt_topic": "kiln/status/switch:0", "parser_type": "shelly_gen2",
            "badge_reader_topic": "tele/kiln-reader/SENSOR",
            "billing_product_id": cls.kiln_product.id, "billing_basis": "kwh",
            "billing_rate": 0.40,
        })

    def session_done(self, device, partner, start, working_s, duration_s=None, energy_wh=10.0,
                     energy_known=True):
        """A done session of ``device`` started ``start`` seconds after T0, scanned by
        ``partner``'s badge (None: nobody)."""
        if partner:
            badge = self.Badge.search([("partner_id", "=", partner.id)], limit=1) or \
                self.Badge.create({"uid": uuid.uuid4().hex[:8].upper(), "partner_id": partner.id})
            self.scan(badge.uid, start - 5, device=device)
        session_id = str(uuid.uuid4())
        duration_s = duration_s if duration_s is not None else working_s
        stop = start + duration_s
        self.ok(make_event(device.device_id, "run_stop", {
            "session_id": session_id, "power_w": 1.0, "reason": "normal",
            "started_at": ts(start), "stopped_at": ts(stop), "duration_s": float(duration_s),
            "working_s": float(working_s), "standby_s": float(duration_s - working_s),
            "energy_wh": energy_wh if energy_known else None,
            "energy_source": "counter" if energy_known else None,
        }, ts=ts(stop)))
        session = self.find_session(session_id)
        self.assertEqual(session.partner_id, partner or self.env["res.partner"])
        return session

    def invoice(self, **kw):
        return self.Invoicer.invoice_period(*PERIOD, **kw)
