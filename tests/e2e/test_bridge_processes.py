"""Two bridges and an agent as a site runs them: whole ``room-display run`` processes on one real
Mosquitto, Feishu's deliveries encrypted and signed to each bridge's webhook, one bridge's whole
process group SIGKILLed mid-stream (docs/MQTT.md, "Several bridges").

What a user relies on: every event a bridge acknowledged (HTTP 200) shows on the agent, whichever
bridge took it and whichever room it names; after the kill the other bridge carries on, a booking
only the dead bridge received is cancelled through the live one, and the agent never goes stale.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from display.testing.broker import Broker
from display.testing.envelopes import envelope
from display.testing.node_process import NodeProcess, agent_text, bridge_text
from display.testing.waiting import wait_for

ROOMS = ("omm_a", "omm_b", "omm_c", "omm_d", "omm_e", "omm_f", "omm_g", "omm_h")
#: The stream during which one bridge is killed: at least STREAM events, on until two went to
#: the dead bridge, at most STREAM_MAX (9 a room at most: the status lists the next 10).
STREAM, STREAM_MAX = 24, 56
KILL_AFTER = 9


def bridge(tmp: Path, broker: Broker, name: str) -> NodeProcess:
    """Configs differ only in the name and the webhook's listen address."""
    return NodeProcess(tmp / name, bridge_text(name, broker.url, ROOMS))


@dataclass
class Site:
    bridges: dict[str, NodeProcess]
    agent: NodeProcess
    base: datetime = field(default_factory=lambda: datetime.now(UTC).replace(
        second=0, microsecond=0) + timedelta(hours=2))
    #: uid -> (room, name of the bridge that acknowledged its creation)
    created: dict[str, tuple[str, str]] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    acked_at: dict[str, float] = field(default_factory=dict)  # uid -> monotonic time of its 200

    def send(self, to: str, uid: str, room: str, *, kind: str = "created",
             uuid: str | None = None) -> int:
        """One delivery to bridge ``to``; records what an HTTP 200 acknowledged."""
        n = int(uid.rsplit("-", 1)[-1]) if uid[-1].isdigit() else 0
        begin = self.base + timedelta(minutes=10 * n)
        code = self.bridges[to].deliver(envelope(
            kind, uid=uid, start=begin, end=begin + timedelta(minutes=5), rooms=(room,),
            event_time=2 if kind == "deleted" else 1, uuid=uuid))
        if code == 200:
            if kind == "deleted":
                self.cancelled.add(uid)
            else:
                self.created[uid] = (room, to)
                self.acked_at[uid] = time.monotonic()
        return code

    def expected(self) -> dict[str, set[str]]:
        want: dict[str, set[str]] = {room: set() for room in ROOMS}
        for uid, (room, _to) in self.created.items():
            if uid not in self.cancelled:
                want[room].add(uid)
        return want


def shown(node: NodeProcess) -> dict[str, set[str]] | None:
    """Each room's bookings as the running node's status shows them (None: not running)."""
    doc = node.status()
    if not doc["node"].get("running"):
        return None
    rooms: dict[str, set[str]] = {}
    for room in doc["rooms"]:
        uids = {b["uid"] for b in room["next"]}
        if room["current"]:
            uids.add(room["current"]["uid"])
        rooms[room["open_id"]] = uids
    return rooms


def replication(node: NodeProcess) -> dict[str, Any]:
    doc = node.status()
    if not doc["node"].get("running"):
        return {}
    result: dict[str, Any] = doc["node"].get("replication") or {}
    return result


class Watch(threading.Thread):
    """Reads the agent's status file all along, as ``room-display status`` would."""

    def __init__(self, agent: NodeProcess) -> None:
        super().__init__(daemon=True)
        self.agent = agent
        self.halt = threading.Event()
        self.samples: list[tuple[float, bool, bool]] = []  # (monotonic, bridge link up, stale)

    def run(self) -> None:
        while not self.halt.wait(0.02):
            try:
                doc = self.agent.status()
            except (OSError, ValueError):  # the file is replaced as it is read: the next one
                continue
            if not doc["node"].get("running"):
                continue
            up = bool(doc["node"]["links"].get("bridge", {}).get("up"))
            stale = any(room["stale"] for room in doc["rooms"])
            self.samples.append((time.monotonic(), up, stale))

    def longest_down(self) -> float:
        """The longest run of samples with the bridge link down, in seconds."""
        longest, since = 0.0, None
        for at, up, _stale in self.samples:
            if not up and since is None:
                since = at
            elif up and since is not None:
                longest, since = max(longest, at - since), None
        if since is not None:
            longest = max(longest, self.samples[-1][0] - since)
        return longest


@pytest.fixture
def site(tmp_path: Path, broker: Broker) -> Iterator[Site]:
    nodes = [bridge(tmp_path, broker, "bridge-a"), bridge(tmp_path, broker, "bridge-b"),
             NodeProcess(tmp_path / "agent-1", agent_text("agent-1", broker.url, ROOMS))]
    try:
        for node in nodes:
            node.start()
        a, b, agent = nodes
        yield Site({"bridge-a": a, "bridge-b": b}, agent)
    finally:
        for node in nodes:
            node.stop()


def until_shown(node: NodeProcess, want: dict[str, set[str]], what: str,
                timeout: float = 30) -> None:
    """Wait until ``node`` shows exactly ``want``; the failure names what differs."""
    try:
        wait_for(lambda: shown(node) == want, timeout=timeout, what=what)
    except AssertionError as exc:
        now = shown(node) or {}
        lacks = {r: sorted(u - now.get(r, set())) for r, u in want.items()
                 if u - now.get(r, set())}
        extra = {r: sorted(u - want.get(r, set())) for r, u in now.items()
                 if u - want.get(r, set())}
        raise AssertionError(f"{exc}: {node.name} lacks {lacks}, shows more: {extra}") from None


@pytest.mark.slow
def test_two_bridge_processes_lose_no_acknowledged_event_when_one_is_killed(
        site: Site, tmp_path: Path) -> None:
    a, b, agent = site.bridges["bridge-a"], site.bridges["bridge-b"], site.agent
    for node in (a, b):
        wait_for(node.webhook_up, timeout=90, what=f"{node.name}'s webhook")

    def agreed() -> str | None:
        seen = [replication(n) for n in (a, b)]
        names = {s.get("publisher") for s in seen}
        known = all(len(s.get("peers", {})) == 1 for s in seen)
        return names.pop() if known and len(names) == 1 and None not in names else None

    chosen = wait_for(agreed, timeout=60, what="both bridges name one publisher")
    # The publisher dies: the harder case (the other must take the room topics over).
    doomed, live = (a, b) if chosen == "bridge-a" else (b, a)
    # Feishu hands each event to one bridge: the same room through both, other rooms too.
    assert site.send(doomed.name, "only-dead-0", "omm_a") == 200
    assert site.send(live.name, "live-0", "omm_a") == 200
    assert site.send(live.name, "live-1", "omm_b") == 200
    assert site.send(doomed.name, "dead-1", "omm_c") == 200
    until_shown(agent, site.expected(), "the agent shows what both bridges acknowledged")
    wait_for(lambda: shown(agent) is not None and agent.status()["node"]["links"]["bridge"]["up"],
             timeout=30, what="the agent's bridge link up")

    watch = Watch(agent)
    watch.start()
    killed_at: list[float] = []

    def kill_when_due() -> None:
        wait_for(lambda: len(site.created) >= 4 + KILL_AFTER, timeout=60,
                 what="the stream under way")
        doomed.kill()  # the node and its intake child, with no goodbye
        killed_at.append(time.monotonic())

    killer = threading.Thread(target=kill_when_due, daemon=True)
    killer.start()
    retried = 0
    try:
        # Deliveries alternate between the bridges, as Feishu's random choice would; one the
        # dead bridge does not acknowledge is delivered again (the same uuid) to the live one,
        # as Feishu's retry reaches another connection.
        for i in range(STREAM_MAX):
            if i >= STREAM and retried >= 2:
                break
            uid, room = f"stream-{i + 2}", ROOMS[i % len(ROOMS)]
            uuid = f"stream-uuid-{i}"
            to = (a, b)[i % 2]
            if site.send(to.name, uid, room, uuid=uuid) != 200:
                retried += 1
                assert site.send(live.name, uid, room, uuid=uuid) == 200
        killer.join(timeout=60)
        assert killed_at and not doomed.alive()
        assert retried >= 2, "the stream ended before the kill: nothing went to a dead bridge"

        # A booking only the dead bridge received is cancelled through the live one.
        assert site.created["only-dead-0"][1] == doomed.name
        assert site.send(live.name, "only-dead-0", "omm_a", kind="deleted") == 200
        took_over = wait_for(lambda: replication(live).get("publishing"), timeout=30,
                             what="the live bridge publishes")
        assert took_over and replication(live)["peers"][doomed.name]["online"] is False

        # Everything the live bridge acknowledged shows on the agent at once. What the dead one
        # acknowledged in its last moments (committed, not yet sent to its peer) is safe in its
        # store and reaches the others when it is back.
        def settled() -> bool:
            now = shown(agent)
            return now is not None and now == shown(live) and all(
                uid in now[room] for uid, (room, to) in site.created.items()
                if to == live.name and uid not in site.cancelled)

        wait_for(settled, timeout=30, what="the agent shows what the live bridge has")
        behind = {uid for uid, (room, _to) in site.created.items()
                  if uid not in site.cancelled and uid not in (shown(agent) or {})[room]}
        assert all(site.created[uid][1] == doomed.name for uid in behind), behind
        # At most the events of its last moments (acknowledged just before the kill).
        assert all(killed_at[0] - site.acked_at[uid] < 3.0 for uid in behind), behind
        wait_for(lambda: watch.samples and watch.samples[-1][0] - killed_at[0] >= 2.0,
                 timeout=30, what="the agent watched for 2 s after the kill")

        log_before = doomed.log.stat().st_size
        doomed.start()  # the dead bridge returns: the live one stays the publisher
        until_shown(agent, site.expected(), "every acknowledged event on the agent")
        until_shown(live, site.expected(), "every acknowledged event in the live bridge")
        assert replication(live)["publishing"] is True
        # Its journal says it keeps quiet, not that it published what its gate held back.
        wait_for(lambda: b"kept for a takeover" in doomed.log.read_bytes()[log_before:],
                 timeout=10, what="the returning bridge's quiet line")
        assert not re.search(rb"published \d+ schedules", doomed.log.read_bytes()[log_before:])
    finally:
        watch.halt.set()
        watch.join(timeout=10)
    # The agent was never stale, and its bridge link never went down while a bridge was online.
    after_kill = [s for s in watch.samples if s[0] >= killed_at[0]]
    assert len(after_kill) >= 10, "the agent's status was hardly read after the kill"
    assert not any(stale for _at, _up, stale in watch.samples), "the agent turned stale"
    assert watch.longest_down() == 0.0, f"bridge link down {watch.longest_down():.2f} s"
