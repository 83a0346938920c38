"""The identity and profile rules, each one a setting read from ``TRACKYARD_PROFILES_*`` variables.

Every rule of docs/profiles.md has its knob here. The consumer reads them once at start;
changing a rule affects events processed afterwards, so run ``trackyard profiles rebuild``
to apply a new rule to the whole history.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

SoftIdOwner = Literal["newer", "latest"]

DEFAULT_BLOCKED_VALUES = ("null", "undefined", "anonymous")
DEFAULT_UNIQUE_ID_TYPES = (
    "user_id",
    "registered",
    "group_id",
    "koala_account_id",
    "vitally_account_id",
    "vitally_organization_id",
)
DEFAULT_PRIORITY = ("user_id", "registered", "email")


def _split(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    #: Id values ignored everywhere, compared case-insensitively after trimming spaces.
    blocked_values: frozenset[str] = frozenset(DEFAULT_BLOCKED_VALUES)
    #: Ignore id values without a single letter or digit (``-``, ``0``-free punctuation, ``""``).
    require_alphanumeric: bool = True
    #: Id types of which a profile holds at most one value: two profiles with different
    #: values of one of them are never merged.
    unique_id_types: tuple[str, ...] = DEFAULT_UNIQUE_ID_TYPES
    #: The order in which an event's ids decide which profile it is about; types not
    #: listed come after, alphabetically.
    priority: tuple[str, ...] = DEFAULT_PRIORITY
    #: Who keeps a soft id that two profiles with different unique ids both claim:
    #: ``newer``: the more recently created profile (Bloomreach); ``latest``: the profile
    #: of the event that claims it last.
    soft_id_owner: SoftIdOwner = "newer"
    #: Id types whose values are lower-cased before matching.
    lowercase_id_types: frozenset[str] = frozenset({"email"})
    #: Trait names read as an id of the same type (``traits.email`` → ``email``).
    trait_id_types: tuple[str, ...] = ("email",)
    #: Events per transaction.
    batch_size: int = 1000
    #: Seconds the consumer waits for new events once it has caught up.
    poll_interval: float = 0.05

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ProfileSettings:
        env = os.environ if environ is None else environ
        prefix = "TRACKYARD_PROFILES_"
        values: dict[str, object] = {}
        if (raw := env.get(prefix + "BLOCKED_VALUES")) is not None:
            values["blocked_values"] = frozenset(v.lower() for v in _split(raw))
        if (raw := env.get(prefix + "REQUIRE_ALPHANUMERIC")) is not None:
            values["require_alphanumeric"] = raw.strip().lower() not in ("0", "false", "no", "off")
        if (raw := env.get(prefix + "UNIQUE_ID_TYPES")) is not None:
            values["unique_id_types"] = _split(raw)
        if (raw := env.get(prefix + "PRIORITY")) is not None:
            values["priority"] = _split(raw)
        if (raw := env.get(prefix + "SOFT_ID_OWNER")) is not None:
            if raw not in ("newer", "latest"):
                raise ValueError(f"{prefix}SOFT_ID_OWNER must be 'newer' or 'latest', not {raw!r}")
            values["soft_id_owner"] = raw
        if (raw := env.get(prefix + "LOWERCASE_ID_TYPES")) is not None:
            values["lowercase_id_types"] = frozenset(_split(raw))
        if (raw := env.get(prefix + "TRAIT_ID_TYPES")) is not None:
            values["trait_id_types"] = _split(raw)
        if (raw := env.get(prefix + "BATCH_SIZE")) is not None:
            values["batch_size"] = max(1, int(raw))
        if (raw := env.get(prefix + "POLL_INTERVAL")) is not None:
            values["poll_interval"] = max(0.001, float(raw))
        return cls(**values)  # type: ignore[arg-type]

    def describe(self) -> dict[str, object]:
        """The rules in force, as ``profiles status`` and the status endpoint show them."""
        return {
            "blocked_values": sorted(self.blocked_values),
            "require_alphanumeric": self.require_alphanumeric,
            "unique_id_types": list(self.unique_id_types),
            "priority": list(self.priority),
            "soft_id_owner": self.soft_id_owner,
            "lowercase_id_types": sorted(self.lowercase_id_types),
            "trait_id_types": list(self.trait_id_types),
            "batch_size": self.batch_size,
        }
