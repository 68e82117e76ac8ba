"""The `edge-xemo` command (`python -m edge_xemo`, and the console script).

SIGINT and SIGTERM are turned into a one-line exit with their code before anything heavy is imported: the
command's imports take a few hundred milliseconds, and a stop signal in them must not end it with a traceback or
a bare kill (core.signals)."""

from __future__ import annotations

import signal
import sys

from .core.signals import interrupt_on_signals, interrupted_exit_code


def main() -> None:
    interrupt_on_signals()
    try:
        from .cli import app
    except KeyboardInterrupt as e:
        code = interrupted_exit_code(e)
        sys.stderr.write(f"edge-xemo: stopped by {signal.Signals(code - 128).name}\n")
        sys.exit(code)
    app()


if __name__ == "__main__":
    main()
