"""The judgement's words source: a logistic-regression head over all-MiniLM-L6-v2 embeddings of what was said.

    python -m train.words_head           # fit on MELD train, choose and measure on MELD dev, write the artifact
    python -m train.words_head --smoke   # the same code path at toy size, all outputs in --out

Data: MELD (../shared/data/meld, GPL-3.0, Friends dialogue), `train_sent_emo.csv` to fit, `dev_sent_emo.csv`
to choose and measure. Each utterance is normalized (edge_xemo.reasoning.words.normalize_text: mojibake and
typographic quotes -> ASCII) and embedded by the MiniLM encoder the runtime runs (embeddings cached under
runs/words_head/: the first run embeds ~30k texts, ~3 min on 2 cores; a rerun takes ~1 min). MELD labels map
to the project's: neutral, joy->happy, sadness->sad, anger->angry, surprise, fear, disgust. The head says
nothing about "worried" (MELD has no such label): it gives that label no score,
so the judgement's pooling leaves it untouched.

A multinomial logistic regression (scikit-learn, lbfgs, balanced class weights: the target is UAR, train
is imbalanced) is fitted for each C in C_GRID, with and without dialogue context (the preceding 1 or 2
utterances of the same dialogue, embedded joined with the utterance, as the runtime would see the previous
words of its stream; no speaker labels). C and the context are chosen by dev UAR; context is kept only
when it gains >= CONTEXT_MARGIN dev UAR and also gains on train's out-of-fold UAR (dev is small: 22 disgust
rows). A temperature is fitted on the out-of-fold logits of 5-fold cross-validation on train (folds grouped by
dialogue); those probabilities and dev's go to runs/words_head/oof.json for a later fusion fit.
Writes edge_xemo/models/words_head.npy and its sidecar words_head.json (metrics, terms, parity examples).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_xemo.core.models import resolve, sha256_of
from edge_xemo.reasoning.embeddings import EmbedderOptions, MiniLMEmbedder
from edge_xemo.core.distributions import softmax
from edge_xemo.reasoning.words import WordsHead, joined_context, normalize_text
from train.config import skip_stage
from train.text_head import ece

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "edge_xemo" / "models"
MELD = REPO.parent / "shared" / "data" / "meld"
MELD_TO_LABEL = {
    "neutral": "neutral",
    "joy": "happy",
    "sadness": "sad",
    "anger": "angry",
    "surprise": "surprise",
    "fear": "fear",
    "disgust": "disgust",
}
LABELS = ("neutral", "happy", "sad", "angry", "surprise", "fear", "disgust")  # edge_xemo.core.types.EMOTIONS order
C_GRID = (0.0625, 0.125, 0.25, 0.5, 1.0, 2.0)
"""Inverse L2 strengths tried (scikit-learn's C); the best dev UAR wins."""
CONTEXT_TURNS = (0, 1, 2)
"""Preceding utterances joined before the utterance for the second embedding (0: no context)."""
CONTEXT_MARGIN = 0.01
FOLDS = 5
SEED = 0
EXAMPLES = ("I am so happy for you!", "Get out of my room, I hate you!", "Okay.")
"""Sentences whose training-side probabilities the sidecar keeps (runtime parity test)."""


@dataclass(frozen=True, slots=True)
class Row:
    sr: int
    dialogue: int
    utterance: int
    text: str
    before: tuple[str, ...]  # the dialogue's preceding utterances, nearest last
    label: str


def load_meld(path: Path, every: int = 1) -> list[Row]:
    with open(path, encoding="utf-8", newline="") as f:
        raw = list(csv.DictReader(f))
    text = {(int(r["Dialogue_ID"]), int(r["Utterance_ID"])): normalize_text(r["Utterance"]) for r in raw}
    rows = []
    for r in raw[::every]:
        d, u = int(r["Dialogue_ID"]), int(r["Utterance_ID"])
        before = [text.get((d, u - k)) for k in (2, 1)]
        rows.append(Row(int(r["Sr No."]), d, u, text[d, u], tuple(t for t in before if t), MELD_TO_LABEL[r["Emotion"]]))
    return rows


def embed_cached(embed: MiniLMEmbedder, texts: list[str], cache: Path) -> np.ndarray:
    """MiniLM rows for `texts`, from `cache` when it holds these very texts embedded by this very encoder."""
    key = hashlib.sha256(json.dumps([resolve("minilm").sha256, texts]).encode()).hexdigest()
    if cache.exists():
        with np.load(cache) as z:
            if str(z["key"]) == key:
                return z["x"]
    x = embed(texts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, key=key, x=x)
    return x


def features(embed, rows: list[Row], turns: int, cache: Path, split: str) -> np.ndarray:
    """[embed(utterance)], or [embed(utterance), embed(joined_context(last `turns` utterances, utterance))]."""
    x = embed_cached(embed, [r.text for r in rows], cache / f"{split}_u.npz")
    if turns == 0:
        return x
    joined = [joined_context(" ".join(r.before[-turns:]), r.text) for r in rows]
    return np.hstack([x, embed_cached(embed, joined, cache / f"{split}_c{turns}.npz")])


def scores(probs: np.ndarray, y: np.ndarray, raw: np.ndarray | None = None) -> dict:
    """Accuracy, UAR, weighted F1, per-class recall, ECE (and before temperature: `raw`), label shares."""
    from sklearn.metrics import f1_score, recall_score

    pred, n = probs.argmax(1), len(LABELS)
    pred_share, true_share = np.bincount(pred, minlength=n) / len(y), np.bincount(y, minlength=n) / len(y)
    top = int(pred_share.argmax())
    out = {
        "rows": len(y),
        "accuracy": round(float((pred == y).mean()), 4),
        "uar": round(float(recall_score(y, pred, labels=range(n), average="macro", zero_division=0)), 4),
        "weighted_f1": round(float(f1_score(y, pred, labels=range(n), average="weighted", zero_division=0)), 4),
        "recall": {
            lab: round(float((pred[y == i] == i).mean()), 4) if (y == i).any() else None for i, lab in enumerate(LABELS)
        },
        "ece": round(ece(probs, y), 4),
        "commonest_predicted": {
            "label": LABELS[top],
            "predicted_share": round(float(pred_share[top]), 4),
            "true_share": round(float(true_share[top]), 4),
        },
        "predicted_share": {lab: round(float(v), 4) for lab, v in zip(LABELS, pred_share)},
        "true_share": {lab: round(float(v), 4) for lab, v in zip(LABELS, true_share)},
    }
    if raw is not None:
        out["ece_before_temperature"] = round(ece(raw, y), 4)
    return out


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The T minimizing the negative log-likelihood of softmax(logits / T)."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        return float(-np.mean(np.log(softmax(logits / np.exp(log_t))[np.arange(len(y)), y] + 1e-12)))

    return round(float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x)), 4)


def main(argv: list[str] | None = None) -> int:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import recall_score
    from sklearn.model_selection import StratifiedGroupKFold

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=MODELS, help="folder for words_head.npy and words_head.json")
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "words_head", help="embedding cache, oof.json")
    ap.add_argument("--meld", type=Path, default=MELD, help="folder with train_sent_emo.csv and dev_sent_emo.csv")
    ap.add_argument("--smoke", action="store_true", help="rebuild smoke run: every 8th row, C=0.25, no context")
    args = ap.parse_args(argv)
    if args.smoke:
        args.runs = args.out
    c_grid, turns_grid, every = ((0.25,), (0,), 8) if args.smoke else (C_GRID, CONTEXT_TURNS, 1)
    if not (args.meld / "train_sent_emo.csv").exists():
        skip_stage(f"{args.meld / 'train_sent_emo.csv'} not found (../shared/data is only on the project's machines)")
    train, dev = load_meld(args.meld / "train_sent_emo.csv", every), load_meld(args.meld / "dev_sent_emo.csv", every)
    embed = MiniLMEmbedder.create_from_options(EmbedderOptions(threads=2, cache_size=0))
    y_train = np.array([LABELS.index(r.label) for r in train])
    y_dev = np.array([LABELS.index(r.label) for r in dev])
    folds = list(
        StratifiedGroupKFold(FOLDS, shuffle=True, random_state=SEED).split(
            y_train, y_train, [r.dialogue for r in train]
        )
    )

    def fit(x, y, c):
        return LogisticRegression(C=c, max_iter=3000, class_weight="balanced").fit(x, y)

    def uar(y, pred) -> float:
        return round(float(recall_score(y, pred, labels=range(len(LABELS)), average="macro", zero_division=0)), 4)

    def out_of_fold_logits(x, c) -> np.ndarray:
        z = np.zeros((len(train), len(LABELS)))
        for a, b in folds:
            z[b] = fit(x[a], y_train[a], c).decision_function(x[b])
        return z

    # choose C per context setting on dev UAR; context must beat no context on dev by the margin, and on train's OOF
    tried, fitted = {}, {}
    for turns in turns_grid:
        x_train = features(embed, train, turns, args.runs, "train")
        x_dev = features(embed, dev, turns, args.runs, "dev")
        models = {c: fit(x_train, y_train, c) for c in c_grid}
        dev_uar = {c: uar(y_dev, m.predict(x_dev)) for c, m in models.items()}
        best = max(dev_uar, key=dev_uar.get)
        # temperature on train's out-of-fold logits; the head itself is the fit on all of train
        oof_logits = out_of_fold_logits(x_train, best)
        temperature = fit_temperature(oof_logits, y_train)
        z_dev = models[best].decision_function(x_dev)
        fitted[turns] = (best, models[best], x_train, oof_logits, z_dev, temperature)
        dev_scores = scores(softmax(z_dev / temperature), y_dev)
        tried[turns] = {
            "dev_uar_by_C": {str(c): v for c, v in dev_uar.items()},
            "C": best,
            "dev_uar": dev_uar[best],
            "train_oof_uar": uar(y_train, oof_logits.argmax(1)),
            "temperature": temperature,
            "dev": {k: dev_scores[k] for k in ("accuracy", "weighted_f1", "recall", "ece", "commonest_predicted")},
        }
        print(f"context turns {turns}: {json.dumps(tried[turns])}", flush=True)
    turns = 0
    for t in turns_grid[1:]:
        gain_dev = tried[t]["dev_uar"] - tried[0]["dev_uar"]
        gain_oof = tried[t]["train_oof_uar"] - tried[0]["train_oof_uar"]
        if gain_dev >= CONTEXT_MARGIN and gain_oof > 0 and tried[t]["dev_uar"] > tried[turns]["dev_uar"]:
            turns = t
    best, model, x_train, oof_logits, z_dev, temperature = fitted[turns]
    p_oof, p_dev = softmax(oof_logits / temperature), softmax(z_dev / temperature)
    metrics = {
        "quality": {
            "dev": scores(p_dev, y_dev, softmax(z_dev)),
            "train_out_of_fold": scores(p_oof, y_train, softmax(oof_logits)),
            "command": "python -m train.words_head" + (" --smoke" if args.smoke else ""),
        },
        "selection": {
            "chosen_C": best,
            "context_turns": turns,
            "temperature": temperature,
            "tried": {f"context_{t}": v for t, v in tried.items()},
            "rule": f"C by dev UAR; context kept if dev UAR gains >= {CONTEXT_MARGIN} and train OOF UAR gains",
        },
    }

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "words_head.npy"
    # one .npy array [weight | bias] (no zip timestamps, so a rebuild writes the same bytes); labels in the sidecar
    np.save(path, np.hstack([model.coef_, model.intercept_[:, None]]).astype(np.float32))
    args.runs.mkdir(parents=True, exist_ok=True)

    def record(rows, y, p):
        ids = {
            "sr_no": [r.sr for r in rows],
            "dialogue": [r.dialogue for r in rows],
            "utterance": [r.utterance for r in rows],
        }
        return ids | {"truth": [LABELS[i] for i in y], "probs": np.round(p, 4).tolist()}

    (args.runs / "oof.json").write_text(
        json.dumps(
            {
                "labels": LABELS,
                "temperature": temperature,
                "context_turns": turns,
                "what": f"train: out-of-fold ({FOLDS} folds, grouped by dialogue); dev: the shipped head; T applied",
                "train": record(train, y_train, p_oof),
                "dev": record(dev, y_dev, p_dev),
            }
        )
    )

    head = WordsHead(
        MiniLMEmbedder.create_from_options(EmbedderOptions(threads=1, cache_size=0)),
        np.load(path),
        LABELS,
        temperature,
        context=turns > 0,
    )
    ex_rows = [Row(0, 0, 0, normalize_text(t), (), "neutral") for t in EXAMPLES]
    x_ex = features(embed, ex_rows, turns, args.runs, "examples")
    p_ex = softmax(model.decision_function(x_ex) / temperature)  # float64 sklearn weights: the training-side reference
    examples = [
        {"text": t, "context": "", "probabilities": {lab: float(v) for lab, v in zip(LABELS, p)}}
        for t, p in zip(EXAMPLES, p_ex)
    ]
    ms = []
    for r in dev[:50]:
        t0 = time.perf_counter()
        head(r.text, " ".join(r.before))
        ms.append((time.perf_counter() - t0) * 1000)
    metrics["speed"] = {
        "ms_per_sentence": round(float(np.median(ms)), 2),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "what": "median of 50 WordsHead calls on distinct MELD dev utterances, 1 onnxruntime thread, "
        f"{os.cpu_count()}-core machine (command above)",
    }
    counts = {lab: int((y_train == i).sum()) for i, lab in enumerate(LABELS)}
    sidecar = {
        "name": "words_head",
        "file": "words_head.npy",
        "sha256": sha256_of(path),
        "source": {
            "training_command": "python -m train.words_head",
            "code": ["train/words_head.py", "edge_xemo/reasoning/words.py", "edge_xemo/reasoning/embeddings.py"],
        },
        "licence": "GPL-3.0: weights fitted on MELD (github.com/declare-lab/MELD, GPL-3.0; utterances of the TV series "
        "Friends); the data is not shipped, the project code is Apache-2.0",
        "terms": {
            "data": ["MELD"],
            "licence": "GPL-3.0",
            "commercial_use": True,
            "note": "GPL-3.0 allows commercial use but is copyleft: redistribute these weights under GPL-3.0 "
            "terms (licence text, source: this script); the dialogue text belongs to its owners",
        },
        "inputs": [
            {
                "name": "embedding",
                "shape": [384 * (2 if turns else 1)],
                "dtype": "float32",
                "what": "all-MiniLM-L6-v2 embedding (edge_xemo.reasoning.embeddings) of "
                "words.normalize_text(utterance)"
                + ("; then that of words.joined_context(preceding words, utterance)" if turns else ""),
            }
        ],
        "outputs": [
            {
                "name": "probabilities",
                "shape": [len(LABELS)],
                "dtype": "float32",
                "labels": list(LABELS),
                "note": "softmax(logits / temperature); no score for worried",
            }
        ],
        "layout": f"float32 array (n_labels, {x_train.shape[1] + 1}): logistic-regression weights "
        f"({x_train.shape[1]} columns) then the bias",
        "temperature": temperature,
        "context": {
            "used": turns > 0,
            "turns": turns,
            "what": "the preceding words of the same stream (no speaker labels)"
            if turns
            else "none: the utterance alone (the context argument is ignored)",
        },
        "trained_on": {
            "data": "MELD train_sent_emo.csv (../shared/data/meld, GPL-3.0)" + (" every 8th row" if args.smoke else ""),
            "rows": len(train),
            "labels": counts,
            "label_map": MELD_TO_LABEL,
        },
        "how": f"scikit-learn LogisticRegression (multinomial, lbfgs, balanced class weights, C={best} by MELD dev "
        f"UAR, seed {SEED}); temperature by NLL on {FOLDS}-fold out-of-fold logits (grouped by dialogue)",
        "metrics": metrics,
        "parity_examples": examples,
    }
    (args.out / "words_head.json").write_text(json.dumps(sidecar, indent=1) + "\n")
    print(json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
