"""Cost of the audio path per 1 s of audio: log-mel front end + encoder + AECB, fp32 vs int8.

The spine runs one 2.0 s window per 1.0 s hop, so one `AudioBridge.run` is the cost of 1 s of
audio. One onnxruntime thread (the perception budget).

    pytest benchmarks/bench_aecb.py --benchmark-columns=median,iqr,ops
    python benchmarks/bench_aecb.py          # medians and p95, ratio int8 / fp32
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from edge_xemo.voice.aecb import WINDOW_SAMPLES, AudioBridge
from edge_xemo.voice.features import frame_features
from edge_xemo.core.models import ModelError, onnx_session, resolve

UNSHIPPED_INT8 = Path(__file__).resolve().parents[1] / "runs" / "aecb" / "aecb_int8.onnx"


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


def test_frame_features_2s(benchmark):
    x = _speechlike()
    benchmark(frame_features, x)


@pytest.mark.parametrize("model", ["aecb", "aecb_int8"])
def test_bridge_per_second_of_audio(benchmark, model):
    bridge, x = _bridge(model), _speechlike()
    bridge.run(x)
    benchmark(bridge.run, x)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_graph_only(benchmark, precision):
    """The ONNX graph alone (features precomputed); int8 is the shipped one or the export's unshipped one."""
    if precision == "fp32":
        path = resolve("aecb").path
    else:
        try:
            path = resolve("aecb_int8").path
        except ModelError:
            if not UNSHIPPED_INT8.exists():
                pytest.skip("no int8 AECB (python -m export.aecb writes runs/aecb/aecb_int8.onnx)")
            path = UNSHIPPED_INT8
    _bridge("aecb")
    sess = onnx_session(str(path), 1, "cpu")
    feed = {"features": frame_features(_speechlike())[None], "baseline": np.zeros((1, 128), np.float32)}
    benchmark(sess.run, None, feed)


def _stats(fn, n: int) -> tuple[float, float]:
    for _ in range(10):
        fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    return float(np.median(ts)), float(np.percentile(ts, 95))


def main(n: int = 200) -> None:
    x, res = _speechlike(), {}
    for model in ("aecb", "aecb_int8"):
        try:
            bridge = AudioBridge(threads=1, model=model)
        except ModelError as e:
            print(f"{model}: {e}")
            continue
        res[model] = _stats(lambda: bridge.run(x), n)
        print(f"{model:10s} features + encoder + AECB per 1 s of audio (one 2 s window): "
              f"median {res[model][0]:.2f} ms, p95 {res[model][1]:.2f} ms")
    print("frame_features alone: median %.2f ms, p95 %.2f ms" % _stats(lambda: frame_features(x), n))
    feats = AudioBridge(threads=1).features(x)
    graphs = {"fp32": str(resolve("aecb").path)}
    try:
        graphs["int8"] = str(resolve("aecb_int8").path)
    except ModelError:
        if UNSHIPPED_INT8.exists():
            graphs["int8 (not shipped)"] = str(UNSHIPPED_INT8)
    base = np.zeros((1, 128), np.float32)
    onnx = {}
    for name, path in graphs.items():
        sess = onnx_session(path, 1, "cpu")
        onnx[name] = _stats(lambda: sess.run(None, {"features": feats, "baseline": base}), n)
        print(f"encoder + AECB graph {name}: median {onnx[name][0]:.3f} ms, p95 {onnx[name][1]:.3f} ms")
    if len(onnx) == 2:
        a, b = onnx.values()
        print(f"int8 / fp32 median ratio (graph only): {b[0] / a[0]:.2f}")


if __name__ == "__main__":
    main()
