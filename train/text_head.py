"""The judgement's text source: a logistic-regression head over all-MiniLM-L6-v2 embeddings of cue text.

    python -m train.text_head            # fit on EMER-V2 rows 0-199, measure on rows 200-249, write the artifact

Each EMER-V2 row is split by the rule extractor (train.decoder_data) into visual cues, vocal cues and
subtitle; `edge_xemo.reasoning.judgement.evidence_text` lays them out exactly as the runtime does for a
window, MiniLM (the ONNX encoder the runtime runs) embeds the text, and a multinomial logistic regression
(scikit-learn, lbfgs) maps it to the labels the rows use. Its L2 strength is chosen by 5-fold
cross-validated log-loss on the training rows; the out-of-fold probabilities are kept
(`runs/text_head/oof.json`) so that the fusion weights (train.judgement_fit) are fitted on predictions
the head did not train on. Writes edge_xemo/models/text_head.npy and its sidecar text_head.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge_xemo.core.models import sha256_of
from edge_xemo.reasoning.embeddings import MiniLMEmbedder
from edge_xemo.reasoning.judgement import evidence_text
from train.config import skip_stage
from train.decoder_data import load_examples

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "edge_xemo" / "models"
C_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
"""Inverse L2 strengths tried (scikit-learn's C); the best cross-validated log-loss wins."""
FOLDS = 5
SEED = 0


def _texts(examples) -> list[str]:
    return [evidence_text(e.visual, e.auditory, e.subtitle) for e in examples]


def calibration_error(conf: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: top-label confidences against whether the label was right
    (equal-width confidence bins)."""
    conf, right = np.asarray(conf, dtype=np.float64), np.asarray(right, dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(right[m].mean() - conf[m].mean())
    return float(total)


def ece(probs: np.ndarray, truth: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of the top label of each row of `probs` against class indices `truth`."""
    return calibration_error(probs.max(axis=1), probs.argmax(axis=1) == truth, bins)


def main(argv: list[str] | None = None) -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=MODELS, help="folder for text_head.npy and text_head.json")
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "text_head", help="folder for the out-of-fold predictions")
    ap.add_argument("--smoke", action="store_true", help="rebuild smoke run: the same fit (30 s), all outputs in --out")
    args = ap.parse_args(argv)
    if args.smoke:
        args.runs = args.out
    try:
        train, held = load_examples("train"), load_examples("heldout")
    except FileNotFoundError as e:
        skip_stage(str(e))  # exit 75: train.rebuild records the stage as skipped
    embed = MiniLMEmbedder.create_from_options()
    x_train, x_held = embed(_texts(train)), embed(_texts(held))
    labels = tuple(sorted({e.label for e in train}))
    y_train = np.array([labels.index(e.label) for e in train])
    folds = list(StratifiedKFold(FOLDS, shuffle=True, random_state=SEED).split(x_train, y_train))

    def out_of_fold(c: float) -> np.ndarray:
        oof = np.zeros((len(train), len(labels)))
        for fit, test in folds:
            model = LogisticRegression(C=c, max_iter=2000).fit(x_train[fit], y_train[fit])
            oof[test] = model.predict_proba(x_train[test])
        return oof

    losses = {c: float(-np.mean(np.log(out_of_fold(c)[np.arange(len(train)), y_train] + 1e-12))) for c in C_GRID}
    best = min(losses, key=losses.get)
    oof = out_of_fold(best)
    model = LogisticRegression(C=best, max_iter=2000).fit(x_train, y_train)
    held_known = [i for i, e in enumerate(held) if e.label in labels]
    y_held = np.array([labels.index(held[i].label) for i in held_known])
    p_held = model.predict_proba(x_held[held_known])
    metrics = {
        "cv_log_loss": {str(c): round(v, 4) for c, v in losses.items()},
        "chosen_C": best,
        "cv_accuracy_rows_0_199": round(float((oof.argmax(1) == y_train).mean()), 4),
        "cv_ece_rows_0_199": round(ece(oof, y_train), 4),
        "heldout_accuracy_rows_200_249": round(float((p_held.argmax(1) == y_held).mean()), 4),
        "heldout_ece_rows_200_249": round(ece(p_held, y_held), 4),
        "heldout_rows": len(held_known),
        "majority_label_heldout_accuracy": round(float(np.max(np.bincount(y_held)) / len(y_held)), 4),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "text_head.npy"
    # one .npy array [weight | bias] (no zip timestamps, so a rebuild writes the same bytes); labels in the sidecar
    np.save(path, np.hstack([model.coef_, model.intercept_[:, None]]).astype(np.float32))
    args.runs.mkdir(parents=True, exist_ok=True)
    (args.runs / "oof.json").write_text(json.dumps({
        "labels": labels, "rows": [e.row for e in train], "truth": [e.label for e in train],
        "probs": np.round(oof, 6).tolist()}))
    sidecar = {
        "name": "text_head",
        "file": "text_head.npy",
        "sha256": sha256_of(path),
        "source": {"training_command": "python -m train.text_head", "code": ["train/text_head.py",
                   "edge_xemo/reasoning/judgement.py", "edge_xemo/reasoning/embeddings.py"]},
        "licence": "Apache-2.0 (project-trained weights; the EMER-V2 descriptions it was fitted on are research data, not shipped)",
        "terms": {"data": ["EMER-V2 expert descriptions (MER2023 clips)"], "licence": "research use (EMER-V2 / MER2023 terms)", "commercial_use": False},
        "inputs": [{"name": "embedding", "shape": [384], "dtype": "float32",
                    "what": "all-MiniLM-L6-v2 embedding (edge_xemo.reasoning.embeddings) of judgement.evidence_text(...)"}],
        "outputs": [{"name": "probabilities", "shape": [len(labels)], "dtype": "float32", "labels": list(labels)}],
        "layout": "float32 array (n_labels, 385): logistic-regression weights (384 columns) then the bias",
        "trained_on": {"data": "EMER-V2 rows 0-199 (../shared/data/emer_v2), split by train.decoder_data",
                       "rows": len(train), "labels": {lab: int((y_train == i).sum()) for i, lab in enumerate(labels)}},
        "how": f"scikit-learn LogisticRegression (multinomial, lbfgs, C={best} by {FOLDS}-fold CV log-loss, seed {SEED})",
        "metrics": metrics,
    }
    (args.out / "text_head.json").write_text(json.dumps(sidecar, indent=1) + "\n")
    print(json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
