"""One raw request to Feishu's open API, sent and decoded in one place (in the intake child).

lark-oapi's typed clients load the whole SDK, so the intake's calls (free/busy, titles and names,
the room directory, releasing a booking) are raw requests through its core
(:class:`~display.intake.feishu.sdk.TenantClient`: the SDK's token manager and transport).
:meth:`RawApi.request` sends one and returns the decoded JSON object of an answer Feishu
accepted: HTTP 200 and ``code`` 0. Anything else raises :class:`RawApiError`, which says which
failure it was (:class:`Failure`) and carries what Feishu said (HTTP status, ``code``, ``msg``,
and for a rate limit the wait its ``x-ogw-ratelimit-reset`` header asks for), so that each
caller words the error for its own reader.

Rate limits: HTTP 429 or code 99991400, with whatever status (Feishu sends either). The reset
header is taken as seconds when it is a finite number (a negative one as 0); anything else
(``inf``, ``nan``, text) gives no wait, so the caller backs off as usual.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from display.config import FeishuConfig
from display.errors import FeishuApiError

# lark-oapi's core only (see display.intake.feishu.sdk).
from display.intake.feishu.sdk import ObtainAccessTokenException, TenantClient
from display.intake.feishu.sdk import core as lark

log = logging.getLogger(__name__)

#: Feishu's "request trigger frequency limit" code (it may come with HTTP 400 or 429).
RATE_LIMITED = 99991400
RESET_HEADER = "x-ogw-ratelimit-reset"


class Failure(enum.Enum):
    """Why a request did not give an accepted answer."""

    TOKEN = "token"  #: the tenant token was refused (``code``/``msg`` are the token answer's)
    UNREACHABLE = "unreachable"  #: no answer: connection, DNS, proxy, timeout
    #: not a JSON object: ``status`` is None when the SDK itself failed to decode the answer
    NOT_JSON = "not_json"
    RATE_LIMITED = "rate_limited"  #: HTTP 429 or code 99991400
    REFUSED = "refused"  #: another HTTP status or a ``code`` other than 0


class RawApiError(FeishuApiError):
    """A request Feishu did not accept; ``str()`` is a plain default wording.

    ``status`` is the HTTP status (None without an answer), ``code`` and ``msg`` what Feishu's
    answer said (None and ``""`` where it said nothing), ``reason`` the name of the exception
    behind an unreachable Feishu, ``retry_after`` the wait a rate limit asks for in seconds,
    ``answer`` the decoded JSON (None where there was none), for a caller with its own parser.
    """

    def __init__(self, failure: Failure, message: str, *, status: int | None = None,
                 code: Any = None, msg: str = "", reason: str = "",
                 retry_after: float | None = None, answer: Any = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.failure = failure
        self.status = status
        self.code = code
        self.msg = msg
        self.reason = reason
        self.answer = answer


class RawApi:
    """Sends requests with the app's tenant token to ``feishu.domain``.

    ``ValueError`` from the constructor for a plain-http domain that is not loopback: the SDK
    refuses to send the app secret there.
    """

    def __init__(self, feishu: FeishuConfig, timeout: float) -> None:
        self.domain = feishu.domain
        self._client = TenantClient(feishu.app_id, feishu.app_secret.reveal(), feishu.domain,
                                    timeout)

    def request(self, method: Literal["GET", "POST"], uri: str, *,
                queries: Sequence[tuple[str, str]] = (), body: Any = None) -> Mapping[str, Any]:
        """The answer's JSON object (``code`` 0); :class:`RawApiError` otherwise.

        ``body`` (when not None) goes as JSON. The request is sent once.
        """
        builder = (lark.BaseRequest.builder().http_method(lark.HttpMethod[method]).uri(uri)
                   .token_types({lark.AccessTokenType.TENANT}))
        if queries:
            builder = builder.queries(list(queries))
        if body is not None:
            # A fresh dict each call: the SDK adds its headers to the one it is given.
            builder = builder.headers({"Content-Type": "application/json; charset=utf-8"})
            builder = builder.body(body)
        return self.send(builder.build())

    def send(self, request: Any) -> Mapping[str, Any]:
        """Send a built ``BaseRequest``; what :meth:`request` returns or raises."""
        try:
            response = self._client.request(request)
        except ObtainAccessTokenException as exc:
            raise RawApiError(Failure.TOKEN, f"tenant token refused: code {exc.code}",
                              code=exc.code, msg=_str(exc.msg)) from exc
        except OSError as exc:  # requests' exceptions (timeouts too) derive from OSError
            name = type(exc).__name__
            raise RawApiError(Failure.UNREACHABLE, f"cannot reach {self.domain}: {name}",
                              reason=name) from exc
        except ValueError as exc:  # the SDK could not decode an answer said to be JSON
            raise RawApiError(Failure.NOT_JSON,
                              f"{self.domain} answered something that is not JSON") from exc
        return decode(response.raw)


def decode(raw: Any) -> Mapping[str, Any]:
    """An SDK ``RawResponse``'s JSON object when Feishu accepted the request; else
    :class:`RawApiError`: a rate limit first, then an answer that is not a JSON object, then
    an HTTP status other than 200 or a ``code`` other than 0."""
    status = int(raw.status_code)
    headers = {str(k).lower(): str(v) for k, v in (raw.headers or {}).items()}
    try:
        answer = json.loads(raw.content or b"")
    except (ValueError, UnicodeDecodeError):
        answer = None
    code = answer.get("code") if isinstance(answer, Mapping) else None
    msg = _str(answer.get("msg")) if isinstance(answer, Mapping) else ""
    if status == 429 or code == RATE_LIMITED:
        raise RawApiError(Failure.RATE_LIMITED, f"rate limited (HTTP {status}, code {code})",
                          status=status, code=code, msg=msg,
                          retry_after=reset_seconds(headers.get(RESET_HEADER)))
    if not isinstance(answer, Mapping):
        raise RawApiError(Failure.NOT_JSON, f"HTTP {status}, an answer that is not a JSON object",
                          status=status, answer=answer)
    if status != 200 or type(code) is not int or code != 0:
        raise RawApiError(Failure.REFUSED, f"HTTP {status}, code {code}: {msg!r}",
                          status=status, code=code, msg=msg, answer=answer)
    return answer


def reset_seconds(value: str | None) -> float | None:
    """``x-ogw-ratelimit-reset`` as seconds, at least 0; None when absent or not a finite
    number (logged: the caller backs off as usual)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        log.error("ignoring %s %.40r (not a number of seconds); backing off as usual",
                  RESET_HEADER, value)
        return None
    return max(0.0, seconds)


def _str(value: Any) -> str:
    return "" if value is None else str(value)
