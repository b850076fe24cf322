"""Titles and organizer names (issue 19): the fetcher through lark-oapi's core against the
stand-in, then whole nodes (intake child, store, sign PNG, status, the page's JSON).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops

from display.app import App
from display.clock import SystemClock
from display.config import Config, FeishuConfig, Secret, load_config
from display.details import NameCache
from display.intake.feishu.details import (
    DetailsFetcher,
    HarvestingFreeBusy,
    LarkDetailsApi,
    UserError,
)
from display.intake.feishu.resync import LarkFreeBusy
from display.render.eink import compose, render_sign
from display.status import render_text
from display.store import ScheduleStore
from display.testing.broker import free_port
from display.testing.browser import chromium
from display.testing.envelopes import envelope
from display.testing.feishu_standin import (
    INVALID_ID,
    NO_PERMISSION,
    DetailsApi,
    FeishuStandIn,
    FreeBusyApi,
    RoomsApi,
    directory_room,
    room_level,
    slot,
)
from display.testing.intake_support import HttpClient
from display.testing.waiting import wait_for
from display.web.document import metrics_text, status_document

NOW = datetime.now(UTC).replace(microsecond=0)
_apps = itertools.count(1)


@pytest.fixture(scope="module")
def standin() -> Iterator[FeishuStandIn]:
    with FeishuStandIn() as s:
        yield s


@pytest.fixture
def apis(standin: FeishuStandIn) -> tuple[FreeBusyApi, DetailsApi]:
    standin.app_id = f"cli_details_{next(_apps)}"  # the SDK caches tokens per app id
    return FreeBusyApi(standin), DetailsApi(standin)


def feishu(standin: FeishuStandIn) -> FeishuConfig:
    return FeishuConfig(app_id=standin.app_id, app_secret=Secret(standin.app_secret),
                        domain=standin.domain)


# -- the API client ------------------------------------------------------------------------------


def test_summary_answers_titles_and_lists_errors(standin: FeishuStandIn,
                                                 apis: tuple[FreeBusyApi, DetailsApi]) -> None:
    _, details = apis
    details.titles = {("m1", 0): "  Quarterly\nreview  ", ("m2", 1764000000): "Exception"}
    got = LarkDetailsApi(feishu(standin)).summaries([("m1", 0), ("m2", 1764000000), ("gone", 0)])
    # vchat arrives as an object (the SDK's model would mistype it); one line, spaces folded.
    assert got == {("m1", 0): "Quarterly review", ("m2", 1764000000): "Exception",
                   ("gone", 0): None}
    body = details.summary_calls[0].json()
    assert body == {"EventUids": [{"uid": "m1", "original_time": 0},
                                  {"uid": "m2", "original_time": 1764000000},
                                  {"uid": "gone", "original_time": 0}]}
    assert details.summary_calls[0].headers["Content-Type"].startswith("application/json")


def test_users_batch_names_and_refusals(standin: FeishuStandIn,
                                        apis: tuple[FreeBusyApi, DetailsApi]) -> None:
    _, details = apis
    details.names = {"ou_a": "Alice", "ou_b": "Bob"}
    api = LarkDetailsApi(feishu(standin))
    assert api.users(["ou_a", "ou_b", "ou_unknown"]) == {"ou_a": "Alice", "ou_b": "Bob",
                                                         "ou_unknown": None}
    assert details.user_calls[0].query["user_id_type"] == ["open_id"]
    details.refused = {"ou_app": INVALID_ID}
    with pytest.raises(UserError) as err:
        api.users(["ou_app"])
    assert err.value.code == INVALID_ID


@pytest.mark.parametrize(("reset", "expected"), [("3", 3.0), ("nonsense", None),
                                                 ("99999999", 300.0), ("-5", 0.0)])
def test_rate_limit_reset_is_bounded_and_a_bad_header_is_harmless(
        standin: FeishuStandIn, apis: tuple[FreeBusyApi, DetailsApi], reset: str,
        expected: float | None) -> None:
    _, details = apis
    details.rate_limited, details.reset = 1, reset
    from display.errors import FeishuApiError

    with pytest.raises(FeishuApiError) as err:
        LarkDetailsApi(feishu(standin)).summaries([("m1", 0)])
    assert err.value.retry_after == expected


# -- the fetcher on a real store ---------------------------------------------------------------


class Harness:
    """A fetcher and a re-sync API wrapped to harvest names, on a store, against the stand-in."""

    def __init__(self, standin: FeishuStandIn, tmp: Path, toml: str) -> None:
        path = tmp / "c.toml"
        path.write_text(f'[node]\nstate_dir = "{tmp / "state"}"\ntimezone = "UTC"\n'
                        f'[feishu]\nmode = "webhook"\nverification_token = "v"\n{toml}\n'
                        '[[rooms]]\nopen_id = "omm_a"\n[[rooms]]\nopen_id = "omm_b"\n',
                        encoding="utf-8")
        self.config: Config = load_config(path)
        self.store = ScheduleStore(tmp / "schedule.db", durable=False)
        self.changed: list[frozenset[str]] = []
        self.fetcher = DetailsFetcher(LarkDetailsApi(feishu(standin)), self.store,
                                      SystemClock(), lambda: self.config, self.changed.append,
                                      names=NameCache(hit_ttl=300, miss_ttl=60),
                                      backoff_initial=0.05)
        self.freebusy = HarvestingFreeBusy(LarkFreeBusy(feishu(standin)), self.fetcher)

    def resync(self, rooms: list[str]) -> None:
        """What a re-sync pass does: fetch, harvest, store the bookings."""
        from display.intake.feishu.freebusy import parse_freebusy

        window = (NOW - timedelta(hours=1), NOW + timedelta(days=1))
        for room, bookings in parse_freebusy(self.freebusy.fetch(rooms, *window),
                                             rooms).items():
            self.store.resync_room(room, window, bookings, NOW, NOW)

    def shown(self, key: str) -> tuple[str | None, str | None] | None:
        row = self.store.details([key]).get(key)
        return None if row is None else (row.title, row.organizer)


ON = "[details]\norganizer = true\ntitle = true"


@pytest.fixture
def harness(standin: FeishuStandIn, apis: tuple[FreeBusyApi, DetailsApi],
            tmp_path: Path) -> Iterator[Harness]:
    h = Harness(standin, tmp_path, ON)
    yield h
    h.store.close()


def test_titles_only_for_organized_bookings_names_from_freebusy_then_contact(
        harness: Harness, apis: tuple[FreeBusyApi, DetailsApi]) -> None:
    freebusy, details = apis
    now = NOW - timedelta(minutes=5)
    freebusy.slots = {
        "omm_a": [slot("m1", now, now + timedelta(hours=1), name="Alice Chen"),
                  slot("m2", now + timedelta(hours=1), now + timedelta(hours=2),
                       organizer="ou_app", name=None)],  # an app's booking: no name
        "omm_b": [slot("secret", now, now + timedelta(hours=1), organizer=None)]}  # private
    details.titles = {("m1", 0): "Design review", ("m2", 0): "Interview",
                      ("secret", 0): "Layoffs"}
    details.names = {"ou_app": "Recruiting"}
    harness.resync(["omm_a", "omm_b"])
    assert harness.fetcher.run(["omm_a", "omm_b"]) is None
    assert harness.shown("m1_0") == ("Design review", "Alice Chen")
    assert harness.shown("m2_0") == ("Interview", "Recruiting")
    assert harness.shown("secret_0") is None
    assert ("secret", 0) not in details.asked_titles()  # a private title is never asked for
    assert [c.query["user_ids"] for c in details.user_calls] == [["ou_app"]]  # Alice: harvested
    assert harness.changed == [frozenset({"omm_a"})]
    # Cached: a second batch asks nothing.
    calls = len(details.summary_calls), len(details.user_calls)
    assert harness.fetcher.run(["omm_a"]) is None
    assert (len(details.summary_calls), len(details.user_calls)) == calls
    # An event for m1 asks its title again (it may have been renamed).
    details.titles[("m1", 0)] = "Design review v2"
    harness.fetcher.touch([], keys=["m1_0"])
    harness.fetcher.run(["omm_a"])
    assert harness.shown("m1_0") == ("Design review v2", "Alice Chen")


def test_contact_refusals_degrade_and_are_counted(harness: Harness,
                                                   apis: tuple[FreeBusyApi, DetailsApi]) -> None:
    freebusy, details = apis
    now = NOW - timedelta(minutes=5)
    freebusy.slots = {
        "omm_a": [slot("m1", now, now + timedelta(hours=1), organizer="ou_out", name=None),
                  slot("m2", now + timedelta(hours=1), now + timedelta(hours=2),
                       organizer="ou_bot", name=None)],
        "omm_b": [slot("m3", now, now + timedelta(hours=1), organizer="ou_ok", name=None)]}
    details.titles = {("m1", 0): "One", ("m2", 0): "Two", ("m3", 0): "Three"}
    details.names = {"ou_ok": "Olga"}
    details.refused = {"ou_out": NO_PERMISSION, "ou_bot": INVALID_ID}
    harness.resync(["omm_a", "omm_b"])
    assert harness.fetcher.run(["omm_a", "omm_b"]) is None
    # One refused id does not hide the others' names: the batch is asked again one by one.
    assert harness.shown("m1_0") == ("One", None)
    assert harness.shown("m2_0") == ("Two", None)
    assert harness.shown("m3_0") == ("Three", "Olga")
    counts = harness.fetcher.counts
    assert counts["no_permission"] == 1 and counts["invalid_id"] == 1 and counts["names"] == 1
    # Misses are cached (60 s): the next batch does not ask again.
    calls = len(details.user_calls)
    harness.fetcher.run(["omm_a", "omm_b"])
    assert len(details.user_calls) == calls


def test_more_than_50_organizers_take_two_contact_calls(
        harness: Harness, apis: tuple[FreeBusyApi, DetailsApi]) -> None:
    freebusy, details = apis
    rooms = [f"omm_r{i:02d}" for i in range(60)]
    harness.config = _many_rooms(harness, rooms)
    now = NOW - timedelta(minutes=5)
    freebusy.slots = {room: [slot(f"m-{room}", now, now + timedelta(hours=1),
                                  organizer=f"ou_{room}", name=None)] for room in rooms}
    details.names = {f"ou_{room}": f"N{room}" for room in rooms}
    for i in range(0, 60, 20):
        harness.resync(rooms[i:i + 20])
    assert harness.fetcher.run(rooms) is None
    sizes = [len(c.query["user_ids"]) for c in details.user_calls]
    assert sorted(sizes) == [10, 50]
    assert all(len(c.json()["EventUids"]) <= 20 for c in details.summary_calls)
    assert harness.shown("m-omm_r59_0") == (None, "Nomm_r59")


def _many_rooms(harness: Harness, rooms: list[str]) -> Config:
    path = harness.config.path
    text = path.read_text(encoding="utf-8").split("[[rooms]]")[0]
    path.write_text(text + "".join(f'[[rooms]]\nopen_id = "{r}"\n' for r in rooms),
                    encoding="utf-8")
    return load_config(path)


def test_rate_limited_backs_off_then_fills_in(harness: Harness,
                                              apis: tuple[FreeBusyApi, DetailsApi]) -> None:
    freebusy, details = apis
    now = NOW - timedelta(minutes=5)
    freebusy.slots = {"omm_a": [slot("m1", now, now + timedelta(hours=1))]}
    details.titles = {("m1", 0): "Standup"}
    harness.resync(["omm_a"])
    details.rate_limited, details.reset = 1, "garbage"  # a bad header must not kill anything
    assert harness.fetcher.run(["omm_a"]) == pytest.approx(0.05)
    assert harness.fetcher.counts["rate_limited"] == 1
    assert harness.shown("m1_0") == (None, "Alice")  # the name came with free/busy
    harness.fetcher.start()
    try:
        harness.fetcher.touch(["omm_a"])
        wait_for(lambda: harness.shown("m1_0") == ("Standup", "Alice"), 10, "the title")
    finally:
        harness.fetcher.close()


def test_details_off_means_no_call_at_all(standin: FeishuStandIn,
                                          apis: tuple[FreeBusyApi, DetailsApi],
                                          tmp_path: Path) -> None:
    freebusy, details = apis
    h = Harness(standin, tmp_path, "")
    now = NOW - timedelta(minutes=5)
    freebusy.slots = {"omm_a": [slot("m1", now, now + timedelta(hours=1))]}
    details.titles = {("m1", 0): "Secret plans"}
    h.resync(["omm_a"])
    assert h.fetcher.run(["omm_a", "omm_b"]) is None
    assert details.summary_calls == [] and details.user_calls == []
    assert h.shown("m1_0") is None
    h.store.close()


def test_only_the_title_on_stores_no_name(standin: FeishuStandIn,
                                          apis: tuple[FreeBusyApi, DetailsApi],
                                          tmp_path: Path) -> None:
    freebusy, details = apis
    h = Harness(standin, tmp_path, "[details]\ntitle = true")
    now = NOW - timedelta(minutes=5)
    freebusy.slots = {"omm_a": [slot("m1", now, now + timedelta(hours=1), name=None)]}
    details.titles = {("m1", 0): "Standup"}
    h.resync(["omm_a"])
    h.fetcher.run(["omm_a"])
    assert h.shown("m1_0") == ("Standup", None)
    assert details.user_calls == []
    h.store.close()


# -- whole nodes ----------------------------------------------------------------------------------


NODE = """\
[node]
name = "details-test"
language = "{language}"
state_dir = "state"
timezone = "UTC"
clock = "trust"

[feishu]
mode = "webhook"
listen = "127.0.0.1:{hook}"
verification_token = "vtoken"
app_id = "{app_id}"
app_secret = "{secret}"
domain = "{domain}"
resync_minutes = 1440
{feishu_extra}

[web]
listen = "127.0.0.1:{web}"
{details}
[[rooms]]
open_id = "omm_a"
name = "3F East"
[[rooms.devices]]
id = "a-sign"
kind = "eink"
url = "virtual:panels"
size = "400x300"

[[rooms]]
open_id = "omm_b"
name = "5F Focus"
[[rooms.devices]]
id = "b-sign"
kind = "eink"
url = "virtual:panels"
size = "296x128"
"""


class WholeNode:
    """An App with its intake child (webhook mode) against its own stand-in."""

    def __init__(self, tmp: Path, details: str, language: str = "en", *,
                 feishu_extra: str = "", args: tuple[str, ...] = ()) -> None:
        self.standin = FeishuStandIn()
        self.standin.start()
        self.standin.app_id = f"cli_node_{next(_apps)}"
        self.freebusy = FreeBusyApi(self.standin)
        self.details = DetailsApi(self.standin)
        self.directory = RoomsApi(self.standin)
        self.hook = free_port()
        self.dir = tmp
        path = tmp / "config.toml"
        self.web = free_port()
        path.write_text(NODE.format(language=language, hook=self.hook, web=self.web,
                                    app_id=self.standin.app_id, secret=self.standin.app_secret,
                                    domain=self.standin.domain, details=details,
                                    feishu_extra=feishu_extra),
                        encoding="utf-8")
        self.app = App(load_config(path), intake_args=("--resync-backoff", "0.2", *args))
        self.app.start_intake()

    def close(self) -> None:
        self.app.close()
        self.standin.close()

    def post(self, uid: str, room: str, start: datetime, end: datetime,
             organizer: str = "ou_alice") -> None:
        assert self.app.intake is not None
        wait_for(lambda: self.app.intake is not None and self.app.intake.ready_listen, 60,
                 "the webhook")
        client = HttpClient(f"127.0.0.1:{self.hook}")
        try:
            status, _ = client.request("POST", "/webhook/event", json.dumps(envelope(
                uid=uid, start=start, end=end, rooms=(room,), organizer=organizer)).encode(),
                {"Content-Type": "application/json"})
        finally:
            client.close()
        assert status == 200

    def room(self, open_id: str) -> dict[str, Any]:
        self.app.node.tick()
        doc = self.app.node.status()
        return next(r for r in doc["rooms"] if r["open_id"] == open_id)


@pytest.fixture
def on(tmp_path: Path) -> Iterator[WholeNode]:
    node = WholeNode(tmp_path, "[details]\norganizer = true\ntitle = true\n")
    yield node
    node.close()


def test_title_and_organizer_reach_sign_status_and_page_within_seconds(on: WholeNode) -> None:
    start, end = NOW - timedelta(minutes=5), NOW + timedelta(minutes=55)
    on.details.titles = {("m1", 0): "Quarterly review", ("p1", 0): "Private matters"}
    # The start's re-sync finds nothing; then Feishu books both rooms and sends the events.
    wait_for(lambda: on.freebusy.calls, 60, "the first re-sync")
    on.freebusy.set(slots={"omm_a": [slot("m1", start, end, name="Alice Chen")],
                           "omm_b": [slot("p1", start, end, organizer=None)]})
    sent = time.monotonic()
    on.post("m1", "omm_a", start, end)
    on.post("p1", "omm_b", start, end, organizer="ou_bob")  # the event names someone anyway
    # The state at once (before any detail), then the details.
    wait_for(lambda: on.room("omm_a")["state"] == "busy", 10, "busy")
    current = wait_for(lambda: (c := on.room("omm_a")["current"]) and "title" in c and c, 15,
                       "the title in status")
    took = time.monotonic() - sent
    assert current["title"] == "Quarterly review" and current["organizer"] == "Alice Chen"
    assert took < 6, took
    private = wait_for(lambda: (c := on.room("omm_b")["current"]) and c.get("private") and c,
                       15, "the private booking re-synced")
    assert "title" not in private and "organizer" not in private
    assert ("p1", 0) not in on.details.asked_titles()
    # The sign: the PNG the virtual device wrote is the view rendered with its title lines.
    view = on.app.node.views()["omm_a"]
    device = on.app.config.rooms[0].devices[0]
    texts = {t.role: t.text for t in compose(view, device).texts}
    assert texts["title"] == "Quarterly review" and texts["organizer"] == "Alice Chen"
    png = on.dir / "panels" / "a-sign.png"
    wait_for(lambda: _same_png(png, render_sign(view, device).to_rgb()), 10, "the sign PNG")
    private_view = on.app.node.views()["omm_b"]
    assert {t.role: t.text for t in compose(private_view, on.app.config.rooms[1].devices[0])
            .texts}["title"] == "Booked"
    # The page's JSON and the state JSON of the device.
    page = status_document(on.app.node)
    page_a = next(r for r in page["rooms"] if r["open_id"] == "omm_a")
    assert page_a["current"]["title"] == "Quarterly review"
    state = json.loads((on.dir / "panels" / "a-sign.json").read_text(encoding="utf-8"))
    assert state["current"]["organizer"] == "Alice Chen"
    assert "organizer_open_id" not in state["current"]
    text = render_text(on.app.node.status())
    assert '"Quarterly review" by Alice Chen' in text and "(private)" in text
    counts = on.app.node.status()["node"]["details"]
    assert counts["title"] is True and counts["organizer"] is True
    wait_for(lambda: on.app.node.status()["node"]["details"]["counts"].get("titles"), 10,
             "the counts")
    metrics = metrics_text(on.app.node.status(), {})
    assert 'room_display_details_total{result="titles"}' in metrics
    # The page in a browser: the tile says whose meeting it is; the private one "Booked".
    from selenium.webdriver.common.by import By

    with chromium(1024, 700) as driver:
        driver.get(f"http://127.0.0.1:{on.web}/")

        def tiles() -> str:
            on.app.node.tick()
            return str(driver.find_element(By.ID, "rooms").text)

        wait_for(lambda: "Quarterly review · Alice Chen" in tiles(), 20, "the tile's details")
        wait_for(lambda: "Booked" in tiles(), 10, "the private tile")


def _same_png(path: Path, expected: Image.Image) -> bool:
    try:
        with Image.open(path) as got:
            return ImageChops.difference(got.convert("RGB"), expected).getbbox() is None
    except OSError:
        return False


def test_defaults_show_no_name_or_title_anywhere_and_call_nothing(tmp_path: Path) -> None:
    node = WholeNode(tmp_path, "")
    try:
        start, end = NOW - timedelta(minutes=5), NOW + timedelta(minutes=55)
        node.freebusy.set(slots={"omm_a": [slot("m1", start, end, name="Alice Chen")]})
        node.details.titles = {("m1", 0): "Quarterly review"}
        node.post("m1", "omm_a", start, end)
        wait_for(lambda: node.room("omm_a")["state"] == "busy", 30, "busy")
        # Wait for the targeted re-sync the event triggers (names would ride on it).
        wait_for(lambda: len(node.freebusy.calls) >= 2, 15, "the targeted re-sync")
        node.app.node.tick()
        everything = json.dumps(node.app.node.status(), ensure_ascii=False)
        everything += (node.dir / "panels" / "a-sign.json").read_text(encoding="utf-8")
        everything += json.dumps(status_document(node.app.node), ensure_ascii=False)
        for secret in ("Alice Chen", "Quarterly review"):
            assert secret not in everything
        room = node.room("omm_a")
        assert set(room["current"]) == {"event_id", "uid", "original_time", "start", "end",
                                        "organizer_open_id"}  # as before the feature
        assert node.app.node.status()["node"]["details"] == {
            "organizer": False, "title": False, "counts": {}}
        view = node.app.node.views()["omm_a"]
        assert view.details == {}
        assert not any(t.role in ("title", "organizer")
                       for t in compose(view, node.app.config.rooms[0].devices[0]).texts)
        assert node.details.summary_calls == [] and node.details.user_calls == []
        assert node.app.store.details(["m1_0"]) == {}
        # Nothing of it in the log either.
        assert "Alice Chen" not in caplog_text(node)
    finally:
        node.close()


def caplog_text(node: WholeNode) -> str:
    """What the node wrote to its state directory and panels (files a detail could leak to)."""
    out = []
    for path in node.dir.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".log", ".txt"):
            out.append(path.read_text(encoding="utf-8", errors="replace"))
    return "".join(out)


# -- room names from Feishu's directory ----------------------------------------------------------


def test_directory_pages_and_level_names(standin: FeishuStandIn, tmp_path: Path,
                                         apis: tuple[FreeBusyApi, DetailsApi]) -> None:
    from display.intake.feishu.room_names import DirectoryFollower, LarkDirectoryApi

    directory = RoomsApi(standin)
    path = ("lvl_hq", "lvl_5f")
    # omm_a last: on the second page.
    directory.rooms = [directory_room(f"omm_r{i:03d}", f"Room {i}", level="lvl_5f", path=path)
                       for i in range(150)]
    directory.rooms.append(directory_room("omm_a", "5F Focus Room", level="lvl_5f", path=path))
    directory.levels = {"lvl_hq": room_level("lvl_hq", "HQ"),
                        "lvl_5f": room_level("lvl_5f", "5F", "lvl_hq", ("lvl_hq",))}
    h = Harness(standin, tmp_path, "room_names = true")
    changed: list[frozenset[str]] = []
    follower = DirectoryFollower(LarkDirectoryApi(feishu(standin)), h.store, lambda: h.config,
                                 changed.append)
    assert follower.refresh() == {"omm_a"}  # omm_b is not in the directory: left alone
    # 151 rooms: two pages of 100, the second asked with the token the first handed out (the
    # stand-in refuses any other).
    first, second = directory.pages_asked()
    assert first == "" and second
    assert directory.levels_asked() == [["lvl_5f", "lvl_hq"]]
    from display.details import decode_room_meta, room_meta_key

    assert decode_room_meta(h.store.meta(room_meta_key("omm_a"))) == ("5F Focus Room", "HQ / 5F")
    assert follower.refresh() == frozenset()  # unchanged: nothing written
    directory.rate_limited = 1
    from display.errors import FeishuApiError

    with pytest.raises(FeishuApiError):
        follower.refresh()
    h.store.close()


def test_renaming_a_room_in_feishu_renames_its_sign(tmp_path: Path) -> None:
    node = WholeNode(tmp_path, "", feishu_extra="room_names = true",
                     args=("--resync-interval", "0.5"))
    try:
        node.directory.set(rooms=[directory_room("omm_a", "5F Focus Room", level="f5",
                                                 path=("hq", "f5"))],
                           levels={"hq": room_level("hq", "HQ"),
                                   "f5": room_level("f5", "5F", "hq", ("hq",))})
        room = wait_for(lambda: (r := node.room("omm_a"))["name"] == "5F Focus Room" and r, 30,
                        "the directory's name")
        assert room["path"] == "HQ / 5F"
        node.directory.set(rooms=[directory_room("omm_a", "5F Focus Room 专注室", level="f5",
                                                 path=("hq", "f5"))])
        wait_for(lambda: node.room("omm_a")["name"] == "5F Focus Room 专注室", 15, "the rename")
        view = node.app.node.views()["omm_a"]
        texts = {t.role: t.text for t in compose(view, node.app.config.rooms[0].devices[0]).texts}
        assert texts["name"] == "5F Focus Room 专注室"
        state = json.loads((node.dir / "panels" / "a-sign.json").read_text(encoding="utf-8"))
        assert state["path"] == "HQ / 5F"
        assert node.room("omm_b")["name"] == "5F Focus"  # not in the directory: the config's
    finally:
        node.close()
