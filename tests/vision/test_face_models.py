"""The ONNX face models against the original MediaPipe .tflite outputs.

`tests/data/face_models_reference.npz` holds real model inputs (frames of the demo clip, letterboxed
for the detector and face crops for the landmark model) with the outputs of the .tflite files from
the mediapipe 0.10.21 wheel, computed by `export/face_models.py` with the TensorFlow Lite
interpreter (TensorFlow is not a runtime or test dependency).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_xemo.vision import faces
from edge_xemo.core.models import MODELS_DIR, RUNTIMES, OpenCvSession, load_onnx, verified_path

REFERENCE = Path(__file__).parents[1] / "data" / "face_models_reference.npz"
BOX_ATOL = 0.02  # detector regressors, in 128-px input units
LOGIT_ATOL = 0.05  # detector logits (|logit| reaches ~100 on background anchors)
LANDMARK_ATOL = 1e-3  # landmark coordinates, in 192-px crop units
PRESENCE_ATOL = 1e-4


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(REFERENCE))


@pytest.mark.parametrize("name", ["face_detector", "face_landmarks"])
def test_sidecar_describes_the_artifact(name):
    entry = json.loads((MODELS_DIR / f"{name}.json").read_text())
    assert entry["source"]["package"] == "mediapipe" and entry["source"]["version"] == "0.10.21"
    assert entry["licence"].startswith("Apache-2.0")
    assert verified_path(name).name == entry["file"]
    measured = entry["metrics"]["max_abs_diff_vs_tflite"]
    assert entry["metrics"]["n_inputs"] >= 50 and all(v < 0.05 for v in measured.values())


def test_detector_matches_tflite(ref):
    sess = load_onnx("face_detector")
    for u8, reg_ref, cls_ref in zip(ref["face_detector/input_u8"], ref["face_detector/regressors"],
                                    ref["face_detector/classificators"]):
        x = u8.astype(np.float32)[None] * (2.0 / 255.0) - 1.0
        reg, cls = sess.run(None, {"input": x})
        np.testing.assert_allclose(reg, reg_ref, atol=BOX_ATOL)
        np.testing.assert_allclose(cls, cls_ref, atol=LOGIT_ATOL)
        # the reference inputs are real faces: both outputs decode to one confident face
        dets = faces.decode_detections(reg[0], cls[0, :, 0], 0.5, 0.3)
        dets_ref = faces.decode_detections(reg_ref[0], cls_ref[0, :, 0], 0.5, 0.3)
        assert len(dets) == len(dets_ref) == 1 and dets[0][1] > 0.8
        np.testing.assert_allclose(dets[0][0], dets_ref[0][0], atol=0.05)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_landmarks_match_tflite(ref, runtime):
    sess = load_onnx("face_landmarks", runtime=runtime)
    for u8, lm_ref, pres_ref in zip(ref["face_landmarks/input_u8"], ref["face_landmarks/conv2d_21"],
                                    ref["face_landmarks/conv2d_31"]):
        lm, pres = sess.run(None, {"input_1": u8.astype(np.float32)[None] / 255.0})
        np.testing.assert_allclose(lm.ravel(), lm_ref.ravel(), atol=LANDMARK_ATOL)
        np.testing.assert_allclose(pres.ravel(), pres_ref.ravel(), atol=PRESENCE_ATOL)
        assert 1.0 / (1.0 + np.exp(-pres.ravel()[0])) > 0.9
        pts = lm.reshape(468, 3)
        assert 0 < pts[:, 0].min() and pts[:, 0].max() < faces.LANDMARK_SIZE  # a face inside the crop


def test_anchor_layout():
    anchors = faces.ssd_anchors()
    assert anchors.shape == (896, 2)
    np.testing.assert_allclose(anchors[0], [1 / 32, 1 / 32])  # first 16x16 cell, stride 8
    np.testing.assert_allclose(anchors[512], [1 / 16, 1 / 16])  # first 8x8 cell, stride 16


def test_the_landmark_runtime_is_opencv_on_the_cpu_and_can_be_chosen(ref):
    assert isinstance(faces.FaceTracker()._landmarker, OpenCvSession)  # auto, and no GPU provider here
    tracker = faces.FaceTracker(faces.FaceTrackerOptions(landmark_runtime="onnxruntime"))
    assert not isinstance(tracker._landmarker, OpenCvSession)
    with pytest.raises(ValueError, match="landmark_runtime"):
        faces.FaceTrackerOptions(landmark_runtime="tflite")
    # one OpenCV network answers each call from its own input, whatever came before
    sess = load_onnx("face_landmarks", runtime="opencv")
    crops = ref["face_landmarks/input_u8"][:2].astype(np.float32) / 255.0
    first = sess.run(None, {"input_1": crops[:1]})[0].copy()
    sess.run(None, {"input_1": crops[1:2]})
    np.testing.assert_array_equal(sess.run(None, {"input_1": crops[:1]})[0], first)
