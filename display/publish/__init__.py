"""Publishing: the node's schedules and views out to other consumers, over MQTT.

MQTT fan-out is one Feishu connection (the bridge) and many panel agents:

- :mod:`display.publish.bridge`: the bridge publishes every room's schedule and state, retained;
- :mod:`display.publish.homeassistant`: Home Assistant MQTT discovery.

The rest of MQTT lives with its stage: the connection in :mod:`display.transport.mqtt_client`,
topics in :mod:`display.transport.mqtt_schema`, the schedule payload in
:mod:`display.encode.mqtt_schedule`, the agent's intake in
:mod:`display.intake.mqtt_agent`, the e-ink image payload in :mod:`display.encode.mqtt_image`, and
the wiring by role in :mod:`display.mqtt_roles`. None of it imports ``lark_oapi``: a panel agent
must start fast and stay small.
"""
