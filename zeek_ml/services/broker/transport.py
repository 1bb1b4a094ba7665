"""How events reach zeek-ml and verdicts reach Zeek: an interface, and Broker behind it.

Zeek 9 deprecates the Broker backend in favour of its WebSocket API; a
WebSocket transport implements the same :class:`Transport` and the service does
not change.
"""

from __future__ import annotations

import select
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Protocol

import pandas as pd

from zeek_ml.services.broker.bindings import import_broker
from zeek_ml.sinks.broker import VerdictEncoder
from zeek_ml.sources.broker import ConnDecoder


class Transport(Protocol):
    """Receives events from Zeek, publishes events to it.

    Messages are opaque to the service: what :meth:`receive` returns goes to :meth:`decode`, what
    :meth:`verdict_messages` and :meth:`ack_message` return goes to :meth:`publish`.
    """

    def start(self) -> None:
        """Listen or start peering (returns at once; peering completes and is retried in the background)."""

    def receive(self, timeout: float) -> list[Any]:
        """The messages that arrived, waiting up to ``timeout`` seconds for the first one."""

    def decode(self, message: Any) -> tuple[Any, ...]:
        """One message -> a row of conn values (:class:`~zeek_ml.sources.broker.ConnDecoder`); raises
        :class:`~zeek_ml.sources.broker.Rejected` or :class:`~zeek_ml.sources.broker.ForeignEvent`."""

    def capped(self) -> dict[str, int]:
        """Strings cut to the reader's cap so far, per field."""

    def verdict_messages(self, topic: str, event: str, rows: pd.DataFrame) -> list[Any]:
        """One ``event(v: ZeekML::Verdict)`` on ``topic`` per row of ``rows`` (from ``verdict_rows``)."""

    def ack_message(self, topic: str, event: str, uids: Sequence[str]) -> Any:
        """``event(uids: vector of string)`` for ``topic``."""

    def publish(self, messages: Sequence[Any]) -> None:
        """Send ``messages`` (in this order) to the peers subscribed to their topics."""

    def backlog(self) -> int:
        """Messages that arrived and wait in the transport's own buffers (not yet received)."""

    def statuses(self) -> list[str]:
        """What the transport said about its peers since the last call (peer added, lost, removed...), as text."""

    def peer_count(self) -> int:
        """Peers connected now."""

    def connected(self) -> bool:
        """True while at least one peer is connected (publishing now reaches someone)."""

    def describe(self) -> str:
        """Where this transport listens or which peer it dials, for log lines."""

    def close(self) -> None: ...


def parse_address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``PORT`` -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, port = text[1:].partition("]:")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    elif text.isdigit():
        host, port = default_host, text
    else:
        raise ValueError(f"{text!r}: expected HOST:PORT")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: bad port")
    return host or default_host, int(port)


class BrokerTransport:
    """Broker: listen on ``listen`` (Zeek peers with us) or dial ``peer`` (we peer with Zeek).

    Uses only the API common to Broker 1.4 (Debian's python3-broker) and 2.8
    (Zeek 7 and 8): ``Endpoint``, ``listen``, ``peer_nosync``, ``peers``,
    ``make_subscriber``, ``publish_batch``, ``broker.zeek.Event``, and Broker's raw data
    objects (``_broker.Data``): messages are received, checked and decoded, and verdicts
    built and published, without the bindings' generic Python conversion (which costs
    several times what scoring does). A lost peering is retried by Broker itself every
    ``retry`` seconds (peer mode); in listen mode the peer dials again.

    ``buffer_size`` is the subscriber's buffer inside Broker: what may arrive between two
    :meth:`receive` calls. Beyond it Broker holds the backlog on the sender's side (Zeek's
    ``Broker::peer_buffer_size``, then its ``Broker::peer_overflow_policy``).
    """

    def __init__(
        self,
        topics: Sequence[str],
        listen: tuple[str, int] | None = None,
        peer: tuple[str, int] | None = None,
        retry: float = 5.0,
        buffer_size: int = 20_000,
        broker: ModuleType | None = None,
    ):
        if (listen is None) == (peer is None):
            raise ValueError("give exactly one of listen and peer")
        self.broker = broker or import_broker()
        self.topics = list(topics)
        self.listen_at = listen
        self.peer_at = peer
        self.retry = retry
        self.buffer_size = buffer_size
        self.port: int | None = None
        self.endpoint: Any = None
        self.subscribers: list[Any] = []
        self.status_subscriber: Any = None
        self.decoder = ConnDecoder(self.broker)
        self.encoder = VerdictEncoder(self.broker)
        raw = self.broker._broker
        self._publish_batch = raw.Endpoint.publish_batch
        self._pairs = raw.VectorPairTopicData
        self._topics: dict[str, Any] = {}

    def start(self) -> None:
        b = self.broker
        self.endpoint = b.Endpoint()
        # One subscriber per topic: Debian's Broker 1.4 bindings fail on a list of topics.
        # The raw subscribers: their poll() gives Broker's data objects, unconverted.
        self.subscribers = [self.endpoint.make_subscriber(t, self.buffer_size)._subscriber for t in self.topics]
        self.status_subscriber = self.endpoint.make_status_subscriber(True)
        if self.listen_at is not None:
            host, port = self.listen_at
            self.port = self.endpoint.listen(host, port)
            if not self.port:
                raise OSError(f"cannot listen on {host}:{port} (in use?)")
        else:
            host, port = self.peer_at  # type: ignore[misc]
            # Broker 1.4 truncates retry to whole seconds: below 1 it would never retry.
            self.endpoint.peer_nosync(host, port, float(max(1, round(self.retry))))

    def receive(self, timeout: float) -> list[Any]:
        if not any(s.available() for s in self.subscribers):
            fds = [s.fd() for s in self.subscribers]
            select.select(fds, [], [], timeout)  # releases the GIL, unlike get(timeout)
        out: list[Any] = []
        for subscriber in self.subscribers:
            out.extend(data for _topic, data in subscriber.poll())
        return out

    def decode(self, message: Any) -> tuple[Any, ...]:
        return self.decoder.decode(message)

    def capped(self) -> dict[str, int]:
        return dict(self.decoder.capped)

    def _topic(self, topic: str) -> Any:
        found = self._topics.get(topic)
        if found is None:
            found = self._topics[topic] = self.broker.Topic(topic)
        return found

    def verdict_messages(self, topic: str, event: str, rows: pd.DataFrame) -> list[Any]:
        t = self._topic(topic)
        return [(t, data) for data in self.encoder.verdict_events(event, rows)]

    def ack_message(self, topic: str, event: str, uids: Sequence[str]) -> Any:
        return (self._topic(topic), self.encoder.ack_event(event, uids))

    def publish(self, messages: Sequence[Any]) -> None:
        if messages:
            self._publish_batch(self.endpoint, self._pairs(list(messages)))

    def backlog(self) -> int:
        return sum(s.available() for s in self.subscribers)

    def statuses(self) -> list[str]:
        if self.status_subscriber is None or not self.status_subscriber.available():
            return []
        return [str(s) for s in self.status_subscriber.poll()]

    def peer_count(self) -> int:
        if self.endpoint is None:
            return 0
        peered = self.broker.PeerStatus.Peered
        return sum(1 for p in self.endpoint.peers() if p.status == peered)

    def connected(self) -> bool:
        return self.peer_count() > 0

    def describe(self) -> str:
        if self.listen_at is not None:
            return f"listening on {self.listen_at[0]}:{self.port or self.listen_at[1]}"
        return f"peering with {self.peer_at[0]}:{self.peer_at[1]}"  # type: ignore[index]

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.shutdown()
            self.endpoint = None
            self.status_subscriber = None
