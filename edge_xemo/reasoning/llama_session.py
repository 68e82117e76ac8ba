"""A llama.cpp model with one context, fed token ids or float32 embedding rows (llama-cpp-python's C API).

Embedding rows go through `llama_batch_init(n, n_embd, 1)` + `batch.embd`; the model's own token
embeddings fed this way give the same logits as the token ids (tested). Models with multi-axis
RoPE (Qwen2-VL style, 4 positions per row) and architectures outside SUPPORTED_ARCHS are rejected.
Projected rows are fed as given: a projector must output the model's input-embedding space (for
Gemma models the sqrt(n_embd)-scaled one, as `token_embeddings` returns).

llama.cpp's CPU kernels are not batch-invariant: the same prompt split into different llama_decode
calls gives logits that differ by up to about 1 (measured on SmolLM2 Q4_1); the same split gives
identical logits, so a reused prefix cache is exact.
"""

from __future__ import annotations

import ctypes
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..core.models import ModelError
from .gguf_header import read_gguf_header

log = logging.getLogger(__name__)

SUPPORTED_ARCHS = ("llama", "qwen2", "qwen3", "mistral", "phi3", "granite", "smollm3", "gemma", "gemma2", "gemma3")
"""GGUF architectures with one position per embedding row that the embedding path supports."""
_llama: Any = None
_log_callback = None


def llama_cpp_module():
    """Import llama_cpp once; route its native warnings to our logger at debug level."""
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


class LlamaSession:
    """One GGUF model and one llama.cpp context (sequence 0). Not thread-safe: the caller locks."""

    def __init__(
        self,
        path: Path,
        n_ctx: int = 2048,
        n_batch: int = 512,
        n_threads: int = 1,
        n_gpu_layers: int = 0,
        lora_path: str | None = None,
        lora_scale: float = 1.0,
    ):
        self.path = Path(path)
        if not self.path.exists():
            raise ModelError(f"decoder model not found: {self.path}")
        self.header = read_gguf_header(self.path)
        self.arch = self.header.architecture
        if self.arch not in SUPPORTED_ARCHS:
            raise ModelError(
                f"decoder architecture {self.arch!r} ({self.path.name}) is not supported for embedding "
                f"input; supported: {', '.join(SUPPORTED_ARCHS)}"
            )
        self.n_ctx, self.n_batch = n_ctx, min(n_batch, n_ctx)
        self._model = self._ctx = self._adapter = None
        self._batches: dict[int, object] = {}
        self._token_embd: np.ndarray | None = None
        try:
            self._load(n_threads, n_gpu_layers, lora_path, lora_scale)
        except Exception:
            self.close()
            raise

    def _load(self, n_threads, n_gpu_layers, lora_path, lora_scale) -> None:
        L = llama_cpp_module()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = n_gpu_layers
        self._model = L.llama_model_load_from_file(str(self.path).encode("utf-8"), mp) or None
        if self._model is None:
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
        cp.n_ctx = self.n_ctx
        cp.n_batch = cp.n_ubatch = self.n_batch
        cp.n_seq_max = 1
        cp.n_threads = cp.n_threads_batch = n_threads
        self._ctx = L.llama_init_from_model(self._model, cp) or None
        if self._ctx is None:
            raise ModelError(f"llama.cpp cannot create a context of {self.n_ctx} tokens for {self.path.name}")
        self._mem = L.llama_get_memory(self._ctx)
        if lora_path:
            if not Path(lora_path).exists():
                raise ModelError(f"LoRA adapter not found: {lora_path}")
            self._adapter = L.llama_adapter_lora_init(self._model, str(lora_path).encode("utf-8")) or None
            if self._adapter is None:
                raise ModelError(f"llama.cpp cannot load LoRA adapter {lora_path} for {self.path.name}")
            adapters = (L.llama_adapter_lora_p_ctypes * 1)(self._adapter)
            scales = (ctypes.c_float * 1)(lora_scale)
            if L.llama_set_adapters_lora(self._ctx, adapters, 1, scales) != 0:
                raise ModelError(f"cannot apply LoRA adapter {lora_path} to {self.path.name}")

    def close(self) -> None:
        """Free batches, context, adapter and model (idempotent)."""
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

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _open(self) -> None:
        if self._ctx is None:
            raise RuntimeError(f"the llama.cpp session for {self.path.name} is closed")

    def tokenize(self, text: str) -> list[int]:
        """Token ids of `text` (no BOS; special tokens such as <|im_end|> parsed)."""
        self._open()
        data = text.encode("utf-8")
        buf = (_llama.llama_token * (len(data) + 8))()
        n = _llama.llama_tokenize(self._vocab, data, len(data), buf, len(buf), False, True)
        if n < 0:
            raise ValueError(f"cannot tokenize text of {len(data)} bytes")
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens render empty)."""
        self._open()
        buf = ctypes.create_string_buffer(128)
        n = _llama.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        return buf.raw[: max(n, 0)]

    def is_end(self, token: int) -> bool:
        """End of generation or a control token (e.g. <|im_start|>)."""
        return bool(_llama.llama_vocab_is_eog(self._vocab, token) or _llama.llama_vocab_is_control(self._vocab, token))

    def token_embeddings(self, ids: list[int]) -> np.ndarray:
        """The model's own input embeddings of `ids` (n, n_embd) float32 as the embedding path expects
        them (Gemma graphs scale by sqrt(n_embd) for token ids only, so they are scaled here).
        Dequantizes token_embd.weight with the `gguf` package once, lazily (seconds)."""
        if self._token_embd is None:
            from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, quants

            if "token_embd.weight" not in self.header.tensors:
                raise ModelError(f"{self.path.name} has no token_embd.weight tensor")
            kind, dims, offset = self.header.tensors["token_embd.weight"]
            kind = GGMLQuantizationType(kind)
            block, block_bytes = GGML_QUANT_SIZES[kind]
            row_bytes = dims[0] // block * block_bytes
            raw = np.memmap(self.path, np.uint8, "r", offset, row_bytes * dims[1]).reshape(dims[1], row_bytes)
            w = quants.dequantize(np.asarray(raw), kind).reshape(-1, self.n_embd).astype(np.float32)
            if self.arch.startswith("gemma"):
                w *= math.sqrt(self.n_embd)
            self._token_embd = w
        return np.ascontiguousarray(self._token_embd[np.asarray(ids, dtype=np.int64)])

    def _batch(self, embd: int):
        if embd not in self._batches:
            self._batches[embd] = _llama.llama_batch_init(self.n_batch, embd, 1)
        return self._batches[embd]

    def _decode(self, batch, rows: int, pos0: int, want_logits: bool) -> np.ndarray | None:
        self._open()
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

    def eval_tokens(self, ids: list[int], pos0: int, want_logits: bool) -> np.ndarray | None:
        """Append token ids at positions pos0...; the next-token logits after the last if wanted."""
        batch, logits = self._batch(0), None
        for start in range(0, len(ids), self.n_batch):
            chunk = ids[start : start + self.n_batch]
            for i, t in enumerate(chunk):
                batch.token[i] = t
            last = start + self.n_batch >= len(ids)
            logits = self._decode(batch, len(chunk), pos0 + start, want_logits and last)
        return logits

    def eval_embeddings(self, rows: np.ndarray, pos0: int, want_logits: bool) -> np.ndarray | None:
        """Append float32 embedding rows (n, n_embd) at positions pos0...; logits as eval_tokens."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_embd:
            raise ValueError(f"embedding rows must be (n, {self.n_embd}), got {rows.shape}")
        if not np.isfinite(rows).all():
            raise ValueError("embedding rows contain NaN or inf")
        batch, logits = self._batch(self.n_embd), None
        for start in range(0, len(rows), self.n_batch):
            chunk = rows[start : start + self.n_batch]
            ctypes.memmove(batch.embd, chunk.ctypes.data, chunk.nbytes)
            last = start + self.n_batch >= len(rows)
            logits = self._decode(batch, len(chunk), pos0 + start, want_logits and last)
        return logits

    def truncate(self, n_past: int) -> None:
        """Forget KV cache positions >= n_past."""
        self._open()
        _llama.llama_memory_seq_rm(self._mem, 0, n_past, -1)

    def grammar_sampler(self, grammar: str, root: str = "root") -> "GrammarSampler":
        """A greedy sampler held to a GBNF `grammar` (llama.cpp's grammar sampler); ValueError if it does not parse."""
        self._open()
        return GrammarSampler(self, grammar, root)


class GrammarSampler:
    """llama.cpp's grammar sampler then greedy choice over the context's last logits; a context manager."""

    def __init__(self, session: LlamaSession, grammar: str, root: str):
        L = _llama
        self._session = session
        self._chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        rule = L.llama_sampler_init_grammar(session._vocab, grammar.encode("utf-8"), root.encode("utf-8"))
        if not rule:
            L.llama_sampler_free(self._chain)
            raise ValueError("llama.cpp cannot parse the grammar")
        L.llama_sampler_chain_add(self._chain, rule)  # the chain owns it from here
        L.llama_sampler_chain_add(self._chain, L.llama_sampler_init_greedy())

    def next_token(self) -> int:
        """The most likely token the grammar allows after the last evaluated token (accepted into its state)."""
        self._session._open()
        return int(_llama.llama_sampler_sample(self._chain, self._session._ctx, -1))

    def close(self) -> None:
        if self._chain is not None:
            _llama.llama_sampler_free(self._chain)
            self._chain = None

    def __enter__(self) -> "GrammarSampler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
