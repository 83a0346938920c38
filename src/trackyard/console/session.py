"""The console's sign-in: a signed session cookie, and the CSRF token each session carries.

The cookie is ``<payload>.<signature>``: the payload is base64url JSON ``{"exp", "csrf"}``
and the signature an HMAC-SHA256 of it under a key derived from the admin token. So a
changed admin token signs everyone out, and nothing about a session is kept server-side
(every worker process checks any cookie alike). The CSRF token is random per session; a
change must echo it (a hidden form field, or the ``X-CSRF-Token`` header htmx sends), and it
is compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import msgspec

COOKIE = "trackyard_console"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
#: How long a sign-in lasts; signing in again starts a new one.
SESSION_SECONDS = 12 * 3600


class _Payload(msgspec.Struct):
    exp: int
    csrf: str


@dataclass(frozen=True, slots=True)
class Session:
    expires_at: int
    csrf: str


class Sessions:
    """Issues and checks the session cookies of one admin token."""

    def __init__(self, admin_token: str, seconds: int = SESSION_SECONDS) -> None:
        self._admin_token = admin_token.encode()
        # A key of its own (not the token itself): a cookie never helps anyone guess the token.
        self._key = hashlib.sha256(b"trackyard-console-session\x00" + self._admin_token).digest()
        self._seconds = seconds

    def token_matches(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self._admin_token)

    def issue(self) -> tuple[str, Session]:
        """A new session and the cookie value that carries it."""
        session = Session(int(time.time()) + self._seconds, secrets.token_urlsafe(24))
        payload = base64.urlsafe_b64encode(msgspec.json.encode(_Payload(session.expires_at, session.csrf)))
        return f"{payload.decode()}.{self._sign(payload)}", session

    def check(self, cookie: str | None) -> Session | None:
        """The session ``cookie`` carries, if it is signed by this token and not expired."""
        if not cookie:
            return None
        payload, _, signature = cookie.encode().partition(b".")
        if not hmac.compare_digest(signature, self._sign(payload).encode()):
            return None
        try:
            decoded = msgspec.json.decode(base64.urlsafe_b64decode(payload), type=_Payload)
        except (ValueError, msgspec.DecodeError):
            return None
        if decoded.exp <= time.time():
            return None
        return Session(decoded.exp, decoded.csrf)

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()


def csrf_ok(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), session.csrf.encode())
