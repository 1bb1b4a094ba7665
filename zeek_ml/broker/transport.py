"""How events reach zeek-ml and verdicts reach Zeek: an interface, and Broker behind it.

Zeek 9 deprecates the Broker backend in favour of its WebSocket API; a
WebSocket transport implements the same :class:`Transport` and the service does
not change.
"""

from __future__ import annotations

import select
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

import pandas as pd

from zeek_ml.broker.bindings import import_broker
from zeek_ml.broker.codec import verdict_records


@dataclass(frozen=True)
class Event:
    """A Zeek event: its name and its arguments (Broker values as the bindings give them)."""

    name: str
    args: tuple[Any, ...]


class Transport(Protocol):
    """Receives events from Zeek, publishes events to it."""

    def start(self) -> None:
        """Listen or start peering (returns at once; peering completes and is retried in the background)."""

    def receive(self, timeout: float) -> list[Event]:
        """The events that arrived, waiting up to ``timeout`` seconds for the first one."""

    def publish(self, topic: str, events: Sequence[Event]) -> None:
        """Send ``events`` on ``topic`` to the peers subscribed to it."""

    def verdict_args(self, rows: pd.DataFrame) -> list[tuple[Any, ...]]:
        """Verdict rows (:func:`zeek_ml.verdicts.verdict_rows`) as this transport sends a ``ZeekML::Verdict``."""

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
    (Zeek 7): ``Endpoint``, ``listen``, ``peer_nosync``, ``peers``,
    ``make_subscriber``, ``Subscriber.poll/fd``, ``publish``, ``broker.zeek.Event``.
    A lost peering is retried by Broker itself every ``retry`` seconds (peer
    mode); in listen mode the peer dials again.
    """

    def __init__(
        self,
        topics: Sequence[str],
        listen: tuple[str, int] | None = None,
        peer: tuple[str, int] | None = None,
        retry: float = 5.0,
        queue_size: int = 1000,
        broker: ModuleType | None = None,
    ):
        if (listen is None) == (peer is None):
            raise ValueError("give exactly one of listen and peer")
        self.broker = broker or import_broker()
        self.topics = list(topics)
        self.listen_at = listen
        self.peer_at = peer
        self.retry = retry
        self.queue_size = queue_size
        self.port: int | None = None
        self.endpoint: Any = None
        self.subscribers: list[Any] = []

    def start(self) -> None:
        b = self.broker
        self.endpoint = b.Endpoint()
        # One subscriber per topic: Debian's Broker 1.4 bindings fail on a list of topics.
        self.subscribers = [self.endpoint.make_subscriber(t, self.queue_size) for t in self.topics]
        if self.listen_at is not None:
            host, port = self.listen_at
            self.port = self.endpoint.listen(host, port)
            if not self.port:
                raise OSError(f"cannot listen on {host}:{port} (in use?)")
        else:
            host, port = self.peer_at  # type: ignore[misc]
            # Broker 1.4 truncates retry to whole seconds: below 1 it would never retry.
            self.endpoint.peer_nosync(host, port, float(max(1, round(self.retry))))

    def receive(self, timeout: float) -> list[Event]:
        fds = [s.fd() for s in self.subscribers]
        if not any(s.available() for s in self.subscribers):
            select.select(fds, [], [], timeout)  # releases the GIL, unlike get(timeout)
        out: list[Event] = []
        zeek_event = self.broker.zeek.Event
        for subscriber in self.subscribers:
            for _topic, data in subscriber.poll():
                try:
                    event = zeek_event(data)
                    out.append(Event(str(event.name()), tuple(event.args())))
                except Exception:  # not a Zeek event (another message on our topic)
                    out.append(Event("", ()))
        return out

    def publish(self, topic: str, events: Sequence[Event]) -> None:
        make = self.broker.zeek.Event
        for event in events:
            self.endpoint.publish(topic, make(event.name, *event.args))

    def verdict_args(self, rows: pd.DataFrame) -> list[tuple[Any, ...]]:
        return verdict_records(self.broker, rows)

    def connected(self) -> bool:
        if self.endpoint is None:
            return False
        peered = self.broker.PeerStatus.Peered
        return any(p.status == peered for p in self.endpoint.peers())

    def describe(self) -> str:
        if self.listen_at is not None:
            return f"listening on {self.listen_at[0]}:{self.port or self.listen_at[1]}"
        return f"peering with {self.peer_at[0]}:{self.peer_at[1]}"  # type: ignore[index]

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.shutdown()
            self.endpoint = None
