"""Wire MQTT into a node by role: the link, then the bridge publisher or the agent intake.

:class:`App` calls this; tests and benchmarks use it directly with a :class:`~display.node.Node`
of their own. Build the :class:`MqttLink` first (:func:`make_link`) when devices need it
(``mqtt:TOPIC`` devices publish through the node's one connection), then the services.
"""

from __future__ import annotations

import logging

from display.clock import Clock
from display.config import Config
from display.intake.mqtt_agent import AgentIntake
from display.node import Node
from display.publish.bridge import BridgePublisher
from display.publish.fleet import FleetGatherer, NodeStatusPublisher
from display.publish.homeassistant import HomeAssistantDiscovery
from display.publish.peers import Peers
from display.store import ScheduleStore
from display.transport.mqtt_client import MqttLink

log = logging.getLogger(__name__)


def make_link(config: Config) -> MqttLink | None:
    """The node's broker connection, or None when the config has no ``[mqtt]``."""
    if config.mqtt is None:
        return None
    return MqttLink(config.mqtt, config.node.name)


class MqttServices:
    """The link and what runs on it for this node's role; a context manager."""

    def __init__(self, config: Config, node: Node, store: ScheduleStore, clock: Clock,
                 link: MqttLink | None = None) -> None:
        if config.mqtt is None:
            raise ValueError("MqttServices needs [mqtt] in the config")
        self.config = config
        self.node = node
        self.link = link or MqttLink(config.mqtt, config.node.name)
        node.add_status_source("mqtt", self.link.status)
        if config.role == "agent":
            # The broker is an agent's only source of schedules: a link of the stale rule.
            # A bridge's data depends on Feishu alone (README), so an outage of the broker
            # must not turn its own panels or its published state stale; its broker health is
            # in ``status`` under ``node.mqtt`` instead.
            self.link.on_link = lambda up, error: node.set_link("broker", up, error)
            node.freshness.expect("broker", clock.now())
        self.bridge: BridgePublisher | None = None
        self.agent: AgentIntake | None = None
        self.homeassistant: HomeAssistantDiscovery | None = None
        # Every node publishes its own health (devices, clock, version) for the fleet page;
        # the bridge gathers everyone's into ``node.fleet``.
        self.node_status = NodeStatusPublisher(self.link, node, clock)
        self.fleet: FleetGatherer | None = None
        self.peers: Peers | None = None
        self._own_store: ScheduleStore | None = None  # the peers' connection, if we opened it
        if config.role == "agent":
            self.agent = AgentIntake(self.link, node, store, clock, config)
        else:
            self.bridge = BridgePublisher(self.link, node, store, clock)
            self.fleet = FleetGatherer(self.link, node)
            if config.mqtt.homeassistant:
                self.homeassistant = HomeAssistantDiscovery(self.link, config, store)
            self._wire_peers(store, clock)
        if config.role == "agent" and config.mqtt.homeassistant:
            log.warning("mqtt.homeassistant is ignored on a panel agent: the bridge announces "
                        "every room")

    def _wire_peers(self, store: ScheduleStore, clock: Clock) -> None:
        """Several bridges on one broker: replicate commits, one of them publishes the rooms.

        The peers' events are applied on a connection without the outbox journal (they are not
        ours to send on): the node's own store unless it has one (tests share it with intake).
        """
        assert self.bridge is not None
        own = store if store.journal is None else ScheduleStore(store.path)
        if own is not store:
            self._own_store = own
        self.peers = peers = Peers(self.link, self.node, own, clock)
        bridge = self.bridge
        bridge.gate = peers.is_publisher
        bridge.bridges = peers.bridges
        bridge.on_schedule = peers.published
        peers.on_role.append(bridge.take_over)
        peers.on_bridges.append(bridge.reconfigure_bridges)
        if self.homeassistant is not None:
            ha = self.homeassistant
            ha.gate = peers.is_publisher
            peers.on_role.append(lambda floor: ha.announce() if floor is not None else None)

    def start(self) -> None:
        """Hook everything up and start connecting (returns at once; the broker may be down)."""
        if self.bridge is not None:
            self.bridge.attach()
        if self.agent is not None:
            self.agent.attach()
            self.node.add_status_source("mqtt_schedules", self.agent.status)
        if self.homeassistant is not None:
            self.homeassistant.attach()
        if self.peers is not None:
            self.peers.attach()
            self.node.add_status_source("replication", self.peers.status)
        if self.fleet is not None:
            self.fleet.attach()
            self.node.add_status_source("fleet", self.fleet.fleet)
        # Last: its connect hook then runs after the retained room topics went out.
        self.node_status.attach()
        self.link.start()

    def reconfigure(self, config: Config) -> None:
        """Follow a reloaded config's rooms (the connection settings need a restart)."""
        if config.mqtt != self.config.mqtt:
            log.warning("[mqtt] changed: restart the node to use the new connection settings")
        self.config = config
        if self.bridge is not None:
            self.bridge.reconfigure(config)
        if self.agent is not None:
            self.agent.reconfigure(config)
        if self.homeassistant is not None:
            self.homeassistant.reconfigure(config)

    def close(self) -> None:
        self.link.close()
        if self._own_store is not None:
            self._own_store.close()

    def __enter__(self) -> MqttServices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
