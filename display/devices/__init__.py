"""Devices: a panel by the door, reached through a transport named by its URL.

:mod:`.base` holds the :class:`~display.devices.base.Device` protocol and the per-device worker
thread every device runs on, so one slow or dead device never delays another or the node's loop.
A device is a renderer (:mod:`display.render`), an encoder (:mod:`display.encode`) and a transport
(:mod:`display.transport`), skipping what the far end already has with
:class:`display.unchanged.Unchanged`. :mod:`.factory` maps URL scheme and protocol to a builder
(:data:`~display.devices.factory.REGISTRY`) and starts what it builds.
"""
