"""One raw request (display.intake.feishu.rawapi) through lark-oapi's core against the Feishu
stand-in: an accepted answer, and every way of not accepting one, with what Feishu said."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from display.config import FeishuConfig, Secret
from display.errors import FeishuApiError
from display.intake.feishu.rawapi import RATE_LIMITED, Failure, RawApi, RawApiError
from display.testing.feishu_standin import TENANT_TOKEN, FeishuStandIn, FreeBusyApi, Request

ECHO = "/open-apis/test/v1/echo"
_apps = itertools.count()


class Echo:
    """A route answering ``answer`` (a route result) and keeping every request."""

    def __init__(self, standin: FeishuStandIn) -> None:
        self.answer: tuple[Any, ...] = (200, {"code": 0, "msg": "success", "data": {"n": 1}})
        self.calls: list[Request] = []
        standin.add_route("GET", ECHO, self._route)
        standin.add_route("POST", ECHO, self._route)

    def _route(self, req: Request) -> tuple[Any, ...]:
        self.calls.append(req)
        return self.answer


@pytest.fixture(scope="module")
def server() -> Iterator[FeishuStandIn]:
    with FeishuStandIn() as s:
        yield s


@pytest.fixture
def standin(server: FeishuStandIn) -> FeishuStandIn:
    # An app of its own per test: lark-oapi caches a tenant token per app id for the process.
    server.app_id = f"cli_raw_{next(_apps)}"
    return server


@pytest.fixture
def token(standin: FeishuStandIn) -> FreeBusyApi:
    return FreeBusyApi(standin)  # the tenant token's endpoint (and free/busy's)


@pytest.fixture
def echo(standin: FeishuStandIn, token: FreeBusyApi) -> Echo:
    return Echo(standin)


def raw(standin: FeishuStandIn) -> RawApi:
    return RawApi(FeishuConfig(app_id=standin.app_id, app_secret=Secret(standin.app_secret),
                               domain=standin.domain), 5.0)


def failure(api: RawApi, method: Any = "GET") -> RawApiError:
    with pytest.raises(RawApiError) as caught:
        api.request(method, ECHO)
    assert isinstance(caught.value, FeishuApiError)  # what every caller already catches
    assert "\n" not in str(caught.value)
    return caught.value


def test_an_accepted_answer_is_its_json_object_sent_once_with_the_tenant_token(
        standin: FeishuStandIn, echo: Echo) -> None:
    api = raw(standin)
    answer = api.request("POST", ECHO, queries=[("a", "1"), ("a", "2")], body={"ids": ["x"]})
    assert answer == {"code": 0, "msg": "success", "data": {"n": 1}}
    (call,) = echo.calls
    assert call.headers["Authorization"] == f"Bearer {TENANT_TOKEN}"
    assert call.query == {"a": ["1", "2"]}
    assert call.json() == {"ids": ["x"]}
    assert call.headers["Content-Type"].startswith("application/json")
    assert api.request("GET", ECHO)["data"] == {"n": 1}
    assert len(echo.calls) == 2


def test_a_429_carries_feishus_code_message_and_reset(standin: FeishuStandIn, echo: Echo) -> None:
    echo.answer = (429, {"code": RATE_LIMITED, "msg": "request trigger frequency limit"},
                   {"x-ogw-ratelimit-reset": "7"})
    err = failure(raw(standin))
    assert err.failure is Failure.RATE_LIMITED and err.retry_after == 7.0
    assert (err.status, err.code, err.msg) == (429, RATE_LIMITED, "request trigger frequency limit")
    assert str(err) == "rate limited (HTTP 429, code 99991400)"
    assert len(echo.calls) == 1  # never retried here: waiting is the caller's choice


def test_the_rate_limit_code_with_another_status_is_a_rate_limit(standin: FeishuStandIn,
                                                                  echo: Echo) -> None:
    echo.answer = (400, {"code": RATE_LIMITED, "msg": "request trigger frequency limit"})
    err = failure(raw(standin))
    assert (err.failure, err.status, err.retry_after) == (Failure.RATE_LIMITED, 400, None)


@pytest.mark.parametrize(("reset", "expected"), [
    ("2.5", 2.5), ("-5", 0.0), ("99999", 99999.0), ("inf", None), ("nan", None),
    ("1e309", None), ("soon", None), ("", None)])
def test_a_reset_header_counts_only_as_a_finite_number_of_seconds(
        standin: FeishuStandIn, echo: Echo, reset: str, expected: float | None,
        caplog: pytest.LogCaptureFixture) -> None:
    echo.answer = (429, {"code": RATE_LIMITED, "msg": "limited"}, {"x-ogw-ratelimit-reset": reset})
    assert failure(raw(standin)).retry_after == expected
    assert ("ignoring x-ogw-ratelimit-reset" in caplog.text) == (expected is None)


def test_a_429_without_feishus_code_is_still_a_rate_limit(standin: FeishuStandIn,
                                                          echo: Echo) -> None:
    echo.answer = (429, {"msg": "too many requests"}, {"x-ogw-ratelimit-reset": "3"})
    err = failure(raw(standin))
    assert (err.failure, err.code, err.retry_after) == (Failure.RATE_LIMITED, None, 3.0)


@pytest.mark.parametrize("body", [b"<html>Bad Gateway</html>", b"[1, 2]", b'"text"'])
def test_an_answer_the_sdk_cannot_decode_is_not_json(standin: FeishuStandIn, echo: Echo,
                                                     body: bytes) -> None:
    echo.answer = (502, body)
    err = failure(raw(standin))
    assert err.failure is Failure.NOT_JSON and err.status is None
    assert str(err) == f"{standin.domain} answered something that is not JSON"


@pytest.mark.parametrize(("status", "body"), [(502, b"<html>Bad Gateway</html>"), (200, b"")])
def test_an_answer_that_says_it_is_no_json_is_not_json_with_its_status(
        standin: FeishuStandIn, echo: Echo, status: int, body: bytes) -> None:
    echo.answer = (status, body, {"Content-Type": "text/html"})
    err = failure(raw(standin))
    assert (err.failure, err.status, err.code) == (Failure.NOT_JSON, status, None)
    assert str(err) == f"HTTP {status}, an answer that is not a JSON object"


def test_a_gateways_plain_429_is_a_rate_limit(standin: FeishuStandIn, echo: Echo) -> None:
    echo.answer = (429, b"Too Many Requests",
                   {"Content-Type": "text/plain", "x-ogw-ratelimit-reset": "4"})
    err = failure(raw(standin))
    assert (err.failure, err.code, err.retry_after) == (Failure.RATE_LIMITED, None, 4.0)


def test_json_that_is_no_object_is_not_json_with_its_status(standin: FeishuStandIn,
                                                            echo: Echo) -> None:
    echo.answer = (200, b"null")
    err = failure(raw(standin))
    assert (err.failure, err.status, err.answer) == (Failure.NOT_JSON, 200, None)


@pytest.mark.parametrize(("answer", "status", "code", "msg"), [
    ((200, {"code": 99991672, "msg": "Access denied"}), 200, 99991672, "Access denied"),
    ((400, {"code": 41050, "msg": "no user authority"}), 400, 41050, "no user authority"),
    ((500, {"code": 0, "msg": "success"}), 500, 0, "success"),  # code 0 but not HTTP 200
    ((200, {"msg": "no code"}), 200, None, "no code"),
    ((200, {"code": "0", "msg": "text"}), 200, "0", "text"),
])
def test_a_refusal_carries_status_code_and_message(standin: FeishuStandIn, echo: Echo,
                                                   answer: tuple[Any, ...], status: int,
                                                   code: Any, msg: str) -> None:
    echo.answer = answer
    err = failure(raw(standin), "POST")
    assert (err.failure, err.status, err.code, err.msg) == (Failure.REFUSED, status, code, msg)
    assert err.answer == answer[1] and err.retry_after is None
    assert str(err) == f"HTTP {status}, code {code}: {msg!r}"


@pytest.mark.parametrize(("token_answer", "code", "msg"), [
    ((200, {"code": 10014, "msg": "app secret invalid"}), 10014, "app secret invalid"),
    ((200, {"code": RATE_LIMITED, "msg": "request trigger frequency limit"}), RATE_LIMITED,
     "request trigger frequency limit"),
])
def test_a_refused_token_sends_nothing(standin: FeishuStandIn, token: FreeBusyApi, echo: Echo,
                                       token_answer: tuple[Any, ...], code: int,
                                       msg: str) -> None:
    token.token_answer = token_answer
    err = failure(raw(standin))
    assert (err.failure, err.code, err.msg) == (Failure.TOKEN, code, msg)
    assert str(err) == f"tenant token refused: code {code}"
    assert token.token_calls and echo.calls == []


def test_an_unreachable_feishu_names_the_exception() -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = RawApi(FeishuConfig(app_id="cli_raw_nowhere", app_secret=Secret("s"),
                              domain=f"http://127.0.0.1:{port}"), 5.0)
    err = failure(api)
    assert (err.failure, err.status, err.reason) == (Failure.UNREACHABLE, None, "ConnectionError")
    assert str(err) == f"cannot reach http://127.0.0.1:{port}: ConnectionError"


def test_a_plain_http_domain_off_loopback_is_refused_before_sending() -> None:
    with pytest.raises(ValueError, match="https"):
        RawApi(FeishuConfig(app_id="a", app_secret=Secret("s"), domain="http://example.com"),
               5.0)

