"""The analyzer's events on their way out: one bounded queue, in window order when asked.

In window order (VIDEO mode) an event made while an explanation of an earlier window is unfinished
waits behind it; the explanation's own events leave at once. So the event stream of a file does not
depend on how fast the machine is (tests/test_determinism.py).
"""

from __future__ import annotations

import collections
import threading

from .events import Event
from .scheduler import BoundedQueue

_NEXT = object()
"""Marks, among held events, where the next queued explanation's events belong."""


class Outbox:
    """A bounded event queue (`queue`) with window order kept when `in_window_order`."""

    def __init__(self, maxsize: int, drop_oldest: bool, in_window_order: bool):
        self.queue = BoundedQueue(maxsize, drop_oldest)
        self.in_window_order = in_window_order
        self._lock = threading.Lock()
        self._in_flight = 0
        self._held: collections.deque = collections.deque()
        self._finished = threading.Lock()

    def put(self, event: Event, explaining: bool = False) -> None:
        """Send `event`; `explaining`: it belongs to the explanation under way (it never waits)."""
        if not self.in_window_order or explaining:
            self.queue.put(event)
            return
        with self._lock:
            if self._in_flight:
                self._held.append(event)
            else:
                self.queue.put(event)

    def explanation_queued(self) -> None:
        """An explanation was queued: events made from now on wait until it is done."""
        if not self.in_window_order:
            return
        with self._lock:
            if self._in_flight:
                self._held.append(_NEXT)
            self._in_flight += 1

    def explanation_done(self, everything: bool = False) -> None:
        """An explanation is done: let out the events held behind it, up to the next one's (all when
        `everything`: no explanation will come any more)."""
        if not self.in_window_order:
            return
        with self._lock:
            self._in_flight = 0 if everything else max(0, self._in_flight - 1)
            while self._held:
                item = self._held.popleft()
                if item is _NEXT:
                    if not everything:
                        break
                    continue
                self.queue.put(item)

    def finish(self, last: Event | None = None) -> None:
        """Once: send `last` (if any) and close the queue; its reader ends when it has taken everything."""
        if not self._finished.acquire(blocking=False):
            return
        if last is not None:
            self.queue.put(last)
        self.queue.close()
