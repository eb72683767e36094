"""The Prometheus text the bridge serves: exact numbers, labels, histogram buckets."""

from __future__ import annotations

from iot_bridge.runtime.metrics import Metrics, render


def test_numbers_keep_full_precision() -> None:
    text = render(
        Metrics(),
        {"last_message_timestamp_seconds": 1795750458.123456},
        {"messages_total": 123456789.0},
        {"parser:parse_errors_total": {'odd"name': 3.0}},
    )
    lines = text.splitlines()
    assert "iot_bridge_last_message_timestamp_seconds 1795750458.123456" in lines
    assert "iot_bridge_messages_total 123456789" in lines
    assert 'iot_bridge_parse_errors_total{parser="odd\\"name"} 3' in lines


def test_latency_histogram_is_cumulative() -> None:
    m = Metrics()
    for value in (0.001, 0.02, 0.02, 3.0, 60.0):
        m.odoo_latency.observe(value)
    lines = render(m, {}, {}, {}).splitlines()
    assert 'iot_bridge_odoo_request_seconds_bucket{le="0.005"} 1' in lines
    assert 'iot_bridge_odoo_request_seconds_bucket{le="0.025"} 3' in lines
    assert 'iot_bridge_odoo_request_seconds_bucket{le="5"} 4' in lines
    assert 'iot_bridge_odoo_request_seconds_bucket{le="+Inf"} 5' in lines
    assert "iot_bridge_odoo_request_seconds_count 5" in lines
