"""The Feishu intake child process: the only package that imports ``lark_oapi``.

lark-oapi keeps one module-global asyncio loop, its ``ws.Client.start()`` blocks forever, has no
``stop()`` and can die silently; importing all of it costs seconds and ~170 MB (we import only
its ``core`` and ``ws``, see :mod:`.sdk`). So the intake runs in a child process, started and
restarted by :class:`display.intake.supervisor.IntakeSupervisor`::

    python -m display.intake.feishu -c CONFIG [--alive-interval SECONDS]
        [--resync-interval SECONDS] [--resync-backoff SECONDS]   (the last two: tests)

It loads the config, opens the schedule store under ``[node] state_dir``, and feeds every event
through :class:`~display.intake.sink.EventSink` *before* acknowledging it:

- ``mode = "long_connection"`` (default): the real ``lark.ws.Client`` in a thread, handing each
  event to :class:`~.long_connection.PayloadHandler`; a watchdog exits
  the process when no frame (ping, pong or data) arrived for 3 ping intervals, so the parent
  restarts it. Invalid events are logged and acknowledged (retries cannot fix them); a store
  failure makes the SDK answer 500 so Feishu retries.
- ``mode = "webhook"``: an asyncio HTTP/1.1 server (httptools) on ``listen`` serving ``path`` (and
  ``GET /healthz``) that does Feishu's documented checks itself (:mod:`.checks`: replay window
  and signature over the raw bytes, then bounded JSON, AES-256-CBC, verification token), each
  rejection with a clear status (see :class:`~display.intake.feishu.webhook.WebhookProtocol`).
  It imports no ``lark_oapi`` unless re-sync is on.

Unless ``resync = false``, it also re-syncs every room from Feishu's free/busy API
(:mod:`display.intake.feishu.resync`): once ready, after each long-connection reconnect and every
``resync_minutes``; that needs ``app_id`` and ``app_secret`` in webhook mode too.

Parent contract: stdout carries only these JSON lines (one object per line, UTF-8)::

    {"ready": true, "mode": "webhook"|"long_connection", "listen": "HOST:PORT"|null}
        once, when listening (webhook; the real port when the config says :0) or connected
    {"changed": ["omm_..", ...]}
        after each committed change, the rooms whose bookings changed (sorted)
    {"link": "up"}  /  {"link": "down", "error": "..."}
        on connect, disconnect and reconnect (webhook: "up" once listening)
    {"alive": <unix time>, "last_frame_age": <seconds>|null}
        every ``--alive-interval`` seconds (default 5); the age of the newest frame from Feishu
    {"resync": {"ok": bool, "at": <unix time>, "error": "..."|null, "rooms": <int>,
                "changed": <int>, "next_at": <unix time>|null}}
        after each re-sync pass: whether every room was re-synced, how many rooms were (and
        changed; their ids came in "changed" lines first), the failure, and when the next pass is
        due (null: only after a reconnect). Also once with ok false and next_at null when
        re-sync is on but cannot run (e.g. no app credentials in webhook mode).

    {"events": {"applied": <int>, "unknown_room": <int>, "duplicate": <int>,
                "superseded": <int>, "ignored": <int>, "refused": <int>, "failed": <int>}}
        deliveries counted since the previous such line (keys with 0 left out), at most every
        0.25 s while events arrive (:mod:`.reports`)
    {"store": {"ok": bool, "error": "..."|null}}
        when a commit to the store failed (the delivery was not acknowledged) and when the store
        took a write again (a commit or the retry every 5 s)
    {"fatal": "<one line>"}
        just before a failure exit (codes 1 and 2), when the child knows why: e.g. "cannot
        listen on 127.0.0.1:7777: address already in use (feishu.listen)"; the parent shows it
        as the link's error
    {"refused": "<one line>"}
        once, just before exit code 78, when the config is refused outright (webhook mode
        without ``verification_token``): the parent does not restart the child.

Readers must ignore keys they do not know. Logs go to stderr. The child exits when stdin reaches
EOF (the parent is gone), so run it by hand as ``sleep infinity | python -m ...``.
Exit codes: 0 stdin closed; 1 link lost, watchdog or unexpected error; 2 configuration or
credentials rejected (retrying soon will not help: back off); 78 the config is refused (see
``refused``; not restarted until the config changes).

The modules:

- :mod:`.child`: ``main()`` (the command line above): config, store and sink, re-sync wiring;
- :mod:`.channel`: the stdout lines above, exit codes, exiting when stdin closes;
- :mod:`.reports`: the ``events`` and ``store`` lines, and retrying a store that failed;
- :mod:`.checks`: the webhook's signature, replay window, decryption, nesting and token checks;
- :mod:`.sdk`: lark-oapi's ``core`` and ``ws`` without the SDK's every service (with a logged
  fallback to ``import lark_oapi``);
- :mod:`.webhook` and :mod:`.long_connection`: the two modes;
- :mod:`.release`: not part of the child: a short-lived helper the node runs to release one
  booking (``meeting_room/instance/reply``) for :mod:`display.checkin`.

This file imports nothing, so importing :mod:`.channel` alone does not load ``lark_oapi``;
``python -m`` runs :mod:`.__main__`.
"""
