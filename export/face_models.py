"""Convert MediaPipe's face detector and 468-point landmark model (.tflite) to ONNX, with parity checks.

Run in the export-only venv (never the runtime venv: tensorflow and mediapipe pin their own stack),
which `python -m train.rebuild --only export_env` creates from export/requirements-export.txt:

    python -m train.rebuild --only sources export_env export.face_models     # as the full rebuild runs it
    runs/venv-export/bin/python -m export.face_models [--work DIR] [--photos DIR]
    runs/venv-export/bin/python -m export.face_models --smoke --out DIR   # into DIR only, 10 demo frames

It downloads the mediapipe 0.10.21 wheel (`pip download --no-deps`; mediapipe itself is never
installed), takes the two .tflite files out of it, converts them with tf2onnx (opset 17), writes
`edge_xemo/models/face_detector.onnx` and `face_landmarks.onnx` with JSON sidecars, then runs the
.tflite (TensorFlow Lite interpreter) and the ONNX (onnxruntime) on real inputs: frames of the demo
clip ($EDGE_XEMO_HOME/demo/cap13_edit2.mp4) and any photos in --photos, and records the largest
absolute output difference in the sidecars. A few of those inputs with their .tflite outputs go
to `tests/data/face_models_reference.npz`, so the tests check the ONNX against the .tflite without
TensorFlow.

The landmark .tflite itself ships too (`face_landmarks.tflite`, sidecar `face_landmarks_tflite.json`): on
the CPU the runtime runs it through LiteRT's XNNPACK when the `litert` extra is installed, faster than
either runtime runs the ONNX (docs/speed.md). `--tflite-only` takes it out of the wheel without TensorFlow:

    .venv/bin/python -m export.face_models --tflite-only --work runs/sources/pip
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "edge_xemo" / "models"
REFERENCE = ROOT / "tests" / "data" / "face_models_reference.npz"
WHEEL = "mediapipe==0.10.21"
SOURCES = {
    "face_detector": "mediapipe/modules/face_detection/face_detection_short_range.tflite",
    "face_landmarks": "mediapipe/modules/face_landmark/face_landmark.tflite",
}
COMMAND = "runs/venv-export/bin/python -m export.face_models"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_tflite(work: Path) -> dict[str, Path]:
    """The two .tflite files, taken out of the mediapipe wheel (downloaded once into `work`)."""
    work.mkdir(parents=True, exist_ok=True)
    wheels = sorted(work.glob("mediapipe-0.10.21-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d", str(work)], check=True)
        wheels = sorted(work.glob("mediapipe-0.10.21-*.whl"))
    out = {}
    with zipfile.ZipFile(wheels[0]) as z:
        for name, member in SOURCES.items():
            out[name] = Path(z.extract(member, work))
    return out


def relative(path: Path) -> str:
    """`path` relative to the repository when it is inside it (sidecars name no local folders)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def convert(tflite: Path, onnx_path: Path, origin: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "tf2onnx.convert", "--tflite", str(tflite), "--opset", "17", "--output", str(onnx_path)],
        check=True, capture_output=True,
    )
    canonicalize(onnx_path, origin)


def canonicalize(onnx_path: Path, origin: str) -> None:
    """Name constants by first use and intermediate tensors and nodes by position, and say where the
    model came from without a local path, so that a re-run anywhere writes the same bytes (same sha256).

    tf2onnx numbers folded constants and some layers (MaxPool) from global counters whose order varies
    between runs, and puts the .tflite's absolute path in the graph's doc_string. Graph inputs and
    outputs keep their names (the runtime reads outputs by name).
    """
    import onnx

    model = onnx.load(str(onnx_path))
    g = model.graph
    g.doc_string = f"converted from {origin}"
    inits = {t.name: t for t in g.initializer}
    order = [name for node in g.node for name in node.input if name in inits]
    rename = {old: f"const_{i}" for i, old in enumerate(dict.fromkeys(order))}
    fixed = {v.name for v in g.input} | {v.name for v in g.output}
    for i, node in enumerate(g.node):
        for j, out in enumerate(node.output):
            if out and out not in fixed:
                rename[out] = f"{node.op_type.lower()}_{i}" + (f"_{j}" if j else "")
        node.name = f"node_{i}"
    for node in g.node:
        node.input[:] = [rename.get(n, n) for n in node.input]
        node.output[:] = [rename.get(n, n) for n in node.output]
    for v in g.value_info:
        v.name = rename.get(v.name, v.name)
    tensors = []
    for old, new in rename.items():
        if old in inits:
            inits[old].name = new
            tensors.append(inits[old])
    del g.initializer[:]
    g.initializer.extend(tensors)
    onnx.save(model, str(onnx_path))


def io_spec(session) -> tuple[list, list]:
    def row(v):
        return {"name": v.name, "shape": list(v.shape), "dtype": v.type.replace("tensor(", "").rstrip(")")}

    return [row(v) for v in session.get_inputs()], [row(v) for v in session.get_outputs()]


def write_sidecar(name: str, wheel_path: str, extra: dict) -> None:
    onnx_path = MODELS / f"{name}.onnx"
    entry = {
        "name": name,
        "file": onnx_path.name,
        "sha256": sha256(onnx_path),
        "source": {"package": "mediapipe", "version": "0.10.21", "path_in_wheel": wheel_path,
                   "converter": "tf2onnx 1.17.0 (--opset 17), tensorflow-cpu 2.21.0"},
        "licence": "Apache-2.0 (MediaPipe)",
        "command": COMMAND,
    }
    entry.update(extra)
    (MODELS / f"{name}.json").write_text(json.dumps(entry, indent=2) + "\n")


def ship_tflite(path: Path, onnx_sidecar: dict) -> None:
    """Copy the landmark .tflite beside its ONNX, with a sidecar (the ONNX's inputs and outputs: same names)."""
    target = MODELS / "face_landmarks.tflite"
    target.write_bytes(path.read_bytes())
    entry = {
        "name": "face_landmarks_tflite",
        "file": target.name,
        "sha256": sha256(target),
        "source": {"package": "mediapipe", "version": "0.10.21", "path_in_wheel": SOURCES["face_landmarks"]},
        "licence": "Apache-2.0 (MediaPipe)",
        "command": "python -m export.face_models --tflite-only (any venv; the full export writes it as well)",
        "runtime": "litert (ai-edge-litert, XNNPACK delegate)",
        **{k: onnx_sidecar[k] for k in ("inputs", "outputs", "inputs_note", "outputs_note", "trained_on")},
        "how": "taken from the wheel as is: the reference face_landmarks.onnx was converted from",
        "metrics": {"parity": "the reference itself: face_landmarks.json records the ONNX's largest difference "
                              "from it; every runtime is held to 1e-3 crop px of its outputs by "
                              "tests/vision/test_face_models.py::test_landmarks_match_tflite",
                    "speed": "benchmarks/bench_visual.py --runtimes (docs/speed.md)"},
    }
    (MODELS / "face_landmarks_tflite.json").write_text(json.dumps(entry, indent=2) + "\n")


def demo_frames(limit: int = 60) -> list[np.ndarray]:
    """Every fifth frame of the demo clip (BGR), if the install step put it in place."""
    from edge_xemo.core.paths import demo_video

    clip = demo_video()
    if not clip.exists():
        return []
    cap, frames, i = cv2.VideoCapture(str(clip)), [], 0
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        if i % 5 == 0:
            frames.append(frame)
        i += 1
    return frames


def tflite_runner(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    outs = sorted(interp.get_output_details(), key=lambda d: d["index"])

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        interp.set_tensor(inp, x)
        interp.invoke()
        return {d["name"]: interp.get_tensor(d["index"]).copy() for d in outs}

    return run


def parity(tflite: dict[str, Path], images: list[np.ndarray], n_demo: int) -> tuple[dict, dict]:
    """Max |onnx - tflite| per model on real inputs; also the reference arrays for the tests, taken
    from the first `n_demo` images only (demo-clip frames: no photos of other people in the repo)."""
    from edge_xemo.vision import faces as F
    from edge_xemo.core.models import onnx_session

    tracker = F.FaceTracker(F.FaceTrackerOptions(max_faces=4, min_face_px=0))
    det_onnx = onnx_session(str(MODELS / "face_detector.onnx"))
    lm_onnx = onnx_session(str(MODELS / "face_landmarks.onnx"))
    det_tfl, lm_tfl = tflite_runner(tflite["face_detector"]), tflite_runner(tflite["face_landmarks"])
    det_in, lm_in, src = [], [], {"face_detector": [], "face_landmarks": []}
    for i, bgr in enumerate(images):
        x, *_ = F.detector_input(bgr)
        det_in.append(np.round((x[0] + 1.0) * 127.5).astype(np.uint8))
        src["face_detector"].append(i)
        for d in tracker.detect(bgr):
            src["face_landmarks"].append(i)
            crop = cv2.warpAffine(bgr, F.roi_crop_matrix(*tracker._roi_from_detection(d)),
                                  (F.LANDMARK_SIZE, F.LANDMARK_SIZE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            lm_in.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
    diffs = {"face_detector": {}, "face_landmarks": {}}
    ref = {}
    for name, inputs, sess, run, norm in (
        ("face_detector", det_in, det_onnx, det_tfl, lambda u: u.astype(np.float32) * (2 / 255) - 1),
        ("face_landmarks", lm_in, lm_onnx, lm_tfl, lambda u: u.astype(np.float32) / 255),
    ):
        outs_ref = []
        for u in inputs:
            x = norm(u)[None]
            got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x})))
            want = run(x)
            outs_ref.append(want)
            for k, v in got.items():
                d = float(np.abs(v - want[k].reshape(v.shape)).max())
                diffs[name][k] = max(diffs[name].get(k, 0.0), d)
        diffs[name] = {"max_abs_diff_vs_tflite": diffs[name], "n_inputs": len(inputs)}
        demo = [j for j, i in enumerate(src[name]) if i < n_demo]
        pick = [demo[k] for k in np.linspace(0, len(demo) - 1, min(4, len(demo))).astype(int)]
        ref[f"{name}/input_u8"] = np.stack([inputs[i] for i in pick])
        for k in outs_ref[0]:
            ref[f"{name}/{k}"] = np.stack([outs_ref[i][k] for i in pick])
    return diffs, ref


def main() -> None:
    global MODELS, REFERENCE
    sys.path.insert(0, str(ROOT))
    from train.config import stage_parser

    ap = stage_parser(__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="where the mediapipe wheel is (or goes); default /tmp/face-export, "
                    "smoke: the rebuild's runs/sources/pip")
    ap.add_argument("--photos", type=Path, default=None, help="folder of .jpg face photos for the parity check")
    ap.add_argument("--tflite-only", action="store_true", help="only ship the landmark .tflite (no TensorFlow needed)")
    args = ap.parse_args()

    if args.out:  # models, sidecars and the test reference all go there (a smoke run never touches the repo)
        MODELS, REFERENCE = Path(args.out), Path(args.out) / REFERENCE.name

    tflite = fetch_tflite(args.work or (ROOT / "runs/sources/pip" if args.smoke else Path("/tmp/face-export")))
    MODELS.mkdir(parents=True, exist_ok=True)
    if args.tflite_only:
        ship_tflite(tflite["face_landmarks"], json.loads((ROOT / "edge_xemo/models/face_landmarks.json").read_text()))
        return
    import onnxruntime as ort

    for name, path in tflite.items():
        convert(path, MODELS / f"{name}.onnx", f"{WHEEL}: {SOURCES[name]}")
    io = {}
    for name in tflite:
        inputs, outputs = io_spec(ort.InferenceSession(str(MODELS / f"{name}.onnx"), providers=["CPUExecutionProvider"]))
        io[name] = {"inputs": inputs, "outputs": outputs}
        write_sidecar(name, SOURCES[name], io[name])
    images = demo_frames(10 if args.smoke else 60)
    n_demo = len(images)
    if not n_demo:
        raise SystemExit("the demo clip is needed for the test reference: put cap13_edit2.mp4 in $EDGE_XEMO_HOME/demo")
    if args.photos:
        images += [im for p in sorted(args.photos.glob("*.jpg")) if (im := cv2.imread(str(p))) is not None]
    diffs, ref = parity(tflite, images, n_demo)
    notes = {
        "face_detector": {
            "inputs_note": "RGB, letterboxed to 128x128, values in [-1, 1], NHWC",
            "outputs_note": "896 SSD anchors: regressors (box cx, cy, w, h + 6 keypoints, in 128-px units "
                            "relative to the anchor), classificators (logits)",
            "trained_on": "MediaPipe BlazeFace short-range (faces within ~2 m of the camera); see MediaPipe's model card",
            "how": "converted, not retrained",
        },
        "face_landmarks": {
            "inputs_note": "RGB face crop 192x192 (rotated square ROI, 1.5x the face), values in [0, 1], NHWC",
            "outputs_note": "conv2d_21: 468 x (x, y, z) in crop pixels; conv2d_31: face-presence logit",
            "trained_on": "MediaPipe Face Mesh (468 points, no iris); see MediaPipe's model card",
            "how": "converted, not retrained",
        },
    }
    for name in tflite:
        metrics = dict(diffs[name], inputs="frames of cap13_edit2.mp4 (every 5th, 60) + --photos",
                       command=COMMAND + (f" --photos {relative(args.photos)}" if args.photos else ""))
        write_sidecar(name, SOURCES[name], {**io[name], **notes[name], "metrics": metrics})
    ship_tflite(tflite["face_landmarks"], json.loads((MODELS / "face_landmarks.json").read_text()))
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(REFERENCE, **ref)
    sys.stdout.write(json.dumps(diffs) + "\n")


if __name__ == "__main__":
    main()
