"""A bridge alone on its broker does not hear its own schedules back (at 20,000 rooms that echo
made every republish several times slower); once another bridge shows up both follow the
schedules and agree on one publisher."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from display.encode.mqtt_schedule import decode_schedule
from display.testing.broker import Broker, Recorder
from display.testing.clock import FakeClock
from display.testing.envelopes import envelope
from display.testing.mqtt_nodes import BRIDGE, RunningNode
from display.testing.waiting import wait_for

P = "room-display/v1"
SCHEDULES = f"{P}/rooms/+/schedule"


def start(tmp: Path, b: Broker, clock: FakeClock, nodes: list[RunningNode],
          name: str) -> RunningNode:
    n = RunningNode(tmp / name, BRIDGE, name=name, url=b.url, clock=clock).start()
    nodes.append(n)
    return n


def agreed(*bridges: RunningNode) -> str | None:
    """The publisher every bridge names, once they know each other and agree."""
    names = {n.mqtt.peers.status()["publisher"] for n in bridges}  # type: ignore[union-attr]
    known = all(len(n.mqtt.peers.bridges()) == len(bridges) for n in bridges)  # type: ignore[union-attr]
    return names.pop() if known and len(names) == 1 and None not in names else None


def test_a_lone_bridge_skips_its_echo_and_follows_once_another_arrives(
        tmp_path: Path, broker: Broker, clock: FakeClock, nodes: list[RunningNode]) -> None:
    rec = Recorder(broker.port, f"{P}/rooms/#")
    try:
        lone = start(tmp_path, broker, clock, nodes, "bridge-z")
        wait_for(lambda: rec.get(f"{P}/rooms/omm_b/schedule") is not None, timeout=10,
                 what="the lone bridge's schedules")
        assert SCHEDULES not in lone.mqtt.link.subscriptions()
        begin = clock.now() + timedelta(minutes=30)
        lone.sink.accept(envelope("created", uid="bk1", start=begin,
                                  end=begin + timedelta(minutes=30), rooms=("omm_a",)))
        first = wait_for(lambda: (s := decode_schedule(rec.get(f"{P}/rooms/omm_a/schedule")[0],  # type: ignore[index]
                                                       "omm_a")).bookings and s,
                         timeout=10, what="the booking published")
        assert first.bridge == "bridge-z"

        other = start(tmp_path, broker, clock, nodes, "bridge-b")
        # Both follow the schedules now and agree on one publisher (whichever published the
        # newest schedule; the newcomer published before it knew of the other).
        chosen = wait_for(lambda: agreed(lone, other), timeout=10, what="one publisher")
        for n in (lone, other):
            assert SCHEDULES in n.mqtt.link.subscriptions()
            assert n.mqtt.peers.is_publisher() == (n.config.node.name == chosen)  # type: ignore[union-attr]
        # The booking the lone bridge took stays on the broker, from the publisher.
        wait_for(lambda: (s := decode_schedule(rec.get(f"{P}/rooms/omm_a/schedule")[0],  # type: ignore[index]
                                               "omm_a")).bridge == chosen
                 and [b.uid for b in s.bookings] == ["bk1"], timeout=10,
                 what="the publisher's schedule with the booking")
    finally:
        rec.close()
