"""The kill -9 soak: nothing acknowledged is lost while the bridge is killed over and over.

A real bridge (``room-display run``: webhook intake with an Encrypt Key, MQTT to a real local
Mosquitto) gets signed deliveries at a steady rate, as Feishu sends them: bookings created,
moved and cancelled across several rooms, from a few connections at once. A delivery that gets
no 200 (refused, reset, no answer within Feishu's 3 s) is sent again later with the same
``uuid``, as Feishu retries; some deliveries that were answered are sent again anyway (Feishu
delivers at least once). Every few seconds (at random) the bridge's whole process group is
SIGKILLed and started again at once, as systemd's ``Restart=`` would.

At the end every delivery has been answered 200 (the sender, unlike Feishu, never gives up,
so the expected schedule is exact), the bridge is killed and restarted once more, and then:

- every answered delivery's ``uuid`` is in the bridge's store, and each booking there is as its
  newest answered delivery left it;
- a panel agent (``room-display run`` without ``[feishu]``) started only now, so it sees only
  the retained room topics, holds the same bookings in its own store.

Used by ``bench/bench_soak.py`` (minutes) and ``tests/e2e/test_soak.py`` (seconds).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from display.store import ScheduleStore
from display.testing.broker import Broker, Recorder, free_port
from display.testing.feishu_sender import (
    KEY,
    PATH,
    TOKEN,
    Delivery,
    Effect,
    Pace,
    Sender,
    Tally,
    Workload,
)
from display.testing.node_process import NodeProcess
from display.testing.waiting import wait_for
from display.transport.mqtt_schema import ONLINE, Topics

BRIDGE = "soak-bridge"
AGENT = "soak-agent"

BRIDGE_TOML = """\
[node]
name = "{name}"
timezone = "UTC"
state_dir = {state}
clock = "trust"

[feishu]
mode = "webhook"
listen = "127.0.0.1:{port}"
path = "{path}"
verification_token = "{token}"
encrypt_key = "{key}"
resync = false

[mqtt]
url = "{broker}"

[web]
enabled = false  # on by default on 127.0.0.1:8470, a port a shared machine may be using
"""

AGENT_TOML = """\
[node]
name = "{name}"
timezone = "UTC"
state_dir = {state}
clock = "trust"

[mqtt]
url = "{broker}"
"""


@dataclass(frozen=True)
class SoakPlan:
    """How hard and how long to push."""

    duration: float = 90.0  #: seconds of sending and killing
    kills: int = 0  #: instead of ``duration``: this many kills, the last one included
    rate: float = 50.0  #: new deliveries a second
    rooms: int = 6
    kill_after: tuple[float, float] = (4.0, 12.0)  #: seconds up before each kill (uniform)
    senders: int = 3  #: connections posting at once
    duplicate_share: float = 0.05  #: answered deliveries sent again
    seed: int | None = None
    timeout: float = 3.0  #: Feishu's: no answer within 3 s counts as none
    ready_timeout: float = 60.0  #: restart -> ready, or the node is knocked over
    drain_timeout: float = 60.0  #: after the last kill, for every delivery to be answered
    agent_timeout: float = 30.0  #: for the fresh agent to hold every room


# -- checking ---------------------------------------------------------------------------------


def acceptable(deliveries: list[Delivery], acked: set[str]) -> set[Effect]:
    """What a booking may be in a store: as its newest answered delivery left it, or as a newer
    delivery that was never answered did (it may have been committed just before a kill)."""
    newest = max((d.version for d in deliveries if d.uuid in acked), default=None)
    if newest is None:
        return {frozenset(), *(d.effect for d in deliveries)}
    return {d.effect for d in deliveries if d.version >= newest
            and (d.uuid in acked or d.version > newest)}


def held(store: ScheduleStore, rooms: list[str]) -> dict[str, Effect]:
    """Every booking of ``rooms`` in ``store``, by uid."""
    found: dict[str, set[tuple[str, datetime, datetime]]] = {}
    for room in rooms:
        for b in store.bookings(room):
            found.setdefault(b.uid, set()).add((room, b.start, b.end))
    return {uid: frozenset(slots) for uid, slots in found.items()}


def wrong_bookings(store: ScheduleStore, rooms: list[str], by_uid: dict[str, list[Delivery]],
                   acked: set[str]) -> dict[str, str]:
    """Bookings not as the deliveries say, by uid, each with what is wrong."""
    have = held(store, rooms)
    out = {}
    for uid in sorted(set(by_uid) | set(have)):
        state = have.get(uid, frozenset())
        if uid not in by_uid:
            out[uid] = f"booking {uid} is in the store but was never delivered"
        elif state not in acceptable(by_uid[uid], acked):
            out[uid] = f"booking {uid} is {_show(state)}"
    return out


def _show(effect: Effect) -> str:
    if not effect:
        return "absent"
    return ", ".join(f"{room} {start:%m-%d %H:%M}-{end:%H:%M}"
                     for room, start, end in sorted(effect))


@dataclass(frozen=True)
class SoakReport:
    """What the soak measured. ``lost`` lists every answered delivery not in effect."""

    kills: int
    sent: int  #: distinct deliveries
    posts: int  #: HTTP requests: first tries, retries, answered ones sent again
    acked: int  #: distinct deliveries answered 200
    retries: int  #: requests that were retries
    retried: int  #: distinct deliveries retried
    answer_lost: int  #: retries answered "duplicate": committed before a kill, the 200 lost
    again: int  #: answered deliveries sent again, each answered "duplicate"
    unanswered: tuple[str, ...]  #: deliveries never answered 200 by the end
    lost: tuple[str, ...]
    wrong: tuple[str, ...]  #: bookings wrong without an answered delivery to blame
    webhook_ready: tuple[float, ...]  #: s, restart -> the webhook answers /healthz
    online_ready: tuple[float, ...]  #: s, restart -> the bridge online on the broker
    latencies: tuple[float, ...]  #: ms, request -> 200
    eventual: tuple[float, ...]  #: ms, first try -> 200, of retried deliveries
    failures: dict[str, int]
    verdicts: dict[str, int]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    tracebacks: int  #: in the bridge's and the agent's logs
    seconds: float

    @property
    def ready(self) -> tuple[float, ...]:
        """Seconds from each restart until the webhook answers and the bridge is online."""
        return tuple(map(max, self.webhook_ready, self.online_ready))

    @property
    def ok(self) -> bool:
        """Nothing answered was lost, every delivery was answered, every booking is right."""
        return not (self.lost or self.unanswered or self.wrong)


class Soak:
    """The site (broker, bridge, agent) in ``directory``; :meth:`run` once."""

    def __init__(self, directory: Path, plan: SoakPlan,
                 say: Callable[[str], None] = lambda line: None) -> None:
        self.directory = directory
        self.plan = plan
        self.say = say
        self.rng = random.Random(plan.seed)
        self.rooms = [f"omm_soak{i}" for i in range(plan.rooms)]
        rooms_toml = "".join(f'\n[[rooms]]\nopen_id = "{r}"\nname = "Soak {i}"\n'
                             for i, r in enumerate(self.rooms))
        self.broker = Broker(directory / "broker")
        self.port = free_port()
        self.bridge = NodeProcess(directory / "bridge", BRIDGE_TOML.format(
            name=BRIDGE, state=json.dumps(str(directory / "bridge-state")), port=self.port,
            path=PATH, token=TOKEN, key=KEY, broker=self.broker.url) + rooms_toml)
        self.agent = NodeProcess(directory / "agent", AGENT_TOML.format(
            name=AGENT, state=json.dumps(str(directory / "agent-state")),
            broker=self.broker.url) + rooms_toml)
        self.availability = Topics().availability(BRIDGE)

    def run(self) -> SoakReport:
        """Soak, check, stop everything; the report says what was lost (nothing, we hope)."""
        plan = self.plan
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        workload = Workload(self.rng, self.rooms, f"soak{self.rng.getrandbits(32):08x}")
        sender = Sender(Pace(plan.rate, plan.senders, plan.duplicate_share, plan.timeout),
                        workload, self.rng, self.port)
        with contextlib.ExitStack() as stack:  # stopped in reverse: sender first, broker last
            self.broker.start()
            stack.callback(self.broker.stop)
            stack.callback(self.bridge.stop)
            stack.callback(self.agent.stop)
            recorder = Recorder(self.broker.port, self.availability)
            stack.callback(recorder.close)
            stack.callback(sender.close)
            webhook, online = self._kill_loop(recorder, sender)
            sender.close()  # nothing is posted while the stores are checked
            lost, wrong = self._check(sender.tally)
        tally = sender.tally
        eventual = [(tally.acked[u] - tally.first_sent[u]) * 1000 for u in tally.retried
                    if u in tally.acked]
        return SoakReport(
            kills=len(webhook) - 1, sent=len(tally.deliveries), posts=tally.posts,
            acked=len(tally.acked), retries=tally.retries, retried=len(tally.retried),
            answer_lost=tally.answer_lost, again=tally.again,
            unanswered=tuple(sorted(set(tally.deliveries) - set(tally.acked))),
            lost=tuple(lost), wrong=tuple(wrong), webhook_ready=tuple(webhook[1:]),
            online_ready=tuple(online[1:]), latencies=tuple(tally.latencies),
            eventual=tuple(eventual), failures=dict(tally.failures),
            verdicts=dict(tally.verdicts), load_before=load_before,
            load_after=os.getloadavg(),
            tracebacks=self.bridge.tracebacks() + self.agent.tracebacks(),
            seconds=time.perf_counter() - t0)

    def _kill_loop(self, recorder: Recorder, sender: Sender) -> tuple[list[float], list[float]]:
        """Start the bridge, send, kill and restart it until the plan's time is up; answer
        every delivery; kill and restart it once more. Seconds from each start to the webhook
        answering and to ``online`` (the first start first)."""
        plan = self.plan
        self.bridge.start()
        times = [self._ready(recorder, 0)]
        until = f"{plan.kills} kills" if plan.kills else f"{plan.duration:g} s"
        self.say(f"bridge up; sending {plan.rate:g} deliveries/s for {until}, killing it "
                 f"every {plan.kill_after[0]:g}-{plan.kill_after[1]:g} s")
        sender.start()
        end = time.monotonic() + plan.duration
        pause = threading.Event()  # never set: its wait() paces the kills
        while True:
            up = self.rng.uniform(*plan.kill_after)
            if (len(times) >= plan.kills if plan.kills
                    else up >= end - time.monotonic()):  # the last kill comes after the drain
                break
            pause.wait(up)  # the pace of the kills, not a wait for something
            times.append(self._restart(recorder))
            self.say(f"kill {len(times) - 1}: answering again after {times[-1][0]:.2f} s, "
                     f"online after {times[-1][1]:.2f} s; {sender.outstanding()} unanswered")
        if not plan.kills:
            pause.wait(max(0.0, end - time.monotonic()))
        sender.stop_new()
        self._drain(sender)
        times.append(self._restart(recorder))  # what is checked has been through a restart
        self.say(f"kill {len(times) - 1} (the last, after every delivery was answered): "
                 f"answering again after {times[-1][0]:.2f} s")
        return [w for w, _ in times], [o for _, o in times]

    def _ready(self, recorder: Recorder, online_before: int) -> tuple[float, float]:
        """Seconds from the latest start until the webhook answers ``/healthz``, and until the
        bridge is ``online`` on the broker (a message after the ``online_before``-th)."""
        started = self.bridge.started_at
        seen: dict[str, float] = {}

        def up() -> bool:
            # The broker first: a look costs nothing, while /healthz may wait on a connection.
            got = recorder.get(self.availability)
            if ("online" not in seen and recorder.count(self.availability) > online_before
                    and got is not None and got[0] == ONLINE.encode()):
                seen["online"] = time.perf_counter() - started
            if "webhook" not in seen and self.bridge.webhook_up():
                seen["webhook"] = time.perf_counter() - started
            return len(seen) == 2

        wait_for(up, self.plan.ready_timeout, "the bridge to answer and be online again",
                 interval=0.01)
        return seen["webhook"], seen["online"]

    def _restart(self, recorder: Recorder) -> tuple[float, float]:
        before = recorder.count(self.availability)
        self.bridge.kill()
        self.bridge.start()
        return self._ready(recorder, before)

    def _drain(self, sender: Sender) -> None:
        try:
            wait_for(lambda: sender.outstanding() == 0, self.plan.drain_timeout,
                     "every delivery to be answered", interval=0.05)
        except AssertionError:
            self.say(f"{sender.outstanding()} deliveries still unanswered after "
                     f"{self.plan.drain_timeout:g} s")

    def _check(self, tally: Tally) -> tuple[list[str], list[str]]:
        """Lost answered deliveries (each with why) and otherwise wrong bookings."""
        acked = set(tally.acked)
        by_uid: dict[str, list[Delivery]] = {}
        for d in tally.deliveries.values():
            by_uid.setdefault(d.uid, []).append(d)
        newest = {uid: max((d for d in ds if d.uuid in acked), key=lambda d: d.version,
                           default=None) for uid, ds in by_uid.items()}
        lost: dict[str, str] = {}
        wrong: list[str] = []

        def blame(found: dict[str, str], where: str) -> None:
            for uid, what in found.items():
                culprit = newest.get(uid)
                if culprit is None:
                    wrong.append(f"{where}: {what}")
                else:
                    lost.setdefault(culprit.uuid, f"{where}: {what}, answered {culprit.kind} "
                                                  f"{culprit.uuid} says {_show(culprit.effect)}")

        with ScheduleStore(self.directory / "bridge-state" / "schedule.db") as store:
            for uuid in sorted(acked):
                if not store.seen(uuid):
                    lost.setdefault(uuid, f"bridge store: answered delivery {uuid} not recorded")
            blame(wrong_bookings(store, self.rooms, by_uid, acked), "bridge store")
        for line in tally.again_wrong:
            lost.setdefault(line.split()[0], f"bridge: {line}")
        # A panel agent that starts now sees only what is retained on the broker.
        self.agent.start()
        agent_db = self.directory / "agent-state" / "schedule.db"
        wait_for(lambda: self.agent.alive() and agent_db.exists(), self.plan.agent_timeout,
                 "the agent's store")
        found: dict[str, str] = {}

        def agent_agrees() -> bool:
            nonlocal found
            with ScheduleStore(agent_db) as store:
                found = wrong_bookings(store, self.rooms, by_uid, acked)
            return not found

        with contextlib.suppress(AssertionError):  # what still differs is reported
            wait_for(agent_agrees, self.plan.agent_timeout, "the agent's bookings", interval=0.2)
        blame(found, "agent (retained topics)")
        return [f"{u}: {why}" for u, why in sorted(lost.items())], wrong
