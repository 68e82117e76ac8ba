"""One explanation for a whole clip (EmoCue-Eval style): perceive every window, pool, explain once.

`ClipExplainer` loads the stages once and is reused across clips (the evaluation harness
`edge-xemo eval clips` calls it per dataset clip). Cues are pooled over windows: a cue is kept when
it is on in at least `min_share` of the windows that could measure it, ranked by share x mean
intensity; bridge tokens are averaged over windows. With `timeline`, each window is also judged (no
LLM) and the clip's window events come back in the result, for its timeline report.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import cast

import numpy as np

from ..analyzer import Analyzer, AnalyzerOptions, RunningMode, Stages, analyzer_options, build_stages, run_record
from ..core.models import RuntimeOptions
from ..core.tap import StageCall, StageTap
from ..core.types import Cue, ModalityResult, ResultCode
from ..io.sources import FileSource
from ..reasoning.judgement import JudgementOptions, explanation_fields
from ..reasoning.stage import Reasoning
from .datasets import Clip
from .evaluation import ClipResult


@dataclass(frozen=True, slots=True)
class ClipOptions:
    """min_share: least share of windows a cue must be on in; max_cues: most cues per modality;
    threads: perception and decoder threads; explain: run the decoder (else cues only); timeline: keep
    the window events (judged per window when `explain`) for the clip's timeline report."""

    min_share: float = 0.3
    max_cues: int = 6
    threads: int = 1
    explain: bool = True
    window_s: float = 2.0
    hop_s: float = 1.0
    timeline: bool = True


def pool(results: list[ModalityResult], modality: str, min_share: float, max_cues: int) -> ModalityResult:
    """Pool per-window results of one modality into one clip-level result."""
    measured = [r for r in results if r.cues or r.tokens is not None or r.code is None]
    if not measured:
        if not results:
            return ModalityResult(modality, code=ResultCode.NOTHING_MEASURED)
        return ModalityResult(modality, code=results[0].code, message=results[0].message)
    on: dict[str, list[Cue]] = defaultdict(list)
    for r in measured:
        for c in r.cues:
            on[c.name].append(c)
    ranked = []
    for name, cues in on.items():
        share = len(cues) / len(measured)
        if share >= min_share:
            phrases = [c.phrase for c in cues]
            phrase = max(set(phrases), key=phrases.count)
            intensity = float(np.mean([c.intensity for c in cues]))
            ranked.append(
                (share * intensity, Cue(name, phrase, intensity, modality, {"share": share}, cues[0].face_id))
            )
    ranked.sort(key=lambda x: -x[0])
    tokens = [r.tokens for r in measured if r.tokens is not None]
    scores: dict[str, list[float]] = defaultdict(list)
    for r in measured:
        for k, v in r.scores.items():
            scores[k].append(v)
    judged = [r.emotion for r in measured if r.emotion]
    emotion = {k: float(np.mean([d.get(k, 0.0) for d in judged])) for k in judged[0]} if judged else {}
    return ModalityResult(
        modality,
        cues=tuple(c for _, c in ranked[:max_cues]),
        tokens=np.mean(np.stack(tokens), axis=0) if tokens and len({t.shape for t in tokens}) == 1 else None,
        scores={k: float(np.mean(v)) for k, v in scores.items()},
        # overlapping windows share words: each once
        transcript=tuple(dict.fromkeys(seg for r in measured for seg in r.transcript)),
        emotion=emotion,
    )


class ClipExplainer:
    """Callable: Clip -> ClipResult; loads the stages on first use and keeps them."""

    def __init__(self, options: ClipOptions | None = None):
        self.options = options or ClipOptions()
        self._stages: Stages | None = None
        self._judge: Reasoning | None = None

    def _load(self) -> Stages:
        """The stages, loaded once; their stream state is reset for each clip."""
        if self._stages is None:
            o = self.options
            self._stages = build_stages(analyzer_options(RuntimeOptions(o.threads), judge=o.explain, explain=o.explain))
        for stage in (self._stages.visual, self._stages.audio):
            if stage is not None:
                stage.reset()
        return self._stages

    def run_record(self) -> dict:
        """What the evaluation ran with (see `analyzer.run_record`); empty before the first clip."""
        return {
            "clip_options": dataclasses.asdict(self.options),
            **(run_record(self._stages) if self._stages is not None else {}),
        }

    def _window_judge(self) -> Reasoning | None:
        """The judgement alone (no narrator), for the timeline's per-window labels; loaded once."""
        if self._judge is None and self.options.timeline and self.options.explain:
            self._judge = Reasoning.create_from_options(
                JudgementOptions(runtime=RuntimeOptions(self.options.threads)), None
            )
        return self._judge

    def perceive(self, source: FileSource, events: list[dict] | None = None) -> tuple[ModalityResult, ModalityResult]:
        """Run perception over the clip and pool the windows; with `events`, the window events (judged) go there."""
        o = self.options
        stages = self._load()
        per_window: dict[str, list[ModalityResult]] = {"visual": [], "auditory": []}

        def collect(key: str):
            def on_call(call: StageCall) -> None:
                if call.kind == "per_window":
                    per_window[key].append(cast(ModalityResult, call.result))

            return on_call

        visual = StageTap(stages.visual, collect("visual")) if source.has_video else None
        audio = StageTap(stages.audio, collect("auditory")) if source.has_audio else None
        analyzer = Analyzer(
            AnalyzerOptions(
                running_mode=RunningMode.VIDEO,
                window_s=o.window_s,
                hop_s=o.hop_s,
                result_callback=(lambda e: events.append(e.to_dict())) if events is not None else (lambda e: None),
            ),
            visual,
            audio,
            self._window_judge() if events is not None else None,
        )
        with analyzer:
            analyzer.run_sources(source)
            analyzer.wait()
        return (
            pool(per_window["visual"], "visual", o.min_share, o.max_cues),
            pool(per_window["auditory"], "auditory", o.min_share, o.max_cues),
        )

    def __call__(self, row: Clip) -> ClipResult:
        t0 = time.perf_counter()
        path = row.video or row.audio
        if path is None:
            raise ValueError(f"clip {row.name!r} has neither video nor audio")
        source = FileSource(path, audio_path=row.audio if row.video else None)
        events: list[dict] | None = [] if self.options.timeline else None
        vis, aud = self.perceive(source, events)
        perceive_s = time.perf_counter() - t0
        if not self.options.explain or (vis.empty and aud.empty):
            status = "ok" if self.options.explain is False else f"no cues ({vis.message}; {aud.message})"
            return ClipResult(
                text="",
                cues={
                    "visual": [c.phrase for c in vis.cues],
                    "auditory": [c.phrase for c in aud.cues],
                    "emotional": [],
                },
                latency_s=perceive_s,
                media_s=source.duration,
                status=status,
                events=tuple(events or ()),
            )
        subtitle = row.subtitle or aud.words
        stages = self._stages
        assert stages is not None and stages.reasoner is not None  # perceive() loaded them, explain on
        exp = stages.reasoner.explain(vis, aud, subtitle)
        return ClipResult(
            text=exp.text,
            label=exp.label,
            latency_s=time.perf_counter() - t0,
            media_s=source.duration,
            status="ok" if exp.valid else f"flagged: {exp.problem}",
            extra={
                "scores": exp.scores,
                **explanation_fields(exp, vis, aud),
                "perceive_s": perceive_s,
                "explain_ms": exp.latency_ms,
            },
            events=tuple(events or ()),
        )
