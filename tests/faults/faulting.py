"""Helpers of the fault-injection tests: real `edge-xemo` processes on a loopback MJPEG camera and a
PulseAudio null-sink microphone, and the checks every case makes on what such a process leaves.

(Test modules import the fixtures from here: a conftest.py in this folder would shadow tests/conftest.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import CLI, DEMO_AUDIO, DEMO_VIDEO, REPO, virtual_microphone  # noqa: F401 (a fixture, re-exported)
from mjpeg_camera import Camera


def need_demo() -> None:
    for f in (DEMO_VIDEO, DEMO_AUDIO):
        if not f.exists():
            pytest.skip(f"{f} is absent (demo media comes from scripts/install.sh)")


@pytest.fixture(scope="module")
def camera():
    """The demo clip as a network camera: MJPEG over HTTP on 127.0.0.1, 25 frames/s, looping."""
    need_demo()
    with Camera(DEMO_VIDEO) as cam:
        yield cam


@pytest.fixture(scope="module")
def speech(virtual_microphone):
    """Real speech (the demo's two-speaker conversation) looped into the virtual microphone."""
    need_demo()
    if not shutil.which("paplay"):
        pytest.skip("paplay is not installed (pulseaudio-utils, scripts/install.sh)")
    loop = subprocess.Popen(["bash", "-c", f"while true; do paplay --device={virtual_microphone} '{DEMO_AUDIO}' || sleep 1; done"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    yield virtual_microphone
    os.killpg(loop.pid, signal.SIGKILL)
    loop.wait()


@dataclass
class Run:
    """One `edge-xemo` process: its JSONL, its stderr, when it started."""

    proc: subprocess.Popen
    jsonl: Path
    stderr: Path
    t0: float

    def events(self) -> list[dict]:
        """Every line of the JSONL, each asserted to be one complete JSON object ending in a newline."""
        if not self.jsonl.exists():
            return []
        text = self.jsonl.read_text(encoding="utf-8")
        assert not text or text.endswith("\n"), f"half-written last line: {text[-200:]!r}"
        return [json.loads(line) for line in text.splitlines()]

    def codes(self) -> list[str]:
        return [e.get("code") for e in self.events() if e["type"] in ("status", "error")]

    def wait_for(self, predicate, timeout: float, what: str) -> list[dict]:
        """Poll the JSONL until `predicate(events)` holds; fails with `what` and the stderr tail."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                events = self.events()
            except (AssertionError, json.JSONDecodeError):  # a line being written right now
                events = []
            if predicate(events):
                return events
            time.sleep(0.1)
        raise AssertionError(f"{what} did not happen within {timeout} s (exit {self.proc.poll()}): {self.err()[-1500:]}")

    def signal(self, sig: int, timeout: float) -> tuple[int, float]:
        """Send `sig`; (exit code, seconds to exit). Kills the process and fails if it outlives `timeout`."""
        t = time.monotonic()
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"still running {timeout} s after {signal.Signals(sig).name}: {self.err()[-1500:]}")
        return rc, time.monotonic() - t

    def err(self) -> str:
        return self.stderr.read_text(errors="replace") if self.stderr.exists() else ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start(tmp: Path, *args: str, name: str = "run", jsonl: bool = True) -> Run:
    """`edge-xemo ARGS --jsonl tmp/NAME.jsonl --quiet`, stderr to tmp/NAME.err."""
    out, err = tmp / f"{name}.jsonl", tmp / f"{name}.err"
    extra = ["--jsonl", str(out), "--quiet"] if jsonl else []
    proc = subprocess.Popen([*CLI, *args, *extra], cwd=REPO, stdout=subprocess.DEVNULL, stderr=open(err, "w"),
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return Run(proc, out, err, time.monotonic())


def assert_clean_stderr(run: Run, libraries: bool = False) -> None:
    """No traceback: the process says what happened in one-line messages. `libraries`: lines that
    native libraries print themselves are allowed (PortAudio's ALSA host API reports a lost device so)."""
    text = run.err()
    assert "Traceback" not in text, text[-3000:]
    lines = [line for line in text.splitlines() if line.strip()]
    if libraries:
        lines = [line for line in lines if not line.startswith("Expression '")]
    assert all(line.startswith("edge-xemo") for line in lines), text[-3000:]


def live_args(camera: Camera | None, mic: str | None, *extra: str) -> list[str]:
    args = ["live", "--threads", "1"]
    args += ["--camera", camera.url] if camera is not None else ["--no-video"]
    args += ["--mic", "default"] if mic is not None else ["--no-audio"]
    return args + list(extra)
