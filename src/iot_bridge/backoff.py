"""How long to wait before the next try: one formula for every retry loop of the bridge.

The first retry comes after exactly ``first`` seconds (the original's "retrying in 5s" for Odoo),
then the wait doubles per failed try up to ``cap``. From the second retry on it is jittered by
±20 %, so that many bridges (or a bridge and its own config refresh) that failed together do not
retry together; the doubling still shows through the jitter (each wait is at least 1.33 x the
one before until the cap). A capped wait stays within [0.8 x cap, cap].

A server's ``Retry-After`` is a floor, never a reason to wait longer than ``cap``.
"""

from __future__ import annotations

import random

JITTER = 0.2


def backoff_delay(
    failures: int, first: float, cap: float, rng: random.Random, retry_after: float | None = None
) -> float:
    """Seconds to wait after the ``failures``-th consecutive failure (1 for the first)."""
    n = max(1, failures)
    delay = min(cap, first * 2.0 ** min(n - 1, 60))
    if n > 1:
        delay = min(cap, delay * (1.0 - JITTER + 2 * JITTER * rng.random()))
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay
