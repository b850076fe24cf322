"""Renderers: pure functions from a :class:`~display.model.RoomView` to what a panel shows.

``led`` turns a view into a colour and an effect; ``eink`` into a Pillow image. Neither does I/O:
encoding and transports live in :mod:`display.devices`.
"""
