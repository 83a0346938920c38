"""Which source a request's credentials name, and whether they are right (wire formats say where they are)."""

from __future__ import annotations

import anyio.to_thread

from trackyard.errors import IngestError
from trackyard.storage.base import Source, SourceRegistry
from trackyard.storage.secrets import verify_secret
from trackyard.wire.base import Credentials

#: The refusal codes of a request whose credentials are wrong: the ones kept as bounded
#: rejects without a source (``trackyard.ingest.auth_failures``).
AUTH_REFUSALS = frozenset(
    {
        "invalid_write_key",
        "access_key_not_provided",
        "invalid_project_id",
        "access_key_not_found",
        "invalid_secret",
    }
)


def unauthorized(message: str, write_key: str | None = None) -> IngestError:
    """A refused key, kept on the error (``write_keys``) for its fingerprint, never stored."""
    return IngestError("invalid_write_key", message, write_keys=(write_key,) if write_key else ())


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

    def resolve(self, write_key: str | None, missing: str = "No write key.") -> Source:
        """The enabled source ``write_key`` names, or a refusal that says what is wrong."""
        if not write_key:
            raise unauthorized(missing)
        version = self._registry.sources_version()
        if version != self._version:
            self._by_key = {s.write_key: s for s in self._registry.sources()}
            self._version = version
        source = self._by_key.get(write_key)
        if source is None:
            raise unauthorized(
                "Unknown write key. Check the key, or create a source: trackyard sources add NAME.", write_key
            )
        if not source.enabled:
            raise unauthorized(
                f"The source {source.name!r} is disabled. "
                f"Enable it with: trackyard sources enable {source.name}.",
                write_key,
            )
        return source

    def known(self, write_keys: tuple[str | None, ...]) -> Source | None:
        """The enabled source the first of ``write_keys`` that has one names, else ``None``."""
        for write_key in write_keys:
            try:
                return self.resolve(write_key)
            except IngestError:
                continue
        return None


def resolve_write_key(credentials: Credentials, sources: SourceCache) -> Source:
    """The source a write key names, trying each of its forms (no project, no secret)."""
    forms = credentials.forms
    if len(forms) > 1:
        for write_key in forms[:-1]:
            try:
                return sources.resolve(write_key)
            except IngestError:
                continue
    # The last form says best what is wrong when none resolves.
    return sources.resolve(forms[-1] if forms else None, credentials.missing)


async def project_source(credentials: Credentials, sources: SourceCache, secrets: SecretChecker) -> Source:
    """Bloomreach's order and words: credentials present (access_key_not_provided), project
    known (invalid_project_id), key of that project (access_key_not_found), secret right."""
    if not credentials.forms:
        raise IngestError("access_key_not_provided", "Access key not provided")
    try:
        source = sources.resolve(credentials.project)
    except IngestError:
        raise IngestError(
            "invalid_project_id", "Invalid project id", write_keys=(credentials.project or "",)
        ) from None
    if credentials.forms[0] != source.write_key:
        raise IngestError("access_key_not_found", "Access key not found", write_keys=credentials.forms[:1])
    # The first check of a secret runs PBKDF2 (slow on purpose): keep it off the event loop.
    secret = credentials.secret
    if secret is not None and not await anyio.to_thread.run_sync(secrets.check, source, secret):
        raise IngestError("invalid_secret", "invalid secret", write_keys=credentials.forms[:1])
    return source
