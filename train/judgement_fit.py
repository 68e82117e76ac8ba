"""Fit the judgement's weights for the text-borne, voice and words sources, set `min_confidence`, fit the smoothing.

    python -m train.judgement_fit          # after train.text_head, train.voice_emotion and train.words_head; ~1 min

On EMER-V2 rows 0-199, the text head's out-of-fold probabilities (runs/text_head/oof.json, so that the head is
judged on rows it did not train on), the `text` weight (a temperature on the head) is chosen by maximum likelihood
of the row's label on a grid (0.1 to 3 in steps of 0.1). `min_confidence` is 0.5: on a calibrated distribution
(the expected calibration error is reported) a top label below it is more likely wrong than right; the share
of rows below it is reported. Both go into the `text_head` sidecar's `fusion` entry.
The `decoder` weight is 0 and not fitted: the decoder LoRA was trained on these same rows, so its scores there
are in-sample, and a pooling weight fitted on in-sample predictions overrates the source (stacking needs
out-of-fold level-0 predictions, Wolpert 1992; the text head gets them from its 5 folds, the LoRA has one
training run). The earlier fit on its in-sample scores gave it 0.3, and with it the held-out UAR fell below the
text head's alone (0.359 vs 0.381, docs/judgement.md). Its distribution is still reported in every event.

The `voice` and `words` weights, then the smoothing's time constant (`time_constant_s`), are chosen on held-in
labelled streams by the balanced log-loss of the judgement (`WEIGHTS`; `TIME_CONSTANTS`, 0 = off): RAVDESS actors
1-20 as live audio-only streams (each actor's utterances in a seeded random order, 1 s apart, the windows of a 1 s
hop) judged from the voice model's out-of-fold distributions (train.voice_emotion fit), and MELD train dialogues as
words-only streams (each line judged when it ends, on the episode clock) from the words head's out-of-fold
distributions. They go into the `voice_emotion` and `words_head` sidecars' `fusion` entries (written after those
models are fitted). The face weights are fitted beside the facial-action head (train/face_blendshapes.py); the faces
have no labelled streams here (CK+ gives peak frames), so the time constant fitted on voice and words serves them.
`edge_xemo.reasoning.judgement` reads every sidecar's `fusion`.
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
TIME_CONSTANTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
"""Smoothing time constants tried, seconds (0: off)."""
WEIGHTS = np.round(np.arange(0.5, 2.01, 0.1), 2)
"""Weights tried for the `voice` and `words` sources."""
Stream = list[tuple[float, dict[str, float], str]]
"""One labelled stream: (time s, a source's distribution, true label) per window, in time order."""


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


def voice_streams() -> list[Stream]:
    """RAVDESS actors 1-20, each as an audio-only stream of its non-calm clean utterances (seeded order, 1 s of
    silence after each), with the windows a 1 s hop gives: (window end, out-of-fold voice distribution, label)."""
    from train import voice_emotion as ve

    meta = dict(np.load(ve.RUNS / "windows_whisper_layers.npz"))
    with np.load(ve.OOF) as oof:
        prob = ve.softmax(oof["z"], float(oof["temperature"]))
    rng = np.random.default_rng(ve.SEED)
    streams = []
    for actor in ve.TRAIN_ACTORS:
        rows = np.flatnonzero((meta["actor"] == actor) & (meta["copy"] == 0) & (meta["emotion"] != "calm"))
        utterances = np.unique(meta["utterance"][rows])
        rng.shuffle(utterances)
        stream, clock = [], 0.0
        for u in utterances:
            mine = rows[meta["utterance"][rows] == u]
            start = meta["start"][mine]
            for i in mine[np.isclose(start % 1.0, 0.0)]:
                stream.append((clock + float(meta["start"][i]) + 2.0, dict(zip(ve.LABELS, prob[i].tolist())), str(meta["emotion"][i])))
            clock += float(start.max()) + 2.0 + 1.0
        streams.append(stream)
    return streams


def _seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return 3600 * int(h) + 60 * int(m) + float(s)


def words_streams() -> list[Stream]:
    """MELD train dialogues as words-only streams: each line judged when it ends (its EndTime, kept increasing), from
    the words head's out-of-fold distribution."""
    import csv

    from train.words_head import MELD

    oof = json.loads((REPO / "runs" / "words_head" / "oof.json").read_text())
    with open(MELD / "train_sent_emo.csv", encoding="utf-8", newline="") as f:
        ends = {int(r["Sr No."]): _seconds(r["EndTime"]) for r in csv.DictReader(f)}
    rows = oof["train"]
    by_dialogue: dict[int, Stream] = {}
    for sr, d, p, truth in zip(rows["sr_no"], rows["dialogue"], rows["probs"], rows["truth"]):
        stream = by_dialogue.setdefault(d, [])
        t = max(ends[sr], stream[-1][0] + 0.1) if stream else ends[sr]
        stream.append((t, dict(zip(oof["labels"], p)), truth))
    return list(by_dialogue.values())


def stream_scores(streams: list[Stream], source: str, tau: float, weight: float = 1.0) -> dict:
    """The live Judge (that one source at `weight`) over every stream with time constant `tau`: balanced log-loss of
    the true label, UAR, label changes per stream minute."""
    from edge_xemo.reasoning.judgement import Judge, JudgementOptions, SourceJudgement

    judge = Judge(JudgementOptions(time_constant_s=tau, weights={source: weight}))
    nll, truth, said, changes, minutes = [], [], [], 0, 0.0
    for stream in streams:
        judge.reset()
        labels = []
        for t, dist, label in stream:
            j = judge.judge([SourceJudgement(source, dist, weight)], t)
            nll.append(-np.log(max(j.distribution[label], FLOOR)))
            truth.append(label)
            labels.append(j.label)
        said += labels
        changes += sum(a != b for a, b in zip(labels, labels[1:]))
        minutes += max(stream[-1][0] - stream[0][0], 1.0) / 60
    nll_, truth_, said_ = np.array(nll), np.array(truth), np.array(said)
    kinds = sorted(set(truth))
    return {
        "balanced_nll": round(float(np.mean([nll_[truth_ == k].mean() for k in kinds])), 4),
        "uar": round(float(np.mean([(said_[truth_ == k] == k).mean() for k in kinds])), 4),
        "label_changes_per_min": round(changes / minutes, 2),
    }


def fit_streams() -> dict[str, dict]:
    """Per sidecar, its `fusion` record: the `voice` and `words` weights, each of least balanced log-loss on its own
    held-in streams unsmoothed (`WEIGHTS`); then, at those weights, `time_constant_s` of least mean balanced log-loss
    over both sets of streams (`TIME_CONSTANTS`), kept beside the voice model. With the tables."""
    sets = {"ravdess_actors_1_20_voice": (voice_streams(), "voice"), "meld_train_words": (words_streams(), "words")}
    weights, by_weight = {}, {}
    for name, (streams, source) in sets.items():
        by_weight[name] = {str(w): stream_scores(streams, source, 0.0, float(w))["balanced_nll"] for w in WEIGHTS}
        weights[source] = float(min(WEIGHTS, key=lambda w: by_weight[name][str(w)]))
    table = {str(tau): {name: stream_scores(streams, source, tau, weights[source]) for name, (streams, source) in sets.items()}
             for tau in TIME_CONSTANTS}
    best = min(TIME_CONSTANTS, key=lambda tau: np.mean([r["balanced_nll"] for r in table[str(tau)].values()]))
    windows = {name: sum(map(len, streams)) for name, (streams, _) in sets.items()}
    where = (f"held-in labelled streams, out-of-fold distributions: RAVDESS actors 1-20 audio-only "
             f"({windows['ravdess_actors_1_20_voice']} windows of a 1 s hop), MELD train dialogues words-only "
             f"({windows['meld_train_words']} lines); least balanced log-loss (python -m train.judgement_fit)")
    return {
        "voice_emotion": {"weights": {"voice": weights["voice"]}, "time_constant_s": best, "fitted_on": where,
                          "weight_balanced_nll": by_weight["ravdess_actors_1_20_voice"], "streams": table},
        "words_head": {"weights": {"words": weights["words"]}, "fitted_on": where,
                       "weight_balanced_nll": by_weight["meld_train_words"]},
    }


def fit_text(oof_path: Path) -> dict | str:
    """The `text` weight and `min_confidence` (the `text_head` sidecar's `fusion`), or why they cannot be fitted."""
    if not oof_path.exists():
        return f"{oof_path} not found: run python -m train.text_head first"
    try:
        labels = {e.row: e.label for e in load_examples("train")}
    except FileNotFoundError as e:
        return str(e)
    oof = json.loads(oof_path.read_text())
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
    return {
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


def _write_fusion(sidecar_path: Path, record: dict) -> None:
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["fusion"] = record
    sidecar_path.write_text(json.dumps(sidecar, indent=1) + "\n")
    print(json.dumps(record, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--oof", type=Path, default=REPO / "runs" / "text_head" / "oof.json")
    ap.add_argument("--out", type=Path, default=MODELS, help="folder of the text_head sidecar to write the fusion into")
    ap.add_argument("--smoke", action="store_true", help="rebuild smoke run: --out holds the smoke text head")
    args = ap.parse_args(argv)
    if args.smoke:
        args.oof = args.out.parent / "train.text_head" / "oof.json"
    skipped = []
    text = fit_text(args.oof)
    if isinstance(text, str):
        skipped.append(text)
    else:
        _write_fusion((args.out.parent / "train.text_head" if args.smoke else args.out) / "text_head.json", text)
    from train import voice_emotion as ve

    if args.smoke or not (ve.OOF.exists() and (REPO / "runs" / "words_head" / "oof.json").exists()):
        skipped.append("smoothing: no held-in streams (python -m train.voice_emotion fit, python -m train.words_head)")
    else:
        for name, record in fit_streams().items():
            _write_fusion(ve.MODELS / f"{name}.json", record)
    if len(skipped) == 2:
        skip_stage("; ".join(skipped))  # exit 75: recorded as skipped
    for why in skipped:
        print(f"not fitted: {why}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
