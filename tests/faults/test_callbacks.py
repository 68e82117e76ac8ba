"""A `result_callback` that raises or blocks: capture never waits for it (Python API, real stages,
the demo clip paced in real time as a live source)."""

from __future__ import annotations

import logging
import threading
import time

from faulting import need_demo
from conftest import DEMO_AUDIO, DEMO_VIDEO
from edge_xemo import Analyzer, AnalyzerOptions, FileSource, RunningMode

RUN_S = 6.0


def live_analyzer(callback) -> Analyzer:
    options = AnalyzerOptions(running_mode=RunningMode.LIVE_STREAM, judgement=None, decoder=None, result_callback=callback)
    return Analyzer.create_from_options(options)


def test_a_callback_that_raises(caplog):
    need_demo()
    calls = []

    def bad(event):
        calls.append(event.type)
        raise RuntimeError("the integrator's bug")

    analyzer = live_analyzer(bad)
    with caplog.at_level(logging.WARNING, logger="edge_xemo"):
        analyzer.run_sources(FileSource(DEMO_VIDEO, audio_path=DEMO_AUDIO, realtime=True))
        time.sleep(RUN_S)
        t = time.monotonic()
        assert analyzer.close(reason="test") and time.monotonic() - t < 3.0
    assert analyzer.stats["windows"] >= 3 and analyzer.stats["callback_errors"] == len(calls) > 3
    assert calls[-1] == "status"  # the `stopped` event still reached it
    failures = [r for r in caplog.records if "result callback failed" in r.getMessage()]
    assert failures and all(r.exc_info is None for r in failures)  # one line each, no traceback
    assert "the integrator's bug" in failures[0].getMessage()


def test_a_callback_that_blocks():
    need_demo()
    release = threading.Event()
    calls = []

    def stuck(event):
        calls.append(event.type)
        release.wait()

    analyzer = live_analyzer(stuck)
    try:
        analyzer.run_sources(FileSource(DEMO_VIDEO, audio_path=DEMO_AUDIO, realtime=True))
        time.sleep(RUN_S)
        frames, windows = analyzer.stats["frames"], analyzer.stats["windows"]
        # 25 frames/s for RUN_S seconds, less the models' warm-up; windows keep closing every second
        assert frames >= 20 * (RUN_S - 2) and windows >= RUN_S - 3, analyzer.stats
        assert len(calls) == 1  # the delivery thread is stuck in the first event
        t = time.monotonic()
        assert analyzer.close(timeout=2.0) is False  # says the delivery thread did not end
        assert time.monotonic() - t < 3.0
    finally:
        release.set()
