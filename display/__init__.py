"""room-display: Feishu meeting-room bookings to LED lights and e-ink door signs.

The package is laid out along the data flow (see README "How it works"): intake ->
store -> occupancy -> node (view) -> render -> encode -> transport (composed in devices) ->
publish; the layer order is checked by ``tests/unit/layers/test_layers.py``.
"""

__version__ = "0.1.0"
