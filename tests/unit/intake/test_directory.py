"""The room directory (display.intake.feishu.directory) through lark-oapi's core against the
Feishu stand-in: paging, level names, and each failure as one line naming its fix."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from display.config import FeishuConfig, Secret
from display.errors import FeishuApiError
from display.intake.feishu.directory import MAX_WAIT, Directory, DirectoryRoom
from display.testing.feishu_standin import (
    ROOM_LEVELS_MGET_PATH,
    ROOMS_PATH,
    TENANT_TOKEN,
    FeishuStandIn,
    RoomsApi,
    directory_room,
    room_level,
)


@pytest.fixture(scope="module")
def standin() -> Iterator[FeishuStandIn]:
    with FeishuStandIn() as s:
        yield s


@pytest.fixture
def api(standin: FeishuStandIn) -> RoomsApi:
    api = RoomsApi(standin)  # fresh tables and counters for each test
    api.levels = {"b1": room_level("b1", "Building 1"),
                  "f3": room_level("f3", "3F", "b1", ("0", "b1"))}
    return api


def _feishu(standin: FeishuStandIn) -> FeishuConfig:
    return FeishuConfig(app_id=standin.app_id, app_secret=Secret(standin.app_secret),
                        domain=standin.domain)


def _tenant(n: int) -> list[dict[str, Any]]:
    return [directory_room(f"omm_{i:04d}", f"Room {i}", capacity=i % 12 + 2, level="f3",
                           path=("0", "b1", "f3")) for i in range(n)]


def test_every_page_is_read_and_levels_are_named(standin: FeishuStandIn, api: RoomsApi) -> None:
    api.rooms = _tenant(234)
    rooms = Directory(_feishu(standin)).rooms()
    assert len(rooms) == 234 and len({r.room_id for r in rooms}) == 234
    assert rooms[0] == DirectoryRoom("omm_0000", "Room 0", 2, ("Building 1", "3F"))
    pages = api.pages_asked()
    assert len(pages) == 3 and pages[0] == "" and len(set(pages)) == 3
    sizes = [c.query["page_size"] for c in api.calls if c.path == ROOMS_PATH]
    assert sizes == [["100"]] * 3
    mget = [c.json() for c in api.calls if c.path != ROOMS_PATH]
    assert mget == [{"level_ids": ["b1", "f3"]}]  # the root level "0" is not asked for


def test_an_unknown_level_shows_as_its_id_and_a_room_without_an_id_is_left_out(
        standin: FeishuStandIn, api: RoomsApi) -> None:
    api.rooms = [directory_room("omm_x", "X", level="f9", path=("0", "f9")),
                 {"name": "no id", "capacity": 3}]
    assert Directory(_feishu(standin)).rooms() == [DirectoryRoom("omm_x", "X", 8, ("f9",))]


def test_an_empty_tenant_has_no_rooms(standin: FeishuStandIn, api: RoomsApi) -> None:
    assert Directory(_feishu(standin)).rooms() == []


def test_a_short_rate_limit_is_waited_out(standin: FeishuStandIn, api: RoomsApi) -> None:
    api.set(rooms=_tenant(3), rate_limited=2, reset=2)
    waits: list[float] = []
    rooms = Directory(_feishu(standin), sleep=waits.append).rooms()
    assert len(rooms) == 3 and waits == [2.0, 2.0]


def test_a_long_rate_limit_is_reported_not_waited(standin: FeishuStandIn, api: RoomsApi) -> None:
    api.set(rooms=_tenant(3), rate_limited=1, reset=int(MAX_WAIT) + 50)
    waits: list[float] = []
    with pytest.raises(FeishuApiError, match=r"rate limit \(code 99991400\).*try again in 60 s"):
        Directory(_feishu(standin), sleep=waits.append).rooms()
    assert waits == []


def test_wrong_credentials(standin: FeishuStandIn, api: RoomsApi) -> None:
    # Another app id: lark-oapi caches a tenant token per app for the process's life.
    feishu = FeishuConfig(app_id="cli_wrong", app_secret=Secret("wrong"), domain=standin.domain)
    with pytest.raises(FeishuApiError, match=r"refused the app credentials \(code 10014: "
                                             r"'app secret invalid'\); check \[feishu\] app_id"):
        Directory(feishu).rooms()


def test_no_credentials() -> None:
    with pytest.raises(FeishuApiError, match="no Feishu app credentials"):
        Directory(FeishuConfig())


def test_a_missing_scope_names_it_and_feishus_code(standin: FeishuStandIn, api: RoomsApi) -> None:
    api.set(scope_granted=False)
    with pytest.raises(FeishuApiError) as caught:
        Directory(_feishu(standin)).rooms()
    assert "lacks the scope vc:room:readonly (Feishu code 99991672" in str(caught.value)


def test_network_errors_are_one_line() -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    feishu = FeishuConfig(app_id="cli_x", app_secret=Secret("s"),
                          domain=f"http://127.0.0.1:{port}")
    with pytest.raises(FeishuApiError, match=rf"cannot reach http://127.0.0.1:{port}: "):
        Directory(feishu).rooms()


def test_a_paging_loop_is_cut(standin: FeishuStandIn, api: RoomsApi) -> None:
    def same_page(req: Any) -> tuple[int, Any]:
        return 200, {"code": 0, "data": {"rooms": [], "has_more": True, "page_token": "again"}}

    standin.add_route("GET", ROOMS_PATH, same_page)
    try:
        with pytest.raises(FeishuApiError, match="has_more but gave no new page_token"):
            Directory(_feishu(standin)).rooms()
    finally:
        RoomsApi(standin)  # the documented route back for the next test


# -- the stand-in answers as documented (raw HTTP, no client of ours) ----------------------------


def _get(standin: FeishuStandIn, query: str, token: str = TENANT_TOKEN) -> tuple[int, Any, Any]:
    req = urllib.request.Request(f"{standin.domain}{ROOMS_PATH}?{query}",
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, json.loads(answer.read()), answer.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers


@pytest.mark.parametrize("query", ["page_size=0", "page_size=101", "page_size=x",
                                   "page_size=10&page_token=not-ours"])
def test_standin_refuses_bad_paging_with_feishus_code(standin: FeishuStandIn, api: RoomsApi,
                                                      query: str) -> None:
    status, body, _ = _get(standin, query)
    assert (status, body["code"]) == (400, 99992402)


def test_standin_pages_and_rate_limits_as_documented(standin: FeishuStandIn,
                                                     api: RoomsApi) -> None:
    api.set(rooms=_tenant(5), rate_limited=1, reset=7)
    status, body, headers = _get(standin, "page_size=2")
    assert (status, body["code"], headers["x-ogw-ratelimit-reset"]) == (429, 99991400, "7")
    first = _get(standin, "page_size=2")[1]["data"]
    assert [r["room_id"] for r in first["rooms"]] == ["omm_0000", "omm_0001"]
    assert first["has_more"] is True
    last = _get(standin, f"page_size=3&page_token={first['page_token']}")[1]["data"]
    assert [r["room_id"] for r in last["rooms"]] == ["omm_0002", "omm_0003", "omm_0004"]
    assert last["has_more"] is False and "page_token" not in last
    assert _get(standin, "page_size=2", token="t-other")[1]["code"] == 99991663
    room = first["rooms"][0]
    assert set(room) >= {"room_id", "name", "capacity", "room_level_id", "path", "room_status"}


def _mget(standin: FeishuStandIn, body: Any) -> tuple[int, Any]:
    req = urllib.request.Request(f"{standin.domain}{ROOM_LEVELS_MGET_PATH}",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {TENANT_TOKEN}",
                                          "Content-Type": "application/json; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_standin_names_levels_and_refuses_as_documented(standin: FeishuStandIn,
                                                        api: RoomsApi) -> None:
    status, body = _mget(standin, {"level_ids": ["f3", "nope"]})
    assert status == 200 and body["code"] == 0
    assert body["data"]["items"] == [room_level("f3", "3F", "b1", ("0", "b1"))]
    assert _mget(standin, {"level_ids": []}) == (400, {
        "code": 99992402, "msg": "field validation failed: level_ids"})
    api.set(scope_granted=False)
    status, body = _mget(standin, {"level_ids": ["f3"]})
    assert (status, body["code"]) == (400, 99991672) and "vc:room:readonly" in body["msg"]
