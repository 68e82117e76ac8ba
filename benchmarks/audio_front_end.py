"""The AECB front end computed once per 10 ms frame (`voice.features.StreamFrames`) vs once per window.

    python benchmarks/audio_front_end.py      # 30 s of the demo speech, 4 alternating rounds, one thread

Both run in this process on the same samples, fed as the pipeline feeds them (uneven blocks of about
70 ms, a 2 s window every second). Prints the voice stage's CPU seconds per second of audio (a real-time
factor by CPU time; median of the rounds), the AECB's median time per window and the ratio of the two paths.
"""

from __future__ import annotations

import sys
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_xemo.core.types import SAMPLE_RATE  # noqa: E402
from edge_xemo.io.audio import Conditioner  # noqa: E402
from edge_xemo.core.paths import demo_audio  # noqa: E402
from edge_xemo.voice.stage import VoiceOptions, VoicePerception  # noqa: E402

SPEECH = demo_audio()
BLOCK = 1096
"""Samples per block: what the demo clip's audio decoder delivers (437 blocks in 30 s)."""


class PerWindow(VoicePerception):
    """The path before: nothing is pushed to the frame cache, so each window runs `AudioBridge.run` on its samples."""

    def __init__(self, options: VoiceOptions):
        super().__init__(options)
        self._bridge_frames.push = lambda *_: None


def run(an: VoicePerception, x: np.ndarray) -> tuple[float, list[float]]:
    """(CPU s per s of audio, AECB ms per window) of one pass over `x`."""
    an.reset()
    blocks, aecb, next_end = [], [], 2.0
    conditioner, kept = Conditioner(), []
    t = time.process_time()
    for i, a in enumerate(range(0, len(x), BLOCK)):
        block = conditioner.block(x[a : a + BLOCK], SAMPLE_RATE, a / SAMPLE_RATE, i)
        kept.append(block.samples)
        blocks.append(an.process_block(block))
        end = (a + BLOCK) / SAMPLE_RATE
        while end >= next_end:
            start = next_end - 2.0
            window = [b for b in blocks if start - 0.1 <= b.t < next_end]
            samples = np.concatenate(kept)[int(start * SAMPLE_RATE) : int(next_end * SAMPLE_RATE)]
            r = an.summarize(samples, start, window, start, next_end)
            if "aecb" in r.latency_ms:
                aecb.append(r.latency_ms["aecb"])
            next_end += 1.0
    return (time.process_time() - t) / (len(x) / SAMPLE_RATE), aecb


def main() -> int:
    with wave.open(str(SPEECH)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32)[: 30 * SAMPLE_RATE] / 32768
    paths = {"per frame (now)": VoicePerception(VoiceOptions()), "per window (before)": PerWindow(VoiceOptions())}
    rtf = {name: [] for name in paths}
    aecb = {name: [] for name in paths}
    for _ in range(4):
        for name, an in paths.items():
            r, a = run(an, x)
            rtf[name].append(r)
            aecb[name] += a
    for name in paths:
        print(f"{name:20s} CPU s per s of audio {np.median(rtf[name]):.4f}   AECB per window "
              f"{np.median(aecb[name]):.2f} ms [p95 {np.percentile(aecb[name], 95):.2f}]")
    now, before = (np.median(rtf[n]) for n in paths)
    print(f"ratio per frame / per window: {now / before:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
