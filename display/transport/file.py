"""``virtual:DIR``: a directory as a transport; each named file is replaced atomically."""

from __future__ import annotations

from pathlib import Path

from display.files import atomic_write


class FileTransport:
    """Writes named files into one directory (created on first write)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def write(self, name: str, data: bytes) -> Path:
        """Replace ``DIR/name`` with ``data``; readers never see half a file."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / name
        atomic_write(path, data)
        return path
