"""Fit the judgement's text-borne weights: `text` and `decoder` in the log-linear pool, and `min_confidence`.

    python -m train.judgement_fit          # after python -m train.text_head; about 2 min on 2 cores

On EMER-V2 rows 0-199 (the text head's out-of-fold probabilities from runs/text_head/oof.json, so that the
head is judged on rows it did not train on; the decoder's calibrated label scores after the rendered cue
sections, edge_xemo.reasoning.decoder with its default options and no judgement), the two weights are chosen
by maximum likelihood of the row's label on a grid (0 to 3 in steps of 0.1). `min_confidence` is 0.5: on a
calibrated distribution (the expected calibration error is reported) a top label below it is more likely
wrong than right; the share of rows below it is reported.
The perception sources have no labelled clips here: their weights stay a priori (see JudgementOptions).
Writes the result into the `text_head` sidecar's `fusion` entry, where edge_xemo.reasoning.judgement reads it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge_xemo.core.types import EMOTIONS
from edge_xemo.reasoning.decoder import CueDecoder, DecoderOptions
from edge_xemo.reasoning.judgement import FLOOR
from train.config import skip_stage
from train.decoder_data import load_examples
from train.text_head import MODELS, REPO, ece

GRID = np.round(np.arange(0.0, 3.01, 0.1), 2)
MIN_CONFIDENCE = 0.5


def centred_logs(dist: dict[str, float]) -> np.ndarray:
    """The judgement's per-source contribution at weight 1 (0 for labels the source does not cover)."""
    logs = {k: np.log(max(v, FLOOR)) for k, v in dist.items()}
    mean = np.mean(list(logs.values()))
    return np.array([logs[e] - mean if e in logs else 0.0 for e in EMOTIONS])


def fuse(parts: list[np.ndarray], weights) -> np.ndarray:
    z = sum(w * p for w, p in zip(weights, parts))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--oof", type=Path, default=REPO / "runs" / "text_head" / "oof.json")
    # llama.cpp threads: the label scores do not depend on the count (docs/decoder.md), the time does: under
    # load 2 threads took 1794 s for this stage in a full rebuild, where one idle thread needs about 2 min
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=MODELS, help="folder of the text_head sidecar to write the fusion into")
    ap.add_argument("--smoke", action="store_true", help="rebuild smoke run: 24 rows, --out holds the smoke text head")
    args = ap.parse_args(argv)
    if args.smoke:
        args.oof = args.out.parent / "train.text_head" / "oof.json"
    try:
        train = load_examples("train")[: 24 if args.smoke else None]
    except FileNotFoundError as e:
        skip_stage(str(e))  # exit 75: train.rebuild records the stage as skipped
    if not args.oof.exists():
        skip_stage(f"{args.oof} not found: run python -m train.text_head first")
    oof = json.loads(args.oof.read_text())
    rows = set(oof["rows"])
    train = [e for e in train if e.row in rows]
    by_row = {r: dict(zip(oof["labels"], p)) for r, p in zip(oof["rows"], oof["probs"])}
    decoder = CueDecoder(DecoderOptions(n_threads=args.threads, judgement=None))
    try:
        dec = [decoder.explain_cues(list(e.visual), list(e.auditory), e.subtitle).scores for e in train]
    finally:
        decoder.close()
    text = np.stack([centred_logs(by_row[e.row]) for e in train])
    dcd = np.stack([centred_logs(d) for d in dec])
    truth = np.array([EMOTIONS.index(e.label) for e in train])

    def nll(w):
        return float(-np.mean(np.log(fuse([text, dcd], w)[np.arange(len(truth)), truth] + 1e-12)))

    best = min(((wt, wd) for wt in GRID for wd in GRID if wt + wd > 0), key=nll)
    fused = fuse([text, dcd], best)
    conf, right = fused.max(axis=1), fused.argmax(axis=1) == truth
    min_conf = MIN_CONFIDENCE
    report = {
        "weights": {"text": float(best[0]), "decoder": float(best[1])},
        "min_confidence": min_conf,
        "fitted_on": "EMER-V2 rows 0-199 (train.decoder_data, %d rows): text head out-of-fold, decoder rendered "
                     "sections (python -m train.judgement_fit)" % len(train),
        "rows_0_199": {
            "nll": round(nll(best), 4),
            "accuracy_fused": round(float(right.mean()), 4),
            "accuracy_text": round(float((text.argmax(1) == truth).mean()), 4),
            "accuracy_decoder": round(float((dcd.argmax(1) == truth).mean()), 4),
            "ece_fused": round(ece(fused, truth), 4),
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
