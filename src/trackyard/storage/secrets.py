"""Source secrets are stored only as salted PBKDF2 hashes: they only ever need verifying."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

_ITERATIONS = 200_000
_ALPHABET = string.ascii_letters + string.digits


def generate_secret() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(40))


def hash_secret(secret: str) -> str:
    salt = secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), bytes.fromhex(salt), _ITERATIONS).hex()
    return f"pbkdf2_sha256${_ITERATIONS}${salt}${digest}"


def verify_secret(secret: str, stored: str | None) -> bool:
    """Constant-time check of ``secret`` against a stored hash; ``False`` when there is none."""
    if not stored:
        return False
    try:
        scheme, iterations, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256":
        return False
    candidate = hashlib.pbkdf2_hmac("sha256", secret.encode(), bytes.fromhex(salt), int(iterations)).hex()
    return hmac.compare_digest(candidate, digest)
