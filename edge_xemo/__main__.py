"""The `edge-xemo` command (`python -m edge_xemo`, and the console script).

SIGINT and SIGTERM are turned into a one-line exit with their code before anything heavy is imported, and that
exit is made here, in one place: the command's imports take a few hundred milliseconds, and typer turns a
KeyboardInterrupt that reaches it into a silent exit 130 (a SIGTERM's too). A stop signal once the analysis runs
is handled by the command itself (core.signals.StopSignals)."""

from __future__ import annotations

import signal
import sys
from typing import Callable

from .core.signals import interrupt_on_signals, interrupted_exit_code


def main() -> None:
    run(_command)


def _command() -> Callable[[], object]:
    from .cli import app

    return app


def run(load: Callable[[], Callable[[], object]]) -> None:
    """Install the stop-signal handlers, then load the command and run it."""
    interrupt_on_signals()
    try:
        load()()
    except KeyboardInterrupt as e:  # while importing
        code = interrupted_exit_code(e)
    except SystemExit as e:
        interrupt = interrupt_behind(e)
        if interrupt is None:
            raise
        code = interrupted_exit_code(interrupt)
        del interrupt
    else:
        return
    # out of the handler, so that the interrupted frames (and what they hold open) are released before exiting
    sys.stderr.write(f"edge-xemo: stopped by {signal.Signals(code - 128).name}\n")
    sys.exit(code)


def interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt that an exit was raised while handling (typer's `Exit(130) from e`), if any."""
    seen: BaseException | None = error
    for _ in range(8):
        seen = seen.__cause__ or seen.__context__ if seen is not None else None
        if isinstance(seen, KeyboardInterrupt):
            return seen
    return None


if __name__ == "__main__":
    main()
