"""Suggested thresholds from a machine's own power readings (pure: no Odoo, no I/O).

A machine draws power in a few distinct modes: off (a watt or less), standby (lights, fans,
controller), working (the spindle, the laser tube). Sorted on a log scale, readings of one mode
lie close together and the modes are separated by wide gaps. Readings are grouped where
neighbours are less than ``JOIN`` decades apart; groups too small to be a mode (ramps between
modes, spikes) are dropped; a threshold goes to the middle (on the log scale) of a gap between
two modes. The standby threshold takes the lowest gap, the working threshold the widest gap
above it; with only two modes both share the one gap (a third and two thirds into it).
"""

import math

JOIN = 0.15  # decades: neighbours closer than a factor of 1.41 belong to one mode
MIN_SHARE = 0.02  # a mode holds at least 2 % of the readings ...
MIN_COUNT = 3  # ... and at least 3 of them
MIN_READINGS = 50


def _log(watts):
    return math.log10(max(0.0, watts) + 1.0)


def _unlog(value):
    return 10.0 ** value - 1.0


def nice(watts):
    """Two significant digits: 4.47 -> 4.5, 123.4 -> 120."""
    if watts <= 0:
        return 0.0
    digits = 1 - math.floor(math.log10(watts))
    return round(watts, digits) if digits > 0 else float(round(watts, digits))


def modes(powers):
    """The power modes: dicts with low, high, median (W) and share (0..1), lowest first."""
    values = sorted(max(0.0, float(p)) for p in powers)
    if not values:
        return []
    groups, current = [], [values[0]]
    for previous, value in zip(values, values[1:]):
        if _log(value) - _log(previous) > JOIN:
            groups.append(current)
            current = []
        current.append(value)
    groups.append(current)
    minimum = max(MIN_COUNT, MIN_SHARE * len(values))
    return [
        {"low": g[0], "high": g[-1], "median": g[len(g) // 2], "share": len(g) / len(values)}
        for g in groups if len(g) >= minimum
    ]


def suggest(powers):
    """``{"modes": [...], "standby_threshold_w": S, "working_threshold_w": W}``, or
    ``{"modes": [...], "reason": "..."}`` when the readings cannot tell."""
    powers = [p for p in powers if isinstance(p, (int, float)) and math.isfinite(p)]
    if len(powers) < MIN_READINGS:
        return {"modes": modes(powers), "reason": "too_few",
                "readings": len(powers)}
    found = modes(powers)
    if len(found) < 2:
        return {"modes": found, "reason": "one_mode", "readings": len(powers)}
    gaps = [(_log(lower["high"]), _log(upper["low"])) for lower, upper in zip(found, found[1:])]
    if len(gaps) == 1:
        low, high = gaps[0]
        standby = _unlog(low + (high - low) / 3)
        working = _unlog(low + 2 * (high - low) / 3)
    else:
        low, high = gaps[0]
        standby = _unlog((low + high) / 2)
        low, high = max(gaps[1:], key=lambda gap: gap[1] - gap[0])
        working = _unlog((low + high) / 2)
    standby, working = nice(standby), nice(working)
    if not 0 < standby < working:
        return {"modes": found, "reason": "too_close", "readings": len(powers)}
    return {"modes": found, "standby_threshold_w": standby, "working_threshold_w": working,
            "readings": len(powers)}
