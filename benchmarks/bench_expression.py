"""Expression encoder per face crop (fp32 vs dynamic int8) and VECB per window, 1 onnxruntime thread.

Run: .venv/bin/python -m pytest benchmarks/bench_expression.py --benchmark-only --benchmark-columns=median,iqr,rounds

The int8 variants are quantized here (onnxruntime quantize_dynamic, as the export scripts try it),
so fp32 and int8 are timed in the same run on the same machine. Each test stores its median and
p95 in milliseconds in `extra_info` (pytest-benchmark reports no percentiles of its own).
Target: VECB < 5 ms per window.
"""

from pathlib import Path

import numpy as np
import pytest

from edge_xemo.vision.expression import ExpressionEncoder, to_pixels
from edge_xemo.core.models import onnx_session, verified_path
from edge_xemo.vision.vecb import VisualBridge, resample

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
ROUNDS = 300


def record(benchmark):
    data = np.array(benchmark.stats.stats.data) * 1e3
    benchmark.extra_info.update(median_ms=round(float(np.median(data)), 4), p95_ms=round(float(np.percentile(data, 95)), 4))


def int8_copy(name: str, folder: Path, op_types=None) -> str:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = folder / f"{name}_int8.onnx"
    quantize_dynamic(str(verified_path(name)), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=op_types)
    return str(dst)


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    return np.load(DATA / "expression_keras_reference.npz")["pixels"][:1]


@pytest.fixture(scope="module")
def window() -> np.ndarray:
    return np.load(DATA / "vecb_reference.npz")["surprise_rows"]


def test_expression_fp32_per_crop(benchmark, crop):
    enc = ExpressionEncoder(threads=1)
    benchmark.pedantic(enc.encode, args=(crop,), rounds=ROUNDS, warmup_rounds=20)
    record(benchmark)


def test_expression_int8_per_crop(benchmark, crop, tmp_path_factory):
    sess = onnx_session(int8_copy("expression", tmp_path_factory.mktemp("int8")), 1, "cpu")
    feed = {"pixels": to_pixels(crop)}
    benchmark.pedantic(sess.run, args=(None, feed), rounds=ROUNDS, warmup_rounds=20)
    record(benchmark)


def test_expression_fp32_batch_of_4_faces(benchmark, crop):
    enc = ExpressionEncoder(threads=1)
    faces = np.repeat(crop, 4, axis=0)
    benchmark.pedantic(enc.encode, args=(faces,), rounds=ROUNDS, warmup_rounds=20)
    record(benchmark)


def test_vecb_fp32_per_window(benchmark, window):
    bridge = VisualBridge(threads=1)
    benchmark.pedantic(bridge.run, args=(window,), rounds=ROUNDS, warmup_rounds=20)
    record(benchmark)


def test_vecb_int8_per_window(benchmark, window, tmp_path_factory):
    sess = onnx_session(int8_copy("vecb", tmp_path_factory.mktemp("int8"), ["MatMul", "Gemm"]), 1, "cpu")
    feed = {"frames": resample(window)[None]}
    benchmark.pedantic(sess.run, args=(None, feed), rounds=ROUNDS, warmup_rounds=20)
    record(benchmark)
