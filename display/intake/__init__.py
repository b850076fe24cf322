"""Intake: where bookings come in.

- :mod:`.envelope` validates a Feishu v1 envelope into a :class:`~display.model.RoomEvent`;
- :mod:`.sink` is the one path every Feishu event takes: validate, dedupe, commit, then answer;
- :mod:`.replay` feeds a JSON-lines file through that path (debugging, the demo);
- :mod:`.feishu` (the only package importing ``lark_oapi``, with :mod:`.resync` which runs inside
  it) runs the long connection or the webhook in a child process supervised by :mod:`.supervisor`.
"""
