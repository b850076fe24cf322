"""room-display: Feishu meeting-room bookings to LED lights and e-ink door signs.

The package is laid out along the data flow (see README "Architecture"):
intake (Feishu, replay, MQTT) -> store -> occupancy (pure) -> render -> devices (transports).
"""

__version__ = "0.1.0"
