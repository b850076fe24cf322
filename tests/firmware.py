"""Load the reference firmware's host-importable logic (``hardware/firmware/panel_board.py``).

The firmware directory is not a Python package (on the board its files sit at the top of the
filesystem), so it is loaded by path rather than by adding it to ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

FIRMWARE_DIR = Path(__file__).resolve().parent.parent / "hardware" / "firmware"
PROTOCOL_MD = FIRMWARE_DIR.parent / "PROTOCOL.md"


def load_panel_board() -> ModuleType:
    """The ``panel_board`` module, loaded once."""
    name = "room_display_firmware_panel_board"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, FIRMWARE_DIR / "panel_board.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


panel_board = load_panel_board()
