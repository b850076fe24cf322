"""``room-display status``: the running node's snapshot, or the store's view when it is down.

The node keeps its status document on a RAM-backed runtime path (``/run/room-display`` under
systemd) and ``state_dir/status.json`` links to it. It rewrites the document only when something
in it changed and otherwise touches its mtime every few seconds as a heartbeat. When that file is
missing or its heartbeat old, or its process is gone, ``status`` says so plainly and computes the
rooms from the schedule store itself (device health is then unknown).
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, tzinfo
from typing import Any

from display.clock import SystemClock
from display.config import Config, RoomConfig
from display.errors import EventError, StoreError
from display.headline import until_words
from display.model import RoomView, State
from display.node import room_status, status_path
from display.occupancy import Thresholds, occupancy

FRESH = timedelta(seconds=30)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def read_status(config: Config, now: datetime | None = None) -> dict[str, Any]:
    """The status document, with ``node.running`` telling whether a node answered for it."""
    now = now or SystemClock().now()
    path = status_path(config)
    try:
        with path.open(encoding="utf-8") as f:
            # The heartbeat is the mtime: the content is rewritten only when it changes.
            beat = datetime.fromtimestamp(os.fstat(f.fileno()).st_mtime, now.tzinfo)
            doc: dict[str, Any] = json.load(f)
        datetime.fromisoformat(doc["generated_at"])  # a document of ours, not a stray file
        pid = int(doc.get("node", {}).get("pid", 0))
        if now - beat <= FRESH and pid and _pid_alive(pid):
            doc["node"]["running"] = True
            return doc
        reason = (f"the node's status is {int((now - beat).total_seconds())} s old"
                  if _pid_alive(pid) else "the node is not running")
    except FileNotFoundError:
        reason = "the node is not running (no status file yet)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = f"cannot read {path}: {exc}"
    return _from_store(config, now, reason)


def stored_view(config: Config, room: RoomConfig, now: datetime, *, stale: bool,
                as_of: datetime) -> RoomView:
    """The room's view computed from the schedule store (no running node needed)."""
    from display.store import ScheduleStore, store_path

    db = store_path(config)
    bookings = []
    if db.exists():
        with ScheduleStore(db) as store:
            try:
                bookings = store.bookings(room.open_id)
            except EventError as exc:  # a row from a version without the date bound
                raise StoreError(f"schedule store {db} holds a booking of {room.open_id} that "
                                 f"cannot be shown ({exc}); room-display run skips it at "
                                 "start") from None
    occ = occupancy(bookings, now, Thresholds.from_minutes(
        config.occupancy.soon_minutes, config.occupancy.ending_minutes), config.node.tz)
    closed_until = config.hours(room).closed_until(now, config.node.tz,
                                                   in_use=occ.state is not State.FREE)
    return RoomView(room.open_id, room.name, occ, stale, as_of, config.node.timezone,
                    config.node.language, closed_until)


def _from_store(config: Config, now: datetime, reason: str) -> dict[str, Any]:
    tz = config.node.tz
    rooms = []
    for room in config.rooms:
        # Nobody vouches for this data: it is stale by definition.
        view = stored_view(config, room, now, stale=True, as_of=now)
        devices = [{"id": d.id, "kind": d.kind, "url": d.url, "online": False,
                    "last_update": None, "error": "node not running"} for d in room.devices]
        rooms.append(room_status(room, view, devices, tz))
    node: dict[str, Any] = {"name": config.node.name, "role": config.role, "running": False,
                            "note": reason}
    if config.feishu is not None and not config.feishu.resync_enabled:
        from display.store import SERIES_WITHOUT_RESYNC

        node["resync"] = {"enabled": False, "series": SERIES_WITHOUT_RESYNC}
    return {"generated_at": now.astimezone(tz).isoformat(), "node": node, "rooms": rooms}


def _hm(iso: str | None, tz: tzinfo | None = None) -> str:
    """``HH:MM`` of an ISO time, in ``tz`` (the node's zone) when given: one zone on screen."""
    if not iso:
        return "--:--"
    when = datetime.fromisoformat(iso)
    if tz is not None and when.tzinfo is not None:
        when = when.astimezone(tz)
    return when.strftime("%H:%M")


def _fleet_lines(fleet: dict[str, Any], tz: tzinfo | None) -> list[str]:
    """The bridge's agents (and itself), each with its links and devices."""
    lines = []
    for name, info in sorted(fleet.items()):
        if not isinstance(info, dict):
            continue
        synced = info.get("clock_synced")
        clock = ("clock unknown" if synced is None
                 else "clock synced" if synced else "clock NOT synced")
        seen = f", last seen {_hm(info['last_seen'], tz)}" if info.get("last_seen") else ""
        lines.append(f"    {name} ({info.get('role') or '?'}): "
                     f"{'online' if info.get('online') else 'OFFLINE'}, version "
                     f"{info.get('version') or '?'}, {clock}{seen}")
        links = info.get("links")
        if isinstance(links, dict) and links:
            lines.append("      links: " + ", ".join(
                f"{link} {'up' if isinstance(v, dict) and v.get('up') else 'DOWN'}"
                + (f" ({v['error']})" if isinstance(v, dict) and v.get("error") else "")
                for link, v in sorted(links.items())))
        for d in info.get("devices") or []:
            if not isinstance(d, dict):
                continue
            last = f" last update {_hm(d['last_update'], tz)}" if d.get("last_update") else ""
            err = f"  error: {d['error']}" if d.get("error") else ""
            lines.append(f"      device {d.get('id')} [{d.get('kind')}] "
                         f"{'online ' if d.get('online') else 'OFFLINE'} room {d.get('room')}"
                         f"{last}{err}")
    return lines


def _until(room: dict[str, Any], generated_at: str) -> str:
    """" until 16:35 (since 14:45)": the person's "until" (display.headline), then the start."""
    state, until, since = room.get("state"), room.get("until"), room.get("since")
    if state not in {s.value for s in State}:
        return ""
    # Each ISO time in its own offset: the document's times are already the node's wall clock.
    words = until_words(state, datetime.fromisoformat(until) if until else None,
                        datetime.fromisoformat(generated_at), None)
    return (f" {words}" if words else "") + (f" (since {_hm(since)})" if since else "")


def render_text(doc: dict[str, Any]) -> str:
    """A human summary: one block per room, devices indented under it."""
    node = doc.get("node", {})
    # Some times arrive in UTC (link and device clocks); show all in the node's zone.
    tz = datetime.fromisoformat(doc["generated_at"]).tzinfo
    lines = []
    head = f"room-display status at {_hm(doc['generated_at'])}  node {node.get('name')}"
    head += f" ({node.get('role')})"
    if not node.get("running", True):
        head += f"\n  NOTE: {node.get('note')}; showing the stored schedule, marked stale"
    lines.append(head)
    for link, info in sorted(node.get("links", {}).items()):
        state = "up" if info["up"] else "DOWN"
        err = f" ({info['error']})" if info.get("error") else ""
        lines.append(f"  link {link}: {state} since {_hm(info['since'], tz)}{err}")
    mqtt = node.get("mqtt")
    if isinstance(mqtt, dict):
        state = "connected" if mqtt.get("connected") else "NOT connected"
        err = f" ({mqtt['error']})" if mqtt.get("error") and not mqtt.get("connected") else ""
        lines.append(f"  broker {mqtt.get('broker')}: {state}{err}")
    resync = node.get("resync")
    if isinstance(resync, dict) and not resync.get("enabled") and resync.get("series"):
        lines.append(f"  series: {resync['series']}")
    if isinstance(resync, dict) and resync.get("enabled"):
        if resync.get("at") is None:
            lines.append("  re-sync: none yet")
        else:
            result = "ok" if resync.get("ok") else f"FAILED ({resync.get('error')})"
            due = f", next {_hm(resync['next_at'])}" if resync.get("next_at") else ""
            lines.append(f"  re-sync: {result} at {_hm(resync['at'])}, "
                         f"{resync.get('rooms')} room(s){due}")
    store = node.get("store")
    if isinstance(store, dict):
        if store.get("moved_aside"):
            lines.append(f"  store: was corrupt ({store.get('corrupt_reason')}); moved to "
                         f"{store['moved_aside']}, started empty, re-sync refills it")
        if store.get("unusable_rows"):
            lines.append(f"  store: skipped {store['unusable_rows']} stored booking(s) with "
                         "unusable times")
    intake = node.get("intake")
    events = intake.get("events") if isinstance(intake, dict) else None
    if isinstance(events, dict):
        failed = events.get("failed") or 0
        unknown = events.get("unknown_room") or 0
        lines.append(f"  Feishu events: {events.get('received', 0)} received, "
                     f"{events.get('applied', 0)} applied, {events.get('duplicate', 0)} "
                     f"duplicate, {events.get('refused', 0)} refused"
                     + (f", {unknown} for rooms not in the config" if unknown else "")
                     + (f", {failed} not stored (Feishu retries them)" if failed else ""))
    if node.get("clock_synced") is False:
        lines.append("  clock: NOT synchronised (panels show stale)")
    fleet = node.get("fleet")
    if isinstance(fleet, dict) and fleet:
        lines.append("  nodes on the broker:")
        lines += _fleet_lines(fleet, tz)
    for room in doc.get("rooms", []):
        state = (room.get("state") or "unknown").upper()
        stale = "  [STALE]" if room.get("stale") else ""
        if room.get("closed"):  # quiet hours
            opens = room.get("opens_at")
            stale += "  [CLOSED" + (f" until {datetime.fromisoformat(opens):%a %H:%M}]"
                                    if opens else "]")
        lines.append(f"\n{room['name']}  ({room['open_id']})\n  {state}{stale}"
                     f"{_until(room, doc['generated_at'])}")
        cur = room.get("current")
        if cur:
            lines.append(f"  now:  {_hm(cur['start'])}-{_hm(cur['end'])}  {cur['event_id']}")
        for b in room.get("next", [])[:5]:
            lines.append(f"  next: {_hm(b['start'])}-{_hm(b['end'])}  {b['event_id']}")
        for d in room.get("devices", []):
            ok = "online " if d["online"] else "OFFLINE"
            last = f" last update {_hm(d['last_update'], tz)}" if d.get("last_update") else ""
            err = f"  error: {d['error']}" if d.get("error") else ""
            lines.append(f"  device {d['id']} [{d['kind']}] {ok} {d['url']}{last}{err}")
    return "\n".join(lines)
