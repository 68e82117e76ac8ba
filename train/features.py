"""Cache of frozen-encoder features, so bridge and decoder stages never re-run the encoders.

An entry is a dict of numpy arrays stored as one `.npz`, keyed by the sha256 of its key parts:
for a clip, (path, mtime, size) of the media file; for an encoder, the sha256 of its ONNX artifact
(so re-exporting an encoder invalidates its features); plus any settings (frame rate, crop size).

    cache = FeatureCache("runs/features")
    feats = cache.for_clip(clip.video, "expression", lambda: encode(clip.video), fps=8)

Entries are written to a temporary file and renamed; an unreadable entry is logged and recomputed.
The encoders are the runtime's own ONNX models (`edge_xemo.core.models.load_session`). Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from edge_xemo.core.models import sha256_of, verified_path

log = logging.getLogger("edge_xemo")


def file_key(path: str | Path) -> dict:
    """Identity of a media file: resolved path, mtime (ns) and size; a missing file raises ValueError."""
    p = Path(path).resolve()
    try:
        st = p.stat()
    except OSError as e:
        raise ValueError(f"cannot key features of {p}: {e.strerror}") from e
    return {"path": str(p), "mtime_ns": st.st_mtime_ns, "size": st.st_size}


def encoder_key(encoder: str | Path) -> dict:
    """Identity of an encoder: the sha256 of a manifest artifact (by name) or of an ONNX file (by path)."""
    p = Path(encoder)
    if p.suffix == ".onnx" and p.exists():
        return {"encoder": p.name, "sha256": sha256_of(p.resolve())}
    return {"encoder": str(encoder), "sha256": sha256_of(verified_path(str(encoder)))}


def _digest(parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class FeatureCache:
    """npz files under `root/<2 hex>/<sha256>.npz`; counts `hits` and `misses` for the caller's logs."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.hits = self.misses = 0

    def path_for(self, key_parts) -> Path:
        h = _digest(key_parts)
        return self.root / h[:2] / f"{h}.npz"

    def cached(self, key_parts, compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The entry for `key_parts` (JSON-able), computing and storing it with `compute()` when absent."""
        path = self.path_for(key_parts)
        if path.exists():
            try:
                with np.load(path, allow_pickle=False) as z:
                    out = {k: z[k] for k in z.files if k != "__key__"}
                self.hits += 1
                return out
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
                log.warning("feature cache entry %s is unreadable (%s): recomputing", path, e)
        self.misses += 1
        out = compute()
        if not isinstance(out, dict) or not all(isinstance(v, np.ndarray) for v in out.values()):
            raise TypeError("compute() must return a dict of numpy arrays")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, __key__=np.array(json.dumps(key_parts, sort_keys=True, default=str)), **out)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return out

    def for_clip(self, clip: str | Path, encoder: str | Path, compute: Callable[[], dict], **settings) -> dict:
        """`cached` keyed by (clip file identity, encoder artifact sha256, settings)."""
        return self.cached({"clip": file_key(clip), "encoder": encoder_key(encoder), "settings": settings}, compute)
