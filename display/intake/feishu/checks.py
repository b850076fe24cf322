"""The webhook's documented checks, done here instead of in lark-oapi's dispatcher.

Feishu signs a webhook delivery with ``X-Lark-Signature = hex(sha256(timestamp + nonce +
encrypt_key + body))`` when an Encrypt Key is set, encrypts the body as ``{"encrypt": base64(iv +
AES-256-CBC(key = sha256(encrypt_key), PKCS#7))}`` and puts the Verification Token in the event
(``token``; ``header.token`` in a v2 event). :func:`open_delivery` applies them in the order that
is cheapest for an attacker to fail: timestamp and signature over the raw bytes first, then JSON
(with its nesting bounded), then decryption, then the token. Nothing here imports ``lark_oapi``.

The timestamp check bounds how far a signed delivery's ``X-Lark-Request-Timestamp`` may be from
now (``[feishu] replay_window_seconds``). Feishu retries an unacknowledged event after 15 s,
5 min, 1 h and 6 h, and nothing documented says a retry is signed afresh, so a window shorter than
:data:`FEISHU_LAST_RETRY_SECONDS` may refuse a genuine retry: the default is 8 h. A replay inside
the window is harmless: the store remembers every applied ``uuid`` longer than the largest window
accepted (:data:`display.store.DEDUPE_KEEP`) and orders versions of a booking by ``event_time``.

:func:`seal` does what Feishu does to a delivery (encrypt and sign); ``send-test-event`` uses it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from http import HTTPStatus
from typing import Any

from Crypto.Cipher import AES

TIMESTAMP_HEADER = "X-Lark-Request-Timestamp"
NONCE_HEADER = "X-Lark-Request-Nonce"
SIGNATURE_HEADER = "X-Lark-Signature"
#: Deepest JSON nesting accepted; a Feishu envelope has 5 levels.
MAX_DEPTH = 32
#: Feishu's retries of an unacknowledged event come 15 s, 5 min, 1 h and 6 h after the one before:
#: the last about 7.1 h after the first delivery (its timestamp's age, if not signed afresh).
FEISHU_LAST_RETRY_SECONDS = 15 + 5 * 60 + 60 * 60 + 6 * 60 * 60


def short_window(window: int) -> str | None:
    """Why a replay window refuses some of Feishu's retries, or ``None`` when it does not."""
    if window >= FEISHU_LAST_RETRY_SECONDS:
        return None
    return (f"feishu.replay_window_seconds = {window} is shorter than Feishu's retries "
            f"(the last comes ~{FEISHU_LAST_RETRY_SECONDS} s after the first delivery): a "
            "retry after downtime would be refused; remove the key (default 28800, 8 h)")


class Kind(Enum):
    """What a delivery that passed every check is."""

    CHALLENGE = "url_verification"
    EVENT_V1 = "v1"
    EVENT_V2 = "v2"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A checked delivery: its kind and decoded (decrypted) JSON object."""

    kind: Kind
    data: dict[str, Any]


class Rejected(Exception):  # a verdict, not a failure of ours
    """A delivery that fails a check: the HTTP status to answer and a one-line reason."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def depth_exceeds(raw: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON text nests arrays/objects deeper than ``limit`` (strings skipped).

    The C decoder recurses once per level, so ``[[[[...]]]]`` in a 64 KB body would end in a
    RecursionError; bodies with few brackets (every real event) skip the scan.
    """
    text = raw.encode() if isinstance(raw, str) else raw
    if text.count(b"[") + text.count(b"{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for byte in text:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def loads_object(raw: bytes | str, what: str = "body") -> dict[str, Any]:
    """Decode a JSON object with bounded nesting; :class:`Rejected` (400) otherwise."""
    if depth_exceeds(raw):
        raise Rejected(HTTPStatus.BAD_REQUEST, f"{what} nests deeper than {MAX_DEPTH} levels")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Rejected(HTTPStatus.BAD_REQUEST, f"malformed JSON in the {what}: {exc}") from None
    if not isinstance(data, dict):
        raise Rejected(HTTPStatus.BAD_REQUEST, f"{what} must be a JSON object")
    return data


def check_signature(headers: Mapping[str, str], body: bytes, encrypt_key: str,
                    window: int, now: float) -> bool:
    """Check the timestamp (ASCII digits, inside ``±window`` s) and the signature over the raw
    body in constant time. Returns ``False`` when the delivery carries no signature (a
    url_verification is never signed); raises :class:`Rejected` (401) when a check fails."""
    signature = headers.get(SIGNATURE_HEADER, "")
    if not signature:
        return False
    stamp = headers.get(TIMESTAMP_HEADER, "")
    # int() would also take " 12", "+12", "1_2" and other scripts' digits: the signature is over
    # the header's exact text, so only the form Feishu sends is accepted.
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise Rejected(HTTPStatus.UNAUTHORIZED,
                       f"{TIMESTAMP_HEADER} {stamp[:20]!r} is not a number of seconds")
    age = now - int(stamp)
    if abs(age) > window:
        raise Rejected(HTTPStatus.UNAUTHORIZED, f"{TIMESTAMP_HEADER} is {age:.0f} s off "
                                                f"(outside the ±{window} s replay window)")
    nonce = headers.get(NONCE_HEADER, "")
    expected = sign(stamp, nonce, encrypt_key, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise Rejected(HTTPStatus.UNAUTHORIZED, "signature verification failed")
    return True


def encrypt(plaintext: bytes, encrypt_key: str) -> str:
    """The ``encrypt`` field Feishu sends: base64(iv + AES-256-CBC(sha256(key), PKCS#7))."""
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = os.urandom(16)
    pad = 16 - len(plaintext) % 16
    cipher = AES.new(key, AES.MODE_CBC, iv)
    return base64.b64encode(iv + cipher.encrypt(plaintext + bytes([pad]) * pad)).decode()


def sign(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    """``X-Lark-Signature``: hex sha256 of timestamp + nonce + encrypt key + the raw body."""
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def seal(data: Mapping[str, Any], encrypt_key: str, now: float) -> tuple[bytes, dict[str, str]]:
    """A delivery of ``data`` as Feishu makes it: the body and its headers.

    With an Encrypt Key the body is ``{"encrypt": ...}`` and the three signature headers are set
    (timestamp ``now``, a random nonce); without one the body is the plain JSON, unsigned.
    """
    plain = json.dumps(data, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if not encrypt_key:
        return plain, headers
    body = json.dumps({"encrypt": encrypt(plain, encrypt_key)}).encode()
    stamp, nonce = str(int(now)), os.urandom(16).hex()
    headers.update({TIMESTAMP_HEADER: stamp, NONCE_HEADER: nonce,
                    SIGNATURE_HEADER: sign(stamp, nonce, encrypt_key, body)})
    return body, headers


def decrypt(encrypted: object, encrypt_key: str) -> bytes:
    """The plaintext of an ``encrypt`` field; :class:`Rejected` (400) when it is not ours."""
    failure = Rejected(HTTPStatus.BAD_REQUEST, "cannot decrypt the body (check "
                                               "feishu.encrypt_key)")
    if not isinstance(encrypted, str) or not encrypt_key:
        raise failure
    try:
        blob = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise failure from None
    if len(blob) < 32 or len(blob) % 16:
        raise failure
    key = hashlib.sha256(encrypt_key.encode()).digest()
    plain = AES.new(key, AES.MODE_CBC, blob[:16]).decrypt(blob[16:])
    pad = plain[-1]
    if not 1 <= pad <= 16 or plain[-pad:] != bytes([pad]) * pad:
        raise failure
    return plain[:-pad]


def open_delivery(headers: Mapping[str, str], body: bytes, *, encrypt_key: str,
                  verification_token: str, window: int, now: float) -> Delivery:
    """Every check of one webhook delivery, cheapest first; :class:`Rejected` on a failure.

    ``headers`` must use the canonical names above (HTTP names are case-insensitive).
    """
    signed = bool(encrypt_key) and check_signature(headers, body, encrypt_key, window, now)
    data = loads_object(body)
    if "encrypt" in data:
        data = loads_object(decrypt(data["encrypt"], encrypt_key), "decrypted body")
    header = data.get("header")
    if data.get("schema") and isinstance(header, dict):
        kind, token = Kind.EVENT_V2, header.get("token")
    elif data.get("type") == "url_verification":
        kind, token = Kind.CHALLENGE, data.get("token")
    else:
        kind, token = Kind.EVENT_V1, data.get("token")
    if kind is not Kind.CHALLENGE and encrypt_key and not signed:
        raise Rejected(HTTPStatus.UNAUTHORIZED, f"signature required ({SIGNATURE_HEADER} "
                                                "missing; feishu.encrypt_key is set)")
    # Feishu's envelopes always carry the token, encrypted and signed or not, so every delivery
    # must match it (lark-oapi 1.7.5 lets a signed event omit it; no real event does).
    if not (isinstance(token, str) and
            hmac.compare_digest(token.encode(), verification_token.encode())):
        raise Rejected(HTTPStatus.UNAUTHORIZED, "invalid verification_token")
    if kind is Kind.CHALLENGE and not isinstance(data.get("challenge"), str):
        raise Rejected(HTTPStatus.BAD_REQUEST, "challenge: must be a string")
    return Delivery(kind, data)
