"""lark-oapi's core (token manager, HTTP transport) without ``import lark_oapi``.

``lark_oapi/__init__.py`` imports every service of the SDK (about 10,000 modules, ~150 MB and
seconds of start-up); re-sync needs only ``lark_oapi.core``: ``Config``, ``BaseRequest``, the
tenant-token manager (``core.token.verify``) and ``core.http.Transport``. :func:`load_core`
imports those submodules under a bare stand-in for the package (its real ``__path__``, not its
``__init__``), then takes the stand-in out of ``sys.modules`` again so a later
``import lark_oapi`` (the long connection) still runs the real one. If an SDK version lays its
modules out differently, it logs why and falls back to the full import.
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
NEEDED = {
    "lark_oapi.core": ("BaseRequest", "HttpMethod", "AccessTokenType", "LogLevel",
                       "RequestOption", "JSON"),
    "lark_oapi.core.token": ("verify",),
    "lark_oapi.core.http": ("Transport",),
    "lark_oapi.core.model": ("BaseResponse", "Config"),
    "lark_oapi.core.exception": ("ObtainAccessTokenException",),
    "lark_oapi.core.log": ("logger",),
}


def _check(modules: dict[str, Any]) -> None:
    for name, attrs in NEEDED.items():
        missing = [a for a in attrs if not hasattr(modules[name], a)]
        if missing:
            raise ImportError(f"{name} has no {', '.join(missing)}")


def _slim() -> dict[str, Any]:
    if "lark_oapi" in sys.modules:  # already imported in full (long connection): reuse it
        return {name: importlib.import_module(name) for name in NEEDED}
    spec = importlib.util.find_spec("lark_oapi")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("lark_oapi is not installed as a package")
    stand_in = types.ModuleType("lark_oapi")
    stand_in.__path__ = list(spec.submodule_search_locations)
    stand_in.__spec__ = spec
    stand_in.__file__ = spec.origin
    sys.modules["lark_oapi"] = stand_in
    try:
        return {name: importlib.import_module(name) for name in NEEDED}
    finally:
        if sys.modules.get("lark_oapi") is stand_in:
            del sys.modules["lark_oapi"]


def load_core() -> dict[str, Any]:
    """The modules of :data:`NEEDED`, imported slim when the SDK allows it."""
    try:
        modules = _slim()
        _check(modules)
        return modules
    except (ImportError, AttributeError) as exc:
        log.warning("lark-oapi's core could not be imported on its own (%s): importing the "
                    "whole SDK (slower start, more memory)", exc)
        for name in [m for m in sys.modules if m == "lark_oapi" or m.startswith("lark_oapi.")]:
            del sys.modules[name]
        importlib.import_module("lark_oapi")
        modules = {name: importlib.import_module(name) for name in NEEDED}
        _check(modules)
        return modules


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
            # As lark.Client does: a JSON answer that does not decode raises ValueError.
            response = core.JSON.unmarshal(str(raw.content, "utf-8"), response_type)
        else:
            response = response_type()
        response.raw = raw
        return response
