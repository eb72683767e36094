"""Draft customer invoices from the done, attributed, not yet invoiced sessions of a period.

One invoice per member (and company), one line per machine listing its sessions, plus a
minimum-charge line for the machine when sessions fell below its minimum. The sessions are
row-locked before anything is created, and linking them rewrites their stored billing state:
two runs over the same sessions can never both invoice one (the second waits, then fails to
serialize, or is refused at once while the first holds the lock).
"""

from collections import defaultdict
from datetime import datetime, time, timedelta

import psycopg2
import pytz

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from odoo.tools import format_datetime


class SessionInvoicer(models.AbstractModel):
    _name = "ows.session.invoicer"
    _description = "Machine session invoicing"

    @api.model
    def _period_bounds(self, date_from, date_to):
        """[start, end) of the period's days in the user's time zone, as naive UTC."""
        tz = pytz.timezone(self.env.user.tz or "UTC")

        def utc(day):
            return tz.localize(datetime.combine(day, time.min)).astimezone(pytz.utc).replace(
                tzinfo=None)

        return utc(date_from), utc(date_to + timedelta(days=1))

    @api.model
    def _sessions_of_period(self, date_from, date_to, partners=None, devices=None):
        start, end = self._period_bounds(date_from, date_to)
        domain = [("state", "=", "done"), ("started_at", ">=", start), ("started_at", "<", end),
                  ("billing_state", "=", "to_invoice")]
        if partners:
            domain.append(("partner_id", "in", partners.ids))
        if devices:
            domain.append(("device_id", "in", devices.ids))
        return self.env["ows.machine.session"].search(domain, order="started_at, id")

    @api.model
    def _sort(self, sessions):
        """(billable sessions, {reason: sessions left out})."""
        billable = sessions.browse()
        skipped = defaultdict(lambda: sessions.browse())
        for session in sessions:
            if not session.partner_id:
                skipped["no_member"] |= session
            elif not session.device_id.billing_product_id:
                skipped["no_price"] |= session
            else:
                quantity, reason = session._billing_quantity()
                if quantity is None:
                    skipped[reason] |= session
                else:
                    billable |= session
        return billable, dict(skipped)

    @api.model
    def _lock(self, sessions):
        """Row-lock the sessions; refuse while another run holds them."""
        if not sessions:
            return
        try:
            with self.env.cr.savepoint(flush=False):
                self.env.cr.execute(
                    "SELECT id FROM ows_machine_session WHERE id IN %s FOR UPDATE NOWAIT",
                    (tuple(sessions.ids),), log_exceptions=False,
                )
        except psycopg2.errors.LockNotAvailable:
            raise UserError(_(
                "These sessions are being invoiced by another run right now; try again in a "
                "moment.")) from None

    @api.model
    def invoice_period(self, date_from, date_to, partners=None, devices=None,
                       invoice_date=False):
        """Create the draft invoices; return ``(invoices, {reason: sessions left out})``."""
        sessions = self._sessions_of_period(date_from, date_to, partners, devices).sudo()
        billable, skipped = self._sort(sessions)
        self._lock(billable)
        groups = defaultdict(lambda: sessions.browse())
        for session in billable:
            groups[(session.device_id.company_id, session.partner_id)] |= session
        Move = self.env["account.move"]
        invoices = Move.browse()
        origin = _("Machine usage %(start)s - %(end)s", start=fields.Date.to_string(date_from),
                   end=fields.Date.to_string(date_to))
        for (company, partner), group in sorted(groups.items(),
                                                key=lambda kv: (kv[0][0].id, kv[0][1].name)):
            lines = []
            by_machine = defaultdict(lambda: sessions.browse())
            for session in group:
                by_machine[session.device_id] |= session
            worded = self.with_context(lang=partner.lang) if partner.lang else self
            for device, machine_sessions in sorted(by_machine.items(),
                                                   key=lambda kv: kv[0].machine_name):
                lines.extend(worded._lines(device, machine_sessions))
            invoices |= Move.with_company(company).create({
                "move_type": "out_invoice",
                "company_id": company.id,
                "partner_id": partner.id,
                "invoice_date": invoice_date or False,
                "invoice_origin": origin,
                "invoice_line_ids": [fields.Command.create(vals) for vals in lines],
            })
        invoices.flush_recordset()
        return invoices, skipped

    @api.model
    def _lines(self, device, sessions):
        """The machine's usage line (and minimum-charge line) for one member's sessions."""
        quantity = 0.0
        top_up = 0.0
        under_minimum = sessions.browse()
        details = []
        unit = self._unit_label(device)
        for session in sessions:
            qty, _reason = session._billing_quantity()
            amount, extra = session._billing_charge(qty)
            quantity += qty
            if extra:
                top_up += extra
                under_minimum |= session
            details.append("• %s, %s %s" % (self._when(session), _format_qty(qty), unit))
        basis = {"working_hour": _("per working hour"), "session_hour": _("per session hour"),
                 "kwh": _("per kWh")}[device.billing_basis]
        count = (_("1 session") if len(sessions) == 1
                 else _("%s sessions", len(sessions)))
        name = "%s (%s, %s)\n%s" % (device.machine_name, count, basis,
                                     "\n".join(details))
        lines = [{
            "product_id": device.billing_product_id.id,
            "name": name,
            "quantity": quantity,
            "price_unit": device.billing_rate,
            "ows_session_ids": [fields.Command.set(sessions.ids)],
        }]
        if top_up:
            currency = device.billing_currency_id
            minimum = f"{device.billing_minimum:.{currency.decimal_places}f} {currency.name}"
            lines.append({
                "product_id": device.billing_product_id.id,
                "name": _(
                    "%(machine)s: minimum charge of %(minimum)s per session (%(count)s sessions "
                    "below it)",
                    machine=device.machine_name, minimum=minimum, count=len(under_minimum),
                ),
                "quantity": 1.0,
                "price_unit": currency.round(top_up),
                "ows_session_ids": [fields.Command.set(under_minimum.ids)],
            })
        return lines

    @api.model
    def _unit_label(self, device):
        return _("kWh") if device.billing_basis == "kwh" else _("h")

    @api.model
    def _when(self, session):
        start = format_datetime(self.env, session.started_at, dt_format="yyyy-MM-dd HH:mm")
        stop = format_datetime(self.env, session.stopped_at, dt_format="HH:mm") \
            if session.stopped_at else "?"
        return f"{start}-{stop}"


def _format_qty(quantity):
    return f"{quantity:.2f}".rstrip("0").rstrip(".") if quantity else "0"
