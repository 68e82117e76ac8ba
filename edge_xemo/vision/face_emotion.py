"""Emotion from a window's facial actions: a linear head over MediaPipe's blendshape scores above the person's
neutral (artifact `blendshape_emotion`, fitted on CK+ faces and neutral talkers by `train/face_blendshapes.py`),
calibrated with the temperature fitted on subject-out predictions. It becomes the judgement's `facial_actions`
distribution; the EMFACS prototypes of the window's cues still say which actions carried its label."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.distributions import label_distribution
from ..core.models import ModelError, resolve, verified_path
from .faces import BLENDSHAPES


@dataclass(frozen=True)
class BlendshapeEmotion:
    weights: np.ndarray  # (52, n) with the standardisation folded in
    bias: np.ndarray  # (n,)
    labels: tuple[str, ...]
    temperature: float

    @classmethod
    def load(cls) -> BlendshapeEmotion:
        entry = resolve("blendshape_emotion").entry
        table = np.load(verified_path("blendshape_emotion")).astype(np.float64)
        if table.shape != (len(BLENDSHAPES) + 1, len(entry["outputs"][0]["labels"])):
            raise ModelError(f"blendshape_emotion has shape {table.shape}, not its sidecar's layout")
        return cls(table[:-1], table[-1], tuple(entry["outputs"][0]["labels"]), float(entry["temperature"]))

    def __call__(self, above_neutral: np.ndarray) -> dict[str, float]:
        """A window's mean blendshape scores above neutral (52,) -> calibrated probabilities by label."""
        return label_distribution(
            np.asarray(above_neutral, np.float64) @ self.weights + self.bias, self.labels, self.temperature
        )
