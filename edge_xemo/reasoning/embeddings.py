"""all-MiniLM-L6-v2 sentence embeddings on onnxruntime (no torch): WordPiece tokens -> BERT -> mean pool -> L2.

The ONNX encoder and its `vocab.txt` are built at install time by `python -m export.minilm --out
$EDGE_XEMO_HOME/minilm` (manifest entry `minilm`). The tokenizer is BERT's uncased basic + WordPiece
tokenizer, written out here so the runtime needs no tokenizer package; its ids match the reference
tokenizer (checked in tests/reasoning/test_embeddings.py).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edge_xemo.core.models import ModelError, onnx_session, resolve, sha256_of, verified_path

DIM = 384
_CJK = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


@dataclass(frozen=True, slots=True)
class EmbedderOptions:
    """threads: onnxruntime intra-op threads (1); provider: "cpu" | "cuda" | "auto" ("cpu");
    batch_size: sentences per ONNX call (32); max_tokens: truncation length incl. [CLS]/[SEP]
    (256, the sentence-transformers setting of all-MiniLM-L6-v2); cache_size: remembered
    sentence embeddings (4096; 0 disables)."""

    threads: int = 1
    provider: str = "cpu"
    batch_size: int = 32
    max_tokens: int = 256
    cache_size: int = 4096


def _is_punct(ch: str) -> bool:
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


class WordPieceTokenizer:
    """BERT uncased tokenization: clean, split CJK, lower-case, strip accents, split punctuation, WordPiece."""

    def __init__(self, vocab_path: Path):
        try:
            lines = Path(vocab_path).read_text(encoding="utf-8").splitlines()
        except OSError as e:
            raise ModelError(f"cannot read WordPiece vocabulary {vocab_path}: {e}") from e
        self.vocab = {tok: i for i, tok in enumerate(lines)}
        try:
            self.cls, self.sep, self.unk = self.vocab["[CLS]"], self.vocab["[SEP]"], self.vocab["[UNK]"]
        except KeyError as e:
            raise ModelError(f"vocabulary {vocab_path} lacks the special token {e}") from e

    def _basic(self, text: str) -> list[str]:
        chars = []
        for ch in text:
            cp = ord(ch)
            if cp == 0 or cp == 0xFFFD:
                continue
            if ch in " \t\n\r" or unicodedata.category(ch) == "Zs":
                chars.append(" ")
            elif unicodedata.category(ch).startswith("C"):
                continue
            elif any(lo <= cp <= hi for lo, hi in _CJK):
                chars.extend((" ", ch, " "))
            else:
                chars.append(ch)
        words = []
        for word in "".join(chars).split():
            word = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")
            start = 0
            for i, ch in enumerate(word):
                if _is_punct(ch):
                    if i > start:
                        words.append(word[start:i])
                    words.append(ch)
                    start = i + 1
            if start < len(word):
                words.append(word[start:])
        return words

    def _wordpiece(self, word: str) -> list[int]:
        if len(word) > 100:
            return [self.unk]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [self.unk]
            start = end
        return ids

    def encode(self, text: str, max_tokens: int = 256) -> list[int]:
        """Token ids with [CLS] ... [SEP], truncated to `max_tokens`."""
        ids = [i for w in self._basic(text) for i in self._wordpiece(w)]
        return [self.cls, *ids[: max(0, max_tokens - 2)], self.sep]


class MiniLMEmbedder:
    """Sentence embeddings (n, 384), float32, unit length, from the ONNX all-MiniLM-L6-v2 encoder."""

    def __init__(self, onnx_path: Path, vocab_path: Path, options: EmbedderOptions = EmbedderOptions()):
        self.options = options
        self.tokenizer = WordPieceTokenizer(vocab_path)
        self.session = onnx_session(str(onnx_path), options.threads, options.provider)
        self._inputs = {i.name for i in self.session.get_inputs()}
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def create_from_options(cls, options: EmbedderOptions = EmbedderOptions()) -> MiniLMEmbedder:
        """The installed encoder (manifest `minilm`), sha256-checked, with its vocabulary beside it."""
        art = resolve("minilm")
        onnx_path = verified_path("minilm")
        vocab = onnx_path.parent / "vocab.txt"
        want = art.entry.get("vocab_sha256")
        if not vocab.exists():
            raise ModelError(f"WordPiece vocabulary missing beside {onnx_path} (run the README's install step)")
        if want and sha256_of(vocab) != want:
            raise ModelError(f"WordPiece vocabulary {vocab} does not match the manifest sha256")
        return cls(onnx_path, vocab, options)

    @classmethod
    def from_folder(cls, folder: Path, options: EmbedderOptions = EmbedderOptions()) -> MiniLMEmbedder:
        """An encoder folder holding `model.onnx` and `vocab.txt` (e.g. what export.minilm wrote)."""
        folder = Path(folder)
        for name in ("model.onnx", "vocab.txt"):
            if not (folder / name).exists():
                raise ModelError(f"{folder / name} not found: expected an all-MiniLM-L6-v2 ONNX folder")
        return cls(folder / "model.onnx", folder / "vocab.txt", options)

    def _run(self, texts: list[str]) -> np.ndarray:
        ids = [self.tokenizer.encode(t, self.options.max_tokens) for t in texts]
        width = max(len(x) for x in ids)
        input_ids = np.zeros((len(ids), width), np.int64)
        mask = np.zeros((len(ids), width), np.int64)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        hidden = self.session.run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed sentences; rows are L2-normalized. Raises ValueError on a non-string item."""
        if isinstance(texts, str):
            texts = [texts]
        for t in texts:
            if not isinstance(t, str):
                raise ValueError(f"MiniLMEmbedder.embed expects strings, got {type(t).__name__}: {t!r:.60}")
        out = np.zeros((len(texts), DIM), np.float32)
        # by length, then text: a set's order changes with each process's string hashing, and dynamic int8
        # rows depend on their batch-mates (fp32 rows do not, measured bit for bit)
        todo = sorted({t for t in texts if t not in self._cache}, key=lambda t: (len(t), t))
        bs = max(1, self.options.batch_size)
        fresh: dict[str, np.ndarray] = {}
        for i in range(0, len(todo), bs):
            chunk = todo[i : i + bs]
            fresh.update(zip(chunk, self._run(chunk).astype(np.float32)))
        for row, t in enumerate(texts):
            out[row] = self._cache[t] if t in self._cache else fresh[t]
        if self.options.cache_size > 0:
            for t, v in fresh.items():
                if len(self._cache) >= self.options.cache_size:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[t] = v
        return out

    __call__ = embed
