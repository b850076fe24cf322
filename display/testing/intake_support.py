"""Helpers for the intake tests: recording callbacks, configs, HTTP."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


class Recorder:
    """A :class:`~display.intake.node_input.NodeInput` that records what the supervisor reports
    (on its dispatcher thread): the rooms changed and the ``feishu`` link's ups and downs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.changed: list[frozenset[str]] = []
        self.links: list[tuple[bool, str | None]] = []

    def notify(self, rooms: Iterable[str]) -> None:
        with self._lock:
            self.changed.append(frozenset(rooms))

    def set_link(self, name: str, up: bool, error: str | None = None) -> None:
        if name != "feishu":
            raise AssertionError(f"the Feishu intake reported link {name!r}")
        with self._lock:
            self.links.append((up, error))

    def rooms_changed(self) -> set[str]:
        with self._lock:
            return set().union(*self.changed) if self.changed else set()

    def link_events(self) -> list[tuple[bool, str | None]]:
        with self._lock:
            return list(self.links)


def write_config(path: Path, *, state_dir: Path, feishu: Mapping[str, Any],
                 rooms: tuple[str, ...] = ("omm_a", "omm_b")) -> Path:
    """A minimal node config with a ``[feishu]`` table (values written as TOML literals)."""
    lines = ["[node]", f"state_dir = {json.dumps(str(state_dir))}", "timezone = \"UTC\"",
             "", "[feishu]"]
    for key, value in feishu.items():
        lines.append(f"{key} = {json.dumps(value)}")
    for room in rooms:
        lines += ["", "[[rooms]]", f"open_id = {json.dumps(room)}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class HttpClient:
    """A keep-alive HTTP/1.1 connection to ``host:port`` returning (status, JSON or text)."""

    def __init__(self, listen: str, timeout: float = 10.0) -> None:
        host, port = listen.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        self.conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = self.conn.getresponse()
        raw = resp.read()
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
        try:
            return resp.status, json.loads(raw)
        except ValueError:
            return resp.status, raw.decode(errors="replace")

    def close(self) -> None:
        self.conn.close()
