"""Feishu's published sample, through the webhook and the long connection, onto a sign.

Whole nodes (``App`` with its intake child under the supervisor, the real lark-oapi against the
stand-in, a virtual e-ink sign). The sample is a daily series' event (``original_time`` 0) with
its documented, non-conforming ``event_id``: it is accepted, shows at once, and the targeted
re-sync it triggers brings tomorrow's occurrence from free/busy, long before ``resync_minutes``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from display.app import App
from display.config import load_config
from display.testing.feishu_standin import (
    FeishuStandIn,
    FreeBusyApi,
    Series,
    encrypted_body,
    signed_headers,
)
from display.testing.intake_support import HttpClient
from display.testing.published_sample import ROOMS, UID, published_sample
from display.testing.waiting import wait_for

KEY = "sample-encrypt-key"
TOKEN = "41a9425ea7df4536a7623e38fa321bae"  # the sample's own verification token


class Node:
    """An ``App`` running its loop, with a virtual e-ink sign on the sample's first room."""

    def __init__(self, tmp: Path, **feishu: Any) -> None:
        self.standin = FeishuStandIn(ping_interval=1, reconnect_interval=1)
        self.standin.start()
        self.api = FreeBusyApi(self.standin)
        self.panels = tmp / "panels"
        table = {"app_id": self.standin.app_id, "app_secret": self.standin.app_secret,
                 "domain": self.standin.domain, "resync_minutes": 1440, **feishu}
        lines = ["[node]", f"state_dir = {json.dumps(str(tmp / 'state'))}",
                 'timezone = "Asia/Shanghai"', "", "[feishu]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
        for i, room in enumerate(ROOMS):
            lines += ["", "[[rooms]]", f"open_id = {json.dumps(room)}", f'name = "Room {i}"']
        lines += ["", "[[rooms.devices]]", 'id = "sign"', 'kind = "eink"',
                  f"url = {json.dumps('virtual:' + str(self.panels))}", 'size = "296x128"']
        (tmp / "config.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.app = App(load_config(tmp / "config.toml"))
        self.app.start_intake()
        self.loop = threading.Thread(target=self.app.run, name="node-loop", daemon=True)
        self.loop.start()

    def close(self) -> None:
        self.app.stop()
        self.loop.join(15)
        self.app.close()
        self.standin.close()

    def sign(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads((self.panels / "sign.json").read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return doc


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    made: dict[str, Node] = {}
    try:
        made["webhook"] = Node(tmp_path_factory.mktemp("webhook"), mode="webhook",
                               listen="127.0.0.1:0", verification_token=TOKEN,
                               encrypt_key=KEY)
        made["long"] = Node(tmp_path_factory.mktemp("long"))
        yield made
    finally:
        for node in made.values():
            node.close()


def _post(node: Node, envelope: dict[str, Any]) -> tuple[int, Any]:
    intake = node.app.intake
    assert intake is not None
    listen = wait_for(lambda: intake.ready_listen, 30, what="the webhook listening")
    body = encrypted_body(envelope, KEY)
    client = HttpClient(listen)
    try:
        return client.request("POST", "/webhook/event", body, signed_headers(body, KEY))
    finally:
        client.close()


def _send(name: str, node: Node, sample: dict[str, Any]) -> None:
    if name == "webhook":
        status, reply = _post(node, sample)
        assert status == 200, reply
    else:
        wait_for(node.standin.connections, 30, what="the long connection")
        message = node.standin.deliver(sample)
        acks = wait_for(lambda: node.standin.acks_for(message), 15, what="the ack")
        assert acks[0].code == 200, acks


@pytest.mark.parametrize("mode", ["webhook", "long"])
def test_published_sample_shows_on_the_sign_and_its_series_follows(
        nodes: dict[str, Node], mode: str) -> None:
    node = nodes[mode]
    wait_for(lambda: node.app.node.status()["node"]["resync"]["at"], 30,
             what="the first re-sync pass")
    wait_for(lambda: node.sign().get("state") == "free", 15, what="a free sign")
    calls = len(node.api.calls)
    now = datetime.now(UTC).replace(microsecond=0)
    today = now - timedelta(minutes=10)  # the occurrence in progress
    # A daily series that began weeks ago; Feishu created it just now.
    node.api.calendar.series[UID] = Series(UID, ROOMS, today - timedelta(days=20),
                                           timedelta(hours=1))
    _send(mode, node, published_sample(today, today + timedelta(hours=1), now))
    sign = wait_for(lambda: len((s := node.sign()).get("next") or ()) == 2 and s, 20,
                    what="the next occurrences on the sign")
    assert sign["state"] == "busy"
    assert sign["current"]["uid"] == UID
    assert sign["current"]["start"] == today.isoformat()
    # Tomorrow's and the day after's (the window is two days ahead).
    assert [b["start"] for b in sign["next"]] == [(today + timedelta(days=d)).isoformat()
                                                  for d in (1, 2)]
    assert (node.panels / "sign.png").stat().st_size > 0
    # Only the sample's rooms were asked for, in one call, right after the event.
    assert node.api.rooms_asked()[calls:] == [list(ROOMS)]


@pytest.mark.parametrize("digits", ["\u00b2", "\uff11\uff17\uff16\uff14"])
def test_non_ascii_digits_get_one_400_naming_the_field(nodes: dict[str, Node],
                                                       digits: str) -> None:
    node = nodes["webhook"]
    now = datetime.now(UTC)
    sample = published_sample(now + timedelta(days=1), now + timedelta(days=1, hours=1), now)
    sample["uuid"] = f"digits-{ord(digits[0])}"
    sample["event"]["uid"] = "not-stored"
    sample["event"]["event_time"] = digits
    status, reply = _post(node, sample)
    assert status == 400
    assert reply["msg"].startswith("event.event_time: must use ASCII digits 0-9"), reply
    assert not node.app.store.seen(sample["uuid"])
    assert all(b.uid != "not-stored" for room in ROOMS for b in node.app.store.bookings(room))
