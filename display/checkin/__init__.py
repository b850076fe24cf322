"""Check-in at the door, release of no-shows and ending a meeting early.

- :mod:`.policy`: pure rules (which rooms, the window, back-to-back protection, series);
- :mod:`.ledger`: what happened to each booking in progress, kept in the schedule database so a
  restart (even ``kill -9``) neither forgets a booking nor releases one twice;
- :mod:`.releaser`: runs the Feishu helper (:mod:`display.intake.feishu.release`) once per
  release, in its own process: the node never imports ``lark_oapi``;
- :mod:`.service`: :class:`~.service.CheckinService`, what the node, the board's button, MQTT,
  the web page and ``room-display checkin`` talk to;
- :mod:`.control`: the node's local control socket that ``room-display checkin`` uses.
"""
