"""Devices: a panel by the door, reached through a transport named by its URL.

:mod:`.base` holds the :class:`~display.devices.base.Device` protocol and the per-device worker
thread every device runs on, so one slow or dead device never delays another or the node's loop.
"""
