"""Retention of forwarded ``power_measurement`` events.

A bridge that forwards measurements sends one event per reading: millions of rows a year for a
few machines. They are worth keeping for a while (tuning thresholds, checking a bill), not for
ever. Run events and sessions are never touched here: they are the record.
"""

from datetime import timedelta

from odoo import api, fields, models

from .res_config_settings import DEFAULT_RETENTION_DAYS, RETENTION_PARAM

GC_BATCH = 20000


def retention_days(env):
    """The configured retention in days (0 = keep for ever); a broken value means the default."""
    value = env["ir.config_parameter"].sudo().get_param(RETENTION_PARAM, DEFAULT_RETENTION_DAYS)
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return DEFAULT_RETENTION_DAYS


class IotEventRetention(models.Model):
    _inherit = "ows.iot.event"

    @api.model
    def _gc_power_measurements(self, batch_size=GC_BATCH):
        """Delete one batch of ``power_measurement`` events older than the retention.

        Called by a daily cron; a batch that leaves more behind reports them as remaining, so
        the cron runs again right away instead of holding one long transaction. Returns the
        number deleted.
        """
        days = retention_days(self.env)
        if days <= 0:
            return 0
        cutoff = fields.Datetime.now() - timedelta(days=days)
        self.flush_model()
        cr = self.env.cr
        cr.execute(
            """
            DELETE FROM ows_iot_event WHERE id IN (
                SELECT id FROM ows_iot_event
                 WHERE event_type = 'power_measurement' AND ts < %s
                 ORDER BY id LIMIT %s)
            """,
            (cutoff, batch_size),
        )
        deleted = cr.rowcount
        remaining = 0
        if deleted == batch_size:
            cr.execute(
                "SELECT count(*) FROM ows_iot_event WHERE event_type = 'power_measurement'"
                " AND ts < %s",
                (cutoff,),
            )
            remaining = cr.fetchone()[0]
        self.invalidate_model()
        self.env["ir.cron"]._notify_progress(done=deleted, remaining=remaining)
        return deleted
