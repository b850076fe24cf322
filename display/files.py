"""Replace a file atomically: readers see the old or the new content, never half of it.

Said once for every file the package rewrites in place: the node's status document, the virtual
device's JSON and PNG, the configuration saved by ``mapedit``.
"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: Path, data: bytes, *, mode: int | None = None,
                 owner: tuple[int, int] | None = None) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``.

    ``mode`` sets the new file's permissions (``mapedit`` keeps a config's 0640); without it the
    file gets the process's default (umask). ``owner`` (uid, gid) gives the new file that owner
    and group, so ``sudo room-display map`` leaves a root:room-display config readable by the
    service; a ``PermissionError`` when the caller may not (the file is left as it was). The
    temporary file never holds the data with looser permissions than ``mode``, and is removed if
    anything fails.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # a leftover from a crash keeps its own permissions otherwise
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if mode is not None else 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            if owner is not None and (os.fstat(f.fileno()).st_uid,
                                      os.fstat(f.fileno()).st_gid) != owner:
                os.fchown(f.fileno(), *owner)
            if mode is not None:  # after fchown, which may clear set-id bits
                os.fchmod(f.fileno(), mode)
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
