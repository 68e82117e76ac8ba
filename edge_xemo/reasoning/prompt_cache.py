"""The decoder's prompt after its cached static prefix.

`PROMPT_PREFIX` is evaluated once into the session's KV cache; each window's prompt is turned into pieces
(token ids for text, float32 rows for embedding slots), pooled until it fits the context, and evaluated
after the prefix.
"""

from __future__ import annotations

import numpy as np

from .llama_session import LlamaSession
from .prompt import PROMPT_PREFIX, Segment


class PromptCache:
    """The static prefix kept in one session's KV cache, and the window prompts evaluated after it."""

    def __init__(self, session: LlamaSession):
        self._session = session
        prefix = session.tokenize(PROMPT_PREFIX)
        session.eval_tokens(prefix, 0, want_logits=False)
        self.n_cached = len(prefix)
        """Tokens of the static prefix kept in the KV cache between windows."""

    def pieces(self, segments: list[Segment], embeddings: dict[str, np.ndarray]) -> list:
        """The prompt after the prefix: token ids for text, slot rows from `embeddings[kind]`."""
        if not segments or segments[0].text != PROMPT_PREFIX:
            raise ValueError("a decoder prompt must start with prompt.PROMPT_PREFIX (its KV cache is reused)")
        pieces: list[np.ndarray | list[int]] = []
        for seg in segments[1:]:
            if seg.is_slot:
                if seg.kind not in embeddings:
                    raise ValueError(f"the prompt has a {seg.kind} slot but no {seg.kind} embeddings were given")
                pieces.append(np.asarray(embeddings[seg.kind], dtype=np.float32))
            elif seg.text:
                pieces.append(self._session.tokenize(seg.text))
        pieces = [p for p in pieces if len(p)]
        if not pieces:
            raise ValueError("the prompt has nothing after the static prefix")
        return pieces

    def evaluate(self, pieces: list) -> tuple[np.ndarray, int]:
        """Evaluate pieces after the cached prefix; returns (next-token logits, n_past)."""
        self._session.truncate(self.n_cached)
        n_past, logits = self.n_cached, None
        for i, p in enumerate(pieces):
            last = i == len(pieces) - 1
            if isinstance(p, np.ndarray):
                logits = self._session.eval_embeddings(p, n_past, last)
            else:
                logits = self._session.eval_tokens(p, n_past, last)
            n_past += len(p)
        assert logits is not None  # the last piece asked for them
        return logits, n_past

    def fit(self, pieces: list, notes: list[str], reserve: int, n_ctx: int) -> list:
        """Pool slot rows (mean of neighbours) until the prompt and `reserve` tokens to generate fit `n_ctx`."""
        budget = n_ctx - self.n_cached - reserve
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
                f"generate, n_ctx is {n_ctx}"
            )
        return pieces
