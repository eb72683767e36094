from datetime import timedelta

from odoo.exceptions import ValidationError
from odoo.tests import new_test_user, tagged

from ..models.res_config_settings import alert_settings

from .common import T0, StatusCase, make_status, run_start, status_device, ts


@tagged("post_install", "-at_install", "open_workshop_mqtt")
class TestHealthCheck(StatusCase):
    """The scheduled action, driven with fixed times (``_check_health(now)``)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.keeper = new_test_user(
            cls.env, "iot_keeper", groups="open_workshop_mqtt.group_iot_manager",
            name="Workshop Keeper",
        )
        cls.alert_type = cls.env.ref("open_workshop_mqtt.mail_activity_type_iot_alert")
        # only the keeper looks after the workshop in these tests
        cls.team = cls.env["res.groups"].create({"name": "Workshop keepers",
                                                 "users": [(4, cls.keeper.id)]})
        cls.env["ir.config_parameter"].sudo().set_param(
            "open_workshop_mqtt.alert_group_id", cls.team.id)

    def alerts(self, record):
        return self.env["mail.activity"].search([
            ("res_model", "=", record._name), ("res_id", "=", record.id),
            ("activity_type_id", "=", self.alert_type.id),
        ])

    def heard(self, at, devices=()):
        """The bridge called at ``at`` (a status as of then)."""
        self.status(make_status(devices, at=at), now=at)
        self.bridge.last_contact = at

    # ------------------------------------------------------------------ bridges
    def test_silent_bridge_once_per_incident(self):
        self.heard(T0)
        check = self.Bridge._check_health
        check(T0 + timedelta(minutes=5))  # exactly the limit: not yet
        self.assertFalse(self.bridge.alert_since)
        check(T0 + timedelta(minutes=5, seconds=1))
        self.assertEqual(self.bridge.alert_since, T0)
        activity = self.alerts(self.bridge)
        self.assertEqual(len(activity), 1)
        self.assertEqual(activity.user_id, self.keeper)
        self.assertEqual(activity.summary, "Bridge silent: Bridge A")
        self.assertIn("for 5 minutes", activity.note)
        for minutes in (6, 30, 600):
            check(T0 + timedelta(minutes=minutes))
        self.assertEqual(len(self.alerts(self.bridge)), 1)
        # the other bridge never called: nothing to miss
        self.assertFalse(self.other_bridge.alert_since)
        self.assertFalse(self.alerts(self.other_bridge))

    def test_recovery_closes_the_incident(self):
        self.heard(T0)
        self.Bridge._check_health(T0 + timedelta(minutes=10))
        activity = self.alerts(self.bridge)
        back = T0 + timedelta(minutes=42)
        self.heard(back)
        self.Bridge._check_health(back + timedelta(seconds=20))
        self.assertFalse(self.bridge.alert_since)
        self.assertFalse(self.alerts(self.bridge))
        done = activity.with_context(active_test=False).exists()
        self.assertTrue(not done or not done.active, "the activity is done")
        messages = self.bridge.message_ids.mapped("body")
        self.assertTrue(any("back after about 42 minutes" in (m or "") for m in messages),
                        messages)
        # a new silence is a new incident
        self.Bridge._check_health(back + timedelta(minutes=6))
        self.assertEqual(len(self.alerts(self.bridge)), 1)

    def test_acknowledged_early_is_not_reopened(self):
        self.heard(T0)
        self.Bridge._check_health(T0 + timedelta(minutes=6))
        self.alerts(self.bridge).action_feedback(feedback="looking into it")
        self.Bridge._check_health(T0 + timedelta(minutes=7))
        self.assertFalse(self.alerts(self.bridge))
        self.assertTrue(self.bridge.alert_since)

    def test_unwatched_bridges(self):
        self.heard(T0)
        self.bridge.action_revoke_token()  # not expected to call any more
        self.Bridge._check_health(T0 + timedelta(hours=1))
        self.assertFalse(self.bridge.alert_since)
        self.bridge.invalidate_recordset()
        self.other_bridge.last_contact = T0
        self.other_bridge.active = False
        self.Bridge._check_health(T0 + timedelta(hours=1))
        self.assertFalse(self.other_bridge.alert_since)

    def test_archiving_closes_an_open_incident(self):
        self.heard(T0)
        self.Bridge._check_health(T0 + timedelta(minutes=6))
        self.assertTrue(self.alerts(self.bridge))
        self.bridge.active = False
        self.Bridge._check_health(T0 + timedelta(minutes=7))
        self.assertFalse(self.bridge.alert_since)
        self.assertFalse(self.alerts(self.bridge))

    def test_silent_bridge_flags_running_sessions_without_closing_them(self):
        self.heard(T0)
        self.ingest(run_start(self.device.device_id, "s-open", started_at=ts(T0)))
        session = self.Session.search([("session_id", "=", "s-open")])
        self.Bridge._check_health(T0 + timedelta(minutes=6))
        self.assertTrue(session.bridge_silent)
        self.assertEqual(session.state, "running")
        self.assertFalse(session.stopped_at)
        self.heard(T0 + timedelta(minutes=8))
        self.Bridge._check_health(T0 + timedelta(minutes=8))
        self.assertFalse(session.bridge_silent)
        self.assertEqual(session.state, "running")

    def test_settings_are_read(self):
        self.env["ir.config_parameter"].sudo().set_param(
            "open_workshop_mqtt.bridge_silence_minutes", "30")
        self.heard(T0)
        self.Bridge._check_health(T0 + timedelta(minutes=29))
        self.assertFalse(self.bridge.alert_since)
        self.Bridge._check_health(T0 + timedelta(minutes=31))
        self.assertTrue(self.bridge.alert_since)

    def test_settings_form(self):
        Settings = self.env["res.config.settings"]
        self.assertEqual(Settings.default_get(["ows_iot_alert_group_id"])["ows_iot_alert_group_id"],
                         self.team.id)
        Settings.create({"ows_iot_bridge_silence_minutes": 7, "ows_iot_plug_silence_minutes": 20,
                         "ows_iot_alert_group_id": self.team.id}).execute()
        settings = alert_settings(self.env)
        self.assertEqual(settings.bridge_silence, timedelta(minutes=7))
        self.assertEqual(settings.plug_silence, timedelta(minutes=20))
        self.assertEqual(settings.group, self.team)
        with self.assertRaises(ValidationError):
            Settings.create({"ows_iot_bridge_silence_minutes": 0})
        # a broken parameter falls back to the default instead of silencing the alarm
        self.env["ir.config_parameter"].sudo().set_param(
            "open_workshop_mqtt.plug_silence_minutes", "soon")
        self.assertEqual(alert_settings(self.env).plug_silence, timedelta(minutes=10))

    def test_alert_group_members_of_other_companies_are_not_told(self):
        company2 = self.env["res.company"].create({"name": "Other Workshop"})
        stranger = new_test_user(self.env, "iot_far", groups="open_workshop_mqtt.group_iot_manager",
                                 company_id=company2.id, company_ids=[(6, 0, [company2.id])])
        self.team.users = [(4, stranger.id)]
        self.heard(T0)
        self.Bridge._check_health(T0 + timedelta(minutes=6))
        self.assertEqual(self.alerts(self.bridge).user_id, self.keeper)

    # ------------------------------------------------------------------ plugs
    def test_offline_plug(self):
        dev = self.device.device_id
        self.heard(T0, [status_device(dev, online=False)])
        self.Bridge._check_health(T0 + timedelta(minutes=10))  # offline exactly 10 minutes
        self.assertFalse(self.device.alert_since)
        later = T0 + timedelta(minutes=11)
        self.heard(later, [status_device(dev, online=False, at=later)])
        self.Bridge._check_health(later)
        self.assertEqual(self.device.alert_since, T0)
        self.assertEqual(self.device.alert_reason, "offline")
        activity = self.alerts(self.device)
        self.assertEqual(activity.summary, "Plug offline: Shaper Origin")
        self.assertEqual(activity.user_id, self.keeper)
        self.Bridge._check_health(later + timedelta(minutes=1))
        self.assertEqual(len(self.alerts(self.device)), 1)
        back = later + timedelta(minutes=2)
        self.heard(back, [status_device(dev, at=back)])
        self.Bridge._check_health(back)
        self.assertFalse(self.device.alert_since)
        self.assertFalse(self.alerts(self.device))

    def test_silent_plug(self):
        dev = self.device.device_id
        self.heard(T0, [status_device(dev)])  # last seen T0 - 2 s
        later = T0 + timedelta(minutes=12)
        self.heard(later, [status_device(dev, at=later, last_seen=None)])
        self.Bridge._check_health(later)
        self.assertEqual(self.device.alert_reason, "silent")
        self.assertEqual(self.alerts(self.device).summary, "Plug silent: Shaper Origin")

    def test_plugs_of_a_silent_bridge_are_not_judged(self):
        dev = self.device.device_id
        self.heard(T0, [status_device(dev, online=False)])
        self.Bridge._check_health(T0 + timedelta(hours=2))
        self.assertTrue(self.bridge.alert_since)
        self.assertFalse(self.device.alert_since)
        self.assertFalse(self.alerts(self.device))

    def test_plug_without_live_state_is_not_judged(self):
        self.heard(T0)  # a status that does not list the device (bridge config behind)
        later = T0 + timedelta(hours=1)
        self.heard(later)
        self.Bridge._check_health(later)
        self.assertFalse(self.device.alert_since)

    def test_plug_no_longer_reported_is_not_judged(self):
        dev = self.device.device_id
        self.heard(T0, [status_device(dev)])
        # the bridge still calls, but its statuses no longer list the plug (or it sends none)
        later = T0 + timedelta(minutes=30)
        self.bridge.last_contact = later
        self.Bridge._check_health(later)
        self.assertFalse(self.device.alert_since)

    def triggers(self):
        cron = self.env.ref("open_workshop_mqtt.ir_cron_iot_health")
        return self.env["ir.cron.trigger"].search([("cron_id", "=", cron.id)])

    def test_a_status_that_ends_an_incident_triggers_the_check(self):
        self.heard(T0)
        self.Bridge._check_health(T0 + timedelta(minutes=6))
        before = self.triggers()
        self.heard(T0 + timedelta(minutes=7))  # the silent bridge is back
        self.assertTrue(self.triggers() - before, "the check runs at once, not in a minute")

    def test_a_status_during_a_plug_incident_triggers_only_on_recovery(self):
        dev = self.device.device_id
        self.heard(T0, [status_device(dev, online=False)])
        later = T0 + timedelta(minutes=11)
        self.heard(later, [status_device(dev, online=False, at=later)])
        self.Bridge._check_health(later)
        self.assertTrue(self.device.alert_since)
        before = self.triggers()
        still = later + timedelta(seconds=30)
        self.heard(still, [status_device(dev, online=False, at=still)])
        self.assertFalse(self.triggers() - before, "still offline: no extra run")
        back = still + timedelta(seconds=30)
        self.heard(back, [status_device(dev, at=back)])
        self.assertTrue(self.triggers() - before)
