"""What the web page shows, built from the running node's in-memory status (never a file).

Everything that leaves the node through the page goes through :func:`redact`: the page shows
what a door sign shows, so organizer ids are removed (the ``status --json`` shape is kept, with
``organizer_open_id`` null). The Prometheus text of ``/metrics`` is built here too.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from typing import Any

from display import __version__
from display.config import RoomConfig
from display.model import Booking, RoomView
from display.node import Node, room_status
from display.render.wording import TEXTS

StatusSource = Callable[[], dict[str, Any]]

# Page wording: (zh, en). State words come from the sign's own table, so page and sign agree.
PAGE_TEXTS: dict[str, tuple[str, str]] = {
    "rooms": ("会议室", "Rooms"),
    "nodes": ("节点", "Nodes"),
    "devices": ("设备", "Devices"),
    "online": ("在线", "online"),
    "offline": ("离线", "offline"),
    "stale": ("数据过期", "stale"),
    "as_of": ("更新于", "as of"),
    "until": ("至", "until"),
    "now": ("当前", "Now"),
    "booked": ("已预约", "Booked"),  # a private meeting, or its title not known yet
    "next": ("下一场", "Next"),
    "none": ("无", "none"),
    "unknown": ("未知", "unknown"),
    "lost": ("与节点失去连接", "Lost the node"),
    "since": ("自", "since"),
    "reconnecting": ("正在重连", "reconnecting"),
    "live": ("实时", "live"),
    "clock_synced": ("时钟已同步", "clock synced"),
    "clock_unsynced": ("时钟未同步", "clock NOT synced"),
    "last_seen": ("最后在线", "last seen"),
    "version": ("版本", "version"),
    "link": ("飞书连接", "Feishu link"),
    "broker": ("MQTT 代理", "MQTT broker"),
    "resync": ("最近同步", "latest re-sync"),
    "publisher": ("发布房间的网关", "publishes the rooms"),
    "behind": ("落后事件", "events behind"),
    "up": ("正常", "up"),
    "down": ("中断", "down"),
    "problems": ("问题", "problems"),
    "today": ("今日预订", "Today"),
    "sign": ("门牌", "Door sign"),
    "error": ("错误", "error"),
    "last_update": ("最近更新", "last update"),
    "back": ("全部会议室", "All rooms"),
    "no_bookings": ("今日无预订", "No bookings today"),
    "page": ("页", "page"),
    "other": ("其他", "Other"),
    "free_count": ("{n} 间空闲", "{n} free"),
    "rooms_stale": ("{n} 间会议室数据过期", "{n} rooms stale"),
    "link_down": ("{link}中断，自 {t}", "{link} down since {t}"),
    "devices_offline": ("{n} 台设备离线", "{n} devices offline"),
    "devices_summary": ("{n} 台设备，{bad} 台离线", "{n} devices, {bad} offline"),
    "devices_all_ok": ("{n} 台设备全部在线", "all {n} devices online"),
    "rooms_unknown": ("{n} 间会议室状态未知", "{n} rooms with no state yet"),
    "nodes_offline": ("{n} 个节点离线", "{n} nodes offline"),
    # English singulars ("_one": the page picks it when n is 1).
    "rooms_stale_one": ("1 间会议室数据过期", "1 room stale"),
    "devices_offline_one": ("1 台设备离线", "1 device offline"),
    "rooms_unknown_one": ("1 间会议室状态未知", "1 room with no state yet"),
    "nodes_offline_one": ("1 个节点离线", "1 node offline"),
    "past": ("已结束", "past"),
    "show": ("显示", "show"),
    "checkin_waiting": ("待签到", "waiting for check-in"),
    "checkin_checked_in": ("已签到", "checked in"),
    "checkin_released": ("已释放", "released"),
    "released_at": ("释放于", "released at"),
    "check_in": ("签到", "Check in"),
    "end_meeting": ("结束会议", "End meeting"),
}


def labels(language: str) -> dict[str, str]:
    """Every word the page shows, in the node's language (``zh``, ``en`` or ``zh+en``)."""
    out: dict[str, str] = {}
    for key, (zh, en) in PAGE_TEXTS.items():
        both = f"{zh} / {en}" if "{" in en else f"{zh} {en}"  # a sentence each, or a word
        out[key] = zh if language == "zh" else en if language == "en" else both
    for state in ("free", "soon", "busy", "ending", "closed"):  # closed: quiet hours
        zh, en, _both = TEXTS[state]
        out[state] = zh if language == "zh" else en if language == "en" else f"{zh} · {en}"
    return out


def redact(doc: dict[str, Any]) -> dict[str, Any]:
    """The status document without organizer ids (the sign never shows who booked a room)."""
    for room in doc.get("rooms", []):
        for booking in [room.get("current"), *room.get("next", [])]:
            if isinstance(booking, dict):
                booking["organizer_open_id"] = None
    return doc


def _selector(rooms: Collection[str] | None,
              floors: Collection[str] | None) -> Callable[[RoomConfig], bool] | None:
    if rooms is None and floors is None:
        return None

    def select(room: RoomConfig) -> bool:
        return ((rooms is None or room.open_id in rooms)
                and (floors is None or floor_of(room.name) in floors))
    return select


def status_document(node: Node, *, rooms: Collection[str] | None = None,
                    floors: Collection[str] | None = None) -> dict[str, Any]:
    """``/api/status``: the ``status --json`` document of the running node, redacted; with
    ``rooms`` (open ids) or ``floors`` (see :func:`floor_of`), only the rooms named."""
    doc = node.status(select=_selector(rooms, floors))
    _mark_running(doc["node"])
    return redact(doc)


#: In a room's compact JSON, an organizer id that is not null, with its value (a JSON string:
#: characters other than a quote or a backslash, or a backslash and the one it escapes). A
#: string value holds no unescaped quote, so the key is found only where it is a key.
_ORGANIZER = re.compile(rb'"organizer_open_id":"(?:[^"\\]|\\.)*"')


def compact(value: Any) -> bytes:
    """``value`` as the node writes JSON: compact, UTF-8, non-ASCII kept as is."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def redact_entry(entry: bytes) -> bytes:
    """One room's JSON (as :meth:`~display.node.Node.room_entries_json` gives it) without
    organizer ids, as :func:`redact` leaves it, without parsing it (the same bytes when it
    holds none)."""
    if b'"organizer_open_id":"' not in entry:
        return entry
    return _ORGANIZER.sub(b'"organizer_open_id":null', entry)


def status_parts(node: Node, *, rooms: Collection[str] | None = None,
                 floors: Collection[str] | None = None
                 ) -> tuple[dict[str, Any], list[tuple[str, bytes]]]:
    """:func:`status_document` as its parts, with the rooms still JSON: the document without
    ``rooms``, and (open id, redacted JSON) of each room. At 20,000 rooms the whole document
    parsed into objects takes ten times its 10 MB; joined from its rooms' JSON, its size."""
    head = node.status_head()
    _mark_running(head["node"])
    return head, [(open_id, redact_entry(text))
                  for open_id, text in node.room_entries_json(_selector(rooms, floors))]


def status_pieces(head: dict[str, Any], rooms: list[tuple[str, bytes]]) -> list[bytes]:
    """The JSON of :func:`status_document` from :func:`status_parts`, in pieces to join once
    (with whatever a caller puts around them)."""
    pieces = [compact(head)[:-1] + b',"rooms":[' if head else b'{"rooms":[']
    for i, (_, text) in enumerate(rooms):
        if i:
            pieces.append(b",")
        pieces.append(text)
    pieces.append(b"]}")
    return pieces


def join_status(head: dict[str, Any], rooms: list[tuple[str, bytes]]) -> bytes:
    """The JSON of :func:`status_document` from :func:`status_parts`."""
    return b"".join(status_pieces(head, rooms))


def node_document(node: Node) -> dict[str, Any]:
    """The ``node`` member of :func:`status_document`, made without the rooms."""
    return _mark_running(node.node_status())


def _mark_running(doc: dict[str, Any]) -> dict[str, Any]:
    doc["running"] = True  # as ``status`` says of a document a live node answered for
    doc["version"] = __version__
    return doc


#: The page's floor of a room: its name's first word when short and with a digit in it
#: ("3F 大会议室" -> "3F"); app.js ``floorOf`` reads names the same way.
_FLOOR_SPLIT = re.compile(r"[\s·\-_/]+")


def floor_of(name: str) -> str:
    """The floor (or building) a room is on, from its name; "" when it names none."""
    first = _FLOOR_SPLIT.split(name.strip())[0]
    return first if len(first) <= 6 and re.search("[0-9]", first) else ""


def room_entry(node: Node, view: RoomView) -> dict[str, Any] | None:
    """One room of the status document, for a live update (cheap: one room, no full status)."""
    entry = node.room_entry(view.open_id)
    if entry is None:
        return None
    out: dict[str, Any] = redact({"rooms": [entry]})["rooms"][0]
    return out


def room_detail(node: Node, open_id: str) -> dict[str, Any] | None:
    """``/api/rooms/ROOM``: the room's status entry plus today's bookings (for the timeline)."""
    room = node.config.room(open_id)
    if room is None:
        return None
    tz = node.config.node.tz
    view = node.views().get(open_id)
    devices = [d.health().to_json() for rid, d in node.devices().values() if rid == open_id]
    entry = redact({"rooms": [room_status(room, view, devices, tz)]})["rooms"][0]

    def local(b: Booking) -> dict[str, Any]:
        return {"start": b.start.astimezone(tz).isoformat(),
                "end": b.end.astimezone(tz).isoformat(), "event_id": b.event_id}

    today = view.occupancy.today if view is not None else ()
    now = view.occupancy.at if view is not None else node.clock.now()
    return {"room": entry, "today": [local(b) for b in today],
            "now": now.astimezone(tz).isoformat(), "timezone": node.config.node.timezone}


def page_meta(node: Node) -> dict[str, Any]:
    """What the page needs besides the status: language, its words, version, the node's zone."""
    language = node.config.node.language
    # The page shows every time in the node's zone, whatever the browser's own zone is.
    return {"language": language, "labels": labels(language), "version": __version__,
            "timezone": node.config.node.timezone}


# -- /metrics ------------------------------------------------------------------------------------


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _iso_seconds(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


class _Metrics:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str,
               samples: Iterable[tuple[Mapping[str, str], float]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels_, value in samples:
            inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels_.items())
            text = _number(value)
            self.lines.append(f"{name}{{{inner}}} {text}" if inner else f"{name} {text}")


def _number(value: float) -> str:
    """A sample value at full precision (``%g`` kept 6 digits: a Unix time read 1.79636e+09).

    Whole numbers as integers (counters, flags); others as Python's shortest exact repr, which
    Prometheus' text parser reads back to the same float (prometheus_client writes ``repr`` too).
    """
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2 ** 53:
        return str(int(value))
    return repr(value)


def _checkin_metrics(m: _Metrics, checkin: Any) -> None:
    """Check-ins by source, releases and early ends by outcome, dry-run decisions."""
    if not isinstance(checkin, dict):
        return
    for key, name, help_text, label in (
            ("checkins", "checkins_total", "Check-ins since start by source (button, mqtt, "
             "web, cli, back_to_back).", "source"),
            ("releases", "checkin_releases_total", "No-show releases since start by outcome "
             "(released, refused, unknown, gone, series, failed).", "outcome"),
            ("ends", "checkin_ends_total", "Meetings ended early since start by outcome.",
             "outcome")):
        values = checkin.get(key)
        if isinstance(values, dict) and values:
            m.family(f"room_display_{name}", "counter", help_text,
                     (({label: str(k)}, v) for k, v in sorted(values.items())))
    m.family("room_display_checkin_dry_run_total", "counter",
             "Releases or ends a dry run would have made since start.",
             [({}, checkin.get("dry_run", 0))])


def metrics_text(doc: dict[str, Any], counters: Mapping[str, Mapping[str, int]]) -> str:
    """Prometheus text exposition (version 0.0.4) of the status document and ``counters``.

    ``counters``: family suffix -> label value -> count, e.g. ``{"resync": {"ok": 3}}``.
    """
    m = _Metrics()
    rooms = doc.get("rooms", [])
    node = doc.get("node", {})
    by_state = {s: 0 for s in ("free", "soon", "busy", "ending", "unknown")}
    for room in rooms:
        by_state[room.get("state") or "unknown"] = by_state.get(room.get("state") or "unknown",
                                                                0) + 1
    m.family("room_display_rooms", "gauge", "Configured rooms by occupancy state.",
             (({"state": s}, n) for s, n in by_state.items()))
    m.family("room_display_rooms_stale", "gauge", "Rooms whose data the node cannot vouch for.",
             [({}, sum(1 for r in rooms if r.get("stale")))])
    devices = [d for r in rooms for d in r.get("devices", [])]
    m.family("room_display_devices", "gauge", "Configured devices.", [({}, len(devices))])
    m.family("room_display_devices_offline", "gauge", "Devices that are offline.",
             [({}, sum(1 for d in devices if not d.get("online")))])
    links = node.get("links", {})
    m.family("room_display_link_up", "gauge", "1 while a link (feishu, broker, bridge) is up.",
             (({"link": name}, 1.0 if link.get("up") else 0.0) for name, link in links.items()))
    m.family("room_display_clock_synced", "gauge", "1 when the clock is synchronised.",
             [({}, 1.0 if node.get("clock_synced") else 0.0)])
    resync = node.get("resync")
    if isinstance(resync, dict) and resync.get("enabled"):
        m.family("room_display_resync_ok", "gauge", "1 when the latest re-sync pass succeeded.",
                 [({}, 1.0 if resync.get("ok") else 0.0)])
        at = _iso_seconds(resync.get("at"))
        if at is not None:
            m.family("room_display_resync_last_timestamp_seconds", "gauge",
                     "When the latest re-sync pass ended (Unix time).", [({}, at)])
    for suffix, help_text, label in (
            ("resync_passes_total", "Re-sync passes by result since start.", "result"),
            ("events_total", "Feishu event deliveries by verdict since start: applied, "
             "unknown_room (stored, but no configured room), duplicate, superseded, ignored, "
             "refused, failed (not acknowledged).", "verdict")):
        values = counters.get(suffix.rsplit("_total", 1)[0].split("_")[0], {})
        if values:
            m.family(f"room_display_{suffix}", "counter", help_text,
                     (({label: k}, v) for k, v in sorted(values.items())))
    events = counters.get("events", {})
    if events:
        m.family("room_display_events_received_total", "counter",
                 "Feishu event deliveries received since start (the sum of the verdicts).",
                 [({}, sum(events.values()))])
    details = node.get("details")
    counts = details.get("counts") if isinstance(details, dict) else None
    if isinstance(counts, dict) and counts:
        m.family("room_display_details_total", "counter",
                 "Titles and organizer names looked up since the store was made, by result: "
                 "titles, names, title_missing, no_permission (41050), invalid_id (41012), "
                 "rate_limited, errors.",
                 (({"result": k}, v) for k, v in sorted(counts.items()) if isinstance(v, int)))
    _checkin_metrics(m, node.get("checkin"))
    fleet = node.get("fleet")
    if isinstance(fleet, dict) and fleet:
        m.family("room_display_node_online", "gauge", "1 while a node of the site is online.",
                 (({"node": name}, 1.0 if n.get("online") else 0.0)
                  for name, n in sorted(fleet.items())))
    m.family("room_display_info", "gauge", "This node: name, role and version.",
             [({"node": str(node.get("name", "")), "role": str(node.get("role", "")),
                "version": __version__}, 1.0)])
    return "\n".join(m.lines) + "\n"
