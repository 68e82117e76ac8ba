"""The visual stage: face tracking, landmarks, interpretable facial cues, expression scores and the
video cue bridge (VECB) tokens, per frame and per window (implements `types.VisualStage`).

The expression encoder (`edge_xemo/vision/expression.py`) and the bridge (`edge_xemo/vision/vecb.py`) are
optional: when their modules or artifacts are missing the stage still reports cues, with empty
`scores` and `tokens=None`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from .face_cues import CUE_NAMES, CueOptions, FaceCueFrame, FaceCueReader, phrase
from .faces import FaceTracker, FaceTrackerOptions, as_bgr
from ..core.types import Cue, FaceBox, Frame, ModalityResult

log = logging.getLogger("edge_xemo")

EXPRESSION_SIZE = 64
# cues that cannot both describe one face in one window: the one on more often wins
EXCLUSIVE = (
    ("gaze_direct", "gaze_averted", "gaze_down"),
    ("head_down", "head_up"),
    ("lip_corner_pull", "lip_corner_depress"),
    ("upper_lid_raise", "lid_tighten", "eye_closure"),
    ("jaw_drop", "lips_part"),
    ("lip_press", "lips_part", "jaw_drop"),
)


@dataclass(frozen=True)
class VisualOptions:
    """Visual stage settings.

    detect_every: face detector runs every N frames (landmarks follow the face in between).
    max_faces: faces tracked (largest first). min_face_px: smaller faces are ignored.
    threads / provider: onnxruntime intra-op threads and provider for every model of the stage.
    use_expression: run the expression encoder when its artifact is installed.
    expression_every: run it on every Nth frame of a face (scores are carried in between).
    use_bridge: run the VECB on each window when its artifact is installed.
    precision: "int8" (default) or "fp32" VECB. int8 measured faster (0.23 vs 0.38 ms per window)
      with cue intensities within 0.012 and expression scores within 0.0075 of fp32 (sidecar
      vecb_int8.json); the expression encoder ships fp32 only (its int8 was slower).
    min_on_fraction: a cue is reported for a window when it is on in at least this share of the
      face's frames.
    nod_deg / shake_deg: peak-to-peak pitch / yaw within a window that counts as a nod / head shake.
    cues: per-person cue reading (thresholds, smoothing, baseline).
    """

    detect_every: int = 10
    max_faces: int = 1
    min_face_px: int = 24
    threads: int = 1
    provider: str = "cpu"
    use_expression: bool = True
    expression_every: int = 1
    use_bridge: bool = True
    precision: str = "int8"
    min_on_fraction: float = 0.3
    nod_deg: float = 6.0
    shake_deg: float = 8.0
    cues: CueOptions = field(default_factory=CueOptions)

    def __post_init__(self):
        if self.precision not in ("fp32", "int8"):
            raise ValueError(f"precision must be fp32 or int8, got {self.precision!r}")
        if self.expression_every < 1:
            raise ValueError(f"expression_every must be >= 1, got {self.expression_every}")
        if not 0.0 < self.min_on_fraction <= 1.0:
            raise ValueError(f"min_on_fraction must be in (0, 1], got {self.min_on_fraction}")


@dataclass(frozen=True, slots=True)
class FaceObservation:
    """One face in one frame: landmarks (468, 3) in pixels, cue readings, optional expression output."""

    face_id: int
    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    cues: FaceCueFrame
    expression: np.ndarray | None = None  # (n_labels,) probabilities
    embedding: np.ndarray | None = None  # (d,) expression-encoder embedding


@dataclass(frozen=True, slots=True)
class VisualObservation:
    """What the visual stage saw in one frame; `status` says why `faces` is empty."""

    t: float
    faces: tuple[FaceObservation, ...]
    status: str | None
    latency_ms: dict[str, float]


def face_crop(bgr: np.ndarray, landmarks: np.ndarray, size: int = EXPRESSION_SIZE, scale: float = 1.15) -> np.ndarray:
    """Upright grayscale face crop (size, size) uint8: rotated so the eyes are level, framed on the landmarks."""
    r, l = landmarks[33, :2], landmarks[263, :2]
    angle = np.arctan2(l[1] - r[1], l[0] - r[0])
    c, s = np.cos(angle), np.sin(angle)
    rot = landmarks[:, :2] @ np.array([[c, -s], [s, c]])
    lo, hi = rot.min(0), rot.max(0)
    mid = (lo + hi) / 2
    cx, cy = mid[0] * c - mid[1] * s, mid[0] * s + mid[1] * c
    k = float(max(hi - lo)) * scale / size
    m = np.array([[k * c, -k * s, cx - k * (c - s) * size / 2], [k * s, k * c, cy - k * (s + c) * size / 2]])
    gray = bgr if bgr.ndim == 2 else cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _optional_expression(opts: VisualOptions):
    if not opts.use_expression:
        return None
    try:
        from .expression import ExpressionEncoder
        return ExpressionEncoder(threads=opts.threads, provider=opts.provider)
    except Exception as e:  # module or artifact missing: the stage works without it
        log.info("expression encoder unavailable (%s); visual stage runs without expression scores", e)
        return None


def _optional_bridge(opts: VisualOptions):
    if not opts.use_bridge:
        return None
    try:
        from . import vecb
        model = "vecb_int8" if opts.precision == "int8" else "vecb"
        return vecb.VisualBridge(threads=opts.threads, provider=opts.provider, model=model)
    except Exception as e:
        log.info("video cue bridge unavailable (%s); visual stage runs without tokens", e)
        return None


class VisualAnalyzer:
    """Per-frame face perception plus per-window cue summaries (a `types.VisualStage`)."""

    def __init__(self, options: VisualOptions | None = None):
        self.options = o = options or VisualOptions()
        self.tracker = FaceTracker(FaceTrackerOptions(
            detect_every=o.detect_every, max_faces=o.max_faces, min_face_px=o.min_face_px,
            threads=o.threads, provider=o.provider))
        self.expression = _optional_expression(o)
        self.bridge = _optional_bridge(o)
        self.labels: tuple[str, ...] = tuple(getattr(self.expression, "labels", ()) or ())
        self.reset()

    @classmethod
    def create_from_options(cls, options: VisualOptions | None = None) -> "VisualAnalyzer":
        return cls(options)

    def reset(self) -> None:
        """Forget tracks, per-person baselines and carried expression scores (a new source)."""
        self.tracker.reset()
        self._readers: dict[int, FaceCueReader] = {}
        self._last_seen: dict[int, float] = {}
        self._last_expression: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._frames = 0
        if self.bridge is not None and hasattr(self.bridge, "reset"):
            self.bridge.reset()

    # -- per frame ------------------------------------------------------------------------------
    def process_frame(self, frame: Frame) -> VisualObservation:
        """Track faces and read their cues in one frame; never raises on a bad image (see `status`)."""
        t0 = time.perf_counter()
        tracked = self.tracker.track(frame.image, frame.t)
        lat = dict(tracked.latency_ms or {})
        if not tracked.faces:
            lat["frame"] = (time.perf_counter() - t0) * 1e3
            return VisualObservation(frame.t, (), tracked.status, lat)
        t1 = time.perf_counter()
        readings, kept = [], []
        for face in tracked.faces:
            reader = self._readers.get(face.face_id)
            if reader is None:
                reader = self._readers[face.face_id] = FaceCueReader(self.options.cues)
            self._last_seen[face.face_id] = frame.t
            try:
                readings.append(reader.update(face.landmarks, frame.t))
                kept.append(face)
            except ValueError as e:  # degenerate landmarks: skip this face in this frame
                log.debug("face %d: %s", face.face_id, e)
        lat["cues"] = (time.perf_counter() - t1) * 1e3
        if not kept:
            lat["frame"] = (time.perf_counter() - t0) * 1e3
            return VisualObservation(frame.t, (), "no face", lat)
        t2 = time.perf_counter()
        expressions = self._expressions(frame.image, kept)
        if self.expression is not None:
            lat["expression"] = (time.perf_counter() - t2) * 1e3
        faces = tuple(
            FaceObservation(f.face_id, f.box, f.score, f.landmarks, cues, *expressions.get(f.face_id, (None, None)))
            for f, cues in zip(kept, readings)
        )
        self._forget_old(frame.t)
        self._frames += 1
        lat["frame"] = (time.perf_counter() - t0) * 1e3
        return VisualObservation(frame.t, faces, None, lat)

    def _expressions(self, image: np.ndarray, faces) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        if self.expression is None:
            return {}
        due = [f for f in faces if self._frames % self.options.expression_every == 0
               or f.face_id not in self._last_expression]
        if due:
            bgr = as_bgr(image)
            crops = np.stack([face_crop(bgr, f.landmarks) for f in due])
            try:
                emb, scores = self.expression.encode(crops)
            except Exception as e:
                log.warning("expression encoder failed: %s", e)
                return {}
            for f, e_, s_ in zip(due, emb, scores):
                self._last_expression[f.face_id] = (np.asarray(s_, np.float32), np.asarray(e_, np.float32))
        return {f.face_id: self._last_expression[f.face_id] for f in faces if f.face_id in self._last_expression}

    def _forget_old(self, t: float, keep_s: float = 30.0) -> None:
        for fid in [fid for fid, seen in self._last_seen.items() if t - seen > keep_s]:
            self._readers.pop(fid, None)
            self._last_seen.pop(fid, None)
            self._last_expression.pop(fid, None)

    # -- per window -----------------------------------------------------------------------------
    def summarize(self, observations: Sequence[object], t_start: float, t_end: float) -> ModalityResult:
        """Cues that were on for each face during [t_start, t_end), expression scores, bridge tokens."""
        t0 = time.perf_counter()
        obs = [o for o in observations if isinstance(o, VisualObservation) and t_start <= o.t < t_end]
        by_face: dict[int, list[FaceObservation]] = defaultdict(list)
        for o in obs:
            for f in o.faces:
                by_face[f.face_id].append(f)
        latency = _mean_latency(obs)
        if not by_face:
            statuses = [o.status for o in obs if o.status]
            status = "no frames" if not obs else max(set(statuses), key=statuses.count) if statuses else "no face"
            return ModalityResult("visual", status=status, latency_ms=latency, extra={"n_frames": len(obs)})
        primary = max(by_face, key=lambda fid: (len(by_face[fid]), _area(by_face[fid][-1].box)))
        cues: list[Cue] = []
        for fid in sorted(by_face, key=lambda fid: fid != primary):
            cues.extend(self._face_cues(fid, by_face[fid]))
        scores = self._window_scores(by_face[primary])
        bridged = self._run_bridge(by_face[primary])
        faces = tuple(FaceBox(fid, fs[-1].box, fs[-1].score, fs[-1].cues.t) for fid, fs in by_face.items())
        last = by_face[primary][-1].cues
        extra = {
            "n_frames": len(obs), "primary_face": primary,
            "face_frames": {fid: len(fs) for fid, fs in by_face.items()},
            "blink_rate_per_min": round(last.blink_rate, 1),
            "head_pose_deg": [round(float(v), 1) for v in np.mean([f.cues.pose for f in by_face[primary]], axis=0)],
        }
        tokens = None
        if bridged is not None:
            tokens = bridged.tokens
            latency.update(bridged.latency_ms)
            extra["vecb_expression"] = {k: round(v, 4) for k, v in bridged.expression_scores.items()}
            extra["vecb_cues"] = {k: round(v, 4) for k, v in bridged.cue_intensities.items()}
        latency["summarize"] = (time.perf_counter() - t0) * 1e3
        return ModalityResult("visual", tuple(cues), tokens, scores,
                              None if cues else "no visible cue", faces, latency, extra)

    def _face_cues(self, face_id: int, frames: list[FaceObservation]) -> list[Cue]:
        n = len(frames)
        found: dict[str, Cue] = {}
        on_frac: dict[str, float] = {}
        for name in CUE_NAMES:
            vals = np.array([f.cues.intensity[name] for f in frames if name in f.cues.on])
            frac = len(vals) / n
            if frac < self.options.min_on_fraction:
                continue
            mean = float(vals.mean())
            on_frac[name] = frac
            found[name] = Cue(name, phrase(name, mean), mean, "visual",
                              {"mean": mean, "peak": float(vals.max()), "on_fraction": frac}, face_id)
        for group in EXCLUSIVE:
            present = [g for g in group if g in found]
            for loser in sorted(present, key=lambda g: (-on_frac[g], -found[g].intensity))[1:]:
                found.pop(loser, None)
        cues = list(found.values()) + self._motion_cues(face_id, frames)
        # a direct gaze is the usual state: list it after the facial actions of similar strength
        return sorted(cues, key=lambda c: -c.intensity * (0.5 if c.name == "gaze_direct" else 1.0))

    def _motion_cues(self, face_id: int, frames: list[FaceObservation]) -> list[Cue]:
        """Nods and head shakes (pose oscillation within the window) and frequent blinking."""
        out = []
        if len(frames) >= 5:
            pose = np.array([f.cues.pose for f in frames])
            yaw_pp, pitch_pp = float(np.ptp(pose[:, 0])), float(np.ptp(pose[:, 1]))
            if pitch_pp >= self.options.nod_deg and pitch_pp > 1.5 * yaw_pp and _reversals(pose[:, 1], 2.0) >= 1:
                v = _ramp(pitch_pp, self.options.nod_deg - 2, 15.0)
                out.append(Cue("nod", "slight nod" if v < 0.5 else "nods", v, "visual", {"pitch_range_deg": pitch_pp}, face_id))
            if yaw_pp >= self.options.shake_deg and yaw_pp > 1.5 * pitch_pp and _reversals(pose[:, 0], 3.0) >= 2:
                v = _ramp(yaw_pp, self.options.shake_deg - 2, 25.0)
                out.append(Cue("head_shake", "shakes the head slightly" if v < 0.5 else "shakes the head", v, "visual",
                               {"yaw_range_deg": yaw_pp}, face_id))
        blinks = sum(f.cues.blink for f in frames)
        rate = frames[-1].cues.blink_rate
        if blinks and rate >= 25.0:
            v = _ramp(rate, 20.0, 45.0)
            out.append(Cue("blinks", "rapid blinking" if v >= 0.5 else "frequent blinking", v, "visual",
                           {"blink_rate_per_min": rate, "blinks_in_window": float(blinks)}, face_id))
        return out

    def _window_scores(self, frames: list[FaceObservation]) -> dict[str, float]:
        probs = [f.expression for f in frames if f.expression is not None]
        if not probs or not self.labels:
            return {}
        mean = np.mean(probs, axis=0)
        return {label: float(p) for label, p in zip(self.labels, mean)}

    def _run_bridge(self, frames: list[FaceObservation]):
        """VECB over the primary face's frames that have an expression embedding (None without one)."""
        if self.bridge is None:
            return None
        rows = [self.bridge.frame_features(f.embedding, f.cues.geometry, f.cues.intensity)
                for f in frames if f.embedding is not None]
        if not rows:
            return None
        try:
            return self.bridge.run(np.stack(rows))
        except (ValueError, RuntimeError) as e:
            log.warning("video cue bridge failed: %s", e)
            return None


def _area(box) -> float:
    return (box[2] - box[0]) * (box[3] - box[1])


def _ramp(x: float, lo: float, hi: float) -> float:
    return float(min(1.0, max(0.0, (x - lo) / (hi - lo))))


def _reversals(x: np.ndarray, hysteresis: float) -> int:
    """Direction changes of a signal, each a move of at least `hysteresis` back from the last extreme."""
    count, direction, extreme = 0, 0, float(x[0])
    for v in x[1:]:
        if direction == 0:
            if abs(v - extreme) >= hysteresis:
                direction, extreme = (1 if v > extreme else -1), float(v)
        elif (v - extreme) * direction > 0:
            extreme = float(v)
        elif abs(v - extreme) >= hysteresis:
            direction, extreme, count = -direction, float(v), count + 1
    return count


def _mean_latency(obs: list[VisualObservation]) -> dict[str, float]:
    sums: dict[str, list[float]] = defaultdict(list)
    for o in obs:
        for k, v in o.latency_ms.items():
            sums[k].append(v)
    return {k: float(np.mean(v)) for k, v in sums.items()}
