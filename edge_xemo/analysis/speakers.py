"""Who is speaking: a window's voice attributed to one of the people in view, or to nobody.

A speaker's lips open and close with the loudness of their voice (syllables come 4-5 a second); a listener's,
or a person talking without being heard, do not follow it. For each person the correlation between the gap
between the lips per frame (`vision.stage.lip_gap`) and the voice's loudness at the same moments (averaged over
`SMOOTH_S`, the lips allowed to lead or trail by up to `MAX_LAG_S`) says how well the mouth follows the voice;
it is smoothed over the stream's windows (`Speakers`). The voice goes to the best-following person when that
correlation is at least `MIN_R` and beats the next person's by `MARGIN`; else it is left unattributed and the
explanation says so. With one face in view the voice is theirs, as it always was (a voice from off camera is the
case this cannot tell).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..core.types import Activity, ModalityResult

MIN_SPEECH_S = 0.3
"""Less speech than this in a window is nobody's (the voice stage's `min_window_speech_s`)."""
SMOOTH_S = 0.1
"""The loudness is averaged over this long around each frame: a frame of 25 frames/s and a syllable's attack."""
MAX_LAG_S = 0.12
"""The mouth may lead or trail the sound by this much (audio-visual asynchrony of speech: the lips move up to
about 100 ms ahead of the sound; Chandrasekaran et al. 2009)."""
MIN_FRAMES = 10
"""Fewer frames of a face than this in a window cannot show its mouth following a voice."""
MIN_R = 0.3
"""Least correlation that attributes the voice; see `MARGIN` for where both come from."""
MARGIN = 0.15
"""How much the attributed person's correlation must beat the next one's. `MIN_R` and `MARGIN` were set before any
footage was measured (a moderate correlation, and a clear lead); on the assembled two-person footage of
`benchmarks/speakers.py` they attribute no window wrongly (docs/people.md)."""
TIME_CONSTANT_S = 1.0 / math.log(2)
"""The correlations are smoothed over windows with this time constant: at the 1 s hop a new window weighs as much
as all before it. Chosen on the same footage, after seeing it (docs/people.md): without smoothing, 14 of its
20 speech windows were attributed and none wrongly; with it, 16."""


@dataclass(frozen=True, slots=True)
class Attribution:
    """Whose the window's voice is (`face_id`, None: nobody's) and why; `speech`: whether there was a voice to
    attribute; `first`: the window's most-seen face; `scores`: each face's smoothed correlation."""

    face_id: int | None
    reason: str
    speech: bool = True
    first: int | None = None
    scores: dict[int, float] = field(default_factory=dict)

    def hears(self, person: ModalityResult, people: int) -> bool:
        """Whether the voice and the words join `person`'s judgement among `people` in view: theirs, or the only
        one's; without speech the words (a subtitle) go to the window's most-seen face."""
        if people <= 1:
            return True
        return person.face_id == (self.face_id if self.speech else self.first)

    def to_dict(self) -> dict:
        return {"face_id": self.face_id, "reason": self.reason, "scores": {str(k): v for k, v in self.scores.items()}}


class Speakers:
    """Who is speaking, window after window of one stream: each face's correlation is smoothed over the windows
    (`TIME_CONSTANT_S`), so a window where a silent talker's mouth happens to follow the voice does not take it
    from the person who has been speaking. Not thread-safe: the perception thread calls it."""

    def __init__(self):
        self._scores: dict[int, tuple[float, float]] = {}  # face id -> (window end, smoothed correlation)

    def attribute(self, people: Sequence[ModalityResult], voice: ModalityResult, t: float) -> Attribution:
        """The person in `people` (a visual result's, each with its mouth `activity`) whose voice `voice` is, in
        the window ending at `t`."""
        loudness, first = voice.activity, people[0].face_id if people else None
        if loudness is None or loudness.speech_s < MIN_SPEECH_S:
            return Attribution(None, "no speech", speech=False, first=first)
        if not people:
            return Attribution(None, "no face in view")
        if len(people) == 1:
            return Attribution(first, "the only face in view", first=first)
        # a face not measured for 3 time constants is forgotten: its old score says nothing of this window
        self._scores = {fid: (t0, r) for fid, (t0, r) in self._scores.items() if 0 <= t - t0 <= 3 * TIME_CONSTANT_S}
        for p in people:
            if p.face_id is not None and p.activity is not None and len(p.activity.t) >= MIN_FRAMES:
                self._smooth(p.face_id, follows(p.activity, loudness), t)
        here = {p.face_id for p in people}
        scores = {fid: round(r, 3) for fid, (_, r) in self._scores.items() if fid in here}
        ranked = sorted(scores.items(), key=lambda kv: -kv[1])
        if not ranked:
            return Attribution(None, "no face seen long enough", first=first)
        (best, r), runner_up = ranked[0], (ranked[1][1] if len(ranked) > 1 else -1.0)
        if r >= MIN_R and r - runner_up >= MARGIN:
            why = f"face {best}'s mouth moves with the voice (r {r:.2f}, next {runner_up:.2f})"
            return Attribution(best, why, first=first, scores=scores)
        why = f"no mouth moves with the voice clearly (best r {r:.2f}, next {runner_up:.2f})"
        return Attribution(None, why, first=first, scores=scores)

    def _smooth(self, face_id: int, r: float, t: float) -> None:
        prev = self._scores.get(face_id)  # recent: `attribute` forgot the others
        if prev is not None:
            a = math.exp(-(t - prev[0]) / TIME_CONSTANT_S)
            r = a * prev[1] + (1 - a) * r
        self._scores[face_id] = (t, r)


def follows(mouth: Activity, loudness: Activity) -> float:
    """How well a mouth's opening follows a voice's loudness: the best Pearson correlation over lags within
    +-`MAX_LAG_S` (0 when either does not change)."""
    step = float(np.median(np.diff(loudness.t))) if len(loudness.t) > 1 else 0.01
    width = max(1, int(round(SMOOTH_S / step)))
    smooth = np.convolve(loudness.value, np.ones(width) / width, mode="same")
    best = 0.0
    for lag in np.arange(-MAX_LAG_S, MAX_LAG_S + 1e-9, 0.04):
        envelope = np.interp(mouth.t + lag, loudness.t, smooth)
        if np.std(envelope) > 1e-9 and np.std(mouth.value) > 1e-9:
            best = max(best, float(np.corrcoef(mouth.value, envelope)[0, 1]))
    return best
