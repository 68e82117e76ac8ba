"""Interpretable facial cues: FACS action units from MediaPipe's learned blendshapes, eye closure and blinks,
head pose, nods/shakes and gaze, each as the short English phrase experts write.

Facial actions come from the blendshape model's 52 scores (`faces.BLENDSHAPES`, learned by Google from real
faces) through `CUES`, a blendshape -> action unit table. Each score is compared with the person's neutral: a
population prior (the median score of neutral talkers) that the person's own rolling median may move by at most
a tolerance (as far as the neutral talkers' own medians lay from it), so a face that idles with lowered brows is
not "frowning", while one that smiles for the whole clip still reads as smiling. Until the person's own neutral is
learnt, it may still lie anywhere within that tolerance above the prior, so a cue is read only beyond it: in a
clip's first seconds a face that idles with lowered brows or narrowed eyes (as some neutral faces do) is not read as
frowning or squinting, and the margin shrinks as the neutral is learnt. Intensities are One-Euro
smoothed and switched on/off with hysteresis. The numbers are fitted by `python -m train.face_blendshapes
calibrate` (neutral talkers and CK+ dev faces; see that module).

Head pose stays geometric: the landmarks aligned to a head-centred frame, relative to the person's usual
orientation, so a camera angle held for the whole clip is no cue. "Gaze" is head orientation, not eye direction.
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .faces import BLENDSHAPES

# landmark indices of MediaPipe's face mesh ("right" = the subject's right = the image's left)
R_EYE = (33, 133, 159, 145)
L_EYE = (263, 362, 386, 374)
_R_EYE, _L_EYE = np.array(R_EYE), np.array(L_EYE)
FOREHEAD, CHIN = 10, 152
MESH_POINTS = 468
"""The face mesh proper (the 478-point model adds 10 iris points after it)."""


@dataclass(frozen=True, slots=True)
class CueSpec:
    """One facial action: FACS AU `au`, read as the mean of `blendshapes` (both sides of the face) above the
    person's neutral; intensity = clip((score - neutral) / full, 0, 1)."""

    name: str
    au: int
    phrase: str
    blendshapes: tuple[str, ...]


def _sides(stem: str) -> tuple[str, ...]:
    return (stem + "Left", stem + "Right")


CUES = (
    CueSpec("inner_brow_raise", 1, "inner corners of the eyebrows raised", ("browInnerUp",)),
    CueSpec("outer_brow_raise", 2, "raised eyebrows", _sides("browOuterUp")),
    CueSpec("brow_lower", 4, "furrowed brow", _sides("browDown")),
    CueSpec("upper_lid_raise", 5, "eyes wide open", _sides("eyeWide")),
    CueSpec("cheek_raise", 6, "cheeks raised", _sides("cheekSquint")),
    CueSpec("lid_tighten", 7, "squinted eyes", _sides("eyeSquint")),
    CueSpec("nose_wrinkle", 9, "wrinkled nose", _sides("noseSneer")),
    CueSpec("lip_corner_pull", 12, "corners of the mouth turned up", _sides("mouthSmile")),
    CueSpec("lip_corner_depress", 15, "corners of the mouth turned down", _sides("mouthFrown")),
    CueSpec("chin_raise", 17, "raised chin", ("mouthShrugLower",)),
    CueSpec("lip_stretch", 20, "lips stretched", _sides("mouthStretch")),
    CueSpec("lip_press", 24, "tightly closed lips", _sides("mouthPress")),
    CueSpec("lips_part", 25, "parted lips", _sides("mouthLowerDown")),
    CueSpec("jaw_drop", 26, "mouth open", ("jawOpen",)),
    CueSpec("eye_closure", 43, "eyes closed", _sides("eyeBlink")),
)
"""The blendshape -> AU table. AU6 (cheekSquint) and AU9 (noseSneer): MediaPipe's model scores them 0.000 on
every frame we measured (four neutral talkers, 594 CK+ faces, happy and disgust included), so these two cues
never fire; they keep their place for the explanation table and the VECB's frame layout. AU10 (mouthUpperUp) is
not a cue: on CK+ it is highest on happy faces (median 0.62; a broad smile lifts the upper lip) and 0.02 on
disgust ones, so as "raised upper lip" it would read smiles as disgust. AU25 (lips part) is the lower lip
pulled down (mouthLowerDown), AU26 the jaw (jawOpen)."""
CUE_NAMES = tuple(c.name for c in CUES) + (
    "head_down",
    "head_up",
    "head_turned",
    "head_tilted",
    "gaze_direct",
    "gaze_averted",
    "gaze_down",
)
_INDEX = [[BLENDSHAPES.index(b) for b in c.blendshapes] for c in CUES]
_EYE_BLINK = CUE_NAMES.index("eye_closure")

_CALIBRATION = json.loads((Path(__file__).with_name("face_cues.json")).read_text())
"""Fitted by `python -m train.face_blendshapes calibrate` (data and method there and in the file)."""
NEUTRAL_PRIOR = np.array(_CALIBRATION["neutral_prior"])
"""Per blendshape (`BLENDSHAPES` order): the median over neutral talkers of each talker's median score."""
NEUTRAL_TOLERANCE = np.array(_CALIBRATION["neutral_tolerance"])
"""Per blendshape: how far a person's own median may move their neutral from the prior."""
FULL = np.array(_CALIBRATION["full"])
"""Per cue (`CUES` order): the score above neutral that is full intensity."""
# phrases used when a cue is strong ("clearly ...") or light ("slightly ...") read badly for a few cues
_PHRASES = {
    "lip_corner_pull": (
        "slight upward curve at the corners of the mouth",
        "corners of the mouth turned up",
        "smile with the corners of the mouth clearly turned up",
    ),
    "lip_corner_depress": (
        "slightly downturned corners of the mouth",
        "corners of the mouth turned down",
        "clearly downturned corners of the mouth",
    ),
    "lips_part": ("slightly parted lips", "parted lips", "lips clearly apart"),
    "jaw_drop": ("slightly open mouth", "mouth open", "mouth wide open"),
    "eye_closure": ("slightly closed eyes", "eyes closed", "eyes tightly closed"),
    "lip_press": ("lips lightly pressed together", "tightly closed lips", "lips pressed tightly together"),
    "cheek_raise": ("cheeks slightly raised", "cheeks raised", "cheeks clearly raised"),
    "lip_stretch": ("lips slightly stretched", "lips stretched", "lips clearly stretched"),
    "inner_brow_raise": (
        "inner brows slightly raised",
        "inner corners of the eyebrows raised",
        "inner corners of the eyebrows clearly raised",
    ),
    "chin_raise": ("chin slightly raised", "raised chin", "chin clearly raised"),
    "head_down": ("slightly lowered head", "lowers the head", "head clearly lowered"),
    "head_up": ("head slightly raised", "head tilted back", "head clearly tilted back"),
    "head_turned": ("head slightly turned away", "head turned away", "head clearly turned away"),
    "head_tilted": ("head slightly tilted", "head tilted to one side", "head clearly tilted"),
    "gaze_direct": ("gaze mostly direct", "direct gaze at the other person", "looks directly at the other person"),
    "gaze_averted": ("gaze slightly averted", "averted gaze", "looks away"),
    "gaze_down": ("gaze slightly downward", "downward gaze", "looks down"),
}


def phrase(name: str, intensity: float) -> str:
    """English phrase for cue `name` at `intensity` in [0, 1]: 'slightly ...' below 0.5, 'clearly ...' from 0.8."""
    level = 0 if intensity < 0.5 else (1 if intensity < 0.8 else 2)
    if name in _PHRASES:
        return _PHRASES[name][level]
    base = next((c.phrase for c in CUES if c.name == name), name.replace("_", " "))
    return ("slightly ", "", "clearly ")[level] + base


def align(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Landmarks (478, 3) -> (head-frame points in inter-ocular units, rotation (3, 3) rows x/y/z, IOD px)."""
    lm = landmarks.astype(np.float64)
    r_eye, l_eye = lm[_R_EYE].mean(0), lm[_L_EYE].mean(0)
    x = l_eye - r_eye
    iod = math.sqrt(x @ x)
    if iod < 1e-6:
        raise ValueError("degenerate landmarks: eyes coincide")
    x /= iod
    y = lm[CHIN] - lm[FOREHEAD]
    y -= x * (y @ x)
    y /= max(math.sqrt(y @ y), 1e-9)
    z = (x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0])  # x cross y
    rot = np.array([x, y, z])
    return (lm - (r_eye + l_eye) / 2) @ (rot.T / iod), rot, iod


def head_pose(rot: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from the head axes; pitch > 0 = head down, roll > 0 = clockwise."""
    x, y = rot[0], rot[1]
    yaw = math.degrees(math.atan2(x[2], math.hypot(x[0], x[1])))
    pitch = math.degrees(math.atan2(y[2], math.hypot(y[0], y[1])))
    roll = math.degrees(math.atan2(x[1], x[0]))
    return yaw, pitch, roll


def geometry_vector(p: np.ndarray) -> np.ndarray:
    """Normalized landmark geometry for learned models: the aligned mesh points (468, 3) flattened, float32 (1404,)."""
    return p[:MESH_POINTS].astype(np.float32).ravel()


class OneEuro:
    """One-Euro filter over a vector (Casiez et al. 2012): little lag on fast moves, little jitter at rest."""

    def __init__(self, min_cutoff: float = 1.5, beta: float = 1.0, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff, dt):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None or self._dx is None or self._t is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return self._x.copy()
        if t <= self._t:
            return self._x.copy()
        dt = t - self._t
        dx = (x - self._x) / dt
        self._dx += self._alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x += self._alpha(cutoff, dt) * (x - self._x)
        self._t = t
        return self._x.copy()


POSE_BASELINE_DEG = 35.0
"""How far from facing the camera a person's usual head orientation (the median over `baseline_s`) may lie
and still be their neutral: a TV-drama 3/4 view or a camera below the face is then no "head turned" or
"chin raised" cue; only turning away from one's own usual orientation is."""
MEASURABLE_YAW_DEG, MEASURABLE_PITCH_DEG = 40.0, 30.0
"""Beyond these absolute head angles facial actions are not read (the mesh's far side is foreshortened to
cos 40 = 0.77 and its depth is a guess): a cue that cannot be measured is not asserted. A priori."""


@dataclass(frozen=True, slots=True)
class CueOptions:
    """Cue reading. on/off: hysteresis thresholds on smoothed intensity; baseline_s: history used for
    the personal neutral; neutral_s: the neutral moves from the prior to the person's own (clipped) median in
    proportion to the history seen, reaching it after this many seconds, so an expression shown in a clip's
    first seconds is not taken for the person's neutral (a priori; the voice waits 8 s for its baseline);
    blink_close/blink_open: eyeBlink score above the person's neutral that starts/ends a blink (a priori: about
    halfway and a quarter of the way from an open eye's 0.1-0.15 to the 0.6-0.8 of a closed one, as seen on the
    neutral talkers); blink_min_s/blink_max_s: shorter and longer closures (source-clock seconds) are not
    blinks: spontaneous blinks last about 100-400 ms (Caffier et al. 2003), and a closure shorter than 50 ms is
    one noisy frame at 25 fps or more; gaze_deg: head angle beyond which gaze is not direct."""

    on: float = 0.35
    off: float = 0.2
    baseline_s: float = 60.0
    neutral_s: float = 10.0
    min_cutoff: float = 1.5
    beta: float = 2.0
    blink_close: float = 0.3
    blink_open: float = 0.15
    blink_min_s: float = 0.05
    blink_max_s: float = 0.6
    gaze_deg: float = 12.0


@dataclass(frozen=True, slots=True)
class FaceCueFrame:
    """One face's cues in one frame: smoothed intensities for every cue, the names switched on,
    head pose (degrees, relative to the person's neutral), eye closure above neutral (eyeBlink score), whether
    a blink ended here, blink rate, the aligned mesh (`geometry_vector`) and the blendshape scores above the
    person's neutral (52, `faces.BLENDSHAPES` order; zeros when the tracker gave none)."""

    t: float
    intensity: dict[str, float]
    on: frozenset[str]
    pose: tuple[float, float, float]
    eye_closed: float
    blink: bool
    blink_rate: float
    geometry: np.ndarray = field(repr=False)
    blendshapes: np.ndarray = field(repr=False)


class FaceCueReader:
    """Per-person state (neutral, filters, hysteresis, blinks): `update(landmarks, blendshapes, t)` -> FaceCueFrame."""

    def __init__(self, options: CueOptions | None = None):
        self.options = options or CueOptions()
        o = self.options
        self._filter = OneEuro(o.min_cutoff, o.beta)
        self._pose_filter = OneEuro(1.0, 0.05)
        self._history: deque[tuple[float, np.ndarray]] = deque()
        self._neutral, self._neutral_t = NEUTRAL_PRIOR.copy(), -1e9
        self._unsure = NEUTRAL_TOLERANCE.copy()
        self._pose_baseline = np.zeros(3)
        self._on: set[str] = set()
        self._closed_since: float | None = None
        self._blinks: deque[float] = deque()
        self._t0: float | None = None

    def _update_neutral(self, scores: np.ndarray, pose: np.ndarray, t: float) -> None:
        o = self.options
        if not self._history or t - self._history[-1][0] >= 0.2:
            self._history.append((t, np.concatenate([scores, pose])))
        while self._history and self._history[0][0] < t - o.baseline_s:
            self._history.popleft()
        if t - self._neutral_t >= 0.5 and len(self._history) >= 5:
            med = np.median(np.stack([h for _, h in self._history]), axis=0)
            n = len(BLENDSHAPES)
            seen = min(1.0, (t - self._history[0][0]) / o.neutral_s) if o.neutral_s > 0 else 1.0
            shift = np.clip(med[:n] - NEUTRAL_PRIOR, -NEUTRAL_TOLERANCE, NEUTRAL_TOLERANCE)
            self._neutral = NEUTRAL_PRIOR + seen * shift
            self._unsure = (1.0 - seen) * NEUTRAL_TOLERANCE
            # pose: the person's usual head orientation, so that a camera angle is not a cue
            self._pose_baseline = np.clip(med[n:], -POSE_BASELINE_DEG, POSE_BASELINE_DEG)
            self._neutral_t = t

    def update(self, landmarks: np.ndarray, blendshapes: np.ndarray | None, t: float) -> FaceCueFrame:
        o = self.options
        p, rot, _ = align(landmarks)
        pose_abs = np.array(head_pose(rot))
        scores = np.zeros(len(BLENDSHAPES)) if blendshapes is None else np.asarray(blendshapes, np.float64)
        if self._t0 is None:
            self._t0 = t
        self._update_neutral(scores, pose_abs, t)
        above = scores - self._neutral
        smooth = self._filter(above, t)
        pose = self._pose_filter(pose_abs, t) - self._pose_baseline
        beyond = smooth - self._unsure  # an action is read only beyond where this person's neutral may still lie
        values = np.clip(np.array([beyond[i].mean() for i in _INDEX]) / FULL, 0.0, 1.0)
        if blendshapes is None or abs(pose_abs[0]) > MEASURABLE_YAW_DEG or abs(pose_abs[1]) > MEASURABLE_PITCH_DEG:
            values[:] = 0.0  # no blendshapes, or too far from frontal to trust them: no action is asserted
        inten = dict(zip((c.name for c in CUES), values.tolist()))
        yaw, pitch, roll = pose
        g = o.gaze_deg
        inten["head_down"] = ramp(pitch, 10, 25)
        inten["head_up"] = ramp(-pitch, 10, 25)
        inten["head_turned"] = ramp(abs(yaw), 15, 35)
        inten["head_tilted"] = ramp(abs(roll), 8, 20)
        inten["gaze_down"] = max(ramp(pitch, g, g + 15), min(1.0, inten["eye_closure"]) * ramp(pitch, 0, g))
        inten["gaze_averted"] = ramp(max(abs(yaw), -pitch), g, g + 15)
        inten["gaze_direct"] = 1.0 - max(
            inten["gaze_down"], inten["gaze_averted"], ramp(max(abs(yaw), abs(pitch)), g / 2, g)
        )
        for name, v in inten.items():
            if v >= o.on:
                self._on.add(name)
            elif v < o.off:
                self._on.discard(name)
        # blinks use the unsmoothed score: smoothing would erase a 100 ms closure
        closed = float(above[_INDEX[_EYE_BLINK]].mean())
        blink = False
        if closed > o.blink_close and self._closed_since is None:
            self._closed_since = t
        elif closed < o.blink_open and self._closed_since is not None:
            if o.blink_min_s <= t - self._closed_since <= o.blink_max_s:
                blink = True
                self._blinks.append(t)
            self._closed_since = None
        while self._blinks and self._blinks[0] < t - 60.0:
            self._blinks.popleft()
        span = min(60.0, max(t - self._t0, 10.0))
        return FaceCueFrame(
            t,
            inten,
            frozenset(self._on),
            (float(yaw), float(pitch), float(roll)),
            closed,
            blink,
            len(self._blinks) * 60.0 / span,
            geometry_vector(p),
            above.astype(np.float32),
        )


def ramp(x: float, lo: float, hi: float) -> float:
    """0 at `lo`, 1 at `hi`, linear between, clipped."""
    return float(min(1.0, max(0.0, (x - lo) / (hi - lo))))
