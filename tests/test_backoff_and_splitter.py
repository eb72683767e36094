"""The one back-off formula, and the batch splitter's decisions (pure, no I/O).

``tests/test_delivery.py`` runs both through the real delivery loop over HTTP; these pin the
rules themselves, including a property: however Odoo's answers are ordered, an outage (every
request failing) never blames an event.
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from iot_bridge.backoff import backoff_delay
from iot_bridge.odoo_api.splitter import SPLIT_AFTER, BatchSplitter, Verdict
from iot_bridge.outbox.store import Pending


def test_first_retry_is_exact_then_doubles_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(n, 5.0, 300.0, rng) for n in range(1, 12)]
    assert delays[0] == 5.0
    for n, delay in enumerate(delays[1:], start=2):
        nominal = min(300.0, 5.0 * 2 ** (n - 1))
        assert 0.8 * nominal <= delay <= min(300.0, 1.2 * nominal)
    assert max(delays) <= 300.0
    assert min(delays[-4:]) >= 240.0


def test_retry_after_is_a_floor_but_never_beyond_the_cap() -> None:
    rng = random.Random(1)
    assert backoff_delay(1, 5.0, 300.0, rng, retry_after=30) == 30.0
    assert backoff_delay(1, 5.0, 300.0, rng, retry_after=1) == 5.0
    assert backoff_delay(1, 5.0, 300.0, rng, retry_after=86_400) == 300.0


def rows(n: int, first: int = 1) -> list[Pending]:
    return [
        Pending(seq, f"uid-{seq}", "dev", "run_start", b"{}", 0) for seq in range(first, first + n)
    ]


def test_three_failures_of_the_same_batch_start_a_split_with_a_probe() -> None:
    s = BatchSplitter()
    pending = rows(10)
    for _ in range(SPLIT_AFTER):
        sent = s.choose(pending, 500)
        assert sent == pending
        assert s.failed(sent) is Verdict.BACK_OFF
    assert s.hunting
    assert s.choose(pending, 500) == [pending[-1]]  # the probe: the newest event alone
    s.succeeded([pending[-1]])  # Odoo takes events: the window (without it) is halved
    assert s.choose(pending[:-1], 500) == pending[:5]


def simulate(poison: set[int] | None, n: int, *, outage: bool = False) -> tuple[list[int], int]:
    """Run the splitter against a fake Odoo: returns (dead-lettered seqs, requests)."""
    s = BatchSplitter()
    pending = rows(n)
    dead: list[int] = []
    requests = 0
    while pending and requests < 10_000:
        sent = s.choose(pending, 500)
        requests += 1
        fails = outage or any(r.seq in (poison or set()) for r in sent)
        if not fails:
            s.succeeded(sent)
            pending = [r for r in pending if r not in sent]
            if not pending:
                s.drained()
            continue
        verdict = s.failed(sent)
        if verdict is Verdict.DEAD_LETTER:
            (row,) = sent
            dead.append(row.seq)
            pending = [r for r in pending if r is not row]
        elif verdict is Verdict.BACK_OFF:
            if outage and requests > 200:
                break
            # while it backs off, the bridge goes on producing events: one arrives
            pending.append(rows(1, first=pending[-1].seq + 1000)[0])
    return dead, requests


@given(st.integers(min_value=1, max_value=300), st.data())  # poison anywhere in n events
def test_exactly_the_poison_is_found(n: int, data: st.DataObject) -> None:
    poison = data.draw(st.integers(min_value=1, max_value=n))
    dead, requests = simulate({poison}, n)
    assert dead == [poison]
    assert requests <= SPLIT_AFTER + 4 * n.bit_length() + 8


@given(st.integers(min_value=1, max_value=300))
def test_an_outage_never_blames_anything(n: int) -> None:
    dead, _ = simulate(None, n, outage=True)
    assert dead == []


def test_a_lone_event_is_never_blamed() -> None:
    s = BatchSplitter()
    lone = rows(1)
    verdicts = [s.failed(s.choose(lone, 500)) for _ in range(20)]
    assert set(verdicts) == {Verdict.BACK_OFF}


@given(st.integers(min_value=2, max_value=200), st.data())
def test_two_events_that_break_odoo_are_both_found(n: int, data: st.DataObject) -> None:
    first = data.draw(st.integers(min_value=1, max_value=n))
    second = data.draw(st.integers(min_value=1, max_value=n).filter(lambda x: x != first))
    dead, _ = simulate({first, second}, n)
    assert sorted(dead) == sorted({first, second})
