"""Publishing many retained messages: every one arrives, the link's count of unacknowledged
messages drains to zero, and a publisher that waits for the window never has more in flight."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from display.config import MqttConfig
from display.testing.broker import Broker, Recorder
from display.testing.waiting import wait_for
from display.transport.mqtt_client import PRUNE_ALL, MqttLink

COUNT = PRUNE_ALL + 1500  # past the size where a full sweep of the handles used to start


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    # Mosquitto queues at most 1,000 QoS 1 messages for a subscriber that falls behind and drops
    # the rest: the recorder here must see every one of thousands, so no limit.
    b = Broker(tmp_path / "broker", extra=("max_queued_messages 0",))
    b.start()
    yield b
    b.stop()


@pytest.fixture
def link(broker: Broker) -> Iterator[MqttLink]:
    link = MqttLink(MqttConfig(url=(broker.url,)), "window-test")
    link.start()
    wait_for(lambda: link.connected, timeout=30, what="the link to connect")
    yield link
    link.close()


def test_every_message_of_a_long_run_arrives_and_is_acknowledged(
        broker: Broker, link: MqttLink) -> None:
    recorder = Recorder(broker.port, "bulk/#")
    try:
        for i in range(COUNT):
            assert link.publish(f"bulk/{i}", f"payload {i}", retain=True) is not None
        assert link.flush(60), "not every message was acknowledged"
        assert link.unacknowledged() == 0
        wait_for(lambda: len(recorder.last) == COUNT, timeout=60, what="every message")
        assert recorder.get(f"bulk/{COUNT - 1}") == (f"payload {COUNT - 1}".encode(), False)
    finally:
        recorder.close()


def test_waiting_for_the_window_bounds_what_is_in_flight(broker: Broker, link: MqttLink) -> None:
    recorder = Recorder(broker.port, "win/#")
    try:
        most = 0
        for i in range(2000):
            assert link.wait_window(100, 30), "the window did not drain"
            most = max(most, link.unacknowledged())
            link.publish(f"win/{i}", b"x", retain=True)
        assert most < 100
        assert link.flush(60)
        wait_for(lambda: len(recorder.last) == 2000, timeout=60, what="every message")
    finally:
        recorder.close()


def test_waiting_for_the_window_gives_up_when_the_link_is_down(
        broker: Broker, link: MqttLink) -> None:
    broker.kill()
    wait_for(lambda: not link.connected, timeout=30, what="the link to notice")
    assert link.publish("gone/1", b"x") is None  # nothing is queued while disconnected
    assert link.wait_window(1, 5) is True  # nothing unacknowledged: nothing to wait for


def test_the_link_sends_each_packet_at_once(link: MqttLink) -> None:
    # A change is a room's schedule then its state, back to back: with Nagle's algorithm on
    # (paho's default) the state waited ~40 ms for the broker's delayed ACK of the schedule.
    client = link._client
    assert client is not None
    sock = client.socket()
    assert sock is not None
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
