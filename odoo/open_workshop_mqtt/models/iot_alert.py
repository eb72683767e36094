from odoo import api, fields, models

from .res_config_settings import alert_settings

ALERT_ACTIVITY_TYPE = "open_workshop_mqtt.mail_activity_type_iot_alert"


class IotAlertMixin(models.AbstractModel):
    """One incident at a time per record (a bridge or a plug), told to the alert group in
    Odoo's own way: an activity per member, opened once when the incident starts and marked
    done, with the recovery as feedback in the chatter, when it ends.

    The open incident is the record's own state (``alert_since``), so a cron that runs every
    minute opens it once however long the incident lasts, and a member who marks the activity
    done early acknowledges it without a new one appearing.
    """

    _name = "ows.iot.alert.mixin"
    _description = "IoT alert (one per incident)"
    _inherit = ["mail.thread", "mail.activity.mixin"]

    alert_since = fields.Datetime(
        readonly=True, copy=False, help="Start of the open incident (empty: none open)."
    )
    alert_reason = fields.Char(readonly=True, copy=False)

    def _alert_texts(self, reason, minutes):
        """(summary, note) of an incident, in the current language. Implemented per model."""
        raise NotImplementedError

    def _alert_recovered_text(self, minutes):
        raise NotImplementedError

    @api.model
    def _alert_users(self, settings, company):
        users = settings.group.sudo().with_context(active_test=False).users
        return users.filtered(
            lambda u: u.active and not u.share and company in u.company_ids
        )

    def _alert_open(self, reason, since, now, settings=None):
        """Open an incident on the records that have none open; no-op on the others."""
        settings = settings or alert_settings(self.env)
        activity_type = self.env.ref(ALERT_ACTIVITY_TYPE)
        minutes = max(1, round((now - since).total_seconds() / 60)) if since else 0
        for record in self.filtered(lambda r: not r.alert_since):
            record.write({"alert_since": since or now, "alert_reason": reason})
            users = self._alert_users(settings, record.company_id)
            for user in users:
                localized = record.with_context(lang=user.lang)
                summary, note = localized._alert_texts(reason, minutes)
                record.activity_schedule(
                    activity_type_id=activity_type.id,
                    summary=summary,
                    note=note,
                    user_id=user.id,
                    date_deadline=fields.Date.context_today(localized.with_context(tz=user.tz)),
                )
            summary, note = record._alert_texts(reason, minutes)
            record.message_post(body=note, subtype_xmlid="mail.mt_note")

    def _alert_close(self, now):
        """Close the open incident: its activities are marked done with the recovery."""
        activity_type = self.env.ref(ALERT_ACTIVITY_TYPE)
        for record in self.filtered("alert_since"):
            minutes = max(1, round((now - record.alert_since).total_seconds() / 60))
            activities = record.activity_ids.filtered(
                lambda a, t=activity_type: a.activity_type_id == t
            )
            text = record._alert_recovered_text(minutes)
            if activities:
                # one "done" message with the recovery in the chatter, not one per member
                activities[1:].unlink()
                activities[:1].action_feedback(feedback=text)
            else:
                record.message_post(body=text, subtype_xmlid="mail.mt_note")
            record.write({"alert_since": False, "alert_reason": False})
