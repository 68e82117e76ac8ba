"""Overhead of the spine itself: decoding media and carrying items through the analyzer, no models.

Run: .venv/bin/python -m pytest benchmarks/bench_spine.py --benchmark-only
"""

import threading

import numpy as np
import pytest

from edge_xemo.analyzer import Analyzer, AnalyzerOptions, RunningMode
from edge_xemo.io.sources import Clock, FileSource
from edge_xemo.core.types import ModalityResult
from edge_xemo.core.paths import demo_audio, demo_video

VIDEO, AUDIO = demo_video(), demo_audio()
N_FRAMES, N_BLOCKS = 250, 100


class Nothing:
    """A stage that does no work, so only the spine's own cost is timed."""

    def process_frame(self, frame):
        return None

    def process_block(self, block):
        return None

    def summarize(self, *args):
        return ModalityResult("visual")

    def reset(self):
        pass


def run_spine(frames, blocks):
    a = Analyzer(AnalyzerOptions(running_mode=RunningMode.VIDEO, frame_queue=64), Nothing(), Nothing(), None)
    for i, f in enumerate(frames):
        a.push_frame(f, i / 25)
    for i, b in enumerate(blocks):
        a.push_audio(b, i * 0.1)
    a.end_input()
    list(a.events())
    a.close()


def test_spine_per_frame_and_block(benchmark):
    frames = [np.zeros((360, 640, 3), np.uint8)] * N_FRAMES
    blocks = [np.zeros(1600, np.float32)] * N_BLOCKS
    benchmark.extra_info.update(frames=N_FRAMES, blocks=N_BLOCKS)
    benchmark.pedantic(run_spine, args=(frames, blocks), rounds=5, warmup_rounds=1)


class Sink:
    def __init__(self):
        self.n = 0

    def frame(self, image, t):
        self.n += 1

    def audio(self, samples, t, sample_rate=16000):
        self.n += 1

    def status(self, *a, **k):
        pass


@pytest.mark.skipif(not VIDEO.exists(), reason="demo media comes from scripts/install.sh")
def test_file_decode_video_and_audio(benchmark):
    def decode():
        sink = Sink()
        FileSource(VIDEO, audio_path=AUDIO).run(sink, threading.Event(), Clock())
        return sink.n

    assert benchmark.pedantic(decode, rounds=3, warmup_rounds=1) > 765
