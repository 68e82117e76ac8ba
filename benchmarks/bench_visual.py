"""Cost of the visual path per frame at 640x360 with one face, one thread (the shipped runtimes for each graph).

Frames are the demo clip ($EDGE_XEMO_HOME/demo/cap13_edit2.mp4, 400x300) scaled to 480x360 and
centred on a 640x360 canvas (the face is ~125 px wide). Stages: BlazeFace detection, MediaPipe Face
Landmarker's 478 landmarks (256x256 crop + model + projection) and its 52 blendshapes, cue reading, and the
whole `VisualPerception.process_frame`
(detector every 10 frames, the default; and every frame, the baseline of the ratio), with and
without the expression encoder, and one window summary (with the VECB when it is installed).

    pytest benchmarks/bench_visual.py --benchmark-columns=median,iqr,ops
    python benchmarks/bench_visual.py          # medians, p95, frames/s, ratios
    python benchmarks/bench_visual.py --runtimes   # the landmark graph: onnxruntime, OpenCV DNN, LiteRT

`--runtimes` runs the 478-point landmark graph on the real face crops of the clip through each installed runtime in
the same process, alternating in blocks, and prints their medians, p95, ratios and output differences
(against LiteRT's, which runs the original .tflite, when it is installed).

    python benchmarks/bench_visual.py --expression-hz [CLIP ...]   # the encoder's cadence: what it changes

`--expression-hz` runs the demo clip (and any other clips named) with the expression encoder at the
default `expression_hz` and on every frame, and prints how far each 2 s window's expression scores and
VECB cue intensities move, and in how many windows the top expression label changes.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_xemo.vision.face_cues import FaceCueReader
from edge_xemo.vision.faces import FaceTracker, FaceTrackerOptions, landmark_input
from edge_xemo.core.models import RUNTIMES, litert_installed, load_session
from edge_xemo.core.paths import demo_video
from edge_xemo.core.types import Frame
from edge_xemo.vision.stage import VisualPerception, VisualOptions

CLIP = demo_video()
N_FRAMES = 100


def frames_640x360(n: int = N_FRAMES) -> list[np.ndarray]:
    if not CLIP.exists():
        pytest.skip(f"{CLIP} is absent (the install step puts the demo clip there)")
    cap, out = cv2.VideoCapture(str(CLIP)), []
    while len(out) < n:
        ok, f = cap.read()
        if not ok:
            break
        canvas = np.zeros((360, 640, 3), np.uint8)
        canvas[:, 80:560] = cv2.resize(f, (480, 360))
        out.append(canvas)
    return out


@pytest.fixture(scope="module")
def frames():
    return frames_640x360()


def _tracked(frames):
    tracker = FaceTracker(FaceTrackerOptions(), threads=1)
    result = tracker.track(frames[0], 0.0)
    assert result.faces, "no face in the benchmark frame"
    return tracker, result.faces[0]


def test_detect(benchmark, frames):
    tracker, _ = _tracked(frames)
    benchmark(tracker.detect, frames[0])


def test_landmarks(benchmark, frames):
    tracker, _ = _tracked(frames)
    roi = tracker._tracks[0].roi
    benchmark(tracker.landmarks, frames[0], roi)


def test_cues(benchmark, frames):
    _, face = _tracked(frames)
    reader, t = FaceCueReader(), itertools.count()
    benchmark(lambda: reader.update(face.landmarks, face.blendshapes, next(t) / 25))


@pytest.mark.parametrize("detect_every", [10, 1])
def test_process_frame(benchmark, frames, detect_every):
    va = VisualPerception.create_from_options(VisualOptions(FaceTrackerOptions(detect_every=detect_every)))
    it = itertools.count()

    def step():
        i = next(it)
        return va.process_frame(Frame(frames[i % len(frames)], i / 25, i))

    benchmark(step)


def test_summarize_window(benchmark, frames):
    """One 2 s window (50 frames) -> cues, scores, and VECB tokens when the bridge is installed."""
    va = VisualPerception.create_from_options(VisualOptions())
    obs = [va.process_frame(Frame(f, i / 25, i)) for i, f in enumerate(frames[:50])]
    benchmark(va.summarize, obs, 0.0, 2.0)


def _times(fn, n: int) -> np.ndarray:
    for _ in range(10):
        fn()
    out = np.empty(n)
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - t0) * 1e3
    return out


def main(n: int = 500) -> None:
    frames = frames_640x360()
    tracker, face = _tracked(frames)
    roi = tracker._tracks[0].roi
    reader, t = FaceCueReader(), itertools.count()
    rows = {
        "detect": _times(lambda: tracker.detect(frames[0]), n),
        "landmarks": _times(lambda: tracker.landmarks(frames[0], roi), n),
        "blendshapes": _times(lambda: tracker.blendshapes(face.landmarks), n),
        "cues": _times(lambda: reader.update(face.landmarks, face.blendshapes, next(t) / 25), n),
    }
    for every in (10, 1):
        for expr in (False, True):
            va = VisualPerception.create_from_options(VisualOptions(FaceTrackerOptions(detect_every=every), use_expression=expr))
            if expr and va.expression is None:
                continue
            it = itertools.count()

            def step():
                i = next(it)
                va.process_frame(Frame(frames[i % len(frames)], i / 25, i))

            rows[f"frame detect_every={every}{' +expression' if expr else ''}"] = _times(step, n)
    va = VisualPerception.create_from_options(VisualOptions())
    obs = [va.process_frame(Frame(f, i / 25, i)) for i, f in enumerate(frames[:50])]
    label = "summarize 2 s window" + (" +VECB" if va.bridge is not None and va.expression is not None else "")
    rows[label] = _times(lambda: va.summarize(obs, 0.0, 2.0), min(n, 200))
    sys.stdout.write(f"visual path, 640x360, one face, 1 onnxruntime thread, {os.cpu_count()} cores, n={n}\n")
    for name, ms in rows.items():
        med = float(np.median(ms))
        sys.stdout.write(f"{name:38s} median {med:6.2f} ms  p95 {np.percentile(ms, 95):6.2f} ms  {1e3 / med:7.1f} /s\n")
    base = np.median(rows["frame detect_every=1"])
    for name in [k for k in rows if k.startswith("frame")]:
        sys.stdout.write(f"ratio {name} / detect_every=1: {np.median(rows[name]) / base:.2f}\n")


def runtimes(rounds: int = 4, block: int = 50) -> None:
    """The 478-point landmark graph on the clip's real face crops through each installed runtime, one thread."""
    frames = frames_640x360()
    tracker = FaceTracker(FaceTrackerOptions(), threads=1)
    crops = []
    for i, f in enumerate(frames):
        tracker.track(f, i / 25)
        if tracker._tracks:
            crops.append(landmark_input(f, tracker._tracks[0].roi)[0])
    installed = [rt for rt in RUNTIMES if rt != "litert" or litert_installed()]
    sessions = {rt: load_session("face_landmarks478", 1, "cpu", rt) for rt in installed}
    x_name = sessions["onnxruntime"].get_inputs()[0].name  # the .tflite's input name too
    outs = {rt: [s.run(["Identity", "Identity_1"], {x_name: x}) for x in crops] for rt, s in sessions.items()}
    times = {rt: [] for rt in installed}
    for r in range(rounds):
        for rt, sess in sessions.items():
            for j in range(block):
                x = crops[(r * block + j) % len(crops)]
                t0 = time.perf_counter()
                sess.run(None, {x_name: x})
                times[rt].append((time.perf_counter() - t0) * 1e3)
    sys.stdout.write(f"landmark graph, {len(crops)} face crops of the clip, 1 thread, {os.cpu_count()} cores, "
                     f"{rounds} rounds of {block}, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    base = np.median(times["onnxruntime"])
    for rt, ms in times.items():
        sys.stdout.write(f"{rt:12s} median {np.median(ms):5.2f} ms  p95 {np.percentile(ms, 95):5.2f} ms  "
                         f"ratio to onnxruntime {np.median(ms) / base:.2f}\n")
    if "litert" not in installed:
        sys.stdout.write("litert: not installed (pip install -e '.[litert]')\n")
    ref = "litert" if "litert" in installed else "onnxruntime"  # litert runs the .tflite itself
    for rt in [rt for rt in installed if rt != ref]:
        for k, what in enumerate(("landmarks, 256-px crop units", "presence logit")):
            diff = np.array([np.abs(a[k].ravel() - b[k].ravel()).max() for a, b in zip(outs[ref], outs[rt])])
            sys.stdout.write(f"max |{rt} - {ref}|, {what}: {diff.max():.2e} (median over crops {np.median(diff):.2e})\n")


def expression_rate(clips: list[Path]) -> None:
    """Window outputs with the encoder at the default expression_hz against every frame, per clip: expression
    scores (the judgement's "expression" source), their top label, and the VECB's cue intensities."""
    sys.stdout.write("2 s windows, 1 s hop; |default expression_hz - every frame| per window\n")
    for clip in clips:
        cap, frames = cv2.VideoCapture(str(clip)), []
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        while (ok := cap.read())[0]:
            frames.append(ok[1])
        windows = {}
        for hz in (VisualOptions.expression_hz, None):
            va = VisualPerception.create_from_options(VisualOptions(expression_hz=hz))
            obs = [va.process_frame(Frame(f, i / fps, i)) for i, f in enumerate(frames)]
            starts = np.arange(0.0, len(frames) / fps - 2.0 + 1e-6, 1.0)
            windows[hz] = [va.summarize(obs, s, s + 2.0) for s in starts]
        pairs = [(a, b) for a, b in zip(*windows.values()) if a.scores and b.scores]
        score = [max(abs(a.scores[k] - b.scores[k]) for k in a.scores) for a, b in pairs]
        cues = [max(abs(a.extra["vecb_cues"][k] - b.extra["vecb_cues"][k]) for k in a.extra["vecb_cues"])
                for a, b in pairs if "vecb_cues" in a.extra and "vecb_cues" in b.extra]
        flips = sum(max(a.scores, key=a.scores.get) != max(b.scores, key=b.scores.get) for a, b in pairs)
        sys.stdout.write(f"{clip.name}: {len(pairs)} windows; expression scores max {max(score):.3f} median "
                         f"{np.median(score):.3f}; top label differs in {flips}; VECB cue intensities max "
                         f"{max(cues, default=float('nan')):.3f} median {np.median(cues) if cues else float('nan'):.3f}\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if "--runtimes" in sys.argv:
        runtimes()
    elif "--expression-hz" in sys.argv:
        expression_rate([CLIP] + [Path(p) for p in sys.argv[sys.argv.index("--expression-hz") + 1:]])
    else:
        main()
