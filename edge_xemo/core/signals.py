"""SIGINT and SIGTERM as a stop request, the same for every command that runs a loop.

Python's default SIGINT handling raises KeyboardInterrupt wherever the main thread happens to be.
Raised inside `Thread.join()`, CPython 3.11 marks the joined thread as ended although it still runs
(so later joins return at once and nothing waits for it); raised again inside a shutdown, it abandons
the shutdown, and the interpreter then finalises with capture and reasoning threads still running.
`StopSignals` turns the first SIGINT or SIGTERM into an event that the main thread polls, so the
command shuts down in order; a second SIGINT during that shutdown ends the process at once (130).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Callable

EXIT_CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""The shell's convention: 128 + the signal's number."""
REPEAT_S = 0.25
"""A second SIGINT sooner than this after the first is the same request delivered twice, not a second
Ctrl-C: `timeout -s INT` and `kill -INT 0` send it to the process and again to its process group
(seen with strace: kill(pid, SIGINT) then kill(0, SIGINT)); a person's second key press comes later."""


class Interrupted(KeyboardInterrupt):
    """A stop signal that came before the run started (while models load): nothing to shut down yet."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = EXIT_CODES[signum]


_received: list[int] = []
"""The stop signals `interrupt_on_signals` turned into `Interrupted`, in order of arrival."""


def _interrupt(signum: int, frame) -> None:
    _received.append(signum)
    raise Interrupted(signum)


def interrupted_exit_code(error: KeyboardInterrupt) -> int:
    """The exit code of a run ended by `error`: its own, else that of the last stop signal received (a
    library can catch our `Interrupted` and raise a plain KeyboardInterrupt in its place), else 130."""
    code = getattr(error, "exit_code", None)
    return code if code is not None else EXIT_CODES[_received[-1]] if _received else 130


def interrupt_on_signals() -> None:
    """From now on SIGTERM, like SIGINT, raises (`Interrupted`) in the main thread, so that a command
    ends with its exit code and a line (`edge_xemo.__main__.run`), not a traceback or a silent kill."""
    for s in EXIT_CODES:
        signal.signal(s, _interrupt)


class StopSignals:
    """Context manager for the main thread: while it is active, SIGINT/SIGTERM set `requested`.

    Until `arm()` (while models load, before anything has been captured or written) a signal ends the
    process at once with its exit code and one line on stderr: an exception raised there could land
    inside a ctypes callback of llama.cpp, which swallows it, and loading would go on. After `arm()`
    the first signal records its number and sets `requested`; a second SIGINT (`REPEAT_S` or more
    later) calls `os._exit(130)`: nothing is waited for, the user asked twice.
    """

    def __init__(self):
        self.requested = threading.Event()
        self.signum: int | None = None
        self._first = 0.0
        self._armed = False
        self._stderr = 2  # a copy of the process's stderr while active (see __enter__)
        self._previous: dict[int, signal.Handlers | int | Callable | None] = {}

    @property
    def exit_code(self) -> int | None:
        """128 + the signal that asked to stop; None when none did."""
        return EXIT_CODES.get(self.signum) if self.signum is not None else None

    @property
    def name(self) -> str | None:
        return signal.Signals(self.signum).name if self.signum is not None else None

    def arm(self) -> None:
        self._armed = True

    def shutting_down(self) -> None:
        """The run is ending (a signal, its input ended, a fatal error): a SIGINT from now on exits at once."""
        self._armed = True
        if not self.requested.is_set():
            self._first = time.monotonic() - REPEAT_S
            self.requested.set()

    def _handle(self, signum: int, frame) -> None:
        if not self._armed:
            line = f"edge-xemo: stopped by {signal.Signals(signum).name} before the analysis started\n"
            os.write(self._stderr, line.encode())  # not sys.stderr: a loader may have fd 2 on /dev/null now
            os._exit(EXIT_CODES[signum])
        if self.requested.is_set():
            if signum == signal.SIGINT and time.monotonic() - self._first >= REPEAT_S:
                os._exit(130)
            return
        self.signum, self._first = signum, time.monotonic()
        self.requested.set()

    def __enter__(self) -> "StopSignals":
        sys.stderr.flush()
        self._stderr = os.dup(2)
        if threading.current_thread() is threading.main_thread():
            for s in EXIT_CODES:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        """Put the previous handlers back; but after a stop signal the process is only ending, and a signal
        from now on (a second Ctrl-C while the interpreter finalises) ends it at once with its code, as during
        the shutdown, instead of raising KeyboardInterrupt into the finalisation (which dies by SIGINT, -2)."""
        for s, handler in self._previous.items():
            signal.signal(s, _exit_at_once if self.signum is not None else handler)
        self._previous.clear()
        os.close(self._stderr)


def _exit_at_once(signum: int, frame) -> None:
    os._exit(EXIT_CODES[signum])
