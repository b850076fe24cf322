"""One exception tree for the whole package.

Every error we raise on purpose derives from :class:`RoomDisplayError`; each also derives from the
built-in it resembles, so callers that only know ``ValueError`` or ``OSError`` still catch it.
Library errors are converted at the boundary with ``raise ... from``.
"""

from __future__ import annotations


class RoomDisplayError(Exception):
    """Root of every error this package raises on purpose."""


class ConfigError(RoomDisplayError, ValueError):
    """The configuration file is unreadable or invalid.

    ``str()`` is one line naming the file, the key and the fix, ready to show a user.
    """

    def __init__(self, path: str, key: str, problem: str, fix: str = "") -> None:
        self.path = path
        self.key = key
        self.problem = problem
        self.fix = fix
        where = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(where + problem + (f" ({fix})" if fix else ""))


class EventError(RoomDisplayError, ValueError):
    """A Feishu event (or a schedule payload) failed validation.

    ``field`` names the offending field as a dotted path, e.g. ``event.start.time_stamp``.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class StoreError(RoomDisplayError, OSError):
    """The schedule store could not be read or written."""


class DeviceError(RoomDisplayError, OSError):
    """A panel device failed (port missing, board silent, capabilities mismatch)."""


class FeishuApiError(RoomDisplayError, OSError):
    """A Feishu open-platform call failed: unreachable, token refused, rate limited, an error code.

    ``retry_after`` is the wait Feishu asked for (rate limits), in seconds, when it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)
