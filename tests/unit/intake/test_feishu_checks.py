"""The webhook's own checks (display.intake.feishu.checks) on deliveries built as Feishu sends
them: encrypted with the Encrypt Key and signed over the raw body."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from http import HTTPStatus

import pytest

from display.intake.feishu.checks import Kind, Rejected, open_delivery
from display.testing.envelopes import envelope
from display.testing.feishu_standin import encrypted_body, signed_headers

KEY, TOKEN = "encrypt-key", "vtoken"
START = datetime(2030, 1, 1, 9, tzinfo=UTC)


def deliver(event: dict[str, object]) -> Kind:
    body = encrypted_body(event, KEY)
    return open_delivery(signed_headers(body, KEY), body, encrypt_key=KEY,
                         verification_token=TOKEN, window=300, now=time.time()).kind


def test_a_signed_encrypted_event_with_the_token_is_accepted() -> None:
    assert deliver(envelope(start=START, end=START + timedelta(hours=1))) is Kind.EVENT_V1


@pytest.mark.parametrize("token", [None, "wrong"])
def test_a_signed_event_must_still_carry_the_verification_token(token: str | None) -> None:
    """Feishu's v1 envelope always carries ``token``, encrypted or not: one without it (or
    with another) is not Feishu's for this app, whatever the signature says."""
    event = envelope(start=START, end=START + timedelta(hours=1))
    if token is None:
        del event["token"]
    else:
        event["token"] = token
    with pytest.raises(Rejected) as caught:
        deliver(event)
    assert caught.value.status is HTTPStatus.UNAUTHORIZED
    assert caught.value.reason == "invalid verification_token"
