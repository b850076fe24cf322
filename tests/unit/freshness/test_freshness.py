"""Freshness: a down link turns the node stale after stale_after, unless a re-sync vouched since."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from display.freshness import Freshness

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
STALE_AFTER = timedelta(minutes=10)


def down_link() -> Freshness:
    f = Freshness(STALE_AFTER)
    f.expect("feishu", T0)
    f.set("feishu", True, T0)
    f.set("feishu", False, T0 + timedelta(minutes=1), "connection lost")
    return f


def test_link_down_and_no_resync_turns_stale() -> None:
    f = down_link()
    assert not f.stale(T0 + timedelta(minutes=10))
    assert f.next_change(T0 + timedelta(minutes=5)) == T0 + timedelta(minutes=11)
    assert f.stale(T0 + timedelta(minutes=11))
    assert f.as_of(T0 + timedelta(minutes=11)) == T0 + timedelta(minutes=1)


def test_link_down_but_resync_ok_is_not_stale() -> None:
    f = down_link()
    for minute in (8, 16, 24):  # a successful re-sync every 8 minutes keeps it fresh
        f.vouch("feishu", T0 + timedelta(minutes=minute))
        assert not f.stale(T0 + timedelta(minutes=minute + 7))
    assert f.next_change(T0 + timedelta(minutes=25)) == T0 + timedelta(minutes=34)
    assert f.links()["feishu"]["vouched"] == (T0 + timedelta(minutes=24)).isoformat()
    # Both failing for stale_after: stale, "as of" the last re-sync.
    assert f.stale(T0 + timedelta(minutes=34))
    assert f.as_of(T0 + timedelta(minutes=34)) == T0 + timedelta(minutes=24)


def test_vouch_is_never_moved_back_and_ignores_unknown_links() -> None:
    f = down_link()
    f.vouch("feishu", T0 + timedelta(minutes=9))
    f.vouch("feishu", T0 + timedelta(minutes=2))  # a late report of an older pass
    assert not f.stale(T0 + timedelta(minutes=18))
    f.vouch("broker", T0)
    assert "broker" not in f.links()


def test_a_vouch_before_the_outage_does_not_extend_it() -> None:
    f = Freshness(STALE_AFTER)
    f.expect("feishu", T0)
    f.set("feishu", True, T0)
    f.vouch("feishu", T0 + timedelta(minutes=1))
    f.set("feishu", False, T0 + timedelta(minutes=5), "connection lost")
    assert f.stale(T0 + timedelta(minutes=15))
