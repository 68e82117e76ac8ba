"""The judgement stage: a window's evidence -> the judged label, its confidence, outcome and evidence,
and the explanation's text, with or without the LLM.

`Reasoning` composes a `Judge` (the evidence sources and their pool, `reasoning.judgement`) and an
optional narrator, the GGUF decoder (`CueDecoder`). With the narrator, the decoder writes (or, with
rendered sections, reads) the cue sections and adds its label scores as one more source; the other
sources are judged on a helper thread beside its prefill. Without it, the sections are rendered from
perception and no LLM is loaded: the label, confidence, outcome and evidence are the same pool, less
the decoder's source (weight 0 by default: see `judgement.PRIOR_WEIGHTS`).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from ..core.types import Explanation, ModalityResult
from .decoder import (
    Conclusion,
    CueDecoder,
    DecoderOptions,
    Narration,
    emitter,
    finish,
    nothing_to_explain,
    phrases,
    rendered_answer,
)
from .judgement import Judge, JudgementOptions, explanation_fields
from .prompt import MAX_SUBTITLE_CHARS, NothingToExplain, build_prompt_with_notes, clean_text, split_cues


class Reasoning:
    """Reasoner protocol: the judgement (`judge`, None: the narrator's own label) and the narrator (None: no LLM)."""

    def __init__(self, judge: Judge | None = None, narrator: CueDecoder | None = None, beside: bool = True):
        """`beside`: judge the sources on a helper thread while the narrator prefills (a stream); False:
        one after the other, no thread (a single explanation)."""
        if judge is None and narrator is None:
            raise ValueError("Reasoning needs a judge, a narrator or both")
        self.judge, self.narrator = judge, narrator
        self._pool = (
            ThreadPoolExecutor(1, thread_name_prefix="edge-xemo-judgement") if judge and narrator and beside else None
        )
        self.missing: tuple[str, ...] = judge.missing if judge is not None else ()
        """Optional models that are not installed (the judge's text source), one line each."""

    @classmethod
    def create_from_options(cls, judgement: JudgementOptions | None, narrator: DecoderOptions | None) -> "Reasoning":
        """Load the judge (its text head when installed) and the narrator the options turn on."""
        judge = Judge.create_from_options(judgement) if judgement is not None else None
        return cls(judge, CueDecoder.create_from_options(narrator) if narrator is not None else None)

    @property
    def model_file(self):
        return self.narrator.model_file if self.narrator is not None else None

    def explain(
        self,
        visual: ModalityResult,
        auditory: ModalityResult,
        subtitle: str | None,
        on_token: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        t: float | None = None,
    ) -> Explanation:
        """One window's explanation (`t`, the window's end on the source clock, lets the judgement smooth
        over the stream, for each person (`visual.face_id`) apart). Empty perception does not raise: the
        Explanation is invalid, with no label."""
        try:
            return self._explain(
                phrases(visual), phrases(auditory), subtitle, visual, auditory, on_token, should_stop, t
            )
        except NothingToExplain:
            return nothing_to_explain(visual, auditory)

    def explain_cues(
        self,
        visual_cues: list[str],
        auditory_cues: list[str],
        subtitle: str | bytes | None,
        on_token: Callable[[str], None] | None = None,
    ) -> Explanation:
        """Cue phrases and a subtitle given as text (no perception behind them: the judge has its text
        source and the narrator's). Raises NothingToExplain when all are empty."""
        return self._explain(list(visual_cues), list(auditory_cues), subtitle, None, None, on_token, None, None)

    def _explain(
        self,
        visual_cues: list[str],
        auditory_cues: list[str],
        subtitle,
        visual: ModalityResult | None,
        auditory: ModalityResult | None,
        on_token,
        should_stop,
        t: float | None,
    ) -> Explanation:
        t0 = time.perf_counter()
        judge, narrator = self.judge, self.narrator
        words = clean_text(subtitle, MAX_SUBTITLE_CHARS)[0] if subtitle is not None else None

        def narrate(narrator: CueDecoder) -> Narration:
            visual_tokens = visual.tokens if visual is not None else None
            audio_tokens = auditory.tokens if auditory is not None else None
            return narrator.narrate(
                visual_cues,
                auditory_cues,
                subtitle,
                visual_tokens,
                audio_tokens,
                on_token,
                should_stop,
                visual,
                auditory,
            )

        if judge is None:  # the narrator's own label
            assert narrator is not None  # __init__ refuses neither
            return finish(narrate(narrator), None, on_token)
        if narrator is None:
            sources = judge.sources(visual, auditory, visual_cues, auditory_cues, words)
            narration = self._rendered(visual_cues, auditory_cues, subtitle, visual, auditory, on_token, bool(sources))
        else:
            pending = (
                self._pool.submit(judge.sources, visual, auditory, visual_cues, auditory_cues, words)
                if self._pool is not None
                else None
            )
            narration = narrate(narrator)
            sources = (
                pending.result()
                if pending is not None
                else judge.sources(visual, auditory, visual_cues, auditory_cues, words)
            )
            if narration.scores is None:  # stopped early
                return finish(narration, None, on_token)
            sources.append(judge.decoder_source(narration.scores))
        t_judge = time.perf_counter()
        person = visual.face_id if visual is not None else None
        return self._conclude(narration, judge.judge(sources, t, person), on_token, t0, t_judge)

    def _conclude(self, narration: Narration, judgement, on_token, t0: float, t_judge: float) -> Explanation:
        """The explanation of a judged window, its conclusion written by the narrator when it is asked to, else
        rendered; latency entries for the judgement, the written conclusion and the whole."""
        now = time.perf_counter()
        latency = {"judgement": round((now - t_judge) * 1e3, 2)}
        written = None
        if self.narrator is not None and self.narrator.options.conclusion is Conclusion.WRITTEN:
            written = self.narrator.write_conclusion(narration, judgement, on_token)
            latency["conclusion"] = round((time.perf_counter() - now) * 1e3, 2)
        latency["total"] = round((time.perf_counter() - t0) * 1e3, 2)
        return finish(narration, judgement, on_token, latency, written)

    @staticmethod
    def _rendered(visual_cues, auditory_cues, subtitle, visual, auditory, on_token, judged: bool) -> Narration:
        """The sections written from perception, streamed as one piece; no decoder scores (`{}`). `judged`: a
        source judged the window (the voice model on speech without a cue), which is evidence as tokens are."""
        notes = build_prompt_with_notes(visual_cues, auditory_cues, subtitle, False, judged)[1]  # NothingToExplain
        answer = rendered_answer(visual_cues, auditory_cues, visual, auditory)
        emitter(on_token)(answer)
        return Narration(answer, {}, (), tuple(notes), 0, None)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self.narrator is not None:
            self.narrator.close()

    def __enter__(self) -> "Reasoning":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def reason_text(
    visual: str,
    audio: str,
    subtitle: str | None,
    options: DecoderOptions | None = None,
    decoder: CueDecoder | None = None,
    judgement: JudgementOptions | None = None,
) -> dict:
    """Explain cues given as text ("smiling, eyes narrowed"), judged by the cue-text and words sources and the decoder:
    one JSON-able dict {text, emotion, evidence, visual_cues, auditory_cues (`explanation_fields`), valid,
    problem, latency_ms, n_tokens, inputs}. Pass `decoder` to reuse a loaded CueDecoder. Raises ValueError
    when all inputs are empty."""
    narrator = decoder or CueDecoder(options)
    judge = Judge.create_from_options(judgement or JudgementOptions(text_head=True))
    reasoning = Reasoning(judge, narrator, beside=False)
    try:
        visual_in, audio_in = split_cues(visual or ""), split_cues(audio or "")
        e = reasoning.explain_cues(visual_in, audio_in, subtitle)
    finally:
        if decoder is None:
            reasoning.close()
    fields = explanation_fields(e)
    fields["emotion"]["scores"] = {k: round(v, 4) for k, v in e.scores.items()}
    return {
        "text": e.text,
        **fields,
        "valid": e.valid,
        "problem": e.problem,
        "latency_ms": e.latency_ms,
        "n_tokens": e.n_tokens,
        "inputs": {
            "visual_cues": visual_in,
            "auditory_cues": audio_in,
            "subtitle": subtitle is not None,
            "token_slots": "none (cue text only)",
            "model": narrator.session.path.name,
            "lora": narrator.lora_path,
        },
    }
