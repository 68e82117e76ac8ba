"""The analyzer's events on their way to the caller: a result callback on the delivery thread, or `events()`."""

from __future__ import annotations

import logging
from typing import Callable, Iterator

from ..core.events import Event
from ..core.outbox import Outbox

log = logging.getLogger(__name__)


class Delivery:
    """Takes events out of `outbox` for the caller: `run` (the delivery thread's body) hands each to `callback`,
    whose exceptions are logged and counted in `stats["callback_errors"]`, never raised; without a callback the
    caller iterates `events`. Both end once the outbox is finished and empty."""

    def __init__(self, outbox: Outbox, callback: Callable[[Event], object] | None, stats: dict[str, int]):
        self._outbox, self.callback, self._stats = outbox, callback, stats

    def run(self) -> None:
        assert self.callback is not None  # the delivery thread runs only with a callback
        for event in self._outbox.queue.drain():
            try:
                self.callback(event)
            except Exception as e:  # the callback's own fault: one line, and the next event goes on
                self._stats["callback_errors"] += 1
                log.warning("result callback failed on a %s event: %s: %s", event.type, type(e).__name__, e)

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Events as they come until the outbox is finished and empty (`timeout`: at most that long for each)."""
        queue = self._outbox.queue
        while True:
            event = queue.get(timeout if timeout is not None else 0.5)
            if event is not None:
                yield event
            elif queue.closed and not len(queue):
                return
            elif timeout is not None:
                return
