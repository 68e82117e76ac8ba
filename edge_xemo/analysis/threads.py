"""The analyzer's threads: made by the composition root, started once, joined against a deadline."""

from __future__ import annotations

import threading
import time
from typing import Callable


class Threads:
    """Daemon threads named `edge-xemo-<name>`: the `workers` (perception, reasoning) and `delivery` (None: no
    result callback) start together, once; source threads join them as they start (`add_source`)."""

    def __init__(self, workers: dict[str, Callable[[], None]], delivery: Callable[[], None] | None):
        self.workers = [self._thread(name, run) for name, run in workers.items()]
        self.delivery = self._thread("delivery", delivery) if delivery is not None else None
        self.sources: list[threading.Thread] = []
        self._started = threading.Lock()

    @staticmethod
    def _thread(name: str, run: Callable[[], None]) -> threading.Thread:
        return threading.Thread(target=run, name=f"edge-xemo-{name}", daemon=True)

    def _claim(self) -> bool:
        """True the first time only: its caller decides whether the workers and delivery start."""
        return self._started.acquire(blocking=False)

    def start(self) -> None:
        """Start the workers and delivery (the first call only)."""
        if self._claim():
            for t in self.own:
                t.start()

    def never_start(self) -> bool:
        """Make sure the workers and delivery never start; True when they had not started."""
        return self._claim()

    def add_source(self, thread: threading.Thread) -> None:
        """Start a source's thread (it is joined and waited for with the others)."""
        self.sources.append(thread)
        thread.start()

    @property
    def own(self) -> list[threading.Thread]:
        """The workers, then delivery."""
        return self.workers + ([self.delivery] if self.delivery is not None else [])

    @staticmethod
    def join(threads: list[threading.Thread], deadline: float | None) -> bool:
        """Join `threads` in order, each at most until `deadline` (time.monotonic(); None: no limit); True when
        every one ended."""
        for t in threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)

    def alive(self) -> list[str]:
        """Names of the threads still running."""
        return [t.name for t in self.sources + self.own if t.is_alive()]
