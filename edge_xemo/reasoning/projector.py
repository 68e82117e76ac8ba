"""Per-modality projectors (ONNX): bridge tokens (n, d_bridge) -> decoder embeddings (n, n_embd).

They are trained in train/ and shipped as manifest artifacts `projector_visual` and
`projector_audio`. A projector that is not in the manifest is simply absent: the decoder then
reads the cue text and subtitle only (and logs it once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.models import ModelError, load_manifest, load_session

PROJECTOR_NAMES = {"video": "projector_visual", "audio": "projector_audio"}
"""Manifest artifact name of each slot's projector."""


@dataclass(frozen=True, slots=True)
class Projector:
    """An ONNX projector session; input (n, d_in) or (1, n, d_in), output width `out_dim`."""

    name: str
    session: Any
    input_name: str
    batched: bool
    in_dim: int | None
    out_dim: int | None

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        """Project (n, d_in) bridge tokens to (n, out_dim) float32 decoder embeddings."""
        x = np.asarray(tokens, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"{self.name}: tokens must be a non-empty (n, d) array, got shape {x.shape}")
        if self.in_dim is not None and x.shape[1] != self.in_dim:
            raise ValueError(f"{self.name}: tokens have width {x.shape[1]}, the projector expects {self.in_dim}")
        if not np.isfinite(x).all():
            raise ValueError(f"{self.name}: tokens contain NaN or inf")
        y = self.session.run(None, {self.input_name: x[None] if self.batched else x})[0]
        y = np.asarray(y, dtype=np.float32).reshape(-1, y.shape[-1])
        return np.ascontiguousarray(y)


def load_projector(name: str, threads: int = 1, provider: str = "cpu", manifest: dict | None = None):
    """The projector artifact `name`, or None when the manifest has no such artifact.

    A manifest entry whose file is missing or corrupt raises ModelError (a broken install).
    """
    manifest = manifest if manifest is not None else load_manifest()
    if name not in manifest.get("artifacts", {}):
        return None
    session = load_session(name, threads, provider)
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or not outputs:
        raise ModelError(f"projector {name!r} must have one input and one output, has {len(inputs)} inputs")
    shape = inputs[0].shape
    if len(shape) not in (2, 3):
        raise ModelError(f"projector {name!r} input must be (n, d) or (1, n, d), has shape {shape}")
    out_dim = outputs[0].shape[-1]

    def static(v):
        return v if isinstance(v, int) else None

    return Projector(name, session, inputs[0].name, len(shape) == 3, static(shape[-1]), static(out_dim))
