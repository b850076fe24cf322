"""lark-oapi's core (token manager, HTTP transport) and ``ws`` without ``import lark_oapi``.

``lark_oapi/__init__.py`` imports every service of the SDK (about 10,000 modules, ~150 MB and
seconds of start-up); re-sync needs only ``lark_oapi.core``: ``Config``, ``BaseRequest``, the
tenant-token manager (``core.token.verify``) and ``core.http.Transport``. :func:`load_core`
imports those submodules under a bare stand-in for the package (its real ``__path__``, not its
``__init__``), then takes the stand-in out of ``sys.modules`` again so a later
``import lark_oapi`` (the long connection) still runs the real one. If an SDK version lays its
modules out differently, it logs why and falls back to the full import.

:func:`load_ws` does the same for the long connection's ``lark_oapi.ws``, whose client module
imports ``event.dispatcher_handler`` only for a type hint; that module imports the event
processors of every service, so a placeholder stands in for it while ``ws`` loads (we hand the
client our own handler, :class:`~display.intake.feishu.long_connection.PayloadHandler`).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
import types
import urllib.parse
from typing import Any

log = logging.getLogger(__name__)

#: What re-sync uses, by module; a missing name makes :func:`load_core` fall back.
NEEDED: dict[str, tuple[str, ...]] = {
    "lark_oapi.core": ("BaseRequest", "HttpMethod", "AccessTokenType", "LogLevel",
                       "RequestOption", "JSON"),
    "lark_oapi.core.token": ("verify",),
    "lark_oapi.core.http": ("Transport",),
    "lark_oapi.core.model": ("BaseResponse", "Config"),
    "lark_oapi.core.exception": ("ObtainAccessTokenException",),
    "lark_oapi.core.log": ("logger",),
}


def _check(modules: dict[str, Any], needed: dict[str, tuple[str, ...]]) -> None:
    for name, attrs in needed.items():
        missing = [a for a in attrs if not hasattr(modules[name], a)]
        if missing:
            raise ImportError(f"{name} has no {', '.join(missing)}")


#: What the long connection uses.
NEEDED_WS: dict[str, tuple[str, ...]] = {
    "lark_oapi.ws": ("Client",),
    "lark_oapi.ws.exception": ("ClientException",),
    "lark_oapi.core.enum": ("LogLevel",),
}


class _Placeholder:
    """Stands in for ``EventDispatcherHandler`` while ``lark_oapi.ws`` is imported."""


def _slim(needed: dict[str, tuple[str, ...]], ws: bool) -> dict[str, Any]:
    if "lark_oapi" in sys.modules:  # already imported in full: reuse it
        return {name: importlib.import_module(name) for name in needed}
    spec = importlib.util.find_spec("lark_oapi")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("lark_oapi is not installed as a package")
    stand_ins: dict[str, types.ModuleType] = {"lark_oapi": types.ModuleType("lark_oapi")}
    stand_ins["lark_oapi"].__path__ = list(spec.submodule_search_locations)
    stand_ins["lark_oapi"].__spec__ = spec
    stand_ins["lark_oapi"].__file__ = spec.origin
    if ws and "lark_oapi.event.dispatcher_handler" not in sys.modules:
        handler = types.ModuleType("lark_oapi.event.dispatcher_handler")
        handler.EventDispatcherHandler = _Placeholder  # type: ignore[attr-defined]
        stand_ins[handler.__name__] = handler
    sys.modules.update(stand_ins)
    try:
        return {name: importlib.import_module(name) for name in needed}
    finally:
        # A later `import lark_oapi` (tests, the full fallback) must run the real modules.
        for name, module in stand_ins.items():
            if sys.modules.get(name) is module:
                del sys.modules[name]


def _load(needed: dict[str, tuple[str, ...]], what: str, ws: bool = False) -> dict[str, Any]:
    try:
        modules = _slim(needed, ws)
        _check(modules, needed)
        return modules
    except (ImportError, AttributeError) as exc:
        log.warning("lark-oapi's %s could not be imported on its own (%s): importing the "
                    "whole SDK (slower start, more memory)", what, exc)
        for name in [m for m in sys.modules if m == "lark_oapi" or m.startswith("lark_oapi.")]:
            del sys.modules[name]
        importlib.import_module("lark_oapi")
        modules = {name: importlib.import_module(name) for name in needed}
        _check(modules, needed)
        return modules


def load_core() -> dict[str, Any]:
    """The modules of :data:`NEEDED`, imported slim when the SDK allows it."""
    return _load(NEEDED, "core")


def load_ws() -> dict[str, Any]:
    """The modules of :data:`NEEDED_WS`, imported without the event dispatcher's service
    table when the SDK allows it."""
    return _load(NEEDED_WS, "ws client", ws=True)


_core = load_core()
core = _core["lark_oapi.core"]
ObtainAccessTokenException: Any = _core["lark_oapi.core.exception"].ObtainAccessTokenException


def check_domain(domain: str) -> None:
    """The SDK's rule (``lark.Client``'s builder): ``https://host[:port]``, or plain http to
    loopback only, so the app secret never travels in clear. ``ValueError`` otherwise."""
    parsed = urllib.parse.urlsplit(domain)
    host = (parsed.hostname or "").lower()
    if parsed.scheme == "http" and host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"domain must use https scheme (got {domain!r})")
    if parsed.scheme not in ("http", "https") or not host:
        raise ValueError(f"domain must be an https URL (got {domain!r})")
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment or parsed.username:
        raise ValueError(f"domain must be scheme://host[:port] only (got {domain!r})")


class TenantClient:
    """``lark.Client.request`` for tenant-token requests, built from the core alone.

    ``request`` fetches (and caches) the tenant access token through the SDK's token manager,
    sends through its transport and returns a response whose ``raw`` is the SDK's RawResponse.
    """

    def __init__(self, app_id: str, app_secret: str, domain: str, timeout: float) -> None:
        check_domain(domain)
        config = _core["lark_oapi.core.model"].Config()
        config.app_id, config.app_secret = app_id, app_secret
        config.domain, config.timeout = domain, timeout
        config.log_level = core.LogLevel.WARNING
        self._config = config
        _core["lark_oapi.core.log"].logger.setLevel(int(config.log_level.value))

    def request(self, request: Any) -> Any:
        option = core.RequestOption()
        _core["lark_oapi.core.token"].verify(self._config, request, option)
        raw = _core["lark_oapi.core.http"].Transport.execute(self._config, request, option)
        response_type = _core["lark_oapi.core.model"].BaseResponse
        content_type = raw.headers.get("Content-Type")
        if content_type is not None and content_type.startswith("application/json"):
            # As lark.Client does: a JSON answer that does not decode raises ValueError; so
            # does JSON that is not an object (the SDK would raise AttributeError).
            try:
                response = core.JSON.unmarshal(str(raw.content, "utf-8"), response_type)
            except (AttributeError, TypeError) as exc:
                raise ValueError("the answer is JSON but not an object") from exc
        else:
            response = response_type()
        response.raw = raw
        return response
