"""The voice-emotion model: its input contract, its parity with the training framework, its place in the stage
and the judgement. Real speech: pocketsphinx-testdata's LibriVox read speech (neutral by nature)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_xemo.core.models import MODELS_DIR, ModelError, resolve
from edge_xemo.core.types import SAMPLE_RATE, Cue, ModalityResult
from edge_xemo.io.audio import to_mono_16k
from edge_xemo.reasoning.judgement import Judge, JudgementOptions
from edge_xemo.voice.emotion import LAYERS, MIN_SPEECH_S, VoiceEmotionModel, ct2_encoder_variables, whisper_log_mel
from edge_xemo.voice.stage import VoiceOptions, VoicePerception

from test_voice import clip0870, librivox, stream  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def model() -> VoiceEmotionModel:
    try:
        return VoiceEmotionModel.load()
    except (ModelError, ImportError) as e:
        pytest.skip(f"voice_emotion is not installed: {e}")


def test_the_log_mel_is_whispers():
    fw = pytest.importorskip("faster_whisper.feature_extractor")
    x = (np.random.default_rng(0).standard_normal(2 * SAMPLE_RATE) * 0.1).astype(np.float32)
    np.testing.assert_allclose(whisper_log_mel(x), fw.FeatureExtractor(80)(x, padding=0)[:, :200], atol=1e-5)


def test_a_short_window_is_padded_to_the_encoders_two_seconds(model, clip0870):
    x = clip0870[: int(1.5 * SAMPLE_RATE)]
    padded = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), x])
    np.testing.assert_allclose(model.encoder(x), model.encoder(padded), atol=1e-5)
    assert model.encoder(np.concatenate([np.ones(SAMPLE_RATE, np.float32), padded])).shape == (LAYERS * 768,)


def test_the_encoder_graph_computes_what_ctranslate2_computes(model, clip0870):
    """The last layer of the `whisper_layers` graph (onnxruntime, the weights read from the CTranslate2 file) is
    CTranslate2's own Whisper encoder on the same window (the final norm's states, pooled)."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    from edge_xemo.voice.asr import default_model_dir

    x = clip0870[: 2 * SAMPLE_RATE]
    whisper = ctranslate2.models.Whisper(str(default_model_dir()), device="cpu", compute_type="float32")
    states = np.asarray(whisper.encode(ctranslate2.StorageView.from_array(whisper_log_mel(x)[None]), to_cpu=True))[0]
    np.testing.assert_allclose(model.encoder(x)[-768:], np.concatenate([states.mean(0), states.std(0)]), atol=1e-3)


def test_a_file_that_is_not_a_ctranslate2_model_is_refused(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"\x06\x00\x00\x00 not a model")
    with pytest.raises(ModelError, match="not a CTranslate2 model file"):
        ct2_encoder_variables(bad)


def test_the_onnx_graph_computes_what_the_training_framework_did(model):
    parity = json.loads((MODELS_DIR / "voice_emotion.json").read_text())["parity"]
    z = model.logits(np.asarray(parity["inputs"], np.float32))
    np.testing.assert_allclose(z, np.asarray(parity["logits"]), atol=1e-4)
    assert "worried" not in model.labels and "calm" not in model.labels


def test_the_stage_labels_speech_and_leaves_silence_unlabelled(model, clip0870):
    x = np.concatenate([np.zeros(3 * SAMPLE_RATE, np.float32), clip0870])
    with VoicePerception(VoiceOptions(use_bridge=False)) as voice:
        results = stream(voice, x)
    silent = [r for t, r in results if t + 2 <= 2.5]
    short = [r for _, r in results if 0 < r.extra.get("speech_s", 0) < MIN_SPEECH_S]
    spoken = [r for _, r in results if r.extra.get("speech_s", 0) >= MIN_SPEECH_S]
    assert silent and not any(r.emotion for r in silent) and not any(r.emotion for r in short)
    assert spoken and all(abs(sum(r.emotion.values()) - 1) < 1e-6 for r in spoken)
    assert all(set(r.emotion) == set(model.labels) and "emotion" in r.latency_ms for r in spoken)


def test_the_model_can_be_turned_off(clip0870):
    with VoicePerception(VoiceOptions(use_bridge=False, use_emotion_model=False)) as voice:
        results = stream(voice, clip0870)
    assert not any(r.emotion for _, r in results) and voice.missing == ()


def test_a_48_khz_recording_is_judged_as_its_16_khz_original(model, clip0870):
    """The stage takes 16 kHz: a 48 kHz input converted by io.audio gives the same labels."""
    at_48k = np.interp(np.arange(3 * len(clip0870)) / 3, np.arange(len(clip0870)), clip0870).astype(np.float32)
    back = to_mono_16k(np.stack([at_48k, at_48k], 1), 3 * SAMPLE_RATE)  # stereo 48 kHz, as a file may be
    labels = []
    for x in (clip0870, back[: len(clip0870)]):
        with VoicePerception(VoiceOptions(use_bridge=False)) as voice:
            labels.append([max(r.emotion, key=r.emotion.get) for _, r in stream(voice, x) if r.emotion])
    assert labels[0] and np.mean([a == b for a, b in zip(*labels)]) >= 0.8


def test_read_speech_is_rarely_judged_emotional(model, librivox):
    """The model alone calls 2 s of a LibriVox reader neutral in about a third of the windows; the judgement,
    which smooths over the stream and abstains when unsure, gives a confident emotion to about a fifth of them
    (benchmarks/voice_emotion.py measures it on more speech)."""
    judge = Judge(JudgementOptions(words=False))
    with VoicePerception(VoiceOptions(use_bridge=False)) as voice:
        judged = [judge.judge(judge.sources(None, r, [], [], None), t) for t, r in stream(voice, librivox) if r.emotion]
    assert len(judged) >= 15
    emotional = [j.label for j in judged if j.outcome.confident and j.label != "neutral"]
    assert len(emotional) / len(judged) <= 0.4, emotional


def vocal(*names: str) -> ModalityResult:
    cues = tuple(Cue(n, n.replace("_", " "), 0.8, "auditory") for n in names)
    return ModalityResult("auditory", cues)


def test_the_voice_model_replaces_the_vocal_profiles_when_it_judged():
    judge = Judge(JudgementOptions(text_head=False))
    heard = ModalityResult("auditory", vocal("loud", "fast").cues, emotion={"angry": 0.7, "neutral": 0.3})
    names = [s.name for s in judge.sources(None, heard, [], ["loud"], None)]
    assert names == ["voice"]
    assert [s.name for s in judge.sources(None, vocal("loud", "fast"), [], ["loud"], None)] == ["vocal_profile"]
    j = judge.judge(judge.sources(None, heard, [], ["loud"], None))
    assert j.label == "angry" and j.carried_by[0] == "an angry voice (0.70)"


def test_the_sidecar_records_non_commercial_training_data():
    entry = resolve("voice_emotion").entry
    assert entry["terms"]["commercial_use"] is False and "RAVDESS" in entry["licence"]


def test_commercial_only_leaves_the_model_out_and_says_so(monkeypatch, clip0870):
    from edge_xemo.core.models import COMMERCIAL_ONLY, ExcludedByTerms

    resolve("voice_emotion")  # installed (else this test has nothing to exclude)
    monkeypatch.setenv(COMMERCIAL_ONLY, "1")
    with pytest.raises(ExcludedByTerms, match="not for commercial use"):
        resolve("voice_emotion")
    with VoicePerception(VoiceOptions(use_bridge=False)) as voice:
        assert any("voice emotion model" in why and "commercial" in why for why in voice.missing)
        assert not any(r.emotion for _, r in stream(voice, clip0870))


def test_models_verify_lists_an_excluded_model_without_failing():
    from conftest import run_cli

    done = run_cli("--commercial-only", "models", "verify", timeout=120)
    assert done.returncode == 0, done.stderr
    assert any(line.startswith("excluded") and "voice_emotion" in line for line in done.stdout.splitlines())


def test_a_commercial_only_run_reports_the_fallback_once_and_still_judges(demo_audio, tmp_path):
    from conftest import run_cli

    resolve("voice_emotion")  # installed (else there is nothing to exclude)
    out = tmp_path / "events.jsonl"
    done = run_cli("--commercial-only", "analyze", demo_audio, "--no-explain", "--jsonl", out, timeout=300)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in out.read_text().splitlines()]
    missing = [e["message"] for e in events if e["type"] == "status" and e["code"] == "model_missing"]
    assert len([m for m in missing if "voice emotion model" in m]) == 1 and "commercial" in missing[0]
    judged = [e for e in events if e["type"] == "explanation"]
    assert judged and all("voice" not in e["evidence"] and "vocal_profile" in e["evidence"] for e in judged)
