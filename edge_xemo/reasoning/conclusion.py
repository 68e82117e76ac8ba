"""The narrator writing the conclusion (`DecoderOptions.conclusion="written"`, option (b) of the judgement stage).

After the label lead, the judged label is written as it is; then the LLM writes why under a llama.cpp grammar
(GBNF) that admits only a connective, one to three of the judgement's reasons (the phrases of the sources that
pushed the judged label up: their cues, a learned source's label, what the words said), each at most once,
and the outcome's doubt as `prompt.conclude` says it. The model chooses which reasons and in which order; it
cannot name a label, cue or word that the evidence does not hold.
"""

from __future__ import annotations

import codecs
from typing import Callable

from ..core.types import Judgement, SourceJudgement
from .llama_session import LlamaSession
from .prompt import doubt

CONNECTIVES = ("shown by", "as suggested by", "judging by", "given")
MAX_REASONS = 6
"""Reasons offered to the model: the grammar has one rule per pair of them."""
MAX_QUOTE_WORDS = 8
"""What the words said is quoted up to this many words (then "...")."""


def reasons(judgement: Judgement) -> list[str]:
    """What the conclusion may name, strongest first: the carrying cues and learned labels (`carried_by`), then
    the cues of the other sources that pushed the judged label up, what was said as a short quote."""
    out = list(judgement.carried_by)
    helping = sorted(
        (s for s in judgement.sources if s.contribution()[judgement.label] > 0),
        key=lambda s: -s.contribution()[judgement.label],
    )
    for source in helping:
        out += [r for r in _phrases(source) if r not in out]
    return out[:MAX_REASONS]


def _phrases(source: SourceJudgement) -> list[str]:
    """A source's cues; for the words source, what was said as a quote of at most `MAX_QUOTE_WORDS` words."""
    if source.name != "words":
        return list(source.cues)
    said = " ".join(source.cues).strip('"').split()
    if not said:
        return []
    quote = " ".join(said[:MAX_QUOTE_WORDS]) + ("..." if len(said) > MAX_QUOTE_WORDS else "")
    return [f'the words "{quote}"']


def grammar(named: list[str], ending: str) -> str:
    """GBNF for ", <connective> <one to three of `named`, each once>" + `ending` + ".", joined by ", " and " and "."""
    n = len(named)
    rules = [
        f'root ::= ", " connective " " first {_literal(ending + ".")}',
        "connective ::= " + " | ".join(_literal(c) for c in CONNECTIVES),
        "first ::= " + " | ".join(f"{_literal(named[i])} after{i}" for i in range(n)),
    ]
    for i in range(n):
        others = [j for j in range(n) if j != i]
        more = [f'" and " last{i}', f'", " second{i}'] if len(others) > 1 else [f'" and " last{i}'] if others else []
        rules.append(f"after{i} ::= " + " | ".join(['""', *more]))
        if others:
            rules.append(f"last{i} ::= " + " | ".join(_literal(named[j]) for j in others))
        if len(others) > 1:
            rules.append(
                f"second{i} ::= "
                + " | ".join(f'{_literal(named[j])} " and " last{min(i, j)}x{max(i, j)}' for j in others)
            )
            for j in others:
                if j > i:
                    rest = [k for k in range(n) if k not in (i, j)]
                    rules.append(f"last{i}x{j} ::= " + " | ".join(_literal(named[k]) for k in rest))
    return "\n".join(rules) + "\n"


def _literal(text: str) -> str:
    """A GBNF string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def write_conclusion(
    session: LlamaSession, judgement: Judgement, n_past: int, emit: Callable[[str], None]
) -> str | None:
    """After the label lead (evaluated up to `n_past`): the judged label and the written reasons, streamed to
    `emit`; None when the judgement has no reasons to name (the rendered conclusion then says it)."""
    named = reasons(judgement)
    if not named:
        return None
    text = " " + judgement.label
    emit(text)
    ids = session.tokenize(text)
    session.eval_tokens(ids, n_past, want_logits=True)
    n_past += len(ids)
    ending, utf8 = doubt(judgement), codecs.getincrementaldecoder("utf-8")("replace")
    longest = [max(CONNECTIVES, key=len), *sorted(named, key=lambda r: len(r.encode()))[-3:], ending]
    most = sum(len(piece.encode()) for piece in longest) + 16  # the separators: ", ", " ", ", ", " and ", "."
    with session.grammar_sampler(grammar(named, ending)) as sampler:
        for _ in range(most):  # a token is at least one byte: the grammar ends within this many
            token = sampler.next_token()
            if session.is_end(token):
                break
            piece = utf8.decode(session.piece(token))
            text += piece
            emit(piece)
            session.eval_tokens([token], n_past, want_logits=True)
            n_past += 1
    return text
