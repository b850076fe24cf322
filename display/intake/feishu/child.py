"""The child's entry point: arguments, config, store and sink, re-sync, then one of the modes.

:func:`main` is what ``python -m display.intake.feishu`` runs (see :mod:`.__main__`).
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from display.clock import SystemClock
from display.config import Config, FeishuConfig, load_config
from display.errors import ConfigError, StoreError
from display.intake.feishu.channel import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_REFUSED,
    ParentChannel,
    exit_when_stdin_closes,
    take_stdout,
)
from display.intake.feishu.reports import STORE_RETRY_SECONDS, CountReporter, StoreWatch
from display.intake.sink import EventSink
from display.model import RoomEvent
from display.outbox import install as install_outbox
from display.store import ScheduleStore, store_path
from display.storeopen import ResilientStore

if TYPE_CHECKING:
    from display.intake.feishu.details import DetailsFetcher
    from display.intake.feishu.resync import PassResult, Resync
    from display.intake.feishu.room_names import DirectoryFollower

#: First retry delay after a failed re-sync (as
#: :data:`display.intake.feishu.resync.BACKOFF_INITIAL`,
#: which is not imported here: that module loads lark-oapi, which a webhook without re-sync
#: never needs).
BACKOFF_INITIAL = 30.0

log = logging.getLogger(__name__)

ALIVE_INTERVAL = 5.0
#: Seconds between tries to open a store that could not be opened at start (disk full): the
#: intake answers 503 meanwhile and takes deliveries again within this time of space returning.
UNOPENED_RETRY_SECONDS = 1.0


def quiet_sdk_logger() -> None:
    """Route lark-oapi's logger (once it is imported) to our stderr handler, warnings and up."""
    sdk_log = logging.getLogger("Lark")
    for handler in list(sdk_log.handlers):  # its own handler writes every record to stdout
        sdk_log.removeHandler(handler)
    sdk_log.setLevel(logging.WARNING)
    sdk_log.propagate = True


def make_details(config: Config, feishu: FeishuConfig, store: ScheduleStore,
                 channel: ParentChannel) -> DetailsFetcher | None:
    """The titles-and-names fetcher (not started), or ``None`` without app credentials.

    It exists whenever it could run, so that switching ``[details]`` on reaches a running node;
    while every detail is off it makes no call at all. It fetches only for bookings free/busy
    listed with an organizer (privacy first), so without re-sync it fetches nothing.
    """
    if not feishu.app_id or not feishu.app_secret:
        return None
    from display.intake.feishu.details import ConfigFollower, DetailsFetcher, LarkDetailsApi

    try:
        api = LarkDetailsApi(feishu)
    except ValueError as exc:
        log.error("%s: titles and names cannot use feishu.domain: %s", config.path, exc)
        return None
    return DetailsFetcher(api, store, SystemClock(), ConfigFollower(config),
                          lambda rooms: channel.send(changed=sorted(rooms)))


def make_directory(config: Config, feishu: FeishuConfig, store: ScheduleStore,
                   channel: ParentChannel) -> DirectoryFollower | None:
    """The room-directory reader when ``[feishu] room_names`` is on (not started)."""
    if not feishu.room_names or not feishu.app_id or not feishu.app_secret:
        return None
    from display.intake.feishu.details import ConfigFollower
    from display.intake.feishu.room_names import DirectoryFollower, LarkDirectoryApi

    try:
        api = LarkDirectoryApi(feishu)
    except ValueError as exc:
        log.error("%s: room names cannot use feishu.domain: %s", config.path, exc)
        return None
    return DirectoryFollower(api, store, ConfigFollower(config),
                             lambda rooms: channel.send(changed=sorted(rooms)))


def make_resync(config: Config, feishu: FeishuConfig, store: ScheduleStore,
                channel: ParentChannel, interval: float | None,
                backoff: float, details: DetailsFetcher | None = None) -> Resync | None:
    """The re-sync worker for this child (not started), or ``None`` when it is off or cannot run.

    When it cannot run, one log line and one ``resync`` line to the parent say why.
    """
    if not feishu.resync_enabled:
        log.info("re-sync from free/busy is off (feishu.resync = false or resync_minutes = 0)")
        return None
    from display.intake.feishu.resync import LarkFreeBusy, Resync  # loads lark-oapi

    quiet_sdk_logger()
    problem = None
    if not feishu.app_id or not feishu.app_secret:
        problem = ("re-sync needs feishu.app_id and feishu.app_secret (or set "
                   "feishu.resync = false)")
    else:
        try:
            api = LarkFreeBusy(feishu)
        except ValueError as exc:  # the SDK refuses plain http to anything but loopback
            problem = f"re-sync cannot use feishu.domain: {exc}"
    if problem is not None:
        log.error("%s: %s", config.path, problem)
        channel.send(resync={"ok": False, "at": round(time.time(), 3), "error": problem,
                             "rooms": 0, "changed": 0, "next_at": None})
        return None
    rooms = [room.open_id for room in config.rooms]

    def current_rooms() -> list[str]:
        # Re-read each pass: `map add-room` reaches a running node without restarting us.
        nonlocal rooms
        try:
            rooms = [room.open_id for room in load_config(config.path).rooms]
        except ConfigError as exc:
            log.warning("re-sync keeps the rooms it knew: %s", exc)
        return rooms

    directory = make_directory(config, feishu, store, channel)

    def report(result: PassResult, next_at: datetime | None) -> None:
        if directory is not None and result.ok:  # names follow the directory, read as often
            directory.request()
        channel.send(resync={
            "ok": result.ok, "at": round(result.at.timestamp(), 3), "error": result.error,
            "rooms": result.rooms, "changed": len(result.changed),
            "next_at": round(next_at.timestamp(), 3) if next_at is not None else None})

    stale_after = config.occupancy.stale_after_minutes * 60.0
    if details is not None:  # names ride along with free/busy; re-synced rooms get details
        from display.intake.feishu.details import HarvestingFreeBusy

        return Resync(HarvestingFreeBusy(api, details), store, SystemClock(), current_rooms,
                      on_changed=lambda changed: channel.send(changed=sorted(changed)),
                      on_report=report,
                      interval=feishu.resync_minutes * 60.0 if interval is None else interval,
                      link_down_interval=stale_after / 2, backoff_initial=backoff)
    return Resync(api, store, SystemClock(), current_rooms,
                  on_changed=lambda changed: channel.send(changed=sorted(changed)),
                  on_report=report,
                  interval=feishu.resync_minutes * 60.0 if interval is None else interval,
                  link_down_interval=stale_after / 2, backoff_initial=backoff)


class ConfiguredRooms:
    """The room ids the config file lists now, re-read when the file changes.

    A ``map add-room`` reaches a running node without restarting the child (only a changed
    ``[feishu]`` does), so the sink asks this at each commit: one ``stat`` while unchanged.
    """

    def __init__(self, config: Config) -> None:
        self._path = config.path
        self._stamp = self._stat()
        self._rooms = frozenset(room.open_id for room in config.rooms)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self._path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def __call__(self) -> frozenset[str]:
        stamp = self._stat()
        if stamp is not None and stamp != self._stamp:
            self._stamp = stamp
            try:
                config = load_config(self._path, resolve_secrets=False)
                self._rooms = frozenset(room.open_id for room in config.rooms)
            except ConfigError as exc:  # the node rejects it too and keeps running the old one
                log.warning("keeping the rooms known before the config change: %s", exc)
        return self._rooms


def open_store(path: Path) -> tuple[ScheduleStore | None, str | None]:
    """The store, and why it is only a stand-in for now (or ``None``); ``(None, why)`` when no
    store at all can be had.

    A store that cannot be opened for want of space (or on a read-only remount) is replaced by
    :meth:`~display.storeopen.ResilientStore.unopened`: the intake still listens, answers 503
    (Feishu retries) and switches to the real file as soon as it opens. Anything else is one
    log line and ``(None, why)``: the supervisor restarts the child with backoff.
    """
    try:
        return ScheduleStore(path), None
    except StoreError as exc:
        if not isinstance(exc.__cause__, sqlite3.OperationalError):
            log.error("%s (node.state_dir)", exc)
            return None, str(exc)  # no store at all: the reason goes to the parent
        log.error("%s: serving anyway (deliveries are answered 503 and retried by Feishu) and "
                  "retrying every %.0f s", exc, UNOPENED_RETRY_SECONDS)
        return ResilientStore.unopened(path, str(exc)), str(exc)


def refusal(config: Config) -> ConfigError | None:
    """What the intake refuses to run with (``run`` refuses it at start too), or ``None``.

    Webhook mode without ``verification_token``: every v1 envelope carries the token (also
    when it arrives encrypted and signed), so each event would be refused.
    """
    feishu = config.feishu
    if feishu is not None and feishu.mode == "webhook" and not feishu.verification_token:
        return ConfigError(str(config.path), "feishu.verification_token",
                           "is required in webhook mode", "every Feishu event carries it; "
                           "copy it from the app's Events page")
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the intake child; returns the exit code (see :mod:`display.intake.feishu`)."""
    parser = argparse.ArgumentParser(prog="python -m display.intake.feishu",
                                     description="Feishu intake child of room-display")
    parser.add_argument("-c", "--config", required=True, type=Path, help="config file (TOML)")
    parser.add_argument("--alive-interval", type=float, default=ALIVE_INTERVAL,
                        help="seconds between alive lines (default %(default)s)")
    parser.add_argument("--resync-interval", type=float, default=None,
                        help="seconds between periodic re-syncs, instead of "
                             "feishu.resync_minutes (tests)")
    parser.add_argument("--resync-backoff", type=float, default=BACKOFF_INITIAL,
                        help="first retry delay after a failed re-sync, doubling "
                             "(default %(default)s; tests)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log debug details (room-display run -v passes it on)")
    args = parser.parse_args(argv)
    channel = ParentChannel(take_stdout())
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s feishu-intake[%(process)d] "
                               "%(name)s: %(message)s")
    requested: list[Resync | None] = [None]  # the re-sync, once made

    def parent_request(doc: dict[str, object]) -> None:
        reason = doc.get("resync")
        if isinstance(reason, str) and requested[0] is not None:
            requested[0].request(reason[:200])

    exit_when_stdin_closes(parent_request)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        log.error("%s", exc)
        channel.fatal(str(exc))
        return EXIT_CONFIG
    if config.feishu is None:
        log.error("%s: feishu: section missing (add [feishu] to run the Feishu intake)",
                  config.path)
        channel.fatal(f"{config.path}: feishu: section missing")
        return EXIT_CONFIG
    long_connection = config.feishu.mode != "webhook"
    problem = refusal(config)
    if problem is not None:  # say so once and stay down: a restart cannot fix it
        log.error("%s", problem)
        channel.send(refused=str(problem))
        return EXIT_REFUSED
    store, unopened = open_store(store_path(config))
    if store is None:
        channel.fatal(f"{unopened or 'cannot open the schedule store'} (node.state_dir)")
        return EXIT_FAILURE
    if config.role == "bridge":  # peer bridges get every commit (display.outbox)
        install_outbox(store, SystemClock().now)
    with store:
        resync: Resync | None = None  # set below
        details = make_details(config, config.feishu, store, channel)

        def applied(event: RoomEvent, rooms: frozenset[str]) -> None:
            if resync is not None:  # a series' other occurrences: re-sync its rooms soon
                resync.after_event(event, rooms)
            if details is not None:  # its title may have changed: asked again
                details.touch(set(event.room_ids) | rooms, keys=[event.key])

        def writable_again() -> None:  # re-sync what Feishu may have given up on meanwhile
            if resync is not None:
                resync.request("the schedule store is writable again")

        counts = CountReporter(channel)
        watch: StoreWatch | None = None
        sink = EventSink(store, SystemClock(),
                         on_change=lambda rooms: channel.send(changed=sorted(rooms)),
                         on_applied=applied, on_count=counts.count,
                         on_store=lambda ok, error: watch.changed(ok, error) if watch else None,
                         rooms=ConfiguredRooms(config))
        watch = StoreWatch(channel, store, sink.note_store, writable_again,
                           retry_seconds=UNOPENED_RETRY_SECONDS if unopened
                           else STORE_RETRY_SECONDS)
        if unopened is not None:  # serve anyway: deliveries get 503 until the store opens
            sink.note_store(False, unopened)
        if not long_connection:
            from display.intake.feishu.webhook import run_webhook

            resync = requested[0] = make_resync(config, config.feishu, store, channel,
                                                args.resync_interval, args.resync_backoff,
                                                details)
            if details is not None:
                details.start()
            return run_webhook(config.feishu, config.path, sink, channel, args.alive_interval,
                               resync)
        from display.intake.feishu.long_connection import run_long_connection

        quiet_sdk_logger()
        resync = requested[0] = make_resync(config, config.feishu, store, channel,
                                            args.resync_interval, args.resync_backoff, details)
        if details is not None:
            details.start()
        return run_long_connection(config.feishu, sink, channel,
                                   args.alive_interval, resync)
