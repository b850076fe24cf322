"""``/metrics`` read back with Prometheus' own text parser: every value at full precision."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from display.web.document import metrics_text

RESYNC_AT = datetime(2026, 12, 4, 15, 33, 20, 250000, tzinfo=UTC)  # 1,796,398,400.25


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_values_survive_the_round_trip_through_prometheus_parser() -> None:
    doc = {"node": {"name": "bridge-1", "role": "bridge",
                    "resync": {"enabled": True, "ok": True, "at": RESYNC_AT.isoformat()},
                    "links": {"feishu": {"up": True}}},
           "rooms": [{"state": "busy", "stale": False, "devices": []}]}
    counters = {"events": {"applied": 1_234_567, "duplicate": 3}, "resync": {"ok": 9_999_999}}
    got = samples(metrics_text(doc, counters))
    # %g printed 1.7964e+09 here: hours off. The parser must read back the exact instant.
    assert got[("room_display_resync_last_timestamp_seconds", ())] == RESYNC_AT.timestamp()
    assert got[("room_display_events_total", (("verdict", "applied"),))] == 1_234_567
    assert got[("room_display_events_received_total", ())] == 1_234_570
    assert got[("room_display_resync_passes_total", (("result", "ok"),))] == 9_999_999
    assert got[("room_display_rooms", (("state", "busy"),))] == 1
    assert got[("room_display_link_up", (("link", "feishu"),))] == 1
