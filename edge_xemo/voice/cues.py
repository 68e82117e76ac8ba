"""Interpretable auditory cues: window measures and speaker z-scores -> short English phrases.

Phrases follow the wording of expert annotations (EMER: "the tone is raised", "speaks quickly",
"the voice is soft", "there are long pauses", ...). Each rule fires on a z-score against the
speaker's own baseline (pitch level and loudness only this way, so a deep voice is not "sad"),
on an absolute value where one is meaningful (syllable rate, pause length, pitch range), or both.
Hysteresis: a cue turns on at its threshold and stays on until it falls a margin below it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core.types import Cue
from .prosody import WindowMeasures

Z_MARGIN = 0.4
"""How far below its on-threshold a relative cue's z-score must fall to turn it off."""


@dataclass(frozen=True, slots=True)
class CueRule:
    """One vocal cue: `measure` (a WindowMeasures field) moving in `direction` (+1 up, -1 down).

    z_on: z-score that turns it on (None: no relative test); abs_on: absolute value that turns it
    on (None: no absolute test), abs_margin: hysteresis on the absolute scale, abs_span: distance
    past abs_on at which intensity reaches 1; needs: WindowMeasures field that must reach `needs_min`.
    """

    name: str
    phrase: str
    measure: str
    direction: int
    z_on: float | None = None
    abs_on: float | None = None
    abs_margin: float = 0.0
    abs_span: float = 1.0
    needs: str = "speech_s"
    needs_min: float = 0.5


RULES: tuple[CueRule, ...] = (
    CueRule("pitch_high", "the tone is raised", "f0_median_st", +1, z_on=1.5, needs="voiced_s", needs_min=0.3),
    CueRule("pitch_low", "the tone is low and deep", "f0_median_st", -1, z_on=1.5, needs="voiced_s", needs_min=0.3),
    CueRule("loud", "the voice is loud", "level_db", +1, z_on=1.5, abs_on=-14.0, abs_margin=2.0, abs_span=8.0),
    CueRule(
        "soft",
        "the voice is soft and low in volume",
        "level_db",
        -1,
        z_on=1.5,
        abs_on=-45.0,
        abs_margin=2.0,
        abs_span=10.0,
    ),
    CueRule(
        "fast", "speaks quickly", "syllable_rate", +1, z_on=1.3, abs_on=6.0, abs_margin=0.5, abs_span=2.0, needs_min=1.0
    ),
    CueRule(
        "slow", "speaks slowly", "syllable_rate", -1, z_on=1.3, abs_on=2.0, abs_margin=0.3, abs_span=1.0, needs_min=1.0
    ),
    CueRule(
        "lively",
        "the intonation is lively and varied",
        "f0_range_st",
        +1,
        z_on=1.5,
        abs_on=10.0,
        abs_margin=1.0,
        abs_span=5.0,
        needs="voiced_s",
        needs_min=0.6,
    ),
    CueRule(
        "flat",
        "the tone is flat and monotonous",
        "f0_range_st",
        -1,
        z_on=1.5,
        abs_on=2.0,
        abs_margin=0.5,
        abs_span=1.5,
        needs="voiced_s",
        needs_min=0.6,
    ),
    CueRule(
        "rising",
        "the tone rises at the end",
        "f0_end_slope_st_s",
        +1,
        abs_on=20.0,
        abs_margin=5.0,
        abs_span=20.0,
        needs="voiced_s",
        needs_min=0.3,
    ),
    CueRule(
        "long_pauses",
        "there are long pauses",
        "pause_max_s",
        +1,
        abs_on=0.7,
        abs_margin=0.15,
        abs_span=1.0,
        needs_min=0.3,
    ),
    CueRule("tense", "the voice sounds sharp and tense", "alpha_db", +1, z_on=2.0, needs="voiced_s", needs_min=0.3),
    CueRule("breathy", "the voice sounds weak and breathy", "hnr_db", -1, z_on=2.0, needs="voiced_s", needs_min=0.3),
    CueRule(
        "trembling",
        "trembling voice",
        "jitter_pct",
        +1,
        z_on=2.0,
        abs_on=5.0,
        abs_margin=0.5,
        abs_span=3.0,
        needs="voiced_s",
        needs_min=0.5,
    ),
)
CALM = CueRule("steady", "the tone is calm and steady", "f0_median_st", 0, z_on=1.0)
"""Emitted when the speaker is in their usual range on pitch, loudness and rate and no other cue is on."""
CALM_MEASURES = ("f0_median_st", "level_db", "syllable_rate", "f0_range_st")
RULE_NAMES = tuple(r.name for r in RULES) + (CALM.name,)
AECB_NAMES = {"higher_pitch": "pitch_high", "lower_pitch": "pitch_low", "varied": "lively"}
"""The AECB's cue names (fixed by its training data, train/audio_data.py) that the rules name otherwise;
its other cues (fast, slow, loud, soft, flat, trembling, long_pauses) share the rule's name."""


def rule_name(aecb_cue: str) -> str:
    """The rule cue an AECB cue stands for (the same name for most)."""
    return AECB_NAMES.get(aecb_cue, aecb_cue)


def _clip01(x: float) -> float:
    return 0.0 if not math.isfinite(x) else min(1.0, max(0.0, x))


class AuditoryCueTracker:
    """Turns each window's measures and z-scores into cues, with per-cue hysteresis."""

    def __init__(self, rules: tuple[CueRule, ...] = RULES, max_cues: int = 4):
        self.rules, self.max_cues = rules, max_cues
        self._active: set[str] = set()

    def reset(self) -> None:
        self._active.clear()

    def update(self, m: WindowMeasures, z: dict[str, float]) -> tuple[Cue, ...]:
        """Cues for one window with speech, strongest first (at most `max_cues`)."""
        cues = []
        for rule in self.rules:
            x = getattr(m, rule.measure)
            if not math.isfinite(x) or getattr(m, rule.needs) < rule.needs_min:
                self._active.discard(rule.name)
                continue
            was_on = rule.name in self._active
            z_on, abs_on = rule.z_on, rule.abs_on
            score_z = rule.direction * z[rule.measure] if z_on is not None and rule.measure in z else None
            score_a = rule.direction * (x - abs_on) if abs_on is not None else None
            on_z = score_z is not None and z_on is not None and score_z >= z_on - (Z_MARGIN if was_on else 0.0)
            on_a = score_a is not None and score_a >= (-rule.abs_margin if was_on else 0.0)
            if not (on_z or on_a):
                self._active.discard(rule.name)
                continue
            self._active.add(rule.name)
            intensity = max(
                _clip01((score_z - 0.5) / 2.5) if score_z is not None else 0.0,
                _clip01(0.3 + 0.7 * score_a / rule.abs_span) if score_a is not None else 0.0,
            )
            evidence = {rule.measure: float(x)}
            if rule.measure in z:
                evidence[rule.measure + "_z"] = float(z[rule.measure])
            cues.append(Cue(rule.name, rule.phrase, max(intensity, 0.05), "auditory", evidence))
        cues.sort(key=lambda c: -c.intensity)
        cues = cues[: self.max_cues]
        steady = self._steady(m, z, bool(cues))
        return tuple(cues) + ((steady,) if steady else ())

    def _steady(self, m: WindowMeasures, z: dict[str, float], other_cues: bool) -> Cue | None:
        zs = [abs(z[k]) for k in CALM_MEASURES if k in z]
        calm_z = CALM.z_on if CALM.z_on is not None else 0.0  # set for the calm rule
        if other_cues or len(zs) < 3 or m.speech_s < 1.0 or max(zs) >= calm_z:
            self._active.discard(CALM.name)
            return None
        self._active.add(CALM.name)
        evidence = {f"{k}_z": float(z[k]) for k in CALM_MEASURES if k in z}
        return Cue(CALM.name, CALM.phrase, _clip01(1.0 - max(zs) / calm_z) * 0.6 + 0.2, "auditory", evidence)
