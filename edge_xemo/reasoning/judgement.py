"""Grounded emotion judgement: a window's evidence -> a calibrated distribution over `EMOTIONS`.

Each source gives log-scores over the labels it can speak about:

- `expression`: the expression encoder's probabilities (FER2013 mini-XCEPTION), pooled over the
  window's frames of the primary face; it has no "worried" class;
- `facial_actions`: the visual cues matched against EMFACS prototypes (`PROTOTYPES`, through `CUE_AU`);
- `voice`: the voice stage's emotion model (trained on RAVDESS speech, edge_xemo.voice.emotion), its calibrated
  distribution as it is; it has no "worried" class;
- `vocal_profile`: the vocal cues matched against the cue patterns of the vocal-emotion literature
  (`VOCAL_PROFILES`), the voice's source only when the emotion model is not installed;
- `words`: what was said (the subtitle or the transcript, never cue phrases) through a logistic-regression head
  over its MiniLM embedding, fitted on MELD's dialogue lines (train/words_head.py, artifact `words_head`); no
  "worried" class;
- `text`: a logistic-regression head over the MiniLM embedding of cue text and subtitle, fitted on EMER expert
  descriptions (train/text_head.py, artifact `text_head`): for cue text an expert wrote (`edge-xemo reason`),
  off in the live judgement, which would otherwise count the perceived cues a second time; where it judges, the
  `words` source does not (it would count the subtitle a second time; on EMER rows 200-249 the MELD words head
  alone is at chance, UAR 0.14, and pooled with the text head it lowered the UAR from 0.381 to 0.371);
- `decoder`: the decoder's own calibrated label probabilities after the cue sections.

Each source's log-scores are centred over the labels it covers (a label it cannot name gets 0, so it
neither helps nor vetoes that label) and pooled log-linearly: z = sum_s w_s * c_s, p = softmax(z).
The weights (`JudgementOptions.weights`) say where each comes from. Over a stream, z is smoothed with
time constant `time_constant_s` on the source clock (the same input gives the same result). A window
whose top probability is below `min_confidence`, or where two perception sources each rate the other's
label below chance, is judged with an explicit low-confidence `Outcome` and its reason.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..core.distributions import softmax
from ..core.models import ModelError, RuntimeOptions, load_optional, resolve, verified_path
from ..core.types import EMOTIONS, Cue, Explanation, Judgement, ModalityResult, Outcome, SourceJudgement
from .words import WordsHead

log = logging.getLogger(__name__)

# --- facial actions --------------------------------------------------------------------------------
CUE_AU = {
    "inner_brow_raise": 1,
    "outer_brow_raise": 2,
    "brow_lower": 4,
    "upper_lid_raise": 5,
    "cheek_raise": 6,
    "lid_tighten": 7,
    "nose_wrinkle": 9,
    "lip_corner_pull": 12,
    "lip_corner_depress": 15,
    "chin_raise": 17,
    "lip_stretch": 20,
    "lip_press": 24,
    "lips_part": 25,
    "jaw_drop": 26,
    "eye_closure": 43,
}
"""The FACS action unit each visual cue stands for (edge_xemo.vision.face_cues measures them from landmarks:
AU1 inner brow raiser, AU2 outer brow raiser, AU4 brow lowerer, AU5 upper lid raiser, AU6 cheek raiser,
AU7 lid tightener, AU9 nose wrinkler, AU12 lip corner puller, AU15 lip corner depressor, AU17 chin raiser,
AU20 lip stretcher, AU24 lip pressor, AU25 lips part, AU26 jaw drop, AU43 eyes closed)."""
PROTOTYPES: dict[str, tuple[int, ...]] = {
    "happy": (6, 12),
    "sad": (1, 4, 15),
    "surprise": (1, 2, 5, 26),
    "fear": (1, 2, 4, 5, 7, 20, 26),
    "angry": (4, 5, 7, 24),
    "disgust": (9, 15, 17),
    "worried": (1, 4),
}
"""EMFACS-7 prototypes (Friesen & Ekman 1983, as tabulated by Lucey et al. 2010, CK+, table 2) restricted to
the AUs we measure: anger's AU23 (lip tightener) and disgust's AU10/AU16 have no cue. "worried" is not an
EMFACS emotion: it takes the brows of worry, inner brow raised and drawn together (AU1+4; Ekman & Friesen
1975, Unmasking the Face, ch. 9). Neutral is the absence of these expressive AUs."""
SPEECH_AUS = frozenset({25, 26, 43})
"""AUs that talking and blinking produce all the time: they count inside prototypes, never against neutral."""
FACIAL_GAIN = 3.0
"""Log-odds of a perfect prototype match (exactly its AUs, at full strength) over no match: e^3 = 20:1 before
the source weight. A priori: one full EMFACS prototype is strong evidence, but our cues are landmark proxies."""

# --- vocal profiles --------------------------------------------------------------------------------
VOCAL_PROFILES: dict[str, dict[str, int]] = {
    "angry": {
        "pitch_high": 1,
        "lively": 1,
        "loud": 1,
        "fast": 1,
        "tense": 1,
        "rising": 1,
        "pitch_low": -1,
        "soft": -1,
        "slow": -1,
        "flat": -1,
        "breathy": -1,
        "steady": -1,
    },
    "happy": {
        "pitch_high": 1,
        "lively": 1,
        "loud": 1,
        "fast": 1,
        "rising": 1,
        "pitch_low": -1,
        "soft": -1,
        "slow": -1,
        "flat": -1,
        "long_pauses": -1,
        "steady": -1,
    },
    "fear": {
        "pitch_high": 1,
        "fast": 1,
        "flat": 1,
        "trembling": 1,
        "tense": 1,
        "rising": 1,
        "pitch_low": -1,
        "slow": -1,
        "lively": -1,
        "steady": -1,
    },
    "sad": {
        "pitch_low": 1,
        "soft": 1,
        "slow": 1,
        "flat": 1,
        "long_pauses": 1,
        "breathy": 1,
        "trembling": 1,
        "pitch_high": -1,
        "loud": -1,
        "fast": -1,
        "lively": -1,
        "tense": -1,
        "rising": -1,
    },
    "surprise": {
        "pitch_high": 1,
        "lively": 1,
        "rising": 1,
        "loud": 1,
        "pitch_low": -1,
        "flat": -1,
        "slow": -1,
        "steady": -1,
    },
    "disgust": {"pitch_low": 1, "slow": 1, "long_pauses": 1, "pitch_high": -1, "fast": -1, "lively": -1},
    "worried": {
        "pitch_high": 1,
        "fast": 1,
        "soft": 1,
        "flat": 1,
        "long_pauses": 1,
        "trembling": 1,
        "breathy": 1,
        "loud": -1,
        "lively": -1,
        "steady": -1,
    },
    "neutral": {
        "steady": 1,
        "pitch_high": -1,
        "pitch_low": -1,
        "loud": -1,
        "soft": -1,
        "fast": -1,
        "slow": -1,
        "lively": -1,
        "trembling": -1,
        "tense": -1,
    },
}
"""Direction (+1 present, -1 absent) of each vocal cue (edge_xemo.voice.cues) per emotion.
Anger, fear, happiness and sadness: the cue patterns of Juslin & Laukka 2003 (Psychol. Bull. 129, table 7:
speech rate, voice intensity, high-frequency energy ~ tense/breathy, F0 level, F0 variability, F0 contour,
microstructural irregularity ~ trembling; pauses from their sadness entry). Surprise and disgust, which that
review does not cover: Banse & Scherer 1996 (JPSP 70) and Scherer 1986 (higher F0, wider range, rising for
surprise; lower F0, slower for disgust). Worried: anxiety in Banse & Scherer 1996, a weaker fear (higher,
faster, softer, hesitant). Neutral: the speaker's usual range ("steady"), no marked cue."""
VOCAL_GAIN = 2.0
"""Log-odds of a label whose whole profile agrees with every cue present, at full evidence (sum of
intensities >= 1), over one with no agreement. A priori and below FACIAL_GAIN: listeners decode vocal
emotion less accurately than facial (Juslin & Laukka 2003 report about half the accuracy gap to ceiling)."""

# --- pooling -------------------------------------------------------------------------------------------
SOURCES = ("expression", "facial_actions", "voice", "vocal_profile", "words", "text", "decoder")
PERCEPTION = ("expression", "facial_actions", "voice", "vocal_profile")
LEARNED = {"expression": "facial expression", "voice": "voice", "words": "choice of words"}
"""The sources that are learned classifiers, and what they judged (the explanation names their label)."""


PRIOR_WEIGHTS = {
    "expression": 1.0,
    "facial_actions": 1.0,
    "voice": 1.0,
    "vocal_profile": 0.7,
    "words": 1.0,
    "text": 1.0,
    "decoder": 0.0,
}
"""Weights before fitting. `text` is replaced by the fitted one (train/judgement_fit.py: maximum likelihood on
the text head's out-of-fold predictions for EMER-V2 rows 0-199, kept in the `text_head` sidecar's `fusion`).
`decoder` is 0, reported but not pooled: its LoRA was trained on those rows, so no out-of-fold predictions
exist to fit it on, and on the labelled clips and photos here its label was never right (docs/judgement.md).
The face weights are replaced by the ones fitted beside the facial-action head (train/face_blendshapes.py: maximum
likelihood on CK+ faces, the head's subject-out predictions and the expression encoder's; sidecar
`blendshape_emotion`, `fusion`); without that head (not installed, or --commercial-only) they stay 1, taking
each distribution as it is. `vocal_profile` (the voice's source when its model is absent) is 0.7: vocal emotion
is decoded less reliably than facial (Juslin & Laukka 2003). `voice` and `words` are replaced by the ones fitted on
held-in labelled streams (train/judgement_fit.py: least balanced log-loss of the judgement on RAVDESS actors 1-20's
out-of-fold windows and on MELD train's out-of-fold lines; sidecars `voice_emotion` and `words_head`, `fusion`);
without their models the sources are absent."""


@dataclass(frozen=True, slots=True)
class JudgementOptions:
    """How the sources are weighed.

    weights: per-source weight in the log-linear pool (see `PRIOR_WEIGHTS`; missing names take those).
    min_confidence: below this top probability the outcome is WEAK_EVIDENCE (None: the fitted value in the
      sidecar, else 0.35, a little under three times the 1/8 of no evidence).
    time_constant_s: smoothing of the pooled log-scores over a stream, on the source clock (0: off; None: the value
      fitted on held-in labelled streams, train/judgement_fit.py, sidecar `voice_emotion`, `fusion`; off without it).
    words: judge what was said (subtitle, transcript) with the MELD words head when it is installed.
    text_head: judge cue text with the EMER cue-description head (for expert cue text: `edge-xemo reason`).
    runtime: threads and provider of the heads' MiniLM (None: the analyzer's, or `RuntimeOptions()` alone).
    """

    weights: dict[str, float] | None = None
    """Per-source weights; None = `PRIOR_WEIGHTS` with the weights fitted in the sidecars' `fusion` records."""
    min_confidence: float | None = None
    time_constant_s: float | None = None
    words: bool = True
    text_head: bool = False
    runtime: RuntimeOptions | None = None


def evidence_text(visual: Sequence[str], auditory: Sequence[str], subtitle: str | None) -> str:
    """The words of a window as the text head reads them (the same layout at training and run time)."""
    text = (
        f"In the video, {', '.join(visual) or 'nothing notable'}. "
        f"In the audio, {', '.join(auditory) or 'nothing notable'}."
    )
    if subtitle:
        text += f' The subtitle says: "{subtitle}".'
    return text


def top_label(dist: dict[str, float]) -> str:
    """The most probable label of a distribution."""
    return max(dist, key=lambda label: dist[label])


def _softmax(z: dict[str, float]) -> dict[str, float]:
    m = max(z.values())
    e = {k: math.exp(v - m) for k, v in z.items()}
    s = sum(e.values())
    return {k: v / s for k, v in e.items()}


def _strongest(cues: Sequence[Cue], names: set[str], n: int = 3) -> tuple[str, ...]:
    return tuple(c.phrase for c in sorted((c for c in cues if c.name in names), key=lambda c: -c.intensity)[:n])


def expression_source(scores: dict[str, float], weight: float) -> SourceJudgement | None:
    """The expression encoder's pooled probabilities (its labels that are in EMOTIONS)."""
    dist = {k: float(v) for k, v in scores.items() if k in EMOTIONS}
    if not dist:
        return None
    total = sum(dist.values()) or 1.0
    dist = {k: v / total for k, v in dist.items()}
    return SourceJudgement("expression", dist, weight)


def facial_action_source(
    cues: Sequence[Cue], weight: float, learned: dict[str, float] | None = None
) -> SourceJudgement | None:
    """The facial actions' judgement: `learned`, the blendshape head's calibrated distribution
    (edge_xemo.vision.face_emotion) when the visual stage ran it, else the EMFACS prototype matches of the visual
    cues: the cosine between the AU intensity vector and each prototype (so a fuller prototype beats its own
    subset and AUs outside it count against it), times the evidence strength min(1, |AU vector|); neutral is 1 -
    the strongest expressive AU. Either way the cues of the winning label's prototype are the ones behind it."""
    if learned:
        dist = {e: float(p) for e, p in learned.items() if e in EMOTIONS}
        names = {n for n, a in CUE_AU.items() if a in PROTOTYPES.get(top_label(dist), ())}
        return SourceJudgement("facial_actions", dist, weight, _strongest(cues, names))
    au: dict[int, float] = {}
    for c in cues:
        if c.name in CUE_AU:
            au[CUE_AU[c.name]] = max(au.get(CUE_AU[c.name], 0.0), float(c.intensity))
    if not au:
        return None
    norm = math.sqrt(sum(v * v for v in au.values()))
    strength = min(1.0, norm)
    match = {
        e: strength * sum(au.get(a, 0.0) for a in proto) / (math.sqrt(len(proto)) * norm)
        for e, proto in PROTOTYPES.items()
    }
    expressive = [v for a, v in au.items() if a not in SPEECH_AUS]
    match["neutral"] = 1.0 - max(expressive, default=0.0)
    dist = _softmax({e: FACIAL_GAIN * match[e] for e in EMOTIONS})
    names = {n for n, a in CUE_AU.items() if a in PROTOTYPES.get(top_label(dist), ())}
    return SourceJudgement("facial_actions", dist, weight, _strongest(cues, names))


def vocal_profile_source(cues: Sequence[Cue], weight: float) -> SourceJudgement | None:
    """Agreement of the vocal cues with each emotion's profile, scaled by how much evidence there is."""
    present = {c.name: float(c.intensity) for c in cues if c.modality == "auditory"}
    if not present:
        return None
    mass = sum(present.values())
    strength = min(1.0, mass)
    z = {
        e: VOCAL_GAIN * strength * sum(v * VOCAL_PROFILES[e].get(n, 0) for n, v in present.items()) / mass
        for e in EMOTIONS
    }
    dist = _softmax(z)
    names = {n for n, d in VOCAL_PROFILES[top_label(dist)].items() if d > 0}
    return SourceJudgement("vocal_profile", dist, weight, _strongest(cues, names))


def voice_source(auditory: ModalityResult, weight: float) -> SourceJudgement | None:
    """The voice emotion model's distribution; the window's vocal cues as the cues behind it."""
    if not auditory.emotion:
        return None
    cues = tuple(c.phrase for c in sorted(auditory.cues, key=lambda c: -c.intensity)[:3])
    return SourceJudgement("voice", dict(auditory.emotion), weight, cues)


class TextHead:
    """Logistic regression over MiniLM embeddings of `evidence_text` (artifact `text_head`)."""

    def __init__(self, embedder, weight: np.ndarray, labels: Sequence[str]):
        self.embedder, self.weight, self.labels = embedder, weight, tuple(labels)

    @classmethod
    def load(cls, threads: int = 1, provider: str = "cpu") -> "TextHead":
        """The installed head and MiniLM encoder; ModelError when either is missing or corrupt."""
        from .embeddings import EmbedderOptions, MiniLMEmbedder

        entry = resolve("text_head").entry
        weight = np.load(verified_path("text_head"))
        labels = entry["outputs"][0]["labels"]
        if weight.shape != (len(labels), 385):
            raise ModelError(f"text_head has shape {weight.shape}, expected ({len(labels)}, 385)")
        return cls(
            MiniLMEmbedder.create_from_options(EmbedderOptions(threads=threads, provider=provider)), weight, labels
        )

    def __call__(self, text: str) -> dict[str, float]:
        x = self.embedder.embed([text])[0]
        p = softmax(self.weight[:, :-1] @ x + self.weight[:, -1])
        return {lab: float(v) for lab, v in zip(self.labels, p)}


def _disagreement(sources: Sequence[SourceJudgement]) -> tuple[SourceJudgement, ...]:
    """Two sources that each rate the other's top label below chance (1 / the labels they cover), or ()."""

    def below_chance(s, label):
        return label in s.distribution and s.distribution[label] < 1.0 / len(s.distribution)

    for i, a in enumerate(sources):
        for b in sources[i + 1 :]:
            ta, tb = top_label(a.distribution), top_label(b.distribution)
            if ta != tb and below_chance(a, tb) and below_chance(b, ta):
                return a, b
    return ()


class Judge:
    """Pools a window's sources into a `Judgement`; keeps the smoothed state of one stream."""

    def __init__(
        self,
        options: JudgementOptions | None = None,
        text_head: TextHead | None = None,
        fitted: dict | None = None,
        missing: tuple[str, ...] = (),
        words_head: WordsHead | None = None,
    ):
        """`fitted`: the `fusion` records of the sidecars (weights, min_confidence, time_constant_s), if any;
        `missing`: the optional models that could not be loaded, one line each."""
        self.options = options or JudgementOptions()
        self.text_head = text_head
        self.words_head = words_head
        fitted = fitted or {}
        self.weights = {**PRIOR_WEIGHTS, **fitted.get("weights", {}), **(self.options.weights or {})}
        self.min_confidence = (
            self.options.min_confidence
            if self.options.min_confidence is not None
            else fitted.get("min_confidence", 0.35)
        )
        tau = self.options.time_constant_s
        self.time_constant_s = float(fitted.get("time_constant_s", 0.0) if tau is None else tau)
        """Smoothing time constant in seconds (0: off)."""
        self.missing = missing
        """Optional models that are not installed, one line each (the analyzer reports them)."""
        self._state: dict[int | None, tuple[float, dict[str, float]]] = {}
        """The smoothed pool per person (face id; None: a window without a face)."""

    @classmethod
    def create_from_options(cls, options: JudgementOptions | None = None) -> "Judge":
        """A Judge with the heads the options ask for when installed (logged and left out when not), fitted values
        applied."""
        options = options or JudgementOptions()
        runtime = options.runtime or RuntimeOptions()
        head, words, missing = None, None, []
        fitted: dict[str, Any] = {}
        for fit in ("text_head", "blendshape_emotion", "voice_emotion", "words_head"):  # what was fitted beside each
            try:
                record = resolve(fit).entry.get("fusion", {})
            except ModelError:
                continue
            fitted = {**fitted, **record, "weights": {**fitted.get("weights", {}), **record.get("weights", {})}}
        if options.text_head:
            head, why = load_optional(
                "judgement's text source", lambda: TextHead.load(runtime.threads, runtime.provider)
            )
            missing += [why] if why else []
        if options.words:
            words, why = load_optional(
                "judgement's words source (what was said is not judged)",
                lambda: WordsHead.load(runtime.threads, runtime.provider),
            )
            missing += [why] if why else []
        return cls(options, head, fitted, tuple(missing), words)

    def reset(self) -> None:
        """Forget the smoothed state (a new stream)."""
        self._state = {}

    def sources(
        self,
        visual: ModalityResult | None,
        auditory: ModalityResult | None,
        visual_phrases: Sequence[str],
        auditory_phrases: Sequence[str],
        subtitle: str | None,
    ) -> list[SourceJudgement]:
        """Each available source's judgement of one window, but the decoder's (`decoder_source`, which needs
        its prefill: `reasoning.stage.Reasoning` runs these beside it)."""
        w = self.weights
        out = []
        if visual is not None:
            out += [
                expression_source(visual.scores, w["expression"]),
                facial_action_source(visual.cues, w["facial_actions"], visual.emotion),
            ]
        if auditory is not None:
            out.append(
                voice_source(auditory, w["voice"])
                if auditory.emotion
                else vocal_profile_source(auditory.cues, w["vocal_profile"])
            )
        if self.words_head is not None and self.text_head is None and subtitle and subtitle.strip():
            # the text head reads the subtitle too: judged twice, the same words would count twice
            out.append(SourceJudgement("words", self.words_head(subtitle), w["words"], (f'"{subtitle.strip()}"',)))
        if self.text_head is not None and (visual_phrases or auditory_phrases or subtitle):
            text = evidence_text(visual_phrases, auditory_phrases, subtitle)
            out.append(
                SourceJudgement(
                    "text", self.text_head(text), w["text"], tuple(visual_phrases[:2]) + tuple(auditory_phrases[:1])
                )
            )
        return [s for s in out if s is not None]

    def decoder_source(self, scores: dict[str, float]) -> SourceJudgement:
        """The decoder's label scores as a source."""
        return SourceJudgement("decoder", dict(scores), self.weights["decoder"])

    def judge(self, sources: Sequence[SourceJudgement], t: float | None = None, person: int | None = None) -> Judgement:
        """Pool the sources (smoothed over the stream when `t` is given, each `person` apart: the face id the window
        is about), name the outcome and the carrying cues.
        A source of weight 0 is reported in `sources` but adds nothing and cannot raise a disagreement. A label no
        pooled source covers gets probability 0: no evidence can speak for it ("worried", which none of the
        learned sources has, would otherwise take a share of every window by default)."""
        z = {e: 0.0 for e in EMOTIONS}
        contributions = {s.name: s.contribution() for s in sources}
        for c in contributions.values():
            for e in EMOTIONS:
                z[e] += c[e]
        z = self._smooth(z, t, person)
        covered = {e for s in sources if s.weight > 0 for e in s.distribution}
        dist = _softmax({e: v for e, v in z.items() if e in covered}) if covered else _softmax(z)
        dist = {e: dist.get(e, 0.0) for e in EMOTIONS}
        label = top_label(dist)
        outcome, reason = Outcome.CONFIDENT, None
        clash = _disagreement([s for s in sources if s.name in PERCEPTION and s.weight > 0])
        if clash:
            outcome = Outcome.SOURCES_DISAGREE
            reason = "; ".join(f"{s.name.replace('_', ' ')} points to {top_label(s.distribution)}" for s in clash)
        elif dist[label] < self.min_confidence:
            outcome = Outcome.WEAK_EVIDENCE
            reason = f"top probability {dist[label]:.2f} is below {self.min_confidence:.2f}"
        helping = sorted(
            (s for s in sources if contributions[s.name][label] > 0), key=lambda s: -contributions[s.name][label]
        )
        carried: list[str] = []
        for s in helping:
            if top_label(s.distribution) != label:  # it helped, but its cues are those of another label
                continue
            if s.name in LEARNED:
                article = "an" if label[0] in "aeiou" else "a"
                carried.append(f"{article} {label} {LEARNED[s.name]} ({s.distribution[label]:.2f})")
            if s.name in PERCEPTION:
                carried += [c for c in s.cues if c not in carried]
        return Judgement(label, dist, outcome, reason, tuple(sources), tuple(carried[:3]))

    def _smooth(self, z: dict[str, float], t: float | None, person: int | None) -> dict[str, float]:
        tau = self.time_constant_s
        if t is None or tau <= 0:
            return z
        prev = self._state.get(person)
        if prev is not None and 0 <= t - prev[0] <= 3 * tau:
            a = math.exp(-(t - prev[0]) / tau)
            z = {e: a * prev[1][e] + (1 - a) * z[e] for e in EMOTIONS}
        self._state[person] = (t, z)
        return z


def explanation_fields(
    exp: Explanation, visual: ModalityResult | None = None, auditory: ModalityResult | None = None
) -> dict:
    """The judgement fields of an explanation (schema 1.1): `emotion` (label, scores and, when judged,
    confidence, outcome, reason, carried_by), `evidence` (per source: distribution, weight, cues), the parsed
    `visual_cues` / `auditory_cues`, and `perceived` (the cue phrases of the window) when its results are given."""
    emotion: dict[str, Any] = {"label": exp.label, "scores": exp.scores}
    evidence = (
        {"decoder": {"distribution": exp.decoder_scores, "weight": 1.0, "cues": []}} if exp.decoder_scores else {}
    )
    j = exp.judgement
    if j is not None:
        emotion.update(confidence=j.confidence, outcome=j.outcome.value, reason=j.reason, carried_by=list(j.carried_by))
        evidence = {s.name: s.to_dict() for s in j.sources}
    out = {
        "emotion": emotion,
        "evidence": evidence,
        "visual_cues": list(exp.visual_cues),
        "auditory_cues": list(exp.auditory_cues),
    }
    if visual is not None and auditory is not None:
        out["perceived"] = {"visual": [c.phrase for c in visual.cues], "auditory": [c.phrase for c in auditory.cues]}
    return out
