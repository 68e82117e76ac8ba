"""VIDEO mode gives the same events for the same input: quiet or loaded machine, 1 or 2 threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli

VARIABLE = ("wall_time", "latency_ms")
"""The only fields that may differ: when an event left and how long its stages took."""


def _events(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines():
        event = json.loads(line)
        for key in VARIABLE:
            event.pop(key, None)
        out.append(event)
    return out


def _analyze(video: Path, audio: Path, out: Path, threads: int) -> list[dict]:
    r = run_cli("analyze", video, "--audio", audio, "--jsonl", out, "--quiet", "--threads", threads, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return _events(out)


@pytest.mark.slow
def test_same_clip_same_events_under_load_and_any_thread_count(demo_video, demo_audio, tmp_path):
    quiet = _analyze(demo_video, demo_audio, tmp_path / "quiet.jsonl", threads=1)
    assert sum(e["type"] == "explanation" for e in quiet) >= 10 and any(e["type"] == "cues" for e in quiet)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        loaded = _analyze(demo_video, demo_audio, tmp_path / "loaded.jsonl", threads=1)
    finally:
        for p in burners:
            p.kill()
            p.wait()
    two_threads = _analyze(demo_video, demo_audio, tmp_path / "two.jsonl", threads=2)
    assert loaded == quiet
    assert two_threads == quiet
