"""The visual stage: face tracking, landmarks, interpretable facial cues, expression scores and the
video cue bridge (VECB) tokens, per frame and per window (implements `core.types.VisualStage`).

The expression encoder (`edge_xemo/vision/expression.py`) and the bridge (`edge_xemo/vision/vecb.py`) are
optional: when their modules or artifacts are missing the stage still reports cues, with empty
`scores` and `tokens=None`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from ..core.models import Precision, RuntimeOptions, load_optional
from ..core.types import Activity, FaceBox, Frame, ModalityResult, ResultCode
from .expression import face_crop
from .face_cues import CueOptions, FaceCueReader
from .face_emotion import BlendshapeEmotion
from .faces import LEFT_EYE_OUTER, RIGHT_EYE_OUTER, FaceTracker, FaceTrackerOptions, as_bgr, box_area
from .observation import FaceObservation, VisualObservation
from .window_cues import WindowCueOptions, window_cues

log = logging.getLogger(__name__)

UPPER_LIP, LOWER_LIP = 13, 14
"""The inner lips' middle points of the 478-point mesh."""


def lip_gap(landmarks: np.ndarray) -> float:
    """How far the lips are apart, in eye-corner distances (the mesh's points 13 and 14, over 33 to 263)."""
    eyes = float(np.linalg.norm(landmarks[LEFT_EYE_OUTER, :2] - landmarks[RIGHT_EYE_OUTER, :2]))
    return float(np.linalg.norm(landmarks[LOWER_LIP, :2] - landmarks[UPPER_LIP, :2])) / max(eyes, 1e-6)


VECB_MODELS = {Precision.DEFAULT: "vecb_int8", Precision.INT8: "vecb_int8", Precision.FP32: "vecb"}
"""The VECB's artifact per precision it ships."""


@dataclass(frozen=True, slots=True)
class VisualOptions:
    """Visual stage settings.

    tracker: how faces are found and followed (detection cadence, how many, how small).
    cues: per-person cue reading (thresholds, smoothing, baseline).
    window: which per-frame cues a window reports, nods and head shakes.
    runtime: threads and provider of every model of the stage, and the VECB's precision (None: the analyzer's,
      or `RuntimeOptions()` alone). The VECB runs int8 by default (`Precision.DEFAULT`) or fp32; int8 measured
      faster (0.23 vs 0.38 ms per window) with cue intensities within 0.012 and expression scores within 0.0075
      of fp32 (sidecar vecb_int8.json); the expression encoder ships fp32 only (its int8 was slower).
    use_expression: run the expression encoder when its artifact is installed.
    expression_hz: run it on a face once per 1/expression_hz s of source time (None: on every frame).
      In between, a face carries its last scores and `FaceObservation.expression_t` says which frame
      they came from; a window's expression scores and VECB rows use the encoded frames only. The
      default, 8 Hz, is the VECB's own frame rate: it reads 16 frames (`vecb.N_FRAMES`) of a 2 s window,
      the window it was trained on, so a window's encoded frames are the frames it reads. At 25 fps
      this runs the encoder on 8 frames of 25 (docs/speed.md gives the cost and the change it makes).
    use_bridge: run the VECB on each window when its artifact is installed.
    use_emotion_model: judge each window's facial actions with the `blendshape_emotion` head when it is installed
      (`ModalityResult.emotion`; only the judgement reads it).
    """

    tracker: FaceTrackerOptions = field(default_factory=FaceTrackerOptions)
    cues: CueOptions = field(default_factory=CueOptions)
    window: WindowCueOptions = field(default_factory=WindowCueOptions)
    runtime: RuntimeOptions | None = None
    use_expression: bool = True
    expression_hz: float | None = 8.0
    use_bridge: bool = True
    use_emotion_model: bool = True

    def __post_init__(self):
        if self.runtime is not None and self.runtime.precision not in VECB_MODELS:
            raise ValueError(f"the VECB ships fp32 and int8, not {self.runtime.precision}")
        if self.expression_hz is not None and not self.expression_hz > 0:
            raise ValueError(f"expression_hz must be > 0 or None, got {self.expression_hz}")


def _expression(runtime: RuntimeOptions):
    from .expression import ExpressionEncoder

    return ExpressionEncoder(threads=runtime.threads, provider=runtime.provider)


def _bridge(runtime: RuntimeOptions):
    from . import vecb

    return vecb.VisualBridge(threads=runtime.threads, provider=runtime.provider, model=VECB_MODELS[runtime.precision])


class VisualPerception:
    """Per-frame face perception plus per-window cue summaries (a `core.types.VisualStage`)."""

    def __init__(self, options: VisualOptions | None = None):
        self.options = o = options or VisualOptions()
        runtime = o.runtime or RuntimeOptions()
        self.tracker = FaceTracker(o.tracker, runtime.threads, runtime.provider)
        self.expression, no_expression = (
            load_optional("expression encoder (no expression scores)", lambda: _expression(runtime))
            if o.use_expression
            else (None, None)
        )
        self.bridge, no_bridge = (
            load_optional("video cue bridge (no visual tokens)", lambda: _bridge(runtime))
            if o.use_bridge
            else (None, None)
        )
        self.emotion, no_emotion = (
            load_optional(
                "facial-action emotion head (the judgement falls back to EMFACS prototypes)", BlendshapeEmotion.load
            )
            if o.use_emotion_model
            else (None, None)
        )
        self.missing = tuple(why for why in (no_expression, no_bridge, no_emotion) if why)
        """Optional models that are not installed, one line each (the analyzer reports them)."""
        self.labels: tuple[str, ...] = tuple(getattr(self.expression, "labels", ()) or ())
        self.reset()

    @classmethod
    def create_from_options(cls, options: VisualOptions | None = None) -> "VisualPerception":
        return cls(options)

    def reset(self) -> None:
        """Forget tracks, per-person baselines and carried expression scores (a new source)."""
        self.tracker.reset()
        self._readers: dict[int, FaceCueReader] = {}
        self._last_seen: dict[int, float] = {}
        self._last_expression: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
        if self.bridge is not None and hasattr(self.bridge, "reset"):
            self.bridge.reset()

    def reset_baseline(self, face_id: int | None = None) -> None:
        """Forget face `face_id`'s cue state (every face's when None): its neutral baseline is learnt anew."""
        for fid in list(self._readers) if face_id is None else [face_id]:
            self._readers.pop(fid, None)

    # -- per frame ------------------------------------------------------------------------------
    def process_frame(self, frame: Frame) -> VisualObservation:
        """Track faces and read their cues in one frame; never raises on a bad image (see `code`)."""
        t0 = time.perf_counter()
        tracked = self.tracker.track(frame.image, frame.t)
        lat = dict(tracked.latency_ms or {})
        if not tracked.faces:
            lat["frame"] = (time.perf_counter() - t0) * 1e3
            return VisualObservation(frame.t, (), tracked.code, tracked.message, lat)
        t1 = time.perf_counter()
        readings, kept = [], []
        for face in tracked.faces:
            reader = self._readers.get(face.face_id)
            if reader is None:
                reader = self._readers[face.face_id] = FaceCueReader(self.options.cues)
            self._last_seen[face.face_id] = frame.t
            try:
                readings.append(reader.update(face.landmarks, face.blendshapes, frame.t))
                kept.append(face)
            except ValueError as e:  # degenerate landmarks: skip this face in this frame
                log.debug("face %d: %s", face.face_id, e)
        lat["cues"] = (time.perf_counter() - t1) * 1e3
        if not kept:
            lat["frame"] = (time.perf_counter() - t0) * 1e3
            return VisualObservation(frame.t, (), ResultCode.NO_FACE, ResultCode.NO_FACE.text, lat)
        t2 = time.perf_counter()
        expressions = self._expressions(frame.image, kept, frame.t)
        if self.expression is not None:
            lat["expression"] = (time.perf_counter() - t2) * 1e3
        faces = tuple(
            FaceObservation(
                f.face_id, f.box, f.score, f.landmarks, cues, *expressions.get(f.face_id, (None, None, None))
            )
            for f, cues in zip(kept, readings)
        )
        self._forget_old(frame.t)
        lat["frame"] = (time.perf_counter() - t0) * 1e3
        return VisualObservation(frame.t, faces, None, None, lat)

    def _expressions(self, image: np.ndarray, faces, t: float) -> dict[int, tuple[np.ndarray, np.ndarray, float]]:
        if self.expression is None:
            return {}
        due = [f for f in faces if self._expression_due(f.face_id, t)]
        if due:
            bgr = as_bgr(image)
            crops = np.stack([face_crop(bgr, f.landmarks) for f in due])
            try:
                emb, scores = self.expression.encode(crops)
            except Exception as e:
                log.warning("expression encoder failed: %s", e)
                return {}
            for f, e_, s_ in zip(due, emb, scores):
                self._last_expression[f.face_id] = (np.asarray(s_, np.float32), np.asarray(e_, np.float32), t)
        return {f.face_id: self._last_expression[f.face_id] for f in faces if f.face_id in self._last_expression}

    def _expression_due(self, face_id: int, t: float) -> bool:
        """A face is encoded on its first frame and on the first frame of each 1/expression_hz s slot."""
        hz = self.options.expression_hz
        last = self._last_expression.get(face_id)
        if hz is None or last is None:
            return True
        return math.floor(t * hz + 1e-9) != math.floor(last[2] * hz + 1e-9)  # 1e-9: i/fps*hz that should be whole

    def _forget_old(self, t: float, keep_s: float = 30.0) -> None:
        for fid in [fid for fid, seen in self._last_seen.items() if t - seen > keep_s]:
            self._readers.pop(fid, None)
            self._last_seen.pop(fid, None)
            self._last_expression.pop(fid, None)

    # -- per window -----------------------------------------------------------------------------
    def summarize(self, observations: Sequence[VisualObservation], t_start: float, t_end: float) -> ModalityResult:
        """Cues that were on for each face during [t_start, t_end), expression scores, bridge tokens."""
        t0 = time.perf_counter()
        obs = [o for o in observations if t_start <= o.t < t_end]
        by_face: dict[int, list[FaceObservation]] = defaultdict(list)
        for o in obs:
            for f in o.faces:
                by_face[f.face_id].append(f)
        latency = _mean_latency(obs)
        if not by_face:
            code, message = _window_code(obs)
            return ModalityResult(
                "visual", code=code, message=message, latency_ms=latency, extra={"n_frames": len(obs)}
            )
        order = sorted(by_face, key=lambda fid: (-len(by_face[fid]), -box_area(by_face[fid][-1].box), fid))
        people = tuple(self._person(fid, by_face[fid], latency) for fid in order)  # the most-seen face first
        primary = people[0]
        extra = {
            "n_frames": len(obs),
            "primary_face": primary.face_id,
            "face_frames": {fid: len(fs) for fid, fs in by_face.items()},
            **primary.extra,
        }
        latency["summarize"] = (time.perf_counter() - t0) * 1e3
        cues = tuple(c for person in people for c in person.cues)
        return replace(
            primary,
            cues=cues,
            code=None if cues else ResultCode.NO_VISIBLE_CUE,
            message=None,
            faces=tuple(person.faces[0] for person in people),
            latency_ms=latency,
            extra=extra,
            face_id=None,
            people=people,
            activity=None,
        )

    def _person(self, face_id: int, frames: list[FaceObservation], latency: dict[str, float]) -> ModalityResult:
        """One person's window: their cues, expression scores, facial-action emotion, bridge tokens and mouth
        opening; the bridge's time is added to `latency`."""
        cues = tuple(window_cues(face_id, frames, self.options.window))
        emotion = self.emotion(np.mean([f.cues.blendshapes for f in frames], axis=0)) if self.emotion else {}
        last = frames[-1]
        extra: dict = {
            "blink_rate_per_min": round(last.cues.blink_rate, 1),
            "head_pose_deg": [round(float(v), 1) for v in np.mean([f.cues.pose for f in frames], axis=0)],
        }
        bridged, tokens = self._run_bridge(frames), None
        if bridged is not None:
            tokens = bridged.tokens
            for k, v in bridged.latency_ms.items():
                latency[k] = latency.get(k, 0.0) + v
            extra["vecb_expression"] = {k: round(v, 4) for k, v in bridged.expression_scores.items()}
            extra["vecb_cues"] = {k: round(v, 4) for k, v in bridged.cue_intensities.items()}
        mouth = Activity(np.array([f.cues.t for f in frames]), np.array([lip_gap(f.landmarks) for f in frames]))
        return ModalityResult(
            "visual",
            cues,
            tokens,
            self._window_scores(frames),
            None if cues else ResultCode.NO_VISIBLE_CUE,
            None,
            (FaceBox(face_id, last.box, last.score, last.cues.t),),
            {},
            extra,
            emotion=emotion,
            face_id=face_id,
            activity=mouth,
        )

    def _window_scores(self, frames: list[FaceObservation]) -> dict[str, float]:
        probs = [f.expression for f in frames if f.encoded and f.expression is not None]
        if not probs or not self.labels:
            return {}
        mean = np.mean(probs, axis=0)
        return {label: float(p) for label, p in zip(self.labels, mean)}

    def _run_bridge(self, frames: list[FaceObservation]):
        """VECB over one face's encoded frames (None without one)."""
        if self.bridge is None:
            return None
        rows = [self.bridge.frame_features(f.embedding, f.cues.geometry, f.cues.intensity) for f in frames if f.encoded]
        if not rows:
            return None
        try:
            return self.bridge.run(np.stack(rows))
        except (ValueError, RuntimeError) as e:
            log.warning("video cue bridge failed: %s", e)
            return None


def _window_code(obs: list[VisualObservation]) -> tuple[ResultCode, str]:
    """Why a window has no face: its frames' most common reason (the earliest on a tie)."""
    if not obs:
        return ResultCode.NO_FRAMES, ResultCode.NO_FRAMES.text
    codes = [o.code for o in obs if o.code is not None]
    if not codes:
        return ResultCode.NO_FACE, ResultCode.NO_FACE.text
    code = max(codes, key=codes.count)
    return code, next((o.message for o in obs if o.code is code and o.message), code.text)


def _mean_latency(obs: list[VisualObservation]) -> dict[str, float]:
    sums: dict[str, list[float]] = defaultdict(list)
    for o in obs:
        for k, v in o.latency_ms.items():
            sums[k].append(v)
    return {k: float(np.mean(v)) for k, v in sums.items()}
