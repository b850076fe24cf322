"""Intake: where bookings come in.

Both intakes report to a :class:`~display.intake.node_input.NodeInput` (``notify``, ``set_link``),
which the node satisfies; intake never imports the node.

- :mod:`.envelope` validates a Feishu v1 envelope into a :class:`~display.model.RoomEvent`;
- :mod:`.sink` is the one path every Feishu event takes: validate, dedupe, commit, then answer;
- :mod:`.replay` feeds a JSON-lines file through that path (debugging, the demo);
- :mod:`.feishu` (the only package importing ``lark_oapi``, re-sync from free/busy included)
  runs the long connection or the webhook in a child process supervised by :mod:`.supervisor`;
- :mod:`.mqtt_agent` is a panel agent's intake: the schedule topics of its own rooms.
"""
