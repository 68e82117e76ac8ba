"""VECB runtime: parity with PyTorch, what it says about real windows, frame rows, resampling, bad input."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from edge_xemo.vision.expression import LABELS
from edge_xemo.vision.face_cues import CUE_NAMES
from edge_xemo.vision.vecb import FEATURE_DIM, GEOMETRY_POINTS, N_FRAMES, VisualBridge, frame_features, resample

DATA = Path(__file__).parents[1] / "data"
REPO = Path(__file__).resolve().parents[2]
TORCH_TOL = 1e-4  # max |ONNX - PyTorch| of any output (export.onnx_tools.FP32_TOL)


@pytest.fixture(scope="module")
def bridge() -> VisualBridge:
    return VisualBridge(threads=1)


@pytest.fixture(scope="module")
def ref() -> dict:
    z = np.load(DATA / "vecb_reference.npz")
    return {k: z[k] for k in z.files}


@pytest.mark.parametrize("window", ["rest", "surprise"])
def test_matches_pytorch_reference(bridge, ref, window):
    out = bridge.run(ref[f"{window}_rows"])
    assert out.tokens.shape == ref[f"{window}_tokens"].shape == (N_FRAMES // 2, 128)
    assert np.abs(out.tokens - ref[f"{window}_tokens"]).max() < TORCH_TOL
    assert np.abs(np.array(list(out.cue_intensities.values())) - ref[f"{window}_cue_intensities"]).max() < TORCH_TOL
    assert np.abs(np.array(list(out.expression_scores.values())) - ref[f"{window}_expression_scores"]).max() < TORCH_TOL
    assert out.n_frames == len(ref[f"{window}_rows"])


def test_outputs_are_labelled_and_bounded(bridge, ref):
    out = bridge.run(ref["rest_rows"])
    assert tuple(out.cue_intensities) == CUE_NAMES and tuple(out.expression_scores) == LABELS
    assert all(0.0 <= v <= 1.0 for v in out.cue_intensities.values())
    assert abs(sum(out.expression_scores.values()) - 1.0) < 1e-5
    assert out.tokens.dtype == np.float32 and np.isfinite(out.tokens).all()


def test_tells_a_surprised_window_from_a_resting_one(bridge, ref):
    """Held-out clip (cap13_edit2, not trained on): 0-2 s at rest; 17.6-19.6 s brows up, mouth open."""
    rest, surprise = bridge.run(ref["rest_rows"]), bridge.run(ref["surprise_rows"])
    assert max(rest.expression_scores, key=rest.expression_scores.get) == "neutral"
    s = surprise.expression_scores
    assert s["surprise"] + s["fear"] > s["neutral"]
    assert surprise.cue_intensities["jaw_drop"] > rest.cue_intensities["jaw_drop"] + 0.1
    assert np.abs(surprise.tokens - rest.tokens).mean() > 0.1


def test_frame_order_changes_the_tokens(bridge, ref):
    rows = resample(ref["surprise_rows"])
    a, b = bridge.run(rows), bridge.run(rows[::-1].copy())
    assert not np.allclose(a.tokens, b.tokens, atol=1e-3)


def test_resample_keeps_order_and_repeats_short_windows():
    rows = np.arange(5, dtype=np.float32)[:, None].repeat(3, 1)
    out = resample(rows)
    assert out.shape == (N_FRAMES, 3) and out[0, 0] == 0 and out[-1, 0] == 4
    assert (np.diff(out[:, 0]) >= 0).all() and set(out[:, 0]) == {0, 1, 2, 3, 4}
    long = np.arange(50, dtype=np.float32)[:, None]
    assert np.array_equal(resample(long)[:, 0], np.round(np.linspace(0, 49, N_FRAMES)))


def test_frame_features_layout():
    emb = np.arange(128, dtype=np.float32)
    geometry = np.random.default_rng(0).normal(size=(468, 3)).astype(np.float32)
    intensity = {n: i / 100 for i, n in enumerate(CUE_NAMES)}
    row = frame_features(emb, geometry.ravel(), intensity)
    assert row.shape == (FEATURE_DIM,) and row.dtype == np.float32
    assert np.array_equal(row[:128], emb)
    assert np.array_equal(row[128 : 128 + 3 * len(GEOMETRY_POINTS)], geometry[list(GEOMETRY_POINTS)].ravel())
    assert np.allclose(row[-len(CUE_NAMES):], [intensity[n] for n in CUE_NAMES])


@pytest.mark.parametrize("args, words", [
    ((np.zeros(64), np.zeros(1404), {n: 0.0 for n in CUE_NAMES}), "embedding"),
    ((np.zeros(128), np.zeros((68, 2)), {n: 0.0 for n in CUE_NAMES}), "geometry"),
    ((np.zeros(128), np.zeros(1404), {"jaw_drop": 0.0}), "cue intensities lack"),
])
def test_frame_features_bad_input(args, words):
    with pytest.raises(ValueError, match=words):
        frame_features(*args)


@pytest.mark.parametrize("bad", [
    np.zeros((0, FEATURE_DIM), np.float32),
    np.zeros((16, FEATURE_DIM - 1), np.float32),
    np.zeros(FEATURE_DIM, np.float32),
    np.full((16, FEATURE_DIM), np.nan, np.float32),
    np.zeros((16, FEATURE_DIM), np.int64),
])
def test_run_bad_input_names_the_problem(bridge, bad):
    with pytest.raises(ValueError, match="VisualBridge.run"):
        bridge.run(bad)


def test_fresh_export_matches_pytorch(ref, tmp_path):
    """The export path itself: a seeded, untrained VECB exported the way export/vecb.py does."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    sys.path.insert(0, str(REPO))
    from export.onnx_tools import export_fp32
    from train.vecb import VECB, OnnxVECB, VecbConfig

    torch.manual_seed(0)
    model = OnnxVECB(VECB(VecbConfig())).eval()
    windows = np.stack([resample(ref["rest_rows"]), resample(ref["surprise_rows"])]).astype(np.float32)
    report = export_fp32(model, {"frames": torch.from_numpy(windows[:1])}, tmp_path / "vecb.onnx",
                         ["tokens", "cue_intensities", "expression_scores"], dynamic_axes={"frames": {0: "batch"}},
                         check_feeds=[{"frames": windows[i : i + 1]} for i in range(2)], tolerance=TORCH_TOL)
    assert report.ok and max(report.max_abs_diff.values()) < TORCH_TOL


def test_smiling_sample_reads_happy(bridge):
    """The shared XEmoGPT sample (a smiling woman; not trained on) through the real per-frame pipeline."""
    sample = REPO.parent / "shared" / "data" / "xemogpt_sample" / "sample_00000007.mp4"
    if not sample.exists():
        pytest.skip(f"{sample} is absent (../shared/data is only on the project's machines)")
    import cv2

    from edge_xemo.core.types import Frame
    from edge_xemo.vision.stage import VisualPerception, VisualOptions

    analyzer = VisualPerception(VisualOptions(use_bridge=False, expression_hz=None))  # every frame, as trained
    cap, rows, i = cv2.VideoCapture(str(sample)), [], 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        obs = analyzer.process_frame(Frame(image, i / 25, i))
        if obs.faces:
            f = obs.faces[0]
            rows.append(bridge.frame_features(f.embedding, f.cues.geometry, f.cues.intensity))
        i += 1
    assert len(rows) >= 100
    for start in (0, 25, 50):  # 2 s windows
        out = bridge.run(np.stack(rows[start : start + 50]))
        assert max(out.expression_scores, key=out.expression_scores.get) == "happy"
        assert out.cue_intensities["lip_corner_pull"] > 0.5
