"""Write keys: where a request carries one, and which source it names."""

from __future__ import annotations

import binascii
from base64 import b64decode
from functools import lru_cache

from trackyard.errors import IngestError
from trackyard.storage.base import Source, SourceRegistry
from trackyard.storage.secrets import verify_secret


# Cached: a source's SDKs send the same header on every request, and decoding it is a
# fair share of a single event's cost. The function is pure, and the cache is bounded.
@lru_cache(maxsize=1024)
def basic_username(authorization: str | None) -> str | None:
    """The username of ``Authorization: Basic base64(user:password)``; the colon is optional."""
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        decoded = b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def unauthorized(message: str) -> IngestError:
    return IngestError(401, "invalid_write_key", message)


class SecretChecker:
    """Verifies source secrets, remembering the ones that matched (PBKDF2 is slow on purpose)."""

    def __init__(self) -> None:
        self._verified: dict[tuple[int, str], str] = {}

    def check(self, source: Source, secret: str) -> bool:
        stored = source.secret_hash
        if stored is None:
            return False
        key = (source.id, secret)
        if self._verified.get(key) == stored:
            return True
        if not verify_secret(secret, stored):
            return False
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[key] = stored
        return True


class SourceCache:
    """The sources by write key, reloaded whenever the store says they changed."""

    def __init__(self, registry: SourceRegistry) -> None:
        self._registry = registry
        self._version = -1
        self._by_key: dict[str, Source] = {}

    def resolve(self, write_key: str | None) -> Source:
        """The enabled source ``write_key`` names, or a 401 that says what is wrong."""
        if not write_key:
            raise unauthorized(
                "No write key. Send it as the 'writeKey' field of the body or as "
                "'Authorization: Basic base64(<writeKey>:)'."
            )
        version = self._registry.sources_version()
        if version != self._version:
            self._by_key = {s.write_key: s for s in self._registry.sources()}
            self._version = version
        source = self._by_key.get(write_key)
        if source is None:
            raise unauthorized(
                "Unknown write key. Check the key, or create a source: trackyard sources add NAME."
            )
        if not source.enabled:
            raise unauthorized(
                f"The source {source.name!r} is disabled. "
                f"Enable it with: trackyard sources enable {source.name}."
            )
        return source
