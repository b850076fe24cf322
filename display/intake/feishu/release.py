"""Release one booking in Feishu: a short-lived helper process, the only caller of instance/reply.

The node never imports ``lark_oapi``; when :mod:`display.checkin` decides to release a booking it
runs ``python -m display.intake.feishu.release -c CONFIG`` with one JSON request on stdin::

    {"room_id": "omm_..", "uid": "..", "original_time": 0, "start": <unix s>, "end": <unix s>,
     "status": "NOT_CHECK_IN" | "ENDED_BEFORE_DUE", "timeout": <seconds>}

and reads one JSON line from stdout: ``{"outcome": O, "detail": "..."}`` with ``O`` one of

- ``released``: Feishu answered code 0 (``detail`` says whether free/busy still lists it after);
- ``refused``: Feishu answered an error code or HTTP error (nothing changed there);
- ``unknown``: no answer (timeout, connection lost): it may or may not have happened, so it is
  never sent again;
- ``gone``: free/busy no longer lists the booking: nothing was sent;
- ``series``: the booking is an occurrence of a recurring series: nothing was sent (which
  ``original_time`` releases one occurrence and not the whole series is not settled);
- ``failed``: the helper could not ask (config, token, free/busy unreachable): nothing was sent.

Before replying it re-reads the room's free/busy over eight days either side of the booking, so a
series with a weekly occurrence is recognised by its other instances. The request is sent once,
with a fresh headers dict (the SDK mutates the one it is given).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from display.config import load_config
from display.errors import ConfigError, EventError, FeishuApiError

if TYPE_CHECKING:  # imported when a release is asked for: lark-oapi's core is slow to load
    from display.intake.feishu.rawapi import RawApiError

log = logging.getLogger(__name__)

REPLY_URI = "/open-apis/meeting_room/instance/reply"
STATUSES = ("NOT_CHECK_IN", "ENDED_BEFORE_DUE")
#: How far either side of the booking free/busy is read to find a series' other occurrences.
SERIES_LOOKAROUND = timedelta(days=8)


def _request(raw: str) -> dict[str, Any]:
    req = json.loads(raw)
    if not isinstance(req, dict):
        raise ValueError("request must be a JSON object")
    for name, kind in (("room_id", str), ("uid", str), ("status", str)):
        if not isinstance(req.get(name), kind) or not req[name]:
            raise ValueError(f"request.{name} must be a non-empty string")
    for name in ("original_time", "start", "end"):
        if not isinstance(req.get(name), int) or isinstance(req[name], bool):
            raise ValueError(f"request.{name} must be an integer")
    if req["status"] not in STATUSES:
        raise ValueError(f"request.status must be one of {', '.join(STATUSES)}")
    return req


def release(req: dict[str, Any], config_path: Path) -> dict[str, str]:
    """Do what the module docstring says for one request; returns the result object."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return {"outcome": "failed", "detail": str(exc)}
    feishu = config.feishu
    if feishu is None or not feishu.app_id or not feishu.app_secret:
        return {"outcome": "failed", "detail": "releasing needs [feishu] app_id and app_secret"}
    # lark-oapi's core only, loaded here (see display.intake.feishu.sdk).
    from display.intake.feishu.freebusy import parse_freebusy
    from display.intake.feishu.rawapi import RawApi, RawApiError
    from display.intake.feishu.resync import LarkFreeBusy

    room, uid, original = req["room_id"], req["uid"], req["original_time"]
    start = datetime.fromtimestamp(req["start"], UTC)
    end = datetime.fromtimestamp(req["end"], UTC)
    try:
        api = LarkFreeBusy(feishu)
        answer = parse_freebusy(api.fetch([room], start - SERIES_LOOKAROUND,
                                          end + SERIES_LOOKAROUND), [room])
    except (FeishuApiError, EventError, ValueError) as exc:
        return {"outcome": "failed", "detail": f"cannot re-read free/busy: {exc}"}
    if room not in answer:
        return {"outcome": "failed", "detail": "free/busy could not answer for the room"}
    same = [b for b in answer[room] if b.uid == uid]
    if not any(b.original_time == original and b.start == start for b in same):
        return {"outcome": "gone", "detail": "free/busy no longer lists the booking"}
    ended = req["status"] == "ENDED_BEFORE_DUE"
    # An exception (original_time = its original start) names one occurrence without doubt;
    # an instance of a series (several slots of the uid, original_time 0) does not.
    if (original and not ended) or (not original and len(same) > 1):
        return {"outcome": "series", "detail": "an occurrence of a recurring series: not "
                "released (which original_time releases one occurrence and not the whole "
                "series is unconfirmed); end or release it in Feishu"}
    timeout = float(req.get("timeout", 10.0))
    body = {"room_id": room, "uid": uid, "original_time": original, "status": req["status"]}
    try:
        RawApi(feishu, timeout).request("POST", REPLY_URI, body=body)
    except RawApiError as exc:
        return _unreleased(exc)
    return {"outcome": "released", "detail": _verify(api, room, uid, original, start, end)}


def _unreleased(exc: RawApiError) -> dict[str, str]:
    """The outcome of a reply Feishu did not accept."""
    from display.intake.feishu.rawapi import Failure

    if exc.failure is Failure.TOKEN:  # nothing was sent
        return {"outcome": "failed", "detail": f"{exc}: {exc.msg}"}
    if exc.failure is Failure.UNREACHABLE:  # timeouts too: it may have happened
        return {"outcome": "unknown", "detail": f"no answer from Feishu ({exc.reason}): "
                "not sent again"}
    if exc.status is None:
        return {"outcome": "unknown", "detail": "Feishu answered something that is not JSON"}
    return {"outcome": "refused", "detail": f"Feishu refused: HTTP {exc.status}, "
            f"code {exc.code}: {exc.msg[:200]}"}


def _verify(api: Any, room: str, uid: str, original: int, start: datetime,
            end: datetime) -> str:
    """Whether free/busy still lists the booking after the reply (logged, not acted on)."""
    from display.intake.feishu.freebusy import parse_freebusy

    try:
        after = parse_freebusy(api.fetch([room], start, end), [room]).get(room, [])
    except (FeishuApiError, EventError, ValueError) as exc:
        return f"released; not verified ({exc})"
    if any(b.uid == uid and b.original_time == original and b.start == start for b in after):
        return "released; free/busy still lists it"
    return "released; free/busy agrees"


def main(argv: list[str] | None = None) -> int:
    """Read one request from stdin, write one result line to stdout; exit 0 (2: bad request)."""
    parser = argparse.ArgumentParser(prog="python -m display.intake.feishu.release",
                                     description="release one booking in Feishu")
    parser.add_argument("-c", "--config", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s feishu-release[%(process)d] "
                               "%(name)s: %(message)s")
    out = sys.stdout
    sys.stdout = sys.stderr  # the SDK's logger may print: the result line stays alone
    try:
        req = _request(sys.stdin.read())
    except ValueError as exc:
        out.write(json.dumps({"outcome": "failed", "detail": f"bad request: {exc}"}) + "\n")
        return 2
    result = release(req, args.config)
    log.info("%s %s of %s in %s: %s", req["status"], result["outcome"], req["uid"],
             req["room_id"], result["detail"])
    out.write(json.dumps(result, ensure_ascii=False) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
