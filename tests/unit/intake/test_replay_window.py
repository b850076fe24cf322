"""The webhook's replay window against Feishu's retries and the store's memory of uuids.

Feishu retries an unacknowledged event 15 s, 5 min, 1 h and 6 h later; a retry may carry its
first timestamp. The window must take all of them, and the store must remember a uuid at least
as long as the window, so a replay inside it is a duplicate.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path

import pytest
from Crypto.Cipher import AES

from display.cli.check import check_feishu_settings
from display.config import MAX_REPLAY_WINDOW, REPLAY_WINDOW, FeishuConfig, parse_config
from display.errors import ConfigError
from display.intake.envelope import parse_envelope
from display.intake.feishu.checks import (
    FEISHU_LAST_RETRY_SECONDS,
    Kind,
    Rejected,
    open_delivery,
    seal,
    short_window,
)
from display.store import DEDUPE_KEEP, ScheduleStore
from display.testing.envelopes import envelope

KEY, TOKEN = "encrypt-key", "vtoken"
START = datetime(2030, 1, 1, 9, tzinfo=UTC)


def test_the_default_window_covers_every_retry_and_the_store_outlasts_any_window() -> None:
    assert FEISHU_LAST_RETRY_SECONDS == 25_515  # 15 s + 5 min + 1 h + 6 h
    assert FEISHU_LAST_RETRY_SECONDS < REPLAY_WINDOW <= MAX_REPLAY_WINDOW
    # Pruning goes by the wall clock: half the memory is left for a clock stepping forward.
    assert 2 * timedelta(seconds=MAX_REPLAY_WINDOW) <= DEDUPE_KEEP
    assert FeishuConfig().replay_window_seconds == REPLAY_WINDOW


@pytest.mark.parametrize("value", [0, -5, MAX_REPLAY_WINDOW + 1])
def test_a_window_outside_what_the_store_remembers_is_refused(tmp_path: Path,
                                                               value: int) -> None:
    with pytest.raises(ConfigError, match="replay_window_seconds"):
        parse_config(f"[feishu]\nmode = 'webhook'\nreplay_window_seconds = {value}\n",
                     tmp_path / "c.toml")


def test_an_old_config_with_300_still_loads_but_check_names_the_problem(tmp_path: Path) -> None:
    config = parse_config("[feishu]\nmode = 'webhook'\nverification_token = 'env:T'\n"
                          "encrypt_key = 'env:K'\nreplay_window_seconds = 300\n",
                          tmp_path / "c.toml", resolve_secrets=False)
    assert config.feishu is not None and config.feishu.replay_window_seconds == 300
    lines = list(check_feishu_settings(config.feishu))
    assert [ok for _, ok in lines] == [False]
    assert "replay_window_seconds = 300" in lines[0][0] and "retr" in lines[0][0]
    assert short_window(REPLAY_WINDOW) is None
    assert short_window(FEISHU_LAST_RETRY_SECONDS) is None


def _open(body: bytes, headers: dict[str, str], now: float) -> Kind:
    return open_delivery(headers, body, encrypt_key=KEY, verification_token=TOKEN,
                         window=REPLAY_WINDOW, now=now).kind


@pytest.mark.parametrize("age", [15, 3600, 6 * 3600, FEISHU_LAST_RETRY_SECONDS])
def test_a_sealed_delivery_is_accepted_at_each_retry(age: int) -> None:
    sent = time.time()
    body, headers = seal(envelope(start=START, end=START + timedelta(hours=1)), KEY, sent)
    assert _open(body, headers, sent + age) is Kind.EVENT_V1


def test_a_sealed_delivery_nine_hours_old_is_refused() -> None:
    sent = time.time()
    body, headers = seal(envelope(start=START, end=START + timedelta(hours=1)), KEY, sent)
    with pytest.raises(Rejected) as caught:
        _open(body, headers, sent + 9 * 3600)
    assert caught.value.status is HTTPStatus.UNAUTHORIZED
    assert "replay window" in caught.value.reason


def test_seal_is_feishus_scheme_checked_independently() -> None:
    """Decrypted and verified here from the documented algorithm, not with checks' helpers."""
    env = envelope(start=START, end=START + timedelta(hours=1))
    body, headers = seal(env, KEY, 1_800_000_000.7)
    stamp, nonce = headers["X-Lark-Request-Timestamp"], headers["X-Lark-Request-Nonce"]
    assert stamp == "1800000000" and len(nonce) == 32
    assert headers["X-Lark-Signature"] == hashlib.sha256(
        (stamp + nonce + KEY).encode() + body).hexdigest()
    blob = base64.b64decode(json.loads(body)["encrypt"])
    plain = AES.new(hashlib.sha256(KEY.encode()).digest(), AES.MODE_CBC,
                    blob[:16]).decrypt(blob[16:])
    assert json.loads(plain[:-plain[-1]]) == env
    assert seal(env, KEY, 0)[0] != body  # a fresh IV each time


def test_without_an_encrypt_key_seal_sends_plain_json() -> None:
    env = envelope(start=START, end=START + timedelta(hours=1))
    body, headers = seal(env, "", time.time())
    assert json.loads(body) == env and "X-Lark-Signature" not in headers


def test_the_store_remembers_a_uuid_for_the_whole_window(tmp_path: Path) -> None:
    """A replay at the window's edge, on a clock that stepped 12 h forward meanwhile, is still
    a duplicate; the uuid is forgotten only after DEDUPE_KEEP of hourly prunes."""
    received = datetime.now(UTC)
    with ScheduleStore(tmp_path / "s.db") as store:
        event = parse_envelope(envelope(start=START, end=START + timedelta(hours=1)))
        store.apply(event, received)
        stepped = timedelta(hours=12)
        store.prune(received + timedelta(seconds=MAX_REPLAY_WINDOW) + stepped
                    - timedelta(minutes=1), 0.0)
        assert store.seen(event.uuid)
        assert store.apply(event, received).outcome.value == "duplicate"
        hours = int(DEDUPE_KEEP / timedelta(hours=1)) + 2
        for hour in range(1, hours + 1):  # the node prunes hourly (elapsed time)
            store.prune(received + timedelta(hours=hour), 3600.0)
        assert not store.seen(event.uuid)
