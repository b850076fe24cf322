"""IntakeSupervisor against scripted children (the real child is covered by the intake tests).

The supervisor runs ``PYTHON -m display.intake.feishu -c CONFIG ...``; here PYTHON is a small
script that reads its behaviour from CONFIG and speaks (or garbles) the line protocol.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from display.intake.supervisor import IntakeSupervisor
from display.testing.intake_support import Recorder
from display.testing.waiting import wait_for

CHILD = """\
#!{python}
import json, signal, sys, time
behaviour = open(sys.argv[sys.argv.index("-c") + 1]).read().strip()
def send(**kw):
    print(json.dumps(kw), flush=True)
if behaviour == "chatty":
    print("this is not json", flush=True)
    send(changed="not a list")
    send(link="sideways")
    send(events=dict(applied=-1))
    send(store=dict(ok="yes"))
    send(events=dict(applied=2, refused=1))
    send(store=dict(ok=False, error="database or disk is full"))
    send(changed=["omm_b", "omm_a"])
    send(ready=True, mode="webhook", listen="127.0.0.1:9")
    send(link="up")
    send(alive=time.time(), last_frame_age=None, extra="ignored")
    sys.exit(3)
if behaviour == "mute":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL ends it
    send(ready=True, mode="long_connection", listen=None)
    while True:
        time.sleep(1)
if behaviour == "polite":
    send(ready=True, mode="webhook", listen="127.0.0.1:9")
    sys.stdin.read()  # EOF: the parent asked us to go
    sys.exit(0)
if behaviour == "fatal":  # never up: what it says is all the parent can show
    send(fatal=7)
    send(fatal="cannot listen on 127.0.0.1:7777: address already in use (feishu.listen)")
    sys.exit(1)
if behaviour == "burst":
    send(changed=["omm_a"])
    send(ready=True, mode="webhook", listen="127.0.0.1:9")
    sys.stdin.read()
"""


@pytest.fixture
def child(tmp_path: Path) -> Path:
    script = tmp_path / "fake-python"
    script.write_text(CHILD.format(python=sys.executable))
    script.chmod(0o755)
    return script


def config(tmp_path: Path, behaviour: str) -> Path:
    path = tmp_path / f"{behaviour}.conf"
    path.write_text(behaviour)
    return path


def test_lines_become_callbacks_garbage_is_logged_exit_restarts(
        tmp_path: Path, child: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "display.intake.supervisor")
    rec = Recorder()
    events: list[dict[str, int]] = []
    stores: list[tuple[bool, str | None]] = []
    with IntakeSupervisor(config(tmp_path, "chatty"), rec,
                          python=str(child), backoff_initial=0.1, on_events=events.append,
                          on_store=lambda ok, error: stores.append((ok, error))) as sup:
        wait_for(lambda: sup.starts >= 2, what="a restart after exit code 3")
        wait_for(lambda: events and stores, what="the events and store callbacks")
        assert events[0] == {"applied": 2, "refused": 1}
        assert stores[0] == (False, "database or disk is full")
        wait_for(lambda: len(rec.link_events()) >= 2, what="link callbacks")
        assert rec.changed[0] == frozenset({"omm_a", "omm_b"})
        assert rec.link_events()[:2] == [(True, None), (False, "intake process exited (code 3)")]
        assert sup.last_exit == 3
    text = caplog.text
    assert "not a JSON object" in text and "bad 'changed' line" in text
    assert "bad 'link' line" in text
    assert "bad 'events' line" in text and "bad 'store' line" in text


def test_a_childs_fatal_line_is_the_links_error_and_in_the_log(
        tmp_path: Path, child: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "display.intake.supervisor")
    rec = Recorder()
    cause = "cannot listen on 127.0.0.1:7777: address already in use (feishu.listen)"
    with IntakeSupervisor(config(tmp_path, "fatal"), rec, python=str(child),
                          backoff_initial=30) as sup:
        wait_for(lambda: rec.link_events(), what="the link's error")
        assert rec.link_events() == [(False, cause)]
        assert sup.last_failure == cause
    assert f"exited with code 1: {cause}; restarting" in caplog.text
    assert "bad 'fatal' line" in caplog.text


def test_silent_child_is_killed_even_if_it_ignores_sigterm(tmp_path: Path, child: Path) -> None:
    rec = Recorder()
    with IntakeSupervisor(config(tmp_path, "mute"), rec,
                          python=str(child), silence=1.0, kill_grace=0.5,
                          backoff_initial=30) as sup:
        wait_for(lambda: sup.ready_pid, what="ready")
        wait_for(lambda: sup.last_exit is not None, 15, what="the silent child killed")
        assert sup.last_exit == -signal.SIGKILL
        assert sup.ready_pid is None


def test_a_child_killed_by_a_signal_is_named_and_restarted(
        tmp_path: Path, child: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "display.intake.supervisor")
    rec = Recorder()
    with IntakeSupervisor(config(tmp_path, "polite"), rec, python=str(child),
                          backoff_initial=0.1) as sup:
        first = wait_for(lambda: sup.ready_pid, what="ready")
        os.kill(first, signal.SIGTERM)  # someone else's SIGTERM, the node keeps running
        wait_for(lambda: sup.ready_pid not in (None, first), what="the child restarted")
        assert sup.last_exit == -signal.SIGTERM
    assert "Feishu intake was killed by SIGTERM; restarting in" in caplog.text


def test_a_service_stop_that_signals_the_child_first_logs_no_restart(
        tmp_path: Path, child: Path, caplog: pytest.LogCaptureFixture) -> None:
    # systemd's KillMode=control-group: the child gets its SIGTERM as the node gets its own, and
    # the node's close() may come a moment after the child is gone.
    caplog.set_level(logging.INFO, "display.intake.supervisor")
    rec = Recorder()
    sup = IntakeSupervisor(config(tmp_path, "polite"), rec, python=str(child),
                           backoff_initial=0.1, stop_grace=30)  # a loaded machine's moment
    sup.start()
    first = wait_for(lambda: sup.ready_pid, what="ready")
    os.kill(first, signal.SIGTERM)
    wait_for(lambda: sup.last_exit is not None, what="the child gone")
    sup.close()
    assert sup.starts == 1
    assert "restarting" not in caplog.text and "killed by SIGTERM" not in caplog.text


def test_close_ends_the_child_through_stdin(tmp_path: Path, child: Path) -> None:
    rec = Recorder()
    sup = IntakeSupervisor(config(tmp_path, "polite"), rec,
                           python=str(child))
    sup.start()
    wait_for(lambda: sup.ready_listen == "127.0.0.1:9", what="ready")
    sup.close()
    assert sup.pid is None
    assert sup.last_exit == 0
    assert sup.starts == 1


def test_a_slow_callback_does_not_block_the_reader(tmp_path: Path, child: Path) -> None:
    release = threading.Event()

    class Slow(Recorder):
        def notify(self, rooms: Iterable[str]) -> None:
            release.wait(10)
            super().notify(rooms)

    rec = Slow()
    with IntakeSupervisor(config(tmp_path, "burst"), rec, python=str(child)) as sup:
        wait_for(lambda: sup.ready_pid, what="ready read while the callback blocks")
        assert rec.changed == []
        release.set()
        wait_for(lambda: rec.changed, what="the callback to finish")


def test_rejects_nonsense_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        IntakeSupervisor(tmp_path / "c.toml", Recorder(), silence=0)


def test_close_right_after_start_leaves_no_child(tmp_path: Path, child: Path) -> None:
    rec = Recorder()
    sup = IntakeSupervisor(config(tmp_path, "polite"), rec,
                           python=str(child))
    sup.start()
    sup.close()
    assert sup.pid is None
    assert sup.last_exit in (None, 0)


def test_a_webhook_without_verification_token_is_refused_once_not_restarted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The real child refuses the config (exit 78, EX_CONFIG); restarting cannot help until the
    config changes (a reload starts a new supervisor), so the supervisor stops there."""
    from display.testing.intake_support import write_config

    caplog.set_level(logging.INFO, "display.intake.supervisor")
    path = write_config(tmp_path / "room-display.toml", state_dir=tmp_path / "state",
                        feishu={"mode": "webhook", "resync": False})
    rec = Recorder()
    with IntakeSupervisor(path, rec, backoff_initial=0.1) as sup:
        wait_for(lambda: not sup.running, 60, what="the monitor to give up")
        assert sup.last_exit == 78 and sup.refused
        wait_for(lambda: rec.link_events(), what="the link reported down")
        assert sup.starts == 1, "not restarted"
    assert rec.link_events() == [(False, sup.refused)]
    assert "feishu.verification_token: is required in webhook mode" in str(sup.refused)
    assert "restarting in" not in caplog.text and "not restarting" in caplog.text


def test_a_child_killed_while_the_process_is_at_its_file_limit_is_restarted(
        tmp_path: Path, child: Path) -> None:
    import resource

    rec = Recorder()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with IntakeSupervisor(config(tmp_path, "polite"), rec, python=str(child),
                          backoff_initial=0.1) as sup:
        first = wait_for(lambda: sup.ready_pid, what="ready")
        # Every descriptor taken, as a flood of connections would (with a low limit: quick).
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 64, hard))
        filler: list[int] = []
        try:
            while True:
                try:
                    filler.append(os.open(os.devnull, os.O_RDONLY))
                except OSError:
                    break
            os.kill(first, signal.SIGKILL)
            second = wait_for(lambda: sup.ready_pid not in (None, first) and sup.ready_pid,
                              15, "the child restarted at the file limit")
            assert second != first and sup.starts == 2
        finally:
            for fd in filler:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_reserve_is_given_back_and_taken_again() -> None:
    from display.fdreserve import FdReserve

    reserve = FdReserve(4)
    assert reserve.held == 4
    with reserve.spent():
        assert reserve.held == 0
    assert reserve.held == 4
    reserve.release()
    assert reserve.held == 0
