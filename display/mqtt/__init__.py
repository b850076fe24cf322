"""MQTT fan-out: one Feishu connection (the bridge), many panel agents (DESIGN.md, "roles").

- :mod:`display.mqtt.client`: the node's one broker connection (:class:`MqttLink`);
- :mod:`display.mqtt.schema`: topics and the schedule payload, encoded and validated;
- :mod:`display.mqtt.bridge`: the bridge publishes every room's schedule and state, retained;
- :mod:`display.mqtt.agent`: a panel agent's intake, the schedule topics of its own rooms;
- :mod:`display.mqtt.homeassistant`: Home Assistant MQTT discovery;
- :mod:`display.mqtt.image`: the e-ink image payload for Wi-Fi panels;
- :mod:`display.mqtt.service`: wiring all of it to a :class:`~display.node.Node` by role.

Nothing in this package imports ``lark_oapi``: a panel agent must start fast and stay small.
"""
