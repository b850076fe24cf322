"""The web page over HTTP: config, token, headers, the documents, SSE, the sign, metrics."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image, ImageChops
from prometheus_client.parser import text_string_to_metric_families

from display.config import WEB_LISTEN, parse_config
from display.errors import ConfigError
from display.testing.envelopes import envelope
from display.testing.waiting import wait_for
from display.testing.web_node import XSS_NAME, WebNode

TOKEN = "kiosk-token-123"
BRIDGE = """
[node]
name = "b"
[feishu]
mode = "webhook"
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebNode]:
    web = WebNode(tmp_path_factory.mktemp("web"), token=TOKEN)
    web.start()
    web.book("omm_a", uid="http-1")
    wait_for(lambda: web.room("omm_a")["state"] == "busy", 10, "room A busy")
    yield web
    web.stop()


# -- config ----------------------------------------------------------------------------------------


def test_web_is_on_by_default_where_feishu_comes_in(tmp_path: Path) -> None:
    config = parse_config(BRIDGE, tmp_path / "c.toml")
    assert config.web is not None and config.web.listen == WEB_LISTEN == "127.0.0.1:8470"
    assert not config.web.token


def test_web_is_off_on_an_agent_unless_asked(tmp_path: Path) -> None:
    agent = '[node]\nname = "a"\n[mqtt]\nurl = "mqtt://localhost"\n'
    assert parse_config(agent, tmp_path / "c.toml").web is None
    asked = parse_config(agent + '[web]\nlisten = "127.0.0.1:9000"\n', tmp_path / "c.toml")
    assert asked.web is not None and asked.web.port == 9000
    off = parse_config(BRIDGE + "[web]\nenabled = false\n", tmp_path / "c.toml")
    assert off.web is None


def test_non_loopback_listen_needs_a_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BRIDGE + '[web]\nlisten = "0.0.0.0:8470"\n', tmp_path / "c.toml")
    assert "web.token" in str(err.value) and "\n" not in str(err.value)
    ok = parse_config(BRIDGE + '[web]\nlisten = "0.0.0.0:8470"\ntoken = "t"\n',
                      tmp_path / "c.toml")
    assert ok.web is not None and ok.web.token.reveal() == "t"
    for listen in ("[::1]:8470", "localhost:1"):
        parse_config(BRIDGE + f'[web]\nlisten = "{listen}"\n', tmp_path / "c.toml")


@pytest.mark.parametrize("bad", ['listen = "8470"', 'listen = "x:y"', "token = 5", "port = 1"])
def test_bad_web_keys_are_one_line_errors(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BRIDGE + f"[web]\n{bad}\n", tmp_path / "c.toml")
    assert "web." in str(err.value) and "\n" not in str(err.value)


def test_a_taken_port_leaves_the_node_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "c.toml"
        config.write_text(f'[node]\nname = "n"\nstate_dir = "s"\n[web]\n'
                          f'listen = "127.0.0.1:{port}"\n[[rooms]]\nopen_id = "omm_a"\n'
                          '[[rooms.devices]]\nid = "l"\nurl = "virtual:p"\n', encoding="utf-8")
        proc = subprocess.Popen([sys.executable, "-m", "display", "run", "-c", str(config)],
                                stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: (tmp_path / "p" / "l.json").exists(), 60, "the panel drawn")
            assert proc.poll() is None
        finally:
            proc.terminate()
            _out, err = proc.communicate(timeout=60)  # generous: CI machines may be loaded
    assert "web page not served" in err


# -- HTTP -----------------------------------------------------------------------------------------


def test_token_is_required_as_bearer_or_query(node: WebNode) -> None:
    for path in ("/", "/api/status", "/metrics", "/events", "/rooms/omm_a/sign.png"):
        assert node.get(path, {"Authorization": "Bearer wrong"})[0] == 401, path
    assert node.get("/api/status", {"Authorization": "Basic x"})[0] == 401
    assert node.get(f"/api/status?token={TOKEN}")[0] == 200
    assert node.get("/api/status", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    # The page's code and style hold no data: a kiosk's page loads them without the token.
    assert node.get("/static/app.js", {"Authorization": "Bearer wrong"})[0] == 200


def test_every_answer_has_a_strict_content_security_policy(node: WebNode) -> None:
    for path in ("/", "/board", "/rooms/omm_a", "/api/status", "/static/app.js", "/nope"):
        _code, headers, _body = node.get(path)
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, path
        assert "unsafe-inline" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
    for page in ("/", "/board", "/rooms/omm_a"):
        html = node.get(page)[2].decode()
        scripts = re.findall(r"<script[^>]*>", html)
        assert scripts and all('src="/static/' in s for s in scripts), page
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html), page


def test_read_only_and_unknown_paths(node: WebNode) -> None:
    for method in ("POST", "PUT", "DELETE"):
        assert node.get("/api/status", method=method)[0] == 405
    assert node.get("/rooms/omm_nope")[0] == 404
    assert node.get("/api/rooms/omm_nope")[0] == 404
    assert node.get("/static/../config.py")[0] == 404
    assert node.get("/static/index.html")[0] == 404
    assert node.get("/nope")[0] == 404


def test_api_status_is_the_status_document_without_organizers_or_secrets(
        node: WebNode) -> None:
    doc = node.status()
    cli = json.loads(subprocess.run(
        [sys.executable, "-m", "display", "status", "--json", "-c", str(node.config)],
        capture_output=True, text=True, timeout=60, check=True).stdout)
    assert [(r["open_id"], r["name"], r["state"]) for r in doc["rooms"]] == \
        [(r["open_id"], r["name"], r["state"]) for r in cli["rooms"]]
    assert set(cli["node"]) <= set(doc["node"])
    room_a = next(r for r in doc["rooms"] if r["open_id"] == "omm_a")
    assert room_a["current"]["uid"] == "http-1"
    assert room_a["current"]["organizer_open_id"] is None
    cli_a = next(r for r in cli["rooms"] if r["open_id"] == "omm_a")
    assert cli_a["current"]["organizer_open_id"] == "ou_alice"  # there, but not on the page
    everything = b"".join(node.get(p)[2] for p in
                          ("/api/status", "/metrics", "/api/rooms/omm_a", "/"))
    for secret in (b"ou_alice", TOKEN.encode(), b"vtoken"):
        assert secret not in everything
    assert any(r["name"] == XSS_NAME for r in doc["rooms"])


def test_api_status_is_compact_and_filtered_by_rooms_or_floor(node: WebNode) -> None:
    code, _, body = node.get("/api/status")
    assert code == 200 and b"\n" not in body.strip()  # no indentation: a fifth of 20,000 rooms
    _, _, body = node.get("/api/status?rooms=omm_a,omm_nope")
    assert [r["open_id"] for r in json.loads(body)["rooms"]] == ["omm_a"]
    _, _, body = node.get("/api/status?floor=5F")
    assert [r["name"] for r in json.loads(body)["rooms"]] == ["5F Focus"]
    _, _, body = node.get("/api/status?floor=3F,5F&rooms=omm_b")
    doc = json.loads(body)
    assert [r["open_id"] for r in doc["rooms"]] == ["omm_b"] and doc["node"]["running"] is True
    _, _, body = node.get("/api/status?floor=")
    assert len(json.loads(body)["rooms"]) == 3  # an empty filter is no filter


def test_sign_png_is_what_preview_draws(node: WebNode, tmp_path: Path) -> None:
    def same() -> bool:
        code, headers, body = node.get("/rooms/omm_a/sign.png")
        assert code == 200 and headers["Content-Type"] == "image/png"
        (tmp_path / "web.png").write_bytes(body)
        subprocess.run([sys.executable, "-m", "display", "preview", "-c", str(node.config),
                        "omm_a", "-o", str(tmp_path / "cli.png")], check=True, timeout=60,
                       capture_output=True)
        web, cli = Image.open(tmp_path / "web.png"), Image.open(tmp_path / "cli.png")
        return web.size == cli.size and ImageChops.difference(
            web.convert("RGB"), cli.convert("RGB")).getbbox() is None

    # Both draw "now": across a minute boundary they may differ once, never twice in a row.
    assert same() or same()


def test_metrics_count_rooms_devices_and_links(node: WebNode) -> None:
    code, headers, body = node.get("/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines()
                   if line and not line.startswith("#"))
    assert samples['room_display_rooms{state="busy"}'] == "1"
    assert samples['room_display_rooms{state="free"}'] == "2"
    assert samples["room_display_rooms_stale"] == "0"
    assert samples["room_display_devices"] == "2"
    assert samples["room_display_devices_offline"] == "1"  # the LED on a closed port
    assert samples['room_display_link_up{link="feishu"}'] == "1"
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r'[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? [0-9.e+-]+',
                                line), line
    # Prometheus' own parser reads the whole page, and the same numbers.
    parsed = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}
    assert parsed[("room_display_rooms", (("state", "busy"),))] == 1
    assert parsed[("room_display_devices", ())] == 2


def _post(web: WebNode, event: dict[str, object]) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{web.hook_port}/webhook/event",
                                     data=json.dumps(event).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_metrics_and_status_count_feishu_events_by_verdict(tmp_path: Path) -> None:
    """From the intake child to the node: received, applied, deduplicated, refused."""
    web = WebNode(tmp_path)
    web.start()
    try:
        start = datetime.now(UTC).replace(microsecond=0)
        booking = envelope(uid="m1", start=start, end=start + timedelta(hours=1))
        no_uid = envelope(uid="m2", start=start, end=start + timedelta(hours=1))
        del no_uid["event"]["uid"]  # type: ignore[attr-defined]
        typo = envelope(uid="m3", start=start, end=start + timedelta(hours=1),
                        rooms=("omm_typo",))  # a room no node drives
        answers = [_post(web, booking), _post(web, booking),  # Feishu's at-least-once
                   _post(web, {**booking, "uuid": "other", "token": "wrong"}),
                   _post(web, no_uid), _post(web, typo)]
        assert answers == [200, 200, 401, 400, 200]

        def samples() -> dict[str, str]:
            text = web.get("/metrics")[2].decode()
            return dict(line.rsplit(" ", 1) for line in text.splitlines()
                        if line and not line.startswith("#"))

        wait_for(lambda: samples().get("room_display_events_received_total") == "5", 10,
                 "five deliveries counted")
        got = samples()
        assert {v: got[f'room_display_events_total{{verdict="{v}"}}'] for v in (
            "applied", "unknown_room", "duplicate", "refused", "failed")} == {
            "applied": "1", "unknown_room": "1", "duplicate": "1", "refused": "2", "failed": "0"}
        assert web.status()["node"]["intake"]["events"] == {
            "received": 5, "applied": 1, "unknown_room": 1, "duplicate": 1, "superseded": 0,
            "ignored": 0, "refused": 2, "failed": 0}
    finally:
        web.stop()


def test_events_stream_a_snapshot_then_the_room_that_changed(node: WebNode) -> None:
    sock = socket.create_connection(("127.0.0.1", node.web_port), timeout=10)
    with sock, sock.makefile("rb") as stream:
        sock.sendall(f"GET /events?token={TOKEN} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += stream.readline()
        assert b"text/event-stream" in head

        def next_event() -> tuple[str, dict[str, object]]:
            event, data = "", ""
            while True:
                line = stream.readline().decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = line[6:]
                elif not line and event:
                    return event, json.loads(data)

        kind, snapshot = next_event()
        assert kind == "snapshot"
        assert {r["open_id"] for r in snapshot["status"]["rooms"]} == {  # type: ignore[index]
            "omm_a", "omm_b", "omm_x"}
        node.book("omm_b", uid="sse-1")
        while True:
            kind, data = next_event()
            if kind == "room" and data["open_id"] == "omm_b":
                assert data["state"] == "busy"
                break
    node.book("omm_b", kind="deleted", uid="sse-1")
