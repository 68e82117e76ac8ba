"""Window-level visual cues: which of a face's per-frame cues were on for a window, plus motion cues
(nods, head shakes, frequent blinking) that only a run of frames shows.

A cue is reported when it is on in at least `min_on_fraction` of the face's frames; of cues that
cannot describe one face at once (`EXCLUSIVE`), the one on more often wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.types import Cue
from .face_cues import CUE_NAMES, phrase, ramp
from .observation import FaceObservation

EXCLUSIVE = (
    ("gaze_direct", "gaze_averted", "gaze_down"),
    ("head_down", "head_up"),
    ("lip_corner_pull", "lip_corner_depress"),
    ("upper_lid_raise", "lid_tighten", "eye_closure"),
    ("jaw_drop", "lips_part"),
    ("lip_press", "lips_part", "jaw_drop"),
)
"""Cues that cannot both describe one face in one window."""
ARTICULATION = ("lips_part", "jaw_drop")
"""Mouth opening cues that speech produces: dropped from a window in which they go up and down repeatedly."""


@dataclass(frozen=True, slots=True)
class WindowCueOptions:
    """min_on_fraction: a cue is reported for a window when it is on in at least this share of the
    face's frames. nod_deg / shake_deg: peak-to-peak pitch / yaw within a window that counts as a nod /
    head shake. articulation_reversals / articulation_step: a mouth-opening cue whose intensity changes direction
    this many times (by at least this step) in a window is speech, not a cue; 3 in 2 s is well under the 4-5
    syllables a second of conversational speech, and a held open mouth (surprise) reverses at most once."""

    min_on_fraction: float = 0.3
    nod_deg: float = 6.0
    shake_deg: float = 8.0
    articulation_reversals: int = 3
    articulation_step: float = 0.15

    def __post_init__(self):
        if not 0.0 < self.min_on_fraction <= 1.0:
            raise ValueError(f"min_on_fraction must be in (0, 1], got {self.min_on_fraction}")


def window_cues(face_id: int, frames: list[FaceObservation], options: WindowCueOptions) -> list[Cue]:
    """One face's cues over a window's frames, strongest first."""
    n = len(frames)
    found: dict[str, Cue] = {}
    on_frac: dict[str, float] = {}
    for name in CUE_NAMES:
        vals = np.array([f.cues.intensity[name] for f in frames if name in f.cues.on])
        frac = len(vals) / n
        if frac < options.min_on_fraction:
            continue
        mean = float(vals.mean())
        on_frac[name] = frac
        found[name] = Cue(
            name,
            phrase(name, mean),
            mean,
            "visual",
            {"mean": mean, "peak": float(vals.max()), "on_fraction": frac},
            face_id,
        )
    for group in EXCLUSIVE:
        present = [g for g in group if g in found]
        for loser in sorted(present, key=lambda g: (-on_frac[g], -found[g].intensity))[1:]:
            found.pop(loser, None)
    # a direct gaze is the usual state, not a cue (it still keeps "averted" out when it dominates)
    found.pop("gaze_direct", None)
    if n >= 5:  # a mouth that opens and closes with speech is talking, not an expression
        for name in ARTICULATION:
            series = np.array([f.cues.intensity[name] for f in frames])
            if name in found and _reversals(series, options.articulation_step) >= options.articulation_reversals:
                found.pop(name)
    cues = list(found.values()) + motion_cues(face_id, frames, options)
    return sorted(cues, key=lambda c: -c.intensity)


FREQUENT_BLINKS_PER_MIN = 37.0
"""People blink 26 +- 11 times a minute in conversation (Bentivoglio et al. 1997, Mov. Disord. 12): a talking
face blinks "frequently" from the conversational mean + 1 SD, "rapidly" from about mean + 2 SD (48, where the
intensity ramp from 26 to 70 per minute reaches 0.5)."""


def motion_cues(face_id: int, frames: list[FaceObservation], options: WindowCueOptions) -> list[Cue]:
    """Nods and head shakes (pose oscillation within the window) and frequent blinking."""
    out = []
    if len(frames) >= 5:
        pose = np.array([f.cues.pose for f in frames])
        yaw_pp, pitch_pp = float(np.ptp(pose[:, 0])), float(np.ptp(pose[:, 1]))
        if pitch_pp >= options.nod_deg and pitch_pp > 1.5 * yaw_pp and _reversals(pose[:, 1], 2.0) >= 1:
            v = ramp(pitch_pp, options.nod_deg - 2, 15.0)
            out.append(
                Cue("nod", "slight nod" if v < 0.5 else "nods", v, "visual", {"pitch_range_deg": pitch_pp}, face_id)
            )
        if yaw_pp >= options.shake_deg and yaw_pp > 1.5 * pitch_pp and _reversals(pose[:, 0], 3.0) >= 2:
            v = ramp(yaw_pp, options.shake_deg - 2, 25.0)
            out.append(
                Cue(
                    "head_shake",
                    "shakes the head slightly" if v < 0.5 else "shakes the head",
                    v,
                    "visual",
                    {"yaw_range_deg": yaw_pp},
                    face_id,
                )
            )
    blinks = sum(f.cues.blink for f in frames)
    rate = frames[-1].cues.blink_rate
    if blinks and rate >= FREQUENT_BLINKS_PER_MIN:
        v = ramp(rate, 26.0, 70.0)
        out.append(
            Cue(
                "blinks",
                "rapid blinking" if v >= 0.5 else "frequent blinking",
                v,
                "visual",
                {"blink_rate_per_min": rate, "blinks_in_window": float(blinks)},
                face_id,
            )
        )
    return out


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
