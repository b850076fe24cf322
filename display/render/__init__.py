"""Renderers: pure functions from a :class:`~display.model.RoomView` to what a panel shows.

``led`` turns a view into a colour and an effect; ``eink`` into a Pillow image. Neither does I/O:
encoding lives in :mod:`display.encode`, transports in :mod:`display.transport`. ``identify``
holds the test patterns a device shows when asked to identify itself.

The e-ink sign is built up in layers: ``geometry`` (boxes), ``typeset`` (measuring and fitting
text), ``canvas`` (the bit planes), ``wording`` and ``facts`` (what the sign says), ``sections``
(how each part is drawn) and ``eink`` (where the parts go; the public entry).
"""
