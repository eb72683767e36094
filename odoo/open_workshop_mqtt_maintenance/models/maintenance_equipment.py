"""The equipment's working-hour counter and its "every N working hours" service plan.

The counter is the hours the equipment had before the bridge plus the working hours of the
done sessions of its machines. It is stored on the equipment row and rewritten whenever a
session of one of its machines ends, in the same transaction that may open a request: two
sessions ending at once on the same equipment serialize there, so a crossing opens one
request, never two. Only usage crosses a threshold; linking a machine or changing the plan
moves the baseline without opening anything.
"""

import math

from markupsafe import Markup

from odoo import _, api, fields, models


class MaintenanceEquipment(models.Model):
    _inherit = "maintenance.equipment"

    ows_device_ids = fields.One2many("ows.iot.device", "equipment_id", string="IoT Machines")
    ows_hours_offset = fields.Float(
        string="Hours Before the Bridge",
        help="Working hours the equipment had when it was connected; added to the counter.",
    )
    ows_working_hours = fields.Float(
        string="Working Hours", readonly=True, copy=False,
        help="Hours before the bridge plus the working hours of the finished sessions of the "
        "equipment's machines.",
    )
    ows_session_count = fields.Integer(compute="_compute_ows_session_count",
                                       string="Machine Sessions")
    ows_service_interval_h = fields.Float(
        string="Service Every (Working Hours)",
        help="Open a preventive maintenance request each time the counter passes a multiple "
        "of this. 0: no plan.",
    )
    ows_service_index = fields.Integer(
        string="Intervals Passed", readonly=True, copy=False,
        help="How many intervals the counter had passed when it was last checked.",
    )
    ows_next_service_h = fields.Float(string="Next Service At (h)",
                                      compute="_compute_ows_next_service_h")

    _sql_constraints = [
        ("ows_plan_not_negative",
         "CHECK(COALESCE(ows_service_interval_h, 0) >= 0 AND COALESCE(ows_hours_offset, 0) >= 0)",
         "The service interval and the hours before the bridge must not be negative."),
    ]

    def _compute_ows_session_count(self):
        groups = self.env["ows.machine.session"].sudo()._read_group(
            [("device_id.equipment_id", "in", self.ids)], ["device_id"], ["__count"])
        counts = {}
        for device, count in groups:
            counts[device.equipment_id.id] = counts.get(device.equipment_id.id, 0) + count
        for equipment in self:
            equipment.ows_session_count = counts.get(equipment.id, 0)

    @api.depends("ows_service_interval_h", "ows_service_index")
    def _compute_ows_next_service_h(self):
        for equipment in self:
            interval = equipment.ows_service_interval_h
            equipment.ows_next_service_h = (
                (equipment.ows_service_index + 1) * interval if interval > 0 else 0.0)

    # ------------------------------------------------------------------ counter
    def _ows_sum_hours(self):
        """{equipment id: offset + working hours of done sessions}, straight from SQL."""
        self.env["ows.machine.session"].flush_model(["working_s", "state", "device_id"])
        self.env["ows.iot.device"].flush_model(["equipment_id"])
        self.env.cr.execute(
            """
            SELECT d.equipment_id, COALESCE(SUM(s.working_s), 0) / 3600.0
              FROM ows_machine_session s JOIN ows_iot_device d ON d.id = s.device_id
             WHERE d.equipment_id IN %s AND s.state = 'done'
             GROUP BY d.equipment_id
            """,
            (tuple(self.ids),),
        )
        hours = dict(self.env.cr.fetchall())
        return {e.id: e.ows_hours_offset + hours.get(e.id, 0.0) for e in self}

    def _ows_recount(self, open_requests):
        """Rewrite the counter; with ``open_requests``, open one request per equipment whose
        counter passed a new multiple of its interval, else just move the baseline."""
        if not self:
            return
        totals = self._ows_sum_hours()
        for equipment in self:
            hours = totals[equipment.id]
            interval = equipment.ows_service_interval_h
            index = math.floor(hours / interval + 1e-9) if interval > 0 else 0
            crossed = open_requests and interval > 0 and index > equipment.ows_service_index
            # plain SQL, first thing on the row: a concurrent recount fails to serialize
            # here (and is replayed), without an ERROR line in the log for an expected conflict
            self.env.cr.execute(
                "UPDATE maintenance_equipment SET ows_working_hours = %s, ows_service_index = %s"
                " WHERE id = %s",
                (hours, index, equipment.id), log_exceptions=False,
            )
            equipment.invalidate_recordset(["ows_working_hours", "ows_service_index"])
            if crossed:
                equipment._ows_open_service_request(index)

    def _ows_open_service_request(self, index):
        """The request, worded in the technician's language (else the company's): the bridge's
        request that ends the session has no language of its own."""
        self.ensure_one()
        lang = self.technician_user_id.lang or self.company_id.partner_id.lang
        if lang:
            self = self.with_context(lang=lang)  # noqa: PLW0642
        due = index * self.ows_service_interval_h
        request = self.env["maintenance.request"].sudo().create({
            "name": _("Service after %(hours)s working hours: %(equipment)s",
                      hours=_hours(due), equipment=self.name),
            "equipment_id": self.id,
            "company_id": self.company_id.id or self.env.company.id,
            "maintenance_type": "preventive",
            "user_id": self.technician_user_id.id,
            "ows_service_index": index,
            "ows_working_hours": self.ows_working_hours,
            "description": Markup("<p>%s</p>") % _(
                "The working-hour counter reached %(hours)s h (plan: every %(interval)s h).",
                hours=_hours(self.ows_working_hours), interval=_hours(self.ows_service_interval_h)),
        })
        if self.maintenance_team_id:
            request.maintenance_team_id = self.maintenance_team_id
        return request

    def write(self, vals):
        result = super().write(vals)
        if {"ows_hours_offset", "ows_service_interval_h"} & set(vals):
            self._ows_recount(open_requests=False)
        return result

    def action_view_ows_sessions(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Machine Sessions"),
            "res_model": "ows.machine.session",
            "view_mode": "list,pivot,graph,form",
            "domain": [("device_id.equipment_id", "=", self.id)],
        }


class MaintenanceRequest(models.Model):
    _inherit = "maintenance.request"

    ows_service_index = fields.Integer(
        string="Service Interval No.", readonly=True, copy=False,
        help="Set on requests opened by the working-hour plan: which multiple of the interval.",
    )
    ows_working_hours = fields.Float(string="Working Hours at Request", readonly=True,
                                     copy=False)


def _hours(value):
    return f"{value:.1f}".rstrip("0").rstrip(".")
