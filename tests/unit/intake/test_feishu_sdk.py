"""Re-sync loads lark-oapi's core alone, and falls back to the whole SDK when it cannot."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, logging, sys, types
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
{prepare}
import display.intake.feishu.resync as resync
import display.intake.feishu.long_connection as long_connection
from display.intake.feishu import sdk
print(json.dumps({{
    "services": sorted(m for m in sys.modules if m.startswith("lark_oapi.api.")),
    "package_imported": "lark_oapi" in sys.modules,
    "request": sdk.core.BaseRequest.__name__,
    "dispatcher": "lark_oapi.event.dispatcher_handler" in sys.modules,
    "ws_client": long_connection.WatchedClient.__mro__[1].__module__,
}}))
"""


def probe(prepare: str = "") -> tuple[dict[str, object], str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(prepare=prepare)],
                         capture_output=True, text=True, check=True, timeout=120)
    doc: dict[str, object] = json.loads(out.stdout)
    return doc, out.stderr


def test_resync_and_long_connection_import_no_sdk_service() -> None:
    doc, log = probe()
    assert doc["services"] == []  # none of the ~10,000 modules of lark_oapi.api
    assert doc["dispatcher"] is False  # its placeholder is gone again
    assert doc["ws_client"] == "lark_oapi.ws.client"
    assert doc["package_imported"] is False  # lark_oapi/__init__ never ran
    assert doc["request"] == "BaseRequest"
    assert "whole SDK" not in log


def test_an_sdk_laid_out_differently_falls_back_to_the_full_import() -> None:
    # As if an SDK version had moved the token manager: the slim check finds no verify().
    doc, log = probe('sys.modules["lark_oapi.core.token"] = types.ModuleType("x")')
    assert "lark_oapi.core.token has no verify" in log and "importing the whole SDK" in log
    assert doc["package_imported"] is True and doc["services"]  # the real lark_oapi ran
    assert doc["request"] == "BaseRequest"
