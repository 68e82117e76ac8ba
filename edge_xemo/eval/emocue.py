"""EmoCue-360: cue-level precision / recall / F1 of predicted vs reference cue lists (XEmoGPT's metric).

For each sample and modality (visual, auditory, emotional): S = cosine(reference cues x predicted cues)
with all-MiniLM-L6-v2 embeddings; recall = mean over reference cues of the row max, precision = mean
over predicted cues of the column max, F1 = their harmonic mean (0 when both are 0). Scores are averaged
over samples, F1 included (mean of per-sample F1). No threshold. As in the reference implementation
(XEmoGPT `EmoCue-360/compute_prf.py`):
- auditory cues containing "text" (the subtitle; case-sensitive substring) are dropped on both sides;
- a sample whose reference list for a modality is empty is skipped for that modality;
- an empty (or missing) predicted list scores 0;
- a prediction without an `emotional` key scores 0 on emotional, even when the reference list is empty.
Only names present in both files are scored; the others are reported.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

import numpy as np

log = logging.getLogger(__name__)

MODALITIES = ("visual", "auditory", "emotional")
SUBTITLE_MARKER = "text"
"""Auditory cues containing this substring describe the subtitle and are not scored."""

Embed = Callable[[Sequence[str]], np.ndarray]
"""Sentences -> (n, d) embeddings; rows need not be normalized."""


def _cue_list(cues, name: str, modality: str, side: str) -> list[str]:
    if cues is None:
        return []
    if isinstance(cues, str) or not isinstance(cues, (list, tuple)):
        raise ValueError(f"{side} cues of {name!r}/{modality} must be a list of strings, got {type(cues).__name__}")
    for c in cues:
        if not isinstance(c, str):
            raise ValueError(f"{side} cue of {name!r}/{modality} is not a string: {c!r:.60}")
    return list(cues)


def recall_precision(gt: Sequence[str], pred: Sequence[str], vectors: Mapping[str, np.ndarray]) -> tuple[float, float]:
    """(recall, precision) of one sample's cue lists; `vectors` maps each cue to a unit vector."""
    if not pred:
        return 0.0, 0.0
    g = np.stack([vectors[c] for c in gt])
    p = np.stack([vectors[c] for c in pred])
    sim = g @ p.T  # (n_gt, n_pred)
    return float(sim.max(axis=1).mean()), float(sim.max(axis=0).mean())


def _f1(r: float, p: float) -> float:
    return 2 * r * p / (r + p) if r + p > 0 else 0.0


def _embed_all(texts: set[str], embed: Embed) -> dict[str, np.ndarray]:
    if not texts:
        return {}
    order = sorted(texts)
    vecs = np.asarray(embed(order), dtype=np.float64)
    if vecs.shape[0] != len(order):
        raise ValueError(f"embedding function returned {vecs.shape[0]} rows for {len(order)} cues")
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    return dict(zip(order, vecs / np.maximum(norms, 1e-12)))


def score(pred: Mapping[str, Mapping], ref: Mapping[str, Mapping], embed: Embed) -> dict:
    """EmoCue-360 over the names present in both `pred` and `ref` ({name: {"visual": [...], ...}}).

    Returns {"visual"|"auditory"|"emotional": {"precision", "recall", "f1", "n"}, "names": {"scored",
    "only_in_pred", "only_in_ref"}}; a modality with no scored sample has None values and n = 0.
    """
    common = [n for n in pred if n in ref]
    names: dict[str, Any] = {
        "scored": len(common),
        "only_in_pred": sorted(n for n in pred if n not in ref),
        "only_in_ref": sorted(n for n in ref if n not in pred),
    }
    if names["only_in_pred"] or names["only_in_ref"]:
        log.warning(
            "EmoCue-360: %d names only in predictions, %d only in references (not scored)",
            len(names["only_in_pred"]),
            len(names["only_in_ref"]),
        )
    pairs: dict[str, list[tuple[list[str], list[str] | None]]] = {m: [] for m in MODALITIES}
    for name in common:
        p_entry, r_entry = pred[name], ref[name]
        for side, entry in (("predicted", p_entry), ("reference", r_entry)):
            if not isinstance(entry, Mapping):
                raise ValueError(
                    f"{side} entry of {name!r} must be an object with cue lists, got {type(entry).__name__}"
                )
        for m in MODALITIES:
            gt = _cue_list(r_entry.get(m), name, m, "reference")
            pr = _cue_list(p_entry.get(m), name, m, "predicted") if m in p_entry else None
            if m == "auditory":
                gt = [c for c in gt if SUBTITLE_MARKER not in c]
                pr = [c for c in pr if SUBTITLE_MARKER not in c] if pr is not None else None
            pairs[m].append((gt, pr))
    vectors = _embed_all({c for m in MODALITIES for gt, pr in pairs[m] for c in gt + (pr or [])}, embed)
    out: dict = {}
    for m in MODALITIES:
        rs, ps, fs = [], [], []
        for gt, pr in pairs[m]:
            if m == "emotional" and pr is None:
                r = p = 0.0  # the reference scores a missing emotional list 0 before looking at gt
            elif not gt:
                continue
            else:
                r, p = recall_precision(gt, pr or [], vectors)
            rs.append(r)
            ps.append(p)
            fs.append(_f1(r, p))
        n = len(rs)
        out[m] = {
            "precision": float(np.mean(ps)) if n else None,
            "recall": float(np.mean(rs)) if n else None,
            "f1": float(np.mean(fs)) if n else None,
            "n": n,
        }
    out["names"] = names
    return out
