"""What the visual stage saw in one frame: each tracked face's landmarks, cue readings and expression output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.types import ResultCode
from .face_cues import FaceCueFrame


@dataclass(frozen=True, slots=True)
class FaceObservation:
    """One face in one frame: landmarks (478, 3) in pixels, cue readings, optional expression output."""

    face_id: int
    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    cues: FaceCueFrame
    expression: np.ndarray | None = None  # (n_labels,) probabilities
    embedding: np.ndarray | None = None  # (d,) expression-encoder embedding
    expression_t: float | None = None  # time of the frame the encoder saw (earlier than `cues.t` when carried)

    @property
    def encoded(self) -> bool:
        """Whether the expression encoder ran on this very frame (not scores carried from an earlier one)."""
        return self.expression_t is not None and self.expression_t == self.cues.t


@dataclass(frozen=True, slots=True)
class VisualObservation:
    """What the visual stage saw in one frame; `code` (and `message`) say why `faces` is empty."""

    t: float
    faces: tuple[FaceObservation, ...]
    code: ResultCode | None
    message: str | None
    latency_ms: dict[str, float]
