"""Probability distributions over labels, as the learned heads of every stage give them."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax (float64)."""
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def label_distribution(logits: np.ndarray, labels: Sequence[str], temperature: float = 1.0) -> dict[str, float]:
    """One example's logits -> its calibrated probabilities by label (softmax of logits / temperature)."""
    return dict(zip(labels, softmax(np.asarray(logits, np.float64) / temperature).tolist()))
