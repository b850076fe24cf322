"""The webhook intake over real HTTP, in its real child process, behind the supervisor.

Bodies are encrypted and signed here from Feishu's documented algorithm (pycryptodome), not with the
SDK's helpers. Every rejection must leave the store untouched.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from display.intake.supervisor import IntakeSupervisor
from display.store import ScheduleStore
from display.testing.envelopes import envelope
from display.testing.feishu_standin import encrypt, encrypted_body, signed_headers
from display.testing.intake_support import HttpClient, Recorder, write_config
from display.testing.waiting import wait_for

TOKEN = "vtoken"  # conftest.envelope's default token
KEY = "test-encrypt-key"
PATH = "/webhook/event"
START = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
END = START + timedelta(hours=1)


class Intake:
    """A running webhook child plus a reader on its store."""

    def __init__(self, sup: IntakeSupervisor, recorder: Recorder, db: Path) -> None:
        self.sup = sup
        self.recorder = recorder
        self.db = db

    @property
    def listen(self) -> str:
        listen = self.sup.ready_listen
        assert listen, "intake not ready"
        return listen

    def post(self, body: bytes, headers: dict[str, str] | None = None,
             path: str = PATH) -> tuple[int, Any]:
        client = HttpClient(self.listen)
        try:
            return client.request("POST", path, body, headers)
        finally:
            client.close()

    def post_event(self, env: dict[str, Any], **sign: Any) -> tuple[int, Any]:
        body = encrypted_body(env, KEY)
        return self.post(body, signed_headers(body, KEY, **sign))

    def store(self) -> ScheduleStore:
        return ScheduleStore(self.db)


def start_intake(tmp: Path, recorder: Recorder, **feishu: Any) -> IntakeSupervisor:
    config = write_config(tmp / "config.toml", state_dir=tmp / "state", feishu={
        "mode": "webhook", "listen": "127.0.0.1:0", "path": PATH,
        "verification_token": TOKEN, "encrypt_key": KEY, "max_body_bytes": 8192, **feishu})
    sup = IntakeSupervisor(config, recorder, silence=20,
                           backoff_initial=0.2)
    sup.start()
    return sup


@pytest.fixture(scope="module")
def intake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    tmp = tmp_path_factory.mktemp("webhook")
    recorder = Recorder()
    sup = start_intake(tmp, recorder)
    try:
        wait_for(lambda: sup.ready_listen, 60, what="webhook intake ready")
        yield Intake(sup, recorder, tmp / "state" / "schedule.db")
    finally:
        sup.close()


def event(kind: str = "created", **kw: Any) -> dict[str, Any]:
    kw.setdefault("start", START)
    kw.setdefault("end", END)
    return envelope(kind, **kw)


def assert_not_stored(intake: Intake, env: dict[str, Any]) -> None:
    with intake.store() as store:
        assert not store.seen(env["uuid"])


# -- the happy path -------------------------------------------------------------------------


def test_url_verification_plain(intake: Intake) -> None:
    body = json.dumps({"challenge": "ch-1", "token": TOKEN, "type": "url_verification"})
    assert intake.post(body.encode()) == (200, {"challenge": "ch-1"})


def test_url_verification_encrypted(intake: Intake) -> None:
    plain = {"challenge": "ch-2", "token": TOKEN, "type": "url_verification"}
    assert intake.post(encrypted_body(plain, KEY)) == (200, {"challenge": "ch-2"})


def test_url_verification_with_wrong_token_is_401(intake: Intake) -> None:
    body = json.dumps({"challenge": "ch-3", "token": "nope", "type": "url_verification"})
    status, reply = intake.post(body.encode())
    assert status == 401 and "challenge" not in reply


def test_signed_encrypted_event_is_committed_then_answered(intake: Intake) -> None:
    env = event(uid="ok1", rooms=("omm_a",))
    status, reply = intake.post_event(env)
    assert (status, reply) == (200, {"msg": "success", "verdict": "applied"})
    with intake.store() as store:  # committed before the answer
        assert store.seen(env["uuid"])
        assert [b.uid for b in store.bookings("omm_a")] == ["ok1"]
    wait_for(lambda: "omm_a" in intake.recorder.rooms_changed(), what="changed callback")


def test_updated_and_deleted(intake: Intake) -> None:
    assert intake.post_event(event("created", uid="cud", event_time=1))[0] == 200
    later = END + timedelta(minutes=30)
    assert intake.post_event(event("updated", uid="cud", end=later, event_time=2))[0] == 200
    with intake.store() as store:
        assert [b.end for b in store.bookings("omm_a") if b.uid == "cud"] == [later]
    assert intake.post_event(event("deleted", uid="cud", event_time=3))[0] == 200
    with intake.store() as store:
        assert not [b for b in store.bookings("omm_a") if b.uid == "cud"]


def test_duplicate_delivery_is_recognised(intake: Intake) -> None:
    env = event(uid="dup")
    assert intake.post_event(env) == (200, {"msg": "success", "verdict": "applied"})
    assert intake.post_event(env) == (200, {"msg": "success", "verdict": "duplicate"})


def test_header_names_in_odd_case(intake: Intake) -> None:
    env = event(uid="case")
    body = encrypted_body(env, KEY)
    headers = {k.swapcase(): v for k, v in signed_headers(body, KEY).items()}
    assert intake.post(body, headers)[0] == 200
    with intake.store() as store:
        assert store.seen(env["uuid"])


def test_plaintext_event_with_token_is_accepted(intake: Intake) -> None:
    env = event(uid="plain")
    body = json.dumps(env).encode()
    assert intake.post(body, signed_headers(body, KEY))[0] == 200


def test_unknown_type_is_acknowledged_and_ignored(intake: Intake) -> None:
    env = event(uid="unk")
    env["event"]["type"] = "third_party_meeting_room_event_renamed"
    assert intake.post_event(env) == (200, {"msg": "success", "verdict": "ignored"})
    assert_not_stored(intake, env)


def test_event_for_unconfigured_room_changes_no_configured_room(intake: Intake) -> None:
    with intake.store() as store:
        before = {r: store.bookings(r) for r in ("omm_a", "omm_b")}
    env = event(uid="elsewhere", rooms=("omm_not_configured",))
    assert intake.post_event(env)[0] == 200
    with intake.store() as store:
        assert {r: store.bookings(r) for r in ("omm_a", "omm_b")} == before


def test_event_for_unconfigured_room_is_answered_unknown_room_and_stored(intake: Intake) -> None:
    env = event(uid="typo", rooms=("omm_typo",))
    assert intake.post_event(env) == (200, {"msg": "success", "verdict": "unknown_room"})
    with intake.store() as store:
        assert [b.uid for b in store.bookings("omm_typo")] == ["typo"]


def test_a_room_added_to_the_config_is_known_without_restarting_the_intake(
        intake: Intake) -> None:
    pid = intake.sup.ready_pid
    assert intake.post_event(event(uid="new1", rooms=("omm_added",)))[1]["verdict"] == \
        "unknown_room"
    with intake.sup.config_path.open("a", encoding="utf-8") as f:  # as `map add-room` would
        f.write('\n[[rooms]]\nopen_id = "omm_added"\n')
    assert intake.post_event(event(uid="new2", rooms=("omm_added",)))[1]["verdict"] == "applied"
    assert intake.sup.ready_pid == pid


def test_healthz(intake: Intake) -> None:
    client = HttpClient(intake.listen)
    try:
        assert client.request("GET", "/healthz") == (200, {"ok": True})
    finally:
        client.close()


def test_keep_alive_connection_serves_many_requests(intake: Intake) -> None:
    client = HttpClient(intake.listen)
    try:
        for i in range(5):
            body = encrypted_body(event(uid=f"ka{i}"), KEY)
            assert client.request("POST", PATH, body, signed_headers(body, KEY))[0] == 200
    finally:
        client.close()


def test_pipelined_requests_are_answered_in_order(intake: Intake) -> None:
    """Three requests in one send: the second is refused at once (bad signature), the others
    wait for their commit; the answers still come back in request order."""
    first, third = event(uid="pipe1"), event(uid="pipe3")
    requests = b""
    for env, key in ((first, KEY), (event(uid="pipe2"), "another-key"), (third, KEY)):
        body = encrypted_body(env, KEY)
        head = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(body, key).items())
        requests += (f"POST {PATH} HTTP/1.1\r\nHost: x\r\n{head}"
                     f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    host, port = intake.listen.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s, \
            s.makefile("rb") as replies:
        s.sendall(requests)
        statuses = []
        for _ in range(3):
            statuses.append(int(replies.readline().split()[1]))
            length = 0
            while (line := replies.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            replies.read(length)
    assert statuses == [200, 401, 200]
    with intake.store() as store:
        assert store.seen(first["uuid"]) and store.seen(third["uuid"])


def test_expect_100_continue_is_answered_before_the_body(intake: Intake) -> None:
    """curl sends ``Expect: 100-continue`` for bodies over 1 KB and waits for the go-ahead."""
    env = event(uid="expect")
    body = encrypted_body(env, KEY)
    head = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(body, KEY).items())
    host, port = intake.listen.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall((f"POST {PATH} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n{head}"
                   f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(body)
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200")
    with intake.store() as store:
        assert store.seen(env["uuid"])


def test_a_client_that_half_closes_still_gets_its_answer(intake: Intake) -> None:
    env = event(uid="halfclose")
    body = encrypted_body(env, KEY)
    head = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(body, KEY).items())
    host, port = intake.listen.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall((f"POST {PATH} HTTP/1.1\r\nHost: x\r\n{head}"
                   f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        s.shutdown(socket.SHUT_WR)  # nothing more to send; the answer must still come
        reply = b""
        while chunk := s.recv(4096):  # and then the server closes
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200") and b'"applied"' in reply


def test_malformed_http_is_400_and_closes(intake: Intake) -> None:
    host, port = intake.listen.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"POST {PATH} HTTP/1.1\r\nContent-Length: 12x\r\n\r\n".encode())
        reply = b""
        while chunk := s.recv(4096):  # read to the end: the server closes the connection
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400") and b"Connection: close" in reply


# -- bad input: a clear status, nothing stored ------------------------------------------------


def test_wrong_verification_token_is_401(intake: Intake) -> None:
    env = event(uid="badtok", token="not-the-token")
    status, reply = intake.post_event(env)
    assert status == 401 and "verification_token" in reply["msg"]
    assert_not_stored(intake, env)


def test_bad_signature_is_401(intake: Intake) -> None:
    env = event(uid="badsig")
    body = encrypted_body(env, KEY)
    headers = signed_headers(body, KEY)
    headers["X-Lark-Signature"] = "0" * 64
    status, reply = intake.post(body, headers)
    assert status == 401 and "signature" in reply["msg"]
    assert_not_stored(intake, env)


def test_signature_with_other_key_is_401(intake: Intake) -> None:
    env = event(uid="otherkey")
    body = encrypted_body(env, KEY)
    assert intake.post(body, signed_headers(body, "another-key"))[0] == 401
    assert_not_stored(intake, env)


def test_unsigned_event_is_401(intake: Intake) -> None:
    env = event(uid="unsigned")
    status, reply = intake.post(encrypted_body(env, KEY))
    assert status == 401 and "signature" in reply["msg"]
    assert_not_stored(intake, env)


# Feishu retries an unacknowledged event 15 s, 5 min, 1 h and 6 h later, maybe with the first
# delivery's timestamp: the default window (8 h) takes every retry and refuses anything older.
HOUR = 3600


@pytest.mark.parametrize("age", [1 * HOUR, 6 * HOUR, 7 * HOUR + 6 * 60])
def test_a_signed_retry_hours_old_is_accepted(intake: Intake, age: int) -> None:
    env = event(uid=f"retry{age}")
    status, reply = intake.post_event(env, timestamp=int(time.time()) - age)
    assert (status, reply) == (200, {"msg": "success", "verdict": "applied"})
    with intake.store() as store:
        assert store.seen(env["uuid"])
        assert [b.uid for b in store.bookings("omm_a") if b.uid == env["event"]["uid"]]


@pytest.mark.parametrize("offset", [-9 * HOUR, -8 * HOUR - 2, 8 * HOUR + 60])
def test_timestamp_outside_replay_window_is_401(intake: Intake, offset: int) -> None:
    env = event(uid=f"stale{offset}")
    status, reply = intake.post_event(env, timestamp=int(time.time()) + offset)
    assert status == 401 and "replay window" in reply["msg"]
    assert_not_stored(intake, env)


def test_a_replayed_delivery_is_not_applied_twice(intake: Intake) -> None:
    """The same signed bytes again, 6 h later by their timestamp: acknowledged as a duplicate
    and nothing changes, even after the booking was cancelled meanwhile."""
    env = event(uid="replayed", event_time=10)
    body = encrypted_body(env, KEY)
    headers = signed_headers(body, KEY, timestamp=int(time.time()) - 6 * HOUR)
    assert intake.post(body, headers) == (200, {"msg": "success", "verdict": "applied"})
    assert intake.post_event(event("deleted", uid="replayed", event_time=20))[0] == 200
    assert intake.post(body, headers) == (200, {"msg": "success", "verdict": "duplicate"})
    with intake.store() as store:
        assert not [b for b in store.bookings("omm_a") if b.uid == "replayed"]


def test_a_late_retry_of_an_older_version_changes_nothing(intake: Intake) -> None:
    """A ``created`` whose first delivery failed is retried 1 h later, after its ``deleted``
    came: accepted (inside the window) but superseded, so the room stays free."""
    created = event(uid="late-retry", event_time=30)
    assert intake.post_event(event("deleted", uid="late-retry", event_time=31))[0] == 200
    status, reply = intake.post_event(created, timestamp=int(time.time()) - HOUR)
    assert (status, reply) == (200, {"msg": "success", "verdict": "superseded"})
    with intake.store() as store:
        assert not [b for b in store.bookings("omm_a") if b.uid == "late-retry"]


def test_undecryptable_body_is_400(intake: Intake) -> None:
    body = json.dumps({"encrypt": encrypt(b"not json at all", "wrong-key")}).encode()
    assert intake.post(body, signed_headers(body, KEY))[0] == 400


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b"[1, 2]", b"\"text\""])
def test_malformed_json_is_400(intake: Intake, raw: bytes) -> None:
    status, reply = intake.post(raw, signed_headers(raw, KEY))
    assert status == 400 and reply["msg"]


def _set(env: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    target = env
    for p in parents:
        target = target[p]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "field"), [
    ("uuid", _DELETE, "uuid"),
    ("uuid", 42, "uuid"),
    ("event.uid", _DELETE, "event.uid"),
    ("event.start", "tomorrow", "event.start"),
    ("event.start.time_stamp", "soon", "event.start.time_stamp"),
    ("event.end", _DELETE, "event.end"),
    ("event.event_time", [], "event.event_time"),
    ("event.meeting_rooms", "omm_a", "event.meeting_rooms"),
    ("event.meeting_rooms", [{"open_id": 7}], "event.meeting_rooms[0].open_id"),
    ("event.type", 5, "event.type"),
    ("event", "not an object", "event"),
])
def test_missing_or_wrongly_typed_field_is_400_naming_it(intake: Intake, path: str, value: Any,
                                                       field: str) -> None:
    env = event(uid="fields")
    _set(env, path, value if value is _DELETE else copy.deepcopy(value))
    status, reply = intake.post_event(env)
    assert status == 400, reply
    assert reply["msg"].startswith(field + ":"), reply
    if isinstance(env.get("uuid"), str):
        assert_not_stored(intake, env)


def test_start_not_before_end_is_400(intake: Intake) -> None:
    env = event(uid="backwards", start=END, end=START)
    status, reply = intake.post_event(env)
    assert status == 400 and reply["msg"].startswith("event.end:")
    env = event(uid="empty", start=START, end=START)
    assert intake.post_event(env)[0] == 400
    assert_not_stored(intake, env)


def test_oversized_body_is_413_without_reading_it(intake: Intake) -> None:
    host, port = intake.listen.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        # Announce 10 MB and send none of it: the answer must come anyway.
        s.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n".encode())
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")


def test_missing_content_length_is_411(intake: Intake) -> None:
    host, port = intake.listen.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "0\r\n\r\n".encode())
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 411")


def test_wrong_method_is_405(intake: Intake) -> None:
    client = HttpClient(intake.listen)
    try:
        assert client.request("GET", PATH)[0] == 405
        assert client.request("PUT", PATH, b"{}")[0] == 405
    finally:
        client.close()


def test_wrong_path_is_404(intake: Intake) -> None:
    body = encrypted_body(event(uid="path"), KEY)
    assert intake.post(body, signed_headers(body, KEY), path="/elsewhere")[0] == 404


def test_intake_survives_all_of_the_above(intake: Intake) -> None:
    assert intake.post_event(event(uid="still-here"))[0] == 200
    assert intake.sup.starts == 1


# -- hostile input: a clean 4xx, the child alive, nothing written, no traceback ------------------


def _counts(intake: Intake) -> dict[str, int]:
    with intake.store() as store:
        return store.counts()


def test_deep_nesting_at_the_default_body_limit_is_a_clean_400(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    sup = start_intake(tmp_path, Recorder(), max_body_bytes=65536)  # the default limit
    try:
        listen = wait_for(lambda: sup.ready_listen, 60, what="webhook intake ready")
        client = HttpClient(listen)
        status, reply = client.request("POST", PATH, b"[" * 30000 + b"]" * 30000)
        assert status == 400 and "deeper" in reply["msg"], reply
        assert client.request("GET", "/healthz") == (200, {"ok": True})
        client.close()
        assert sup.starts == 1
    finally:
        sup.close()
    assert "Traceback" not in capfd.readouterr().err


def test_deep_nesting_is_a_clean_400(intake: Intake, capfd: pytest.CaptureFixture[str]) -> None:
    deep = b"[" * 4000 + b"]" * 4000  # deep enough for the decoder's recursion limit
    before = _counts(intake)
    status, reply = intake.post(deep)  # unsigned: no signature to check first
    assert status == 400 and "deeper" in reply["msg"]
    status, reply = intake.post(deep, signed_headers(deep, KEY))  # signed: past the signature
    assert status == 400 and "deeper" in reply["msg"]
    nested_in_secret = json.dumps({"encrypt": encrypt(b'{"a":' * 900 + b"1" + b"}" * 900,
                                                      KEY)}).encode()
    status, reply = intake.post(nested_in_secret, signed_headers(nested_in_secret, KEY))
    assert status == 400 and "deeper" in reply["msg"]
    assert intake.post_event(event(uid="after-deep"))[0] == 200
    assert _counts(intake)["deliveries"] == before["deliveries"] + 1
    assert "Traceback" not in capfd.readouterr().err


def test_signature_is_checked_before_the_body_is_parsed(intake: Intake) -> None:
    body = b"{not json"
    headers = signed_headers(body, KEY)
    headers["X-Lark-Signature"] = "f" * 64
    status, reply = intake.post(body, headers)
    assert status == 401 and "signature" in reply["msg"]  # not 400 "malformed JSON"


# Headers arrive as latin-1: "\u00b2" (superscript two) is the one str.isdigit() takes there.
@pytest.mark.parametrize("stamp", ["{now}\u00b2", "+{now}", "{now}.0", "1_{now}", "-1", ""])
def test_timestamp_must_be_ascii_digits(intake: Intake, stamp: str) -> None:
    env = event(uid="stamp")
    body = encrypted_body(env, KEY)
    headers = signed_headers(body, KEY)
    text = stamp.format(now=int(time.time()))
    # Signed over the odd text itself, so only the timestamp check can refuse it.
    headers["X-Lark-Request-Timestamp"] = text
    headers["X-Lark-Signature"] = hashlib.sha256(
        (text + headers["X-Lark-Request-Nonce"] + KEY).encode() + body).hexdigest()
    status, reply = intake.post(body, headers)
    assert status == 401 and "X-Lark-Request-Timestamp" in reply["msg"], reply
    assert_not_stored(intake, env)


def test_a_burst_of_50_clients_at_once_sees_no_reset(intake: Intake) -> None:
    host, port = intake.listen.rsplit(":", 1)
    bodies = []
    for i in range(50):
        body = encrypted_body(event(uid=f"burst{i}"), KEY)
        head = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(body, KEY).items())
        bodies.append(f"POST {PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{head}"
                      f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    socks = [socket.socket() for _ in bodies]
    replies: list[bytes | BaseException] = [b""] * len(socks)
    go = threading.Barrier(len(socks))

    def one(i: int) -> None:
        try:
            go.wait(10)
            socks[i].settimeout(30)
            socks[i].connect((host, int(port)))  # all 50 SYNs at the same moment
            socks[i].sendall(bodies[i])
            reply = b""
            while chunk := socks[i].recv(4096):
                reply += chunk
            replies[i] = reply
        except OSError as exc:
            replies[i] = exc
        finally:
            socks[i].close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(socks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    failures = [r for r in replies if not (isinstance(r, bytes) and r.startswith(b"HTTP/1.1 200"))]
    assert not failures, failures[:3]


# Raw bytes a client may send, from plain noise to signed bodies one step away from valid.
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)


@st.composite
def _hostile(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    choice = draw(st.integers(0, 4))
    if choice == 0:  # noise, unsigned
        return draw(st.binary(max_size=300)), {}
    if choice == 1:  # noise, validly signed: reaches the JSON decoder
        body = draw(st.binary(max_size=300))
        return body, signed_headers(body, KEY)
    if choice == 2:  # any JSON, validly signed, maybe encrypted
        value = draw(_json_values)
        plain = json.dumps(value).encode()
        body = (json.dumps({"encrypt": encrypt(plain, KEY)}).encode() if draw(st.booleans())
                else plain)
        return body, signed_headers(body, KEY)
    env = event(uid=f"fuzz-{draw(st.integers(0, 10**9))}")
    body = encrypted_body(env, KEY)
    headers = signed_headers(body, KEY)
    if choice == 3:  # a valid delivery with one byte of the body changed
        i = draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([body[i] ^ draw(st.integers(1, 255))]) + body[i + 1:]
    else:  # a valid delivery with a header replaced by anything
        name = draw(st.sampled_from(sorted(headers)))
        headers[name] = draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e),
                                     max_size=70))
    return body, headers


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(_hostile())
def test_fuzzed_requests_get_a_clean_answer_and_change_nothing(
        intake: Intake, capfd: pytest.CaptureFixture[str], sample: tuple[bytes, dict[str, str]],
) -> None:
    body, headers = sample
    before, pid = _counts(intake), intake.sup.ready_pid
    status, reply = intake.post(body, headers)
    after = _counts(intake)
    assert isinstance(reply, dict) and isinstance(reply.get("msg", reply.get("challenge")), str)
    if status == 200:
        assert reply.get("verdict") in ("applied", "unknown_room", "duplicate", "superseded",
                                       "ignored"), reply
    else:
        assert status in (400, 401), (status, reply)
        assert after == before  # nothing stored, not even the delivery's uuid
    client = HttpClient(intake.listen)
    try:
        assert client.request("GET", "/healthz") == (200, {"ok": True})
    finally:
        client.close()
    assert intake.sup.ready_pid == pid  # the same child: it neither died nor was restarted
    assert "Traceback" not in capfd.readouterr().err


# -- kill -9 ------------------------------------------------------------------------------------


# Last in the module: it kills the shared child (the supervisor restarts it on the same state).
@pytest.mark.slow
def test_state_survives_kill_9_mid_stream(intake: Intake) -> None:
    sup = intake.sup
    first_pid = sup.ready_pid
    starts = sup.starts
    answered: list[dict[str, Any]] = []
    stop = threading.Event()

    def stream(listen: str, worker: int) -> None:
        client = HttpClient(listen, timeout=5)
        try:
            for i in range(100_000):
                if stop.is_set():
                    return
                env = event(uid=f"k{worker}-{i}", rooms=("omm_a", "omm_b"))
                body = encrypted_body(env, KEY)
                status, _ = client.request("POST", PATH, body, signed_headers(body, KEY))
                if status == 200:
                    answered.append(env)
        except OSError:
            return  # the intake died under us: expected
        finally:
            client.close()

    workers = [threading.Thread(target=stream, args=(intake.listen, w)) for w in range(2)]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: len(answered) >= 60, 30, what="events answered before the kill")
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        for w in workers:
            w.join(timeout=20)
    finally:
        stop.set()
    acked = list(answered)

    wait_for(lambda: sup.ready_pid not in (None, first_pid), 60, what="restarted intake")
    assert sup.last_exit == -signal.SIGKILL and sup.starts == starts + 1
    with intake.store() as store:
        missing = [e["uuid"] for e in acked if not store.seen(e["uuid"])]
        assert not missing, f"{len(missing)} acknowledged events lost"
        assert {e["event"]["uid"] for e in acked} <= {b.uid for b in store.bookings("omm_b")}
    client = HttpClient(intake.listen)
    try:
        for env in acked:
            body = encrypted_body(env, KEY)
            status, reply = client.request("POST", PATH, body, signed_headers(body, KEY))
            assert (status, reply.get("verdict")) == (200, "duplicate")
    finally:
        client.close()

