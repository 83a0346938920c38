"""``nats://host:port[,host:port...][?option=value...]``: which servers, which stream, how replicated."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from trackyard.storage.base import StoreURLError

#: JetStream's own dedup window (``Nats-Msg-Id``): it covers a client's retries of one
#: request, not the long window (that is the state's ``DedupIndex``). Every id inside it is
#: held in the server's memory, so it stays short (docs/storage.md, "NATS JetStream").
DUPLICATE_WINDOW_SECONDS = 120.0

DEFAULT_STREAM = "TRACKYARD_EVENTS"
DEFAULT_ACK_TIMEOUT = 10.0

URL_FORM = (
    "nats://HOST:PORT[,HOST:PORT...][?stream=NAME&replicas=1|3&duplicate_window=SECONDS"
    "&max_age=SECONDS&ack_timeout=SECONDS]"
)
_OPTIONS = {"stream", "replicas", "duplicate_window", "max_age", "ack_timeout"}


@dataclass(frozen=True, slots=True)
class JetStreamOptions:
    servers: tuple[str, ...]
    stream: str = DEFAULT_STREAM
    #: R3 when the URL lists three servers or more, R1 otherwise (``replicas=`` overrides).
    replicas: int = 1
    duplicate_window: float = DUPLICATE_WINDOW_SECONDS
    #: How long the stream keeps events; 0 keeps them until removed by hand.
    max_age: float = 0.0
    #: Seconds one append may wait for all its publish acks, retries included, before the
    #: request is answered 503 (no quorum, no reachable server).
    ack_timeout: float = DEFAULT_ACK_TIMEOUT

    @property
    def subject_prefix(self) -> str:
        return f"trackyard.{self.stream.lower()}"

    @property
    def hosts(self) -> str:
        """The servers as ``host:port``, for messages: without any user or password of the URL."""
        return ", ".join(server.rpartition("@")[2].removeprefix("nats://") for server in self.servers)

    def describe(self) -> str:
        return f"NATS JetStream stream {self.stream} (R{self.replicas}) on {self.hosts}"


def parse(url: str) -> JetStreamOptions:
    """The options of a ``nats://`` log URL, or a ``StoreURLError`` that shows the accepted form.

    Only the scheme and the option names are quoted back: a URL may carry a password.
    """
    scheme, _, rest = url.partition("://")
    if scheme.lower() != "nats" or not rest:
        raise StoreURLError(f"TRACKYARD_LOG: a JetStream log URL has the form {URL_FORM}.")
    hosts, _, query = rest.partition("?")
    hosts = hosts.rstrip("/")
    servers: list[str] = []
    for host in hosts.split(","):
        parts = urlsplit(f"nats://{host.strip()}")
        if not parts.hostname:
            raise StoreURLError(f"TRACKYARD_LOG: every server needs a host. Accepted: {URL_FORM}.")
        servers.append(f"nats://{host.strip()}")
    options = parse_qs(query, keep_blank_values=True)
    unknown = set(options) - _OPTIONS
    if unknown:
        raise StoreURLError(
            f"TRACKYARD_LOG: unknown option(s) {', '.join(sorted(unknown))}. Accepted: {URL_FORM}."
        )
    values = {name: vals[-1] for name, vals in options.items()}
    try:
        replicas = int(values.get("replicas", 3 if len(servers) >= 3 else 1))
        result = JetStreamOptions(
            servers=tuple(servers),
            stream=values.get("stream", DEFAULT_STREAM),
            replicas=replicas,
            duplicate_window=float(values.get("duplicate_window", DUPLICATE_WINDOW_SECONDS)),
            max_age=float(values.get("max_age", 0)),
            ack_timeout=float(values.get("ack_timeout", DEFAULT_ACK_TIMEOUT)),
        )
    except ValueError:
        raise StoreURLError(
            f"TRACKYARD_LOG: an option's value is not a number. Accepted: {URL_FORM}."
        ) from None
    if not 1 <= result.replicas <= 5:
        raise StoreURLError(
            "TRACKYARD_LOG: replicas must be 1 to 5 (JetStream's limits); 3 tolerates one lost node."
        )
    if not result.stream.replace("_", "").replace("-", "").isalnum():
        raise StoreURLError("TRACKYARD_LOG: the stream name may hold only letters, digits, '-' and '_'.")
    if result.duplicate_window < 0.1 or result.ack_timeout <= 0:
        raise StoreURLError("TRACKYARD_LOG: duplicate_window must be at least 0.1 s and ack_timeout above 0.")
    return result
