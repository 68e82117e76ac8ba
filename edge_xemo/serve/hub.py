"""One producer, many clients: sequence numbers, a replay ring, and a bounded queue per client.

The analyzer's delivery thread publishes each event once (`EventHub.publish`): it gets the next `seq`,
is encoded to JSON once, kept in a bounded ring (for SSE `Last-Event-ID` replay and
`/v1/events/latest`) and offered to every client's queue on the server's event loop. A client queue
holds at most `size` events; when it is full the oldest is dropped and counted, so the newest event
wins, the producer never waits and a slow or dead client costs at most `size` events of memory.
`max_hz` thins `cues` events on the server (per face, the first in each 1/max_hz interval passes);
explanations, tokens, statuses and errors always pass.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import threading
import time
from dataclasses import dataclass

from ..core.events import EVENT_TYPES, Event


@dataclass(frozen=True, slots=True)
class Item:
    """One published event: its sequence number, type, face and JSON text (with `seq`)."""

    seq: int
    type: str
    face_id: int | None
    json: str


@dataclass(frozen=True, slots=True)
class Subscription:
    """What a client asked for: event types (None: every type) and the most `cues` events a second per face."""

    types: frozenset[str] | None = None
    max_hz: float | None = None

    @classmethod
    def parse(cls, types, max_hz) -> "Subscription":
        """From a subscribe message's fields; ValueError names what is wrong."""
        if types is not None:
            if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
                raise ValueError("types must be a list of event type names")
            unknown = sorted(set(types) - set(EVENT_TYPES))
            if unknown:
                raise ValueError(f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}")
            types = frozenset(types)
        if max_hz is not None and (isinstance(max_hz, bool) or not isinstance(max_hz, (int, float)) or max_hz <= 0):
            raise ValueError("max_hz must be a positive number")
        return cls(types, float(max_hz) if max_hz is not None else None)


class ClientQueue:
    """A client's bounded queue on the event loop: newest wins, drops counted."""

    def __init__(self, name: str, transport: str, size: int, subscription: Subscription = Subscription()):
        self.name, self.transport, self.size = name, transport, size
        self.subscription = subscription
        self._items: collections.deque[Item] = collections.deque()
        self._ready = asyncio.Event()
        self._last_cue: dict[int | None, float] = {}
        self.dropped = 0
        self.closed_reason: str | None = None

    def offer(self, item: Item) -> None:
        """Queue `item` unless the subscription filters it; call on the event loop."""
        sub = self.subscription
        if sub.types is not None and item.type not in sub.types:
            return
        if sub.max_hz is not None and item.type == "cues":
            now = time.monotonic()
            last = self._last_cue.get(item.face_id)
            if last is not None and now - last < 1.0 / sub.max_hz:
                return
            self._last_cue[item.face_id] = now
        if len(self._items) >= self.size:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._ready.set()

    async def get(self) -> Item:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)


class EventHub:
    """Sequence numbers, the replay ring, the latest event of each type, and the clients' queues."""

    def __init__(self, ring: int = 1024, client_queue: int = 64, on_publish=None):
        self.client_queue = client_queue
        self._ring: collections.deque[Item] = collections.deque(maxlen=ring)
        self._latest: dict[str, Item] = {}
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._clients: set[ClientQueue] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.on_publish = on_publish
        """Called with each published event (metrics), on the publishing thread."""
        self.published = 0
        self.dropped_closed = 0  # drops of clients that have gone, so the metric never decreases

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop that owns the client queues (the server's)."""
        self._loop = loop

    def publish(self, event: Event) -> Item:
        """Number, encode, keep and offer one event; safe from any thread, never blocks on clients."""
        d = event.to_dict()
        with self._lock:
            seq = next(self._seq)
            d["seq"] = seq
            item = Item(seq, event.type, d.get("face_id"), json.dumps(d, ensure_ascii=False))
            self._ring.append(item)
            if event.type != "token":
                self._latest[event.type] = item
            self.published += 1
            clients = tuple(self._clients)
        if self.on_publish is not None:
            self.on_publish(event)
        loop = self._loop
        if loop is not None and clients and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._offer, clients, item)
            except RuntimeError:  # the loop closed meanwhile (shutdown)
                pass
        return item

    @staticmethod
    def _offer(clients, item: Item) -> None:
        for c in clients:
            if c.closed_reason is None:
                c.offer(item)

    def open(
        self, name: str, transport: str, subscription: Subscription = Subscription(), after: int | None = None
    ) -> tuple[ClientQueue, bool]:
        """A new client queue; with `after`, the ring's events after that seq are queued first.
        Returns the queue and whether the replay is complete (False: events after `after` have left the ring)."""
        client = ClientQueue(name, transport, self.client_queue, subscription)
        complete = True
        with self._lock:
            if after is not None:
                kept = [i for i in self._ring if i.seq > after]
                complete = not self._ring or self._ring[0].seq <= after + 1
                for i in kept:
                    client.offer(i)
            self._clients.add(client)
        return client, complete

    def close(self, client: ClientQueue, reason: str) -> None:
        with self._lock:
            if client in self._clients:
                self._clients.discard(client)
                self.dropped_closed += client.dropped
        client.closed_reason = client.closed_reason or reason

    def resubscribe(self, client: ClientQueue, subscription: Subscription) -> None:
        client.subscription = subscription

    @property
    def clients(self) -> tuple[ClientQueue, ...]:
        with self._lock:
            return tuple(self._clients)

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._ring[-1].seq if self._ring else 0

    def latest(self) -> dict[str, dict]:
        """The newest event of each type (tokens left out), as objects."""
        with self._lock:
            items = dict(self._latest)
        return {t: json.loads(i.json) for t, i in items.items()}

    def dropped(self) -> int:
        """Events dropped from client queues since the start, clients gone included."""
        with self._lock:
            return self.dropped_closed + sum(c.dropped for c in self._clients)
