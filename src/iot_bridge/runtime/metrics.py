"""Counters and gauges for ``/metrics`` (Prometheus text format, written by hand: a dozen
series do not need a client library)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        self.total += value
        self.n += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1


@dataclass
class Metrics:
    events: Counter[str] = field(default_factory=Counter)  # committed events per type
    delivered: Counter[str] = field(default_factory=Counter)  # per result status
    odoo_latency: Histogram = field(default_factory=Histogram)
    odoo_errors: int = 0
    commits: int = 0


def render(metrics: Metrics, gauges: dict[str, float], counters: dict[str, float],
           labelled: dict[str, dict[str, float]]) -> str:  # fmt: skip
    """Prometheus exposition text; names get the ``iot_bridge_`` prefix."""
    lines: list[str] = []

    def series(name: str, kind: str, values: dict[str, float] | float, label: str = "") -> None:
        lines.append(f"# TYPE iot_bridge_{name} {kind}")
        if isinstance(values, dict):
            for key, value in sorted(values.items()):
                lines.append(f'iot_bridge_{name}{{{label}="{_escape(key)}"}} {_num(value)}')
        else:
            lines.append(f"iot_bridge_{name} {_num(values)}")

    for name, value in sorted(gauges.items()):
        series(name, "gauge", value)
    for name, value in sorted(counters.items()):
        series(name, "counter", value)
    for name, values in sorted(labelled.items()):
        label, _, metric = name.partition(":")
        series(metric, "counter", values, label)
    h = metrics.odoo_latency
    lines.append("# TYPE iot_bridge_odoo_request_seconds histogram")
    cumulative = 0
    for bound, count in zip(h.buckets, h.counts, strict=False):
        cumulative += count
        lines.append(f'iot_bridge_odoo_request_seconds_bucket{{le="{bound:g}"}} {cumulative}')
    lines.append(f'iot_bridge_odoo_request_seconds_bucket{{le="+Inf"}} {h.n}')
    lines.append(f"iot_bridge_odoo_request_seconds_sum {h.total:.6f}")
    lines.append(f"iot_bridge_odoo_request_seconds_count {h.n}")
    return "\n".join(lines) + "\n"


def _num(value: float) -> str:
    """Full precision: ``:g`` would print 1234567 as 1.23457e+06 and round timestamps."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
