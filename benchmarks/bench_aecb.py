"""Cost of the audio path per 1 s of audio: log-mel front end + encoder + AECB, fp32 vs int8.

The spine runs one 2.0 s window per 1.0 s hop, so one `AudioBridge.run` is the cost of 1 s of
audio. One onnxruntime thread (the perception budget).

    pytest benchmarks/bench_aecb.py --benchmark-columns=median,iqr,ops
    python benchmarks/bench_aecb.py          # medians and p95, ratio int8 / fp32
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from edge_xemo.aecb import WINDOW_SAMPLES, AudioBridge
from edge_xemo.audio_features import log_mel
from edge_xemo.models import ModelError, resolve


def _speechlike(seed: int = 0) -> np.ndarray:
    """2 s of a 150 Hz harmonic voice with 4 Hz syllable envelope and noise (timing input only)."""
    rng = np.random.default_rng(seed)
    t = np.arange(WINDOW_SAMPLES) / 16000
    x = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20))
    x = x * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * 0.05 + rng.standard_normal(len(t)) * 1e-3
    return x.astype(np.float32)


def _bridge(model: str) -> AudioBridge:
    try:
        resolve(model)
    except ModelError as e:
        pytest.skip(str(e))
    return AudioBridge(threads=1, model=model)


def test_log_mel_2s(benchmark):
    x = _speechlike()
    benchmark(log_mel, x)


@pytest.mark.parametrize("model", ["aecb", "aecb_int8"])
def test_bridge_per_second_of_audio(benchmark, model):
    bridge, x = _bridge(model), _speechlike()
    bridge.run(x)
    benchmark(bridge.run, x)


def main(n: int = 200) -> None:
    x, res = _speechlike(), {}
    for model in ("aecb", "aecb_int8"):
        try:
            bridge = AudioBridge(threads=1, model=model)
        except ModelError as e:
            print(f"{model}: {e}")
            continue
        for _ in range(10):
            bridge.run(x)
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            bridge.run(x)
            ts.append((time.perf_counter() - t) * 1000)
        res[model] = (np.median(ts), np.percentile(ts, 95))
        print(f"{model:10s} per 1 s of audio (one 2 s window): median {res[model][0]:.2f} ms, p95 {res[model][1]:.2f} ms")
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        log_mel(x)
        ts.append((time.perf_counter() - t) * 1000)
    print(f"log_mel alone: median {np.median(ts):.2f} ms, p95 {np.percentile(ts, 95):.2f} ms")
    if len(res) == 2:
        print(f"int8 / fp32 median ratio: {res['aecb_int8'][0] / res['aecb'][0]:.2f}")


if __name__ == "__main__":
    main()
