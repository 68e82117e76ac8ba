"""Fit the judgement's text-borne weight (`text` in the log-linear pool) and set `min_confidence`.

    python -m train.judgement_fit          # after python -m train.text_head; a few seconds

On EMER-V2 rows 0-199, the text head's out-of-fold probabilities (runs/text_head/oof.json, so that the head is
judged on rows it did not train on), the `text` weight (a temperature on the head) is chosen by maximum likelihood
of the row's label on a grid (0.1 to 3 in steps of 0.1). `min_confidence` is 0.5: on a calibrated distribution
(the expected calibration error is reported) a top label below it is more likely wrong than right; the share
of rows below it is reported.
The `decoder` weight is 0 and not fitted: the decoder LoRA was trained on these same rows, so its scores there
are in-sample, and a pooling weight fitted on in-sample predictions overrates the source (stacking needs
out-of-fold level-0 predictions, Wolpert 1992; the text head gets them from its 5 folds, the LoRA has one
training run). The earlier fit on its in-sample scores gave it 0.3, and with it the held-out UAR fell below the
text head's alone (0.359 vs 0.381, docs/judgement.md). Its distribution is still reported in every event.
The perception sources have no labelled clips to be fitted on: their weights stay a priori (see PRIOR_WEIGHTS).
Writes the result into the `text_head` sidecar's `fusion` entry, where edge_xemo.reasoning.judgement reads it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge_xemo.core.types import EMOTIONS
from edge_xemo.core.types import FLOOR
from train.config import skip_stage
from train.decoder_data import load_examples
from train.text_head import MODELS, REPO, ece

GRID = np.round(np.arange(0.1, 3.01, 0.1), 2)
MIN_CONFIDENCE = 0.5


def centred_logs(dist: dict[str, float]) -> np.ndarray:
    """The judgement's per-source contribution at weight 1 (0 for labels the source does not cover)."""
    logs = {k: np.log(max(v, FLOOR)) for k, v in dist.items()}
    mean = np.mean(list(logs.values()))
    return np.array([logs[e] - mean if e in logs else 0.0 for e in EMOTIONS])


def fuse(logs: np.ndarray, weight: float) -> np.ndarray:
    """The pooled distribution of one source at `weight` (rows of centred log-probabilities)."""
    z = weight * logs
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--oof", type=Path, default=REPO / "runs" / "text_head" / "oof.json")
    ap.add_argument("--out", type=Path, default=MODELS, help="folder of the text_head sidecar to write the fusion into")
    ap.add_argument("--smoke", action="store_true", help="rebuild smoke run: --out holds the smoke text head")
    args = ap.parse_args(argv)
    if args.smoke:
        args.oof = args.out.parent / "train.text_head" / "oof.json"
    if not args.oof.exists():
        skip_stage(f"{args.oof} not found: run python -m train.text_head first")  # exit 75: recorded as skipped
    try:
        labels = {e.row: e.label for e in load_examples("train")}
    except FileNotFoundError as e:
        skip_stage(str(e))
    oof = json.loads(args.oof.read_text())
    rows = [r for r in oof["rows"] if r in labels]
    by_row = {r: dict(zip(oof["labels"], p)) for r, p in zip(oof["rows"], oof["probs"])}
    text = np.stack([centred_logs(by_row[r]) for r in rows])
    truth = np.array([EMOTIONS.index(labels[r]) for r in rows])

    def nll(w):
        return float(-np.mean(np.log(fuse(text, w)[np.arange(len(truth)), truth] + 1e-12)))

    best = float(min(GRID, key=nll))
    fused = fuse(text, best)
    conf, right = fused.max(axis=1), fused.argmax(axis=1) == truth
    min_conf = MIN_CONFIDENCE
    report = {
        "weights": {"text": best, "decoder": 0.0},
        "min_confidence": min_conf,
        "fitted_on": "EMER-V2 rows 0-199 (train.decoder_data, %d rows): text head out-of-fold; the decoder is not "
                     "fitted (its LoRA trained on these rows) (python -m train.judgement_fit)" % len(rows),
        "rows_0_199": {
            "nll": round(nll(best), 4),
            "accuracy": round(float(right.mean()), 4),
            "ece": round(ece(fused, truth), 4),
            "rows_below_min_confidence": int((conf < min_conf).sum()),
            "accuracy_below_min_confidence": round(float(right[conf < min_conf].mean()), 4) if (conf < min_conf).any() else None,
            "accuracy_at_or_above_min_confidence": round(float(right[conf >= min_conf].mean()), 4) if (conf >= min_conf).any() else None,
        },
    }
    sidecar_path = (args.out.parent / "train.text_head" if args.smoke else args.out) / "text_head.json"
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["fusion"] = report
    sidecar_path.write_text(json.dumps(sidecar, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
