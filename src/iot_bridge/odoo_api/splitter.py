"""Which events to send next while a batch keeps failing: find the one event that breaks Odoo.

A batch that Odoo answers with 5xx again and again meets either an Odoo that is down or an event
that Odoo cannot take (a bug on its side, data it cannot store). One answer cannot tell the two
apart; what Odoo does with *other* events can. So after :data:`SPLIT_AFTER` failures of the same
batch the splitter starts a hunt:

- **Probe.** Before a failing window is blamed, one other event is sent alone (the newest
  pending one first; after a failed probe the next one). If Odoo refuses that too, Odoo is down:
  the delivery backs off as usual and nothing is split, however long the outage lasts.
- **Halve.** Once Odoo has taken something since the last failure (a probe, or a window that
  went through), a failing window is halved and sent again at once. Windows that go through are
  delivered; the hunt moves on with the next window of the same size.
- **Blame.** A window of one event that fails twice, each time right after Odoo took another
  event, is the event that breaks the batch: it is dead-lettered with Odoo's answer, and the
  rest flows in full batches again.

If that one event ever goes through, the failures were an outage after all and the hunt ends.
It also ends once every event of the batch that kept failing is done. A suspect that is the only
event pending is never blamed (nothing else can show that Odoo takes events); it is retried with
the back-off until other events arrive, and blocks nothing meanwhile.

Pure: sequence numbers in, decisions out; the delivery loop does the I/O and the waiting.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from iot_bridge.outbox.store import Pending

SPLIT_AFTER = 3
"""Failures of the same batch (5xx, or refused as a whole) before it is split."""
BLAME_AFTER = 2
"""Failures of one event alone, each right after Odoo took another, before it is dead-lettered."""


class Verdict(enum.Enum):
    BACK_OFF = "back_off"  # wait with the growing backoff, then try again
    RETRY_NOW = "retry_now"  # Odoo took other events a moment ago: send the next choice at once
    DEAD_LETTER = "dead_letter"  # the one event sent breaks Odoo: dead-letter it


@dataclass
class _Hunt:
    window: int  # events per request while hunting
    end_seq: int  # the newest event of the batch that kept failing
    proven: bool = False  # Odoo took a request since the last failure
    probing: bool = True  # the next request is a probe
    halve: bool = True  # the window failed without proof: halve it once a probe goes through
    failed_probes: set[int] = field(default_factory=set)  # seqs that failed as probes
    blamed: int = 0  # failures of the lone suspect (window 1), each with proof


class BatchSplitter:
    def __init__(self) -> None:
        self._hunt: _Hunt | None = None
        self._strikes = 0
        self._head: int | None = None  # first seq of the batch that failed
        self._sent_probe = False

    @property
    def hunting(self) -> bool:
        return self._hunt is not None

    def choose(self, rows: Sequence[Pending], batch: int) -> list[Pending]:
        """What to send of ``rows`` (the oldest pending events, at most ``batch``)."""
        self._sent_probe = False
        h = self._hunt
        if h is not None and (not rows or rows[0].seq > h.end_seq):
            self._hunt = h = None  # every event of the failing batch is done
        if h is None:
            return list(rows[:batch])
        window = list(rows[: h.window])
        if h.probing:
            # any event but a lone suspect, newest first; a probe that failed moves on to the
            # next one, so one more event that breaks Odoo cannot block the probing
            others = window if len(window) > 1 else []
            candidates = [*reversed(rows[len(window) :]), *reversed(others)]
            untried = [r for r in candidates if r.seq not in h.failed_probes]
            if candidates and not untried:
                h.failed_probes.clear()  # every one failed: an outage; start over
                untried = candidates
            if untried:
                self._sent_probe = True
                return [untried[0]]
        return window

    def drained(self) -> None:
        """Nothing is pending: whatever kept failing is done."""
        self._hunt, self._strikes, self._head = None, 0, None

    def succeeded(self, sent: Sequence[Pending]) -> None:
        self._strikes, self._head = 0, None
        h = self._hunt
        if h is None:
            return
        if not self._sent_probe and h.window == 1 and h.blamed:
            self._hunt = None  # the suspect went through: it was an outage, not this event
            return
        if self._sent_probe and h.halve:
            h.window = max(1, h.window // 2)  # the window failed just before: no need to resend
        h.proven, h.probing, h.halve = True, False, False

    def failed(self, sent: Sequence[Pending]) -> Verdict:
        """A failure that may be the content's (5xx, or the batch refused as a whole)."""
        h = self._hunt
        if h is None:
            head = sent[0].seq  # the batch may grow meanwhile: its oldest event names it
            self._strikes = self._strikes + 1 if head == self._head else 1
            self._head = head
            if self._strikes >= SPLIT_AFTER:
                self._hunt = _Hunt(window=len(sent), end_seq=sent[-1].seq)
                self._strikes, self._head = 0, None
            return Verdict.BACK_OFF
        if self._sent_probe:
            h.proven = False
            h.failed_probes.add(sent[0].seq)
            return Verdict.BACK_OFF  # Odoo takes nothing: an outage (or the probe breaks it too)
        if not h.proven:
            if len(sent) == 1 and h.window == 1 and not self._can_probe(sent):
                return Verdict.BACK_OFF  # a lone event with nothing to compare: it blocks nothing
            h.probing, h.halve = True, len(sent) > 1
            return Verdict.RETRY_NOW
        h.proven = False
        if len(sent) > 1:
            h.window = max(1, len(sent) // 2)
            return Verdict.RETRY_NOW
        h.blamed += 1
        if h.blamed >= BLAME_AFTER:
            self._hunt = None
            return Verdict.DEAD_LETTER
        h.window, h.probing = 1, True
        return Verdict.RETRY_NOW

    def _can_probe(self, sent: Sequence[Pending]) -> bool:
        """False when the last choice had no event to probe with (only the suspect pending)."""
        h = self._hunt
        return h is not None and not (h.probing and not self._sent_probe)
