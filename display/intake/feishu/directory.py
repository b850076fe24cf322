"""The tenant's meeting rooms from Feishu's directory, for ``room-display rooms`` and ``map``.

``GET /open-apis/vc/v1/rooms?page_size=100&page_token=..`` (tenant token, scope
``vc:room:readonly``) lists every room, ``page_token``/``has_more`` paging; each room names its
level (``room_level_id``) and the levels above it (``path``, level ids outermost first). Levels
form a free tree (buildings, floors, whatever the tenant made), named through
``POST /open-apis/vc/v1/room_levels/mget {"level_ids": [...]}``. ``rooms/search`` would need a
*user* token, so a name is matched here, locally. lark-oapi has typed clients for both, but they
load the whole SDK: these are raw requests through its core, as re-sync's
(:class:`~display.intake.feishu.rawapi.RawApi`).

A rate limit (HTTP 429 or code 99991400) is waited out when ``x-ogw-ratelimit-reset`` asks for
at most :data:`MAX_WAIT` seconds, else it is an error saying when to try again. Every failure is
a :class:`~display.errors.FeishuApiError` of one line naming what to fix: no or wrong app
credentials, a missing scope (with Feishu's code), the network.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from display.config import FeishuConfig
from display.errors import FeishuApiError
from display.intake.feishu.rawapi import RATE_LIMITED, Failure, RawApi, RawApiError

log = logging.getLogger(__name__)

ROOMS_URI = "/open-apis/vc/v1/rooms"
LEVELS_URI = "/open-apis/vc/v1/room_levels/mget"
SCOPE = "vc:room:readonly"
PAGE_SIZE = 100  # the API's largest page
#: Level ids per ``mget`` call: the limit is undocumented, so calls stay small.
LEVELS_PER_CALL = 50
#: A directory larger than this many pages (100,000 rooms) is taken as an answer gone wrong.
MAX_PAGES = 1000
#: Feishu's codes for a scope the app lacks (tenant token; user token).
SCOPE_CODES = (99991672, 99991679)
#: The longest rate-limit wait done for the user; a longer one is reported instead.
MAX_WAIT = 10.0
HTTP_TIMEOUT = 10.0
_TEXT = 160  # characters of a message from Feishu quoted in an error


@dataclass(frozen=True, slots=True)
class DirectoryRoom:
    """One room of the tenant: its id (``omm_...``), name, capacity and level names."""

    room_id: str
    name: str
    capacity: int | None
    path: tuple[str, ...]  # level names, outermost first (building, floor, ...)

    def to_json(self) -> dict[str, Any]:
        return {"open_id": self.room_id, "name": self.name, "capacity": self.capacity,
                "path": list(self.path)}


class Directory:
    """Reads the room directory with the app's tenant token.

    ``sleep`` waits out a short rate limit (a parameter so that its bound can be checked).
    """

    def __init__(self, feishu: FeishuConfig, *, timeout: float = HTTP_TIMEOUT,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not feishu.app_id or not feishu.app_secret:
            raise FeishuApiError("no Feishu app credentials: set [feishu] app_id and app_secret "
                                 "(the app needs the scope vc:room:readonly)")
        self.domain = feishu.domain
        try:
            self._api = RawApi(feishu, timeout)
        except ValueError as exc:  # a plain-http domain that is not loopback
            raise FeishuApiError(f"[feishu] domain: {exc}") from None
        self._sleep = sleep

    def rooms(self) -> list[DirectoryRoom]:
        """Every room of the tenant, with its level names."""
        raw = list(self._pages())
        wanted = sorted({i for room in raw for i in _level_ids(room)})
        names: dict[str, str] = {}
        for i in range(0, len(wanted), LEVELS_PER_CALL):
            names.update(self._levels(wanted[i:i + LEVELS_PER_CALL]))
        return sorted((_room(room, names) for room in raw),
                      key=lambda r: (r.path, r.name, r.room_id))

    def _pages(self) -> Iterator[Mapping[str, Any]]:
        token = ""
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            queries = [("page_size", str(PAGE_SIZE))] + ([("page_token", token)] if token else [])
            data = self._call("GET", ROOMS_URI, queries=queries)
            rooms = data.get("rooms") or []
            if not isinstance(rooms, list):
                raise FeishuApiError("rooms: Feishu's answer has no list of rooms (data.rooms)")
            # A room without an id cannot be configured: it is left out.
            yield from (r for r in rooms if isinstance(r, Mapping)
                        and isinstance(r.get("room_id"), str) and r["room_id"])
            token = data.get("page_token") or ""
            if not data.get("has_more"):
                return
            if not isinstance(token, str) or not token or token in seen:
                raise FeishuApiError("rooms: Feishu said has_more but gave no new page_token")
            seen.add(token)
        raise FeishuApiError(f"rooms: more than {MAX_PAGES} pages; stopped")

    def _levels(self, ids: Sequence[str]) -> dict[str, str]:
        data = self._call("POST", LEVELS_URI, body={"level_ids": list(ids)})
        items = data.get("items") or []
        return {str(item["room_level_id"]): str(item.get("name") or item["room_level_id"])
                for item in items if isinstance(item, Mapping)
                and isinstance(item.get("room_level_id"), str)}

    def _call(self, method: Literal["GET", "POST"], uri: str, *,
              queries: list[tuple[str, str]] | None = None,
              body: Any = None) -> Mapping[str, Any]:
        """One request's ``data``, a short rate limit waited out; FeishuApiError otherwise."""
        waited = 0.0
        while True:
            try:
                answer = self._api.request(method, uri, queries=queries or (), body=body)
            except RawApiError as exc:
                if exc.failure is not Failure.RATE_LIMITED:
                    raise _worded(uri, exc) from None
                reset = exc.retry_after
                if reset is None or waited + reset > MAX_WAIT:
                    when = f"in {reset:.0f} s" if reset is not None else "in a minute"
                    raise FeishuApiError(f"Feishu's rate limit (code {RATE_LIMITED}) for {uri}: "
                                         f"try again {when}") from None
                log.info("rate limited by Feishu: waiting %.0f s as it asks", reset)
                self._sleep(reset)
                waited += reset
                continue
            data = answer.get("data")
            return data if isinstance(data, Mapping) else {}


def _worded(uri: str, exc: RawApiError) -> FeishuApiError:
    """A failed request in words that name what to fix."""
    if exc.failure is Failure.TOKEN:
        return FeishuApiError(f"Feishu refused the app credentials (code {exc.code}: "
                              f"{_quote(exc.msg)}); check [feishu] app_id and app_secret")
    if exc.failure is Failure.UNREACHABLE:
        return FeishuApiError(f"{exc} (network, DNS or proxy; [feishu] domain)")
    if exc.status is None:  # the SDK could not decode a JSON answer
        return FeishuApiError(str(exc))
    if exc.failure is Failure.NOT_JSON:
        return FeishuApiError(f"{uri}: HTTP {exc.status}, an answer that is not a JSON object")
    if exc.code in SCOPE_CODES:
        return FeishuApiError(f"the app lacks the scope {SCOPE} (Feishu code {exc.code}: "
                              f"{_quote(exc.msg)}); add it under Permissions in the developer "
                              "console and publish a new version")
    return FeishuApiError(f"{uri}: HTTP {exc.status}, Feishu code {exc.code}: {_quote(exc.msg)}")


def _level_ids(room: Mapping[str, Any]) -> list[str]:
    path = room.get("path")
    ids = [i for i in path if isinstance(i, str)] if isinstance(path, list) else []
    level = room.get("room_level_id")
    if isinstance(level, str) and level not in ids:
        ids.append(level)
    # The tenant's root level ("0", or none) has no name worth showing.
    return [i for i in ids if i and i != "0"]


def _room(room: Mapping[str, Any], names: Mapping[str, str]) -> DirectoryRoom:
    capacity = room.get("capacity")
    return DirectoryRoom(
        room_id=str(room.get("room_id") or ""), name=str(room.get("name") or ""),
        capacity=capacity if isinstance(capacity, int) and not isinstance(capacity, bool)
        else None,
        path=tuple(names.get(i, i) for i in _level_ids(room)))


def _quote(value: Any) -> str:
    return repr(str(value)[:_TEXT]) if value is not None else "''"
