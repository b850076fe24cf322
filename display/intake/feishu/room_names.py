"""Room names from Feishu's room directory (``[feishu] room_names = true``), in the intake child.

``GET /open-apis/vc/v1/rooms`` (100 a page, ``page_token``/``has_more``) gives each room's
``name`` and ``path`` (the ids of its levels, outermost first); ``POST vc/v1/room_levels/mget``
names the levels. Each configured room's name and path ("Building / Floor") are kept in the
store (:func:`~display.details.room_meta_key`), written only when they change; the node shows
them and the bridge publishes them, so renaming a room in Feishu renames its sign. Read after
each full re-sync pass, on a thread of its own; a failure keeps what is known and is logged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from display.config import Config
from display.details import decode_room_meta, encode_room_meta, room_meta_key
from display.errors import FeishuApiError, StoreError
from display.intake.feishu.details import LarkDetailsApi
from display.store import ScheduleStore

log = logging.getLogger(__name__)

ROOMS_URI = "/open-apis/vc/v1/rooms"
LEVELS_URI = "/open-apis/vc/v1/room_levels/mget"
MAX_PAGES = 100  # 10,000 rooms: a bound on a misbehaving page_token, not a tenant's size


class LarkDirectoryApi(LarkDetailsApi):
    """The directory's two calls, through the same token manager and transport."""

    def rooms(self) -> dict[str, tuple[str, list[str]]]:
        """Every room: id -> (name, level ids outermost first)."""
        out: dict[str, tuple[str, list[str]]] = {}
        token = ""
        for _ in range(MAX_PAGES):
            queries = [("page_size", "100")] + ([("page_token", token)] if token else [])
            code, answer = self._call("room directory", "GET", ROOMS_URI, queries=queries)
            if code != 0:
                raise FeishuApiError(f"room directory: code {code}")
            data = answer.get("data")
            data = data if isinstance(data, Mapping) else {}
            for room in data.get("rooms") or []:
                if not isinstance(room, Mapping):
                    continue
                rid, name, path = room.get("room_id"), room.get("name"), room.get("path")
                if isinstance(rid, str) and isinstance(name, str) and name.strip():
                    levels = [p for p in path if isinstance(p, str)] if isinstance(
                        path, list) else []
                    out[rid] = (" ".join(name.split())[:100], levels)
            page_token = data.get("page_token")
            token = page_token if isinstance(page_token, str) else ""
            if not data.get("has_more") or not token:
                return out
        log.warning("room directory: more than %d pages; kept what was read", MAX_PAGES)
        return out

    def levels(self, ids: list[str]) -> dict[str, str]:
        """Level names by id (those Feishu returns)."""
        if not ids:
            return {}
        code, answer = self._call("room levels", "POST", LEVELS_URI, body={"level_ids": ids})
        if code != 0:
            raise FeishuApiError(f"room levels: code {code}")
        data = answer.get("data")
        items = data.get("items") if isinstance(data, Mapping) else None
        out: dict[str, str] = {}
        for item in items if isinstance(items, list) else []:
            if isinstance(item, Mapping):
                lid, name = item.get("room_level_id"), item.get("name")
                if isinstance(lid, str) and isinstance(name, str) and name.strip():
                    out[lid] = name.strip()
        return out


class DirectoryFollower:
    """Keeps configured rooms' names and paths in the store as the directory says them."""

    def __init__(self, api: LarkDirectoryApi | Any, store: ScheduleStore,
                 config: Callable[[], Config],
                 on_changed: Callable[[frozenset[str]], None]) -> None:
        self._api = api
        self._store = store
        self._config = config
        self._on_changed = on_changed
        self._wanted = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def request(self) -> None:
        """Read the directory soon (after a re-sync pass); coalesced."""
        self._wanted.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="directory", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stopped = True
        self._wanted.set()

    def _work(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stopped:
                return
            try:
                self.refresh()
            except FeishuApiError as exc:
                log.warning("room names: %s (keeping the names known)", exc)
            except Exception:  # the thread's boundary: keep following
                log.exception("room names: unexpected error")

    def refresh(self) -> frozenset[str]:
        """One read; returns (and reports) the rooms whose name or path changed."""
        config = self._config()
        feishu = config.feishu
        if feishu is None or not feishu.room_names:
            return frozenset()
        rooms = self._api.rooms()
        wanted = {r.open_id for r in config.rooms} & set(rooms)
        level_ids = sorted({lid for rid in wanted for lid in rooms[rid][1]})
        names = self._api.levels(level_ids)
        changed: set[str] = set()
        for rid in sorted(wanted):
            name, path_ids = rooms[rid]
            path = " / ".join(names[i] for i in path_ids if i in names) or None
            value = encode_room_meta(name, path)
            try:
                if decode_room_meta(self._store.meta(room_meta_key(rid))) != (name, path):
                    self._store.set_meta(room_meta_key(rid), value)
                    changed.add(rid)
            except StoreError as exc:
                log.warning("room names: cannot store them: %s", exc)
                break
        if changed:
            log.info("room names: %d room(s) renamed or moved in Feishu's directory",
                     len(changed))
            self._on_changed(frozenset(changed))
        return frozenset(changed)
