"""MQTT fan-out: one Feishu connection (the bridge), many panel agents (DESIGN.md, "roles").

- :mod:`display.transport.mqtt_client`: the node's one broker connection (:class:`MqttLink`);
- :mod:`display.transport.mqtt_schema`: topics and the schedule payload, encoded and validated;
- :mod:`display.publish.bridge`: the bridge publishes every room's schedule and state, retained;
- :mod:`display.intake.mqtt_agent`: a panel agent's intake, the schedule topics of its own rooms;
- :mod:`display.publish.homeassistant`: Home Assistant MQTT discovery;
- :mod:`display.encode.mqtt_image`: the e-ink image payload for Wi-Fi panels;
- :mod:`display.mqtt_roles`: wiring all of it to a :class:`~display.node.Node` by role.

Nothing in this package imports ``lark_oapi``: a panel agent must start fast and stay small.
"""
