import random

from odoo.tests import BaseCase, tagged

from ..models.suggest import modes, nice, suggest


def readings(*levels, n=200, spread=0.1, seed=7):
    """``n`` readings around each (watts) level, +-``spread`` relative noise."""
    rng = random.Random(seed)
    return [max(0.0, level * (1 + rng.uniform(-spread, spread)) + rng.uniform(0, 0.3))
            for level in levels for _ in range(n)]


@tagged("post_install", "-at_install", "open_workshop_mqtt_tuning")
class TestSuggest(BaseCase):

    def test_off_standby_working(self):
        found = suggest(readings(0.5, 12.0, 800.0))
        self.assertEqual(len(found["modes"]), 3)
        self.assertLess(found["modes"][0]["high"], found["standby_threshold_w"])
        self.assertLess(found["standby_threshold_w"], found["modes"][1]["low"])
        self.assertLess(found["modes"][1]["high"], found["working_threshold_w"])
        self.assertLess(found["working_threshold_w"], found["modes"][2]["low"])
        self.assertAlmostEqual(sum(m["share"] for m in found["modes"]), 1.0)

    def test_the_working_threshold_takes_the_widest_gap(self):
        # off, standby 10 W, spindle idle 100 W, cutting 3000 W: idle -> cutting is widest
        found = suggest(readings(0.5, 10.0, 100.0, 3000.0))
        self.assertEqual(len(found["modes"]), 4)
        self.assertGreater(found["working_threshold_w"], found["modes"][2]["high"])

    def test_two_modes_share_the_gap(self):
        found = suggest(readings(1.0, 600.0))
        off, working = found["modes"]
        self.assertLess(off["high"], found["standby_threshold_w"])
        self.assertLess(found["standby_threshold_w"], found["working_threshold_w"])
        self.assertLess(found["working_threshold_w"], working["low"])

    def test_ramps_and_spikes_are_not_modes(self):
        values = readings(0.5, 800.0) + [30.0, 60.0, 90.0, 5000.0]  # 4 of 404: under 2 %
        found = suggest(values)
        self.assertEqual(len(found["modes"]), 2)
        self.assertIn("standby_threshold_w", found)

    def test_one_level_suggests_nothing(self):
        found = suggest(readings(300.0))
        self.assertEqual(found["reason"], "one_mode")
        self.assertNotIn("standby_threshold_w", found)

    def test_too_few_readings(self):
        self.assertEqual(suggest(readings(0.5, 800.0, n=20))["reason"], "too_few")
        self.assertEqual(suggest([])["reason"], "too_few")

    def test_broken_values_are_ignored(self):
        values = readings(0.5, 800.0) + [float("nan"), float("inf"), None, "12"]
        self.assertEqual(suggest(values)["readings"], 400)

    def test_negative_power_counts_as_zero(self):
        self.assertEqual(modes([-5.0] * 10)[0]["low"], 0.0)

    def test_nice(self):
        self.assertEqual(nice(4.47), 4.5)
        self.assertEqual(nice(123.4), 120.0)
        self.assertEqual(nice(0.0347), 0.035)
        self.assertEqual(nice(0), 0.0)
