"""VECB (Video Emotional Cue Bridge) at run time: per-frame face features of one window -> visual
tokens for the decoder's projector, window cue intensities and expression scores. numpy + onnxruntime.

Usage: build one feature row per frame of the primary face, then call the
bridge once per window with the rows in time order:

    bridge = VisualBridge(threads=1, provider="cpu")
    rows = [bridge.frame_features(f.embedding, f.cues.geometry, f.cues.intensity)
            for f in frames if f.embedding is not None]        # FaceObservation of one face
    out = bridge.run(np.stack(rows))                           # (T, F), any T >= 1
    out.tokens             # (8, 128) float32 -> ModalityResult.tokens
    out.cue_intensities    # {"inner_brow_raise": 0.1, ...} window-level, in [0, 1], names = face_cues.CUE_NAMES
    out.expression_scores  # {"angry": ..., "neutral": ...} window-level, sums to 1

A row is [expression embedding (128) | aligned landmark geometry at GEOMETRY_POINTS, x y z in
inter-ocular units | per-frame cue intensities in face_cues.CUE_NAMES order]: the embedding from
`expression.ExpressionEncoder`, geometry and intensities from `face_cues.FaceCueReader.update`.
The graph sees N_FRAMES = 16 frames: a window with another count is resampled to 16 evenly spaced
frames (repeats when it has fewer), as in training. The model (`train/vecb.py`) was trained on
2 s windows at 25 fps; it has no state, so `reset()` does nothing and exists for symmetry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..core.models import ModelError, load_session, resolve
from .expression import EMBEDDING_DIM
from .face_cues import CUE_NAMES

N_FRAMES = 16
GEOMETRY_POINTS = (
    10,
    152,
    1,
    4,
    98,
    327,  # forehead, chin, nose tip and bridge, nose wings
    70,
    63,
    105,
    66,
    107,
    300,
    293,
    334,
    296,
    336,  # brows, subject's right then left
    33,
    160,
    158,
    133,
    153,
    144,
    263,
    387,
    385,
    362,
    380,
    373,  # eye corners and lids
    61,
    291,
    0,
    17,
    13,
    14,
    78,
    308,
    37,
    267,
    84,
    314,  # mouth corners, outer and inner lips
    50,
    280,
    234,
    454,
    172,
    397,  # cheeks, face sides, jaw
)
"""Landmark indices of MediaPipe's 468-point mesh whose aligned (x, y, z) go into a frame row."""
FEATURE_DIM = EMBEDDING_DIM + 3 * len(GEOMETRY_POINTS) + len(CUE_NAMES)


@dataclass(frozen=True, slots=True)
class VecbOutput:
    """One window through the bridge."""

    tokens: np.ndarray  # (n_tokens, d) float32
    cue_intensities: dict[str, float]
    expression_scores: dict[str, float]
    n_frames: int  # frames the window had before resampling to N_FRAMES
    latency_ms: dict[str, float] = field(default_factory=dict)


def frame_features(embedding: np.ndarray, geometry: np.ndarray, intensity: Mapping[str, float]) -> np.ndarray:
    """One frame row (FEATURE_DIM,) float32 from the expression embedding (128,), the aligned geometry
    ((468, 3) or its flat (1404,) form, `FaceCueFrame.geometry`) and the cue intensities by name."""
    emb = np.asarray(embedding, np.float32).reshape(-1)
    if emb.shape != (EMBEDDING_DIM,):
        raise ValueError(f"expression embedding must have {EMBEDDING_DIM} values, got shape {np.shape(embedding)}")
    geo = np.asarray(geometry, np.float32)
    if geo.size != 468 * 3:
        raise ValueError(f"geometry must be the aligned 468x3 landmarks, got shape {geo.shape}")
    missing = [n for n in CUE_NAMES if n not in intensity]
    if missing:
        raise ValueError(f"cue intensities lack {', '.join(missing)}")
    cues = np.array([intensity[n] for n in CUE_NAMES], np.float32)
    return np.concatenate([emb, geo.reshape(468, 3)[list(GEOMETRY_POINTS)].ravel(), cues])


def resample(rows: np.ndarray, n: int = N_FRAMES) -> np.ndarray:
    """`n` evenly spaced rows of (T, F) in time order (rows repeat when T < n)."""
    idx = np.round(np.linspace(0, len(rows) - 1, n)).astype(np.int64)
    return rows[idx]


class VisualBridge:
    """ONNX session of the VECB (manifest artifact `vecb`, or `vecb_int8` when shipped).

    threads: onnxruntime intra-op threads; provider: "cpu" | "cuda" | "tensorrt" | "auto".
    """

    def __init__(self, threads: int = 1, provider: str = "cpu", model: str = "vecb"):
        if model not in ("vecb", "vecb_int8"):
            raise ValueError(f"unknown VECB model {model!r}; choose vecb or vecb_int8")
        entry = resolve(model).entry
        layout = entry["frame_features"]
        if (
            tuple(layout["cue_names"]) != CUE_NAMES
            or tuple(layout["geometry_points"]) != GEOMETRY_POINTS
            or layout["embedding_dim"] != EMBEDDING_DIM
        ):
            raise ModelError(
                f"VECB model {model!r} was trained on another frame-feature layout than "
                "edge_xemo.vision.vecb / face_cues define: re-train it (train/vecb.py)"
            )
        outputs = {o["name"]: o for o in entry["outputs"]}
        self.cue_names: tuple[str, ...] = tuple(outputs["cue_intensities"]["labels"])
        self.expression_labels: tuple[str, ...] = tuple(outputs["expression_scores"]["labels"])
        self.session = load_session(model, threads, provider)

    frame_features = staticmethod(frame_features)

    def reset(self) -> None:
        """The bridge keeps no state between windows."""

    def run(self, frame_tokens: np.ndarray) -> VecbOutput:
        """One window: frame rows (T, FEATURE_DIM) in time order -> tokens, cue intensities, expression scores."""
        t0 = time.perf_counter()
        x = np.asarray(frame_tokens)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != FEATURE_DIM:
            raise ValueError(f"VisualBridge.run expects frame rows (T, {FEATURE_DIM}) with T >= 1, got shape {x.shape}")
        if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
            raise ValueError("VisualBridge.run expects finite float frame rows")
        frames = resample(x.astype(np.float32, copy=False))[None]
        tokens, cues, expr = self.session.run(["tokens", "cue_intensities", "expression_scores"], {"frames": frames})
        return VecbOutput(
            tokens=tokens[0].astype(np.float32, copy=False),
            cue_intensities={n: float(v) for n, v in zip(self.cue_names, cues[0])},
            expression_scores={n: float(v) for n, v in zip(self.expression_labels, expr[0])},
            n_frames=int(x.shape[0]),
            latency_ms={"vecb": (time.perf_counter() - t0) * 1e3},
        )
