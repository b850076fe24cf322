"""Transports: bytes to a place (a serial port, an MQTT broker, a directory). No rendering."""
