"""Helpers of the server tests: a real `edge-xemo serve` process on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge_xemo.core.paths import demo_audio, demo_video

REPO = Path(__file__).resolve().parents[2]
DEMO_VIDEO = demo_video()
DEMO_AUDIO = demo_audio()



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    tokens: dict
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"

    def get(self, path: str, token: str | None = None, method: str = "GET") -> tuple[int, bytes]:
        req = urllib.request.Request(self.http + path, method=method,
                                     headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def wait_ready(self, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                status, body = self.get("/readyz")
                if status == 200:
                    return json.loads(body)
            time.sleep(0.3)
        raise AssertionError(f"not ready in {timeout} s: {self.log.read_text()[-2000:]}")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(tmp: Path, *args: str, port: int | None = None, token_file: Path | None = None) -> Server:
    port = port or free_port()
    token_file = token_file or tmp / "tokens.json"
    log = tmp / f"serve-{port}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "edge_xemo", "serve", "--port", str(port), "--token-file",
                             str(token_file), "--threads", "1", *args], cwd=REPO, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not token_file.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    tokens = json.loads(token_file.read_text()) if token_file.exists() else {}
    return Server(proc, port, tokens, log)


def replay_args(*extra: str) -> list[str]:
    for f in (DEMO_VIDEO, DEMO_AUDIO):
        if not f.exists():
            pytest.skip(f"{f} is absent (demo media comes from scripts/install.sh)")
    return ["--replay", str(DEMO_VIDEO), "--audio", str(DEMO_AUDIO), "--loop", *extra]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A module-wide server: the demo clip replayed in a loop, with explanations, at most 4 clients
    (test modules import this fixture; a conftest.py here would shadow tests/conftest.py)."""
    tmp = tmp_path_factory.mktemp("serve")
    s = start_server(tmp, *replay_args("--max-clients", "4"))
    try:
        s.wait_ready()
        yield s
    finally:
        s.stop()
