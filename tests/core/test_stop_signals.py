"""core.signals.StopSignals in a process of its own (a second SIGINT ends that process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

SCRIPT = """
import os, signal, sys, time
from edge_xemo.core.signals import StopSignals
# Python's own handler as the previous one, even where the test runner was started with SIGINT ignored (a
# background job of a non-interactive shell inherits SIG_IGN, which StopSignals would rightly put back)
signal.signal(signal.SIGINT, signal.default_int_handler)
with StopSignals() as s:
    if sys.argv[1] == "armed":
        s.arm()
    elif sys.argv[1] == "loading-quietly":  # a loader that sends native stderr to /dev/null meanwhile
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
    print("ready", flush=True)
    for gap in map(float, sys.argv[2:]):
        time.sleep(gap)
        os.kill(os.getpid(), signal.SIGINT)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        time.sleep(0.01)
    print("requested" if s.requested.is_set() else "not requested", s.name, s.exit_code, flush=True)
if os.environ.get("SIGINT_AFTER"):  # one more Ctrl-C once the run has shut down, while it ends
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(1)
    print("ran on", flush=True)
"""


def run(mode: str, *gaps: float, env: dict[str, str] | None = None) -> tuple[int, str, str, float]:
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-c", SCRIPT, mode, *map(str, gaps)], capture_output=True, text=True,
                       timeout=60, env={**os.environ, **(env or {})})
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t


def test_the_first_sigint_is_a_request():
    rc, out, err, _ = run("armed", 0.1)
    assert rc == 0 and "requested SIGINT 130" in out, (out, err)


def test_a_second_sigint_exits_at_once_with_130():
    rc, out, err, took = run("armed", 0.1, 0.4)
    assert rc == 130 and "requested" not in out, (out, err)


def test_the_same_sigint_sent_twice_at_once_is_one_request():
    """`timeout -s INT` sends SIGINT to the process and to its group, microseconds apart."""
    rc, out, err, _ = run("armed", 0.1, 0.0)
    assert rc == 0 and "requested SIGINT 130" in out, (out, err)


def test_a_signal_while_loading_exits_with_one_line():
    rc, out, err, _ = run("loading", 0.1)
    assert rc == 130 and "requested" not in out
    assert err.strip() == "edge-xemo: stopped by SIGINT before the analysis started", err


def test_the_line_is_written_while_a_loader_has_stderr_on_dev_null():
    rc, out, err, _ = run("loading-quietly", 0.1)
    assert rc == 130 and err.strip() == "edge-xemo: stopped by SIGINT before the analysis started", err


def test_a_sigint_after_the_stop_while_the_process_ends_exits_with_130():
    """The stop is done and the handlers are put back: a second Ctrl-C then must not raise KeyboardInterrupt
    into the interpreter's finalisation (the process would die by SIGINT, -2): it exits with 130."""
    rc, out, err, _ = run("armed", 0.1, env={"SIGINT_AFTER": "1"})
    assert rc == 130 and "requested SIGINT 130" in out and "ran on" not in out, (out, err)


def test_without_a_stop_signal_the_previous_handler_is_back():
    rc, out, err, _ = run("armed", env={"SIGINT_AFTER": "1"})
    assert rc == -2 and "not requested" in out, (out, err)  # Python's own KeyboardInterrupt, uncaught



def test_a_sigterm_whose_exception_a_library_replaced_keeps_its_exit_code():
    """Before a run starts SIGTERM raises `Interrupted` (143); a library that catches it and raises a plain
    KeyboardInterrupt in its place must not turn the exit into a Ctrl-C's 130."""
    import signal

    from edge_xemo.core.signals import interrupt_on_signals, interrupted_exit_code

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    interrupt_on_signals()
    try:
        try:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(1)
            except KeyboardInterrupt:
                raise KeyboardInterrupt from None  # what a library's own handler may do
        except KeyboardInterrupt as e:
            assert type(e) is KeyboardInterrupt and interrupted_exit_code(e) == 143
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


TYPER_SCRIPT = """
import os, signal, time, typer
from edge_xemo.__main__ import run

app = typer.Typer()

@app.command()
def wait():
    os.kill(os.getpid(), getattr(signal, os.environ["SIG"]))  # lands in typer's own code around the command
    time.sleep(2)

run(lambda: app)
"""


def test_a_stop_signal_that_reaches_typer_exits_with_its_own_code_and_one_line():
    """typer turns any KeyboardInterrupt into a silent exit 130; the command reports the signal it received."""
    for sig, code in (("SIGTERM", 143), ("SIGINT", 130)):
        p = subprocess.run([sys.executable, "-c", TYPER_SCRIPT], capture_output=True, text=True, timeout=30,
                           env={**os.environ, "SIG": sig})
        assert p.returncode == code and p.stderr.strip() == f"edge-xemo: stopped by {sig}", (p.returncode, p.stderr)
