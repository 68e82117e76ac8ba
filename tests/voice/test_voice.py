"""Voice stage on real speech: VAD, prosody, vocal cues, resampling, bad input, optional transcript.

Real speech comes from Debian's `pocketsphinx-testdata` (LibriVox read speech, one male reader),
pyannote-audio's sample.wav (installed to $EDGE_XEMO_HOME/demo) and ../shared/data; tests skip
when a source is absent. Pitch/tempo variants are made at run time with praat-parselmouth (test extra).
"""

from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np
import pytest

from edge_xemo.core.paths import demo_audio
from edge_xemo.voice.prosody import WindowMeasures, analyze_frames, clean_f0, semitones, syllable_nuclei
from edge_xemo.core.types import SAMPLE_RATE, AudioBlock, ModalityResult, ResultCode
from edge_xemo.voice.asr import TranscriberOptions
from edge_xemo.voice.vad import CHUNK, SileroVad, VadOptions, speech_segments
from edge_xemo.io.audio import Conditioner, resample
from edge_xemo.voice.stage import VoicePerception, VoiceBlock, VoiceOptions
from edge_xemo.voice.cues import RULE_NAMES, AuditoryCueTracker

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
DEMO_WAV = demo_audio()
SHARED = Path(__file__).parents[2].parent / "shared" / "data"
XEMO_WAV = SHARED / "xemogpt_sample" / "sample_00000007.wav"

F0_TOLERANCE_ST = 0.3  # median |ours - Praat| on voiced frames both call voiced
SHIFT_ST = 4.0
TEMPO = 1.25


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getframerate() == SAMPLE_RATE and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768


def need(path: Path, why: str) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is missing ({why})")
    return path


@pytest.fixture(scope="module")
def librivox() -> np.ndarray:
    """About 25 s of one reader: the five LibriVox clips of pocketsphinx-testdata, in order."""
    files = sorted(need(LIBRIVOX, "apt install pocketsphinx-testdata").glob("*.wav"))
    if not files:
        pytest.skip("pocketsphinx-testdata has no LibriVox wavs")
    return np.concatenate([read_wav(f) for f in files])


@pytest.fixture(scope="module")
def clip0870() -> np.ndarray:
    return read_wav(need(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0870.wav", "apt install pocketsphinx-testdata"))


def stream(an: VoicePerception, x: np.ndarray, t_off: float = 0.0, block: int | np.ndarray = 320,
           window: float = 2.0, hop: float = 1.0) -> list[tuple[float, ModalityResult]]:
    """Feed `x` block by block like the pipeline does (conditioned where it enters) and summarize rolling windows."""
    sizes = np.full(len(x) // block + 1, block) if np.isscalar(block) else np.asarray(block)
    edges = np.concatenate([[0], np.cumsum(sizes)])
    edges = edges[edges < len(x)].tolist() + [len(x)]
    obs, out, next_end = [], [], window
    conditioner, kept = Conditioner(), []
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        block = conditioner.block(x[a:b], SAMPLE_RATE, t_off + a / SAMPLE_RATE, i)
        kept.append(block.samples)
        obs.append(an.process_block(block))
        while b / SAMPLE_RATE >= next_end:
            ts = next_end - window
            win_obs = [o for o in obs if t_off + ts - 0.1 <= o.t < t_off + next_end]
            samples = np.concatenate(kept)[int(ts * SAMPLE_RATE) : int(next_end * SAMPLE_RATE)]
            out.append((t_off + ts, an.summarize(samples, t_off + ts, win_obs, t_off + ts, t_off + next_end)))
            next_end += hop
    return out


def speech_windows(results):
    return [r for _, r in results if r.extra.get("speech_s", 0.0) >= 0.3]


def cue_fraction(results, name: str) -> float:
    rs = speech_windows(results)
    return float(np.mean([any(c.name == name for c in r.cues) for r in rs])) if rs else 0.0


def median_extra(results, key: str) -> float:
    return float(np.nanmedian([r.extra.get(key, np.nan) for r in speech_windows(results)]))


# --- VAD ---------------------------------------------------------------------------------------

def test_vad_finds_the_sentence_in_read_speech(clip0870):
    segs = speech_segments(clip0870, t0=100.0)
    assert len(segs) >= 1
    assert 100.1 < segs[0].start < 100.6 and 106.5 < segs[-1].end <= 100 + len(clip0870) / SAMPLE_RATE
    assert sum(s.duration for s in segs) > 5.5


def test_vad_streaming_matches_whole_clip_and_reset_repeats(clip0870):
    whole = speech_segments(clip0870)
    vad = SileroVad()
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 3000, size=200)
    edges = np.concatenate([[0], np.cumsum(sizes)])
    segs, probs = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        if a >= len(clip0870):
            break
        up = vad.accept(clip0870[a:b], a / SAMPLE_RATE)
        segs += up.segments
        probs.append(up.prob)
    segs += vad.flush()
    assert [(s.start, s.end) for s in segs] == [(s.start, s.end) for s in whole]
    vad.reset_states()
    again = vad.accept(clip0870, 0.0).prob
    assert np.allclose(np.concatenate(probs), again, atol=1e-5)


def test_the_vad_sequence_graph_scores_as_the_chunk_graph_does(clip0870):
    """The shipped sequence graph, a block of chunks a call, against the package's chunk-by-chunk
    silero_vad.onnx (the graph Silero's own iterator calls, with its [2, 1, 128] state)."""
    from edge_xemo.core.models import onnx_session, verified_path

    chunk_graph = onnx_session(str(verified_path("silero_vad").with_name("silero_vad.onnx")))
    vad, state, context, want = SileroVad(), np.zeros((2, 1, 128), np.float32), np.zeros(64, np.float32), []
    for chunk in clip0870[: len(clip0870) // CHUNK * CHUNK].reshape(-1, CHUNK):
        out, state = chunk_graph.run(None, {"input": np.concatenate([context, chunk])[None], "state": state,
                                            "sr": np.array(SAMPLE_RATE, np.int64)})
        context = chunk[-64:]
        want.append(out[0, 0])
    got = np.concatenate([vad.accept(clip0870[a : a + 1024], a / SAMPLE_RATE).prob for a in range(0, len(clip0870), 1024)])
    assert len(got) == len(want) > 200
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_vad_agrees_with_the_reference_speaker_turns():
    """pyannote's sample.rttm (hand-checked speaker turns) vs our segments, on a 10 ms grid."""
    x = read_wav(need(DEMO_WAV, "the install step copies pyannote-audio's sample.wav there"))
    rttm = need(DEMO_WAV.with_suffix(".rttm"), "the install step copies pyannote-audio's sample.rttm there")
    n = len(x) * 100 // SAMPLE_RATE
    ref, hyp = np.zeros(n, bool), np.zeros(n, bool)
    for line in rttm.read_text().splitlines():
        f = line.split()
        ref[int(float(f[3]) * 100) : int((float(f[3]) + float(f[4])) * 100)] = True
    for s in speech_segments(x):
        hyp[int(s.start * 100) : int(s.end * 100)] = True
    tp = (ref & hyp).sum()
    assert tp / hyp.sum() > 0.95 and tp / ref.sum() > 0.95


def test_vad_rejects_bad_options():
    with pytest.raises(ValueError, match="threshold"):
        VadOptions(threshold=1.5)
    with pytest.raises(ValueError, match="threshold"):
        VoiceOptions(vad=VadOptions(threshold=0.0))
    with pytest.raises(ValueError, match="max_cues=0"):
        VoiceOptions(max_cues=0)
    with pytest.raises(ValueError, match="neg_threshold"):
        VadOptions(threshold=0.5, neg_threshold=0.7)


# --- prosody -----------------------------------------------------------------------------------

def test_pitch_of_a_pure_tone():
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    for f in (90.0, 220.0, 410.0):
        fr = analyze_frames((0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32))
        assert abs(np.nanmedian(fr.f0_hz) - f) < 0.01 * f
        assert np.isfinite(fr.f0_hz).mean() > 0.95


def test_pitch_agrees_with_praat_on_real_speech(librivox):
    parselmouth = pytest.importorskip("parselmouth", reason="praat-parselmouth (test extra) is not installed")
    x = librivox[: 12 * SAMPLE_RATE]
    fr = analyze_frames(x)
    ours = clean_f0(fr.f0_hz)
    pitch = parselmouth.Sound(x.astype(np.float64), SAMPLE_RATE).to_pitch_ac(time_step=0.01, pitch_floor=60,
                                                                            pitch_ceiling=550)
    ref = np.array([pitch.get_value_at_time(t) for t in fr.t])
    both = np.isfinite(ours) & np.isfinite(ref)
    assert both.sum() > 0.8 * np.isfinite(ref).sum()
    err = np.abs(semitones(ours[both]) - semitones(ref[both]))
    assert np.median(err) < F0_TOLERANCE_ST
    assert np.mean(err > 3) < 0.05


def _variant(x: np.ndarray, shift_st: float, tempo: float) -> np.ndarray:
    """Real speech re-pitched by `shift_st` semitones and sped up by `tempo` (Praat PSOLA)."""
    parselmouth = pytest.importorskip("parselmouth", reason="praat-parselmouth (test extra) is not installed")
    call = parselmouth.praat.call
    snd = parselmouth.Sound(x.astype(np.float64), SAMPLE_RATE)
    manip = call(snd, "To Manipulation", 0.01, 60, 500)
    tier = call(manip, "Extract pitch tier")
    call(tier, "Multiply frequencies", snd.xmin, snd.xmax, 2 ** (shift_st / 12))
    call([tier, manip], "Replace pitch tier")
    dur = call("Create DurationTier", "tempo", snd.xmin, snd.xmax)
    call(dur, "Add point", snd.xmin, 1.0 / tempo)
    call([manip, dur], "Replace duration tier")
    return call(manip, "Get resynthesis (overlap-add)").values[0].astype(np.float32)


@pytest.mark.parametrize("direction", [+1, -1], ids=["higher-faster", "lower-slower"])
def test_repitched_and_retimed_speech_gives_the_matching_cues(librivox, direction):
    """Same baseline (one pass of the original), then the original again vs the changed speech."""
    shift, tempo = direction * SHIFT_ST, TEMPO if direction > 0 else 1 / TEMPO
    changed = _variant(librivox, shift, tempo)
    t_next = len(librivox) / SAMPLE_RATE + 1.0
    results = {}
    for name, second in (("original", librivox), ("changed", changed)):
        an = VoicePerception(VoiceOptions(use_bridge=False))
        stream(an, librivox)
        assert an.baseline.ready
        results[name] = stream(an, second, t_off=t_next)
    before, after = results["original"], results["changed"]
    f0_ratio = median_extra(after, "f0_median_hz") / median_extra(before, "f0_median_hz")
    rate_ratio = median_extra(after, "syllable_rate") / median_extra(before, "syllable_rate")
    assert abs(12 * math.log2(f0_ratio) - shift) < 1.0
    assert (rate_ratio > 1.08) if direction > 0 else (rate_ratio < 0.92)
    z_before, z_after = median_extra(before, "f0_median_st_z"), median_extra(after, "f0_median_st_z")
    assert direction * (z_after - z_before) > 0.6
    pitch, other_pitch = ("pitch_high", "pitch_low") if direction > 0 else ("pitch_low", "pitch_high")
    rate = "fast" if direction > 0 else "slow"
    for cue in (pitch, rate):
        assert cue_fraction(after, cue) >= cue_fraction(before, cue) + 0.1, cue
    assert cue_fraction(after, other_pitch) == 0.0
    phrases = {c.phrase for r in speech_windows(after) for c in r.cues}
    assert ("the tone is raised" if direction > 0 else "the tone is low and deep") in phrases
    assert ("speaks quickly" if direction > 0 else "speaks slowly") in phrases


def test_syllable_rate_follows_tempo(librivox):
    """Whole-clip syllable nuclei per second of VAD speech scale with the tempo change."""
    rates = []
    for x in (librivox, _variant(librivox, 0.0, TEMPO)):
        frames = analyze_frames(x)
        vad = SileroVad().accept(x, 0.0)
        speech = vad.speaking[np.clip(np.searchsorted(vad.t, frames.t) - 1, 0, None)]
        f0 = clean_f0(np.where(speech, frames.f0_hz, np.nan))
        nuclei = syllable_nuclei(frames.level_db, np.isfinite(f0), speech)
        rates.append(len(nuclei) / ((vad.prob >= 0.5).sum() * CHUNK / SAMPLE_RATE))
    assert 2.5 < rates[0] < 6.0
    assert 1.1 < rates[1] / rates[0] < 1.4


def test_speech_in_white_noise_keeps_its_pitch(clip0870):
    rng = np.random.default_rng(3)
    noise = rng.standard_normal(len(clip0870)).astype(np.float32) * np.sqrt(np.mean(clip0870**2) / 10)  # 10 dB SNR
    clean = stream(VoicePerception(VoiceOptions(use_bridge=False)), clip0870)
    noisy = stream(VoicePerception(VoiceOptions(use_bridge=False)), clip0870 + noise)
    assert abs(median_extra(noisy, "f0_median_hz") / median_extra(clean, "f0_median_hz") - 1) < 0.05
    assert median_extra(noisy, "speech_ratio") > 0.8
    assert median_extra(noisy, "hnr_db") < median_extra(clean, "hnr_db")


def test_a_deep_voice_alone_is_not_a_low_pitch_cue(librivox):
    """Without an earlier, higher baseline the lowered voice is this speaker's normal."""
    low = _variant(librivox, -SHIFT_ST, 1.0)
    results = stream(VoicePerception(VoiceOptions(use_bridge=False)), low)
    first = [r for _, r in results[:4]]
    assert all(not any(c.name in ("pitch_low", "pitch_high") for c in r.cues) for r in first)
    assert cue_fraction(results, "pitch_low") < 0.3


# --- cue tracker (unit) --------------------------------------------------------------------------

def test_cue_hysteresis_and_evidence():
    tracker = AuditoryCueTracker()
    m = WindowMeasures(speech_s=1.8, voiced_s=1.0, f0_median_st=10.0, level_db=-25.0, syllable_rate=4.0)
    seq = [0.0, 1.6, 1.2, 1.0, 1.4]
    on = []
    for z in seq:
        cues = tracker.update(m, {"f0_median_st": z, "level_db": 0.0, "syllable_rate": 0.0})
        on.append(any(c.name == "pitch_high" for c in cues))
        hit = [c for c in cues if c.name == "pitch_high"]
        if hit:
            assert hit[0].evidence["f0_median_st_z"] == z and 0 < hit[0].intensity <= 1
    assert on == [False, True, True, False, False]
    steady = tracker.update(m, {"f0_median_st": 0.1, "level_db": -0.2, "syllable_rate": 0.3})
    assert [c.name for c in steady] == ["steady"]


# --- the stage -----------------------------------------------------------------------------------

def test_silence_and_white_noise_give_a_status_and_no_cues():
    an = VoicePerception(VoiceOptions(use_bridge=False))
    silence = np.zeros(4 * SAMPLE_RATE, np.float32)
    rng = np.random.default_rng(1)
    noise = (0.2 * rng.standard_normal(4 * SAMPLE_RATE)).astype(np.float32)
    for x, code in ((silence, ResultCode.SILENCE), (noise, ResultCode.NOISE)):
        results = stream(an, x)
        assert results and all(not r.cues for _, r in results)
        assert all(r.code is code for _, r in results)
        assert all(r.scores and max(r.scores.values()) == 0.0 for _, r in results)
        an.reset()


def test_result_shape_and_stage_protocol(clip0870):
    an = VoicePerception.create_from_options(VoiceOptions(use_bridge=False))
    results = stream(an, np.concatenate([clip0870, clip0870]))
    r = results[-1][1]
    assert r.modality == "auditory" and r.tokens is None
    assert set(RULE_NAMES) <= set(r.scores)
    assert {"vad", "prosody", "measure", "cues", "total"} <= set(r.latency_ms)
    assert 0.5 < r.extra["speech_ratio"] <= 1.0 and 70 < r.extra["f0_median_hz"] < 160
    segs = r.extra["voiced_segments"]
    assert segs and all(results[-1][0] <= v["start"] < v["end"] for v in segs)
    assert all(60 < v["f0_median_hz"] < 250 for v in segs)
    assert all(c.modality == "auditory" and c.phrase and 0 < c.intensity <= 1 for _, res in results for c in res.cues)
    assert any(c for _, res in results for c in res.cues)
    an.set_speaker("second voice")
    assert not an.baseline.ready and an.speaker == "second voice"
    an.set_speaker("default")
    assert an.baseline.ready
    empty = an.summarize(np.zeros(0, np.float32), 0.0, [], 0.0, 2.0)
    assert empty.empty and empty.code is ResultCode.NO_AUDIO and empty.message == "no audio"
    an.reset()
    assert not an.baseline.ready


@pytest.mark.parametrize("rate,channels", [(8000, 1), (22050, 1), (44100, 1), (48000, 1), (48000, 2), (44100, 6)])
def test_resample_any_rate_and_channel_count(clip0870, rate, channels):
    import av

    # Make the test input with libswresample itself (16 kHz -> rate), then duplicate channels.
    up = av.AudioResampler(format="flt", layout="mono", rate=rate)
    frame = av.AudioFrame.from_ndarray(clip0870[None, :].copy(), format="flt", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    x = np.concatenate([f.to_ndarray().reshape(-1) for f in up.resample(frame) + up.resample(None)])
    if channels > 1:
        x = np.repeat(x[:, None], channels, axis=1) * np.linspace(0.8, 1.2, channels)[None, :].astype(np.float32)
    y = resample(x, rate, channels)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - len(clip0870)) <= 0.01 * len(clip0870)
    segs = speech_segments(y)
    assert segs and sum(s.duration for s in segs) > 5.0


def test_resample_rejects_bad_arguments():
    with pytest.raises(ValueError, match="channels"):
        resample(np.zeros(301, np.float32), 48000, 2)
    with pytest.raises(ValueError, match="rate"):
        resample(np.zeros(300, np.float32), 0, 1)


def test_bad_input_is_repaired_not_fatal(clip0870):
    loud = np.clip(clip0870 * 6.0, -1.5, 1.5) + 0.25  # clipped and DC-shifted
    loud[1000:1100] = np.nan
    loud[5000] = np.inf
    loud[9000] = -np.inf
    rng = np.random.default_rng(2)
    sizes = np.concatenate([[0, 1, 7], rng.integers(1, 4000, size=400)])
    an = VoicePerception(VoiceOptions(use_bridge=False))
    results = stream(an, loud, block=sizes)
    assert an.stats["nonfinite_samples"] == 102 and an.stats["clipped_samples"] > 1000
    assert an.stats["irregular_blocks"] > 40
    assert any("non-finite" in (r.message or "") for _, r in results)
    assert any("clipped" in (r.message or "") for _, r in results)
    assert all(r.code is not None for _, r in results if "clipped" in (r.message or ""))
    clean = stream(VoicePerception(VoiceOptions(use_bridge=False)), clip0870)
    assert abs(median_extra(results, "f0_median_hz") / median_extra(clean, "f0_median_hz") - 1) < 0.05
    assert median_extra(results, "speech_ratio") > 0.6
    empty = an.process_block(AudioBlock(np.zeros(0, np.float32), 99.0, 0))
    assert isinstance(empty, VoiceBlock) and empty.n_samples == 0
    with pytest.raises(ValueError, match="mono float32"):  # a block that did not come through the Conditioner
        an.process_block(AudioBlock(np.zeros((320, 2), np.float32), 99.0, 1))
    stereo = an.process_block(Conditioner().block(np.zeros((320, 2), np.int16), SAMPLE_RATE, 99.0, 1))
    assert stereo.n_samples == 320


def test_audio_is_conditioned_once_where_it_enters():
    """Mono 16 kHz float32 in [-1, 1] without its DC offset, whatever came in; the repairs counted in the block."""
    rng = np.random.default_rng(0)
    tone = (0.5 * np.sin(2 * np.pi * 220 * np.arange(48000) / 48000) + 0.3).astype(np.float32)
    stereo = np.stack([tone, tone + rng.normal(0, 0.01, len(tone)).astype(np.float32)], 1)
    stereo[100:110, 0] = np.nan
    stereo[2000:2400] = 1.7
    conditioner, blocks = Conditioner(), []
    for i, a in enumerate(range(0, len(stereo), 4800)):
        blocks.append(conditioner.block(stereo[a : a + 4800], 48000, a / 48000, i))
    y = np.concatenate([b.samples for b in blocks])
    assert y.dtype == np.float32 and y.ndim == 1 and abs(len(y) - 16000) <= 16
    assert sum(b.nonfinite for b in blocks) == 10 and sum(b.clipped for b in blocks) > 100
    assert np.abs(y).max() <= 1.0 + 0.3 and abs(float(y[8000:].mean())) < 0.02  # the 0.3 offset is gone
    ints = Conditioner().block((tone[:16000] * 20000).astype(np.int16), SAMPLE_RATE, 0.0, 0)
    assert ints.samples.dtype == np.float32 and abs(float(ints.samples.mean())) < 0.02


def test_demo_sample_wav_silence_then_speech():
    x = read_wav(need(DEMO_WAV, "the install step copies pyannote-audio's sample.wav there"))
    results = stream(VoicePerception(VoiceOptions(use_bridge=False)), x[: 20 * SAMPLE_RATE])
    assert all(r.code in (ResultCode.SILENCE, ResultCode.NO_SPEECH, ResultCode.NOISE) and not r.cues for t, r in results if t + 2.0 <= 6.5)
    talk = [r for t, r in results if t >= 8.0]
    assert all(r.cues or r.code in (ResultCode.LEARNING_BASELINE, ResultCode.NO_CLEAR_VOCAL_CUE) for r in talk)
    assert all(r.extra["speech_ratio"] > 0.3 for r in talk) and any(r.cues for r in talk)


@pytest.mark.shared
def test_xemogpt_sample_female_speech():
    x = read_wav(need(XEMO_WAV, "../shared/data is not beside the repository"))
    segs = speech_segments(x)
    assert sum(s.duration for s in segs) / (len(x) / SAMPLE_RATE) > 0.55
    results = stream(VoicePerception(VoiceOptions(use_bridge=False)), x)
    f0 = median_extra(results, "f0_median_hz")
    assert 160 < f0 < 350


# --- optional transcript -------------------------------------------------------------------------

def test_transcript_of_read_speech_on_the_source_clock(clip0870):
    pytest.importorskip("faster_whisper", reason="faster-whisper (asr extra) is not installed")
    from edge_xemo.voice.asr import Transcriber
    from edge_xemo.core.models import ModelError

    try:
        tr = Transcriber()
    except ModelError as e:
        pytest.skip(str(e))
    segs = tr.transcribe(clip0870, t0=50.0)
    words = " ".join(s.text for s in segs).lower()
    ref = "and mister john dashwood had then leisure to consider how much there might be prudently in his power"
    hits = sum(w in words for w in ref.split())
    assert hits >= 0.7 * len(ref.split())
    assert segs[0].start >= 50.0 and segs[-1].end <= 50.0 + len(clip0870) / SAMPLE_RATE + 0.5
    assert tr.last_language == "en"


def test_analyzer_transcribes_finished_utterances(clip0870):
    pytest.importorskip("faster_whisper", reason="faster-whisper (asr extra) is not installed")
    from edge_xemo.core.models import ModelError

    try:
        an = VoicePerception(VoiceOptions(use_bridge=False, asr=TranscriberOptions(language="en")))
    except ModelError as e:
        pytest.skip(str(e))
    x = np.concatenate([clip0870, np.zeros(SAMPLE_RATE, np.float32)])  # silence closes the utterance
    results = stream(an, x, t_off=20.0)
    pieces = [p for _, r in results for p in r.transcript]
    assert pieces and "dashwood" in " ".join(p.text for p in pieces).lower()
    assert all(20.0 <= p.start <= p.end <= 20.0 + len(x) / SAMPLE_RATE + 0.5 for p in pieces)
    assert any("asr" in r.latency_ms for _, r in results)


def test_transcript_without_faster_whisper_is_a_clear_error(monkeypatch):
    import sys

    from edge_xemo.voice.asr import Transcriber

    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # as if the asr extra were not installed
    with pytest.raises(RuntimeError, match=r"edge-xemo\[asr\]"):
        Transcriber()
    with pytest.raises(RuntimeError, match="faster-whisper"):
        VoicePerception(VoiceOptions(use_bridge=False, asr=TranscriberOptions()))


def test_voice_stage_never_imports_torch():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from edge_xemo.voice.stage import VoicePerception, VoiceOptions; "
            "from edge_xemo.core.types import AudioBlock; a = VoicePerception(VoiceOptions(use_bridge=False)); "
            "a.process_block(AudioBlock(np.zeros(16000, np.float32), 0.0, 0)); "
            "assert 'torch' not in sys.modules and 'silero_vad' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2], timeout=60)


def test_bridge_tokens_ride_on_speech_windows(clip0870):
    from edge_xemo.core.models import ModelError, resolve

    try:
        resolve("aecb")
    except ModelError as e:
        pytest.skip(f"AECB bridge not installed: {e}")
    an = VoicePerception(VoiceOptions(use_bridge=True))
    assert an.has_bridge
    results = stream(an, np.concatenate([np.zeros(3 * SAMPLE_RATE, np.float32), clip0870]))
    silent = [r for t, r in results if t + 2.0 <= 3.0]
    talking = [r for t, r in results if t >= 3.5]
    assert silent and all(r.tokens is None for r in silent)
    assert talking and all(r.tokens is not None and r.tokens.ndim == 2 and np.isfinite(r.tokens).all() for r in talking)
    assert all(any(k.startswith("aecb:") for k in r.scores) and "aecb" in r.latency_ms for r in talking)


def test_long_speech_without_pauses_is_transcribed_in_pieces():
    pytest.importorskip("faster_whisper", reason="faster-whisper (asr extra) is not installed")
    x = read_wav(need(DEMO_WAV, "the install step copies pyannote-audio's sample.wav there"))[: 22 * SAMPLE_RATE]
    an = VoicePerception(VoiceOptions(use_bridge=False, asr=TranscriberOptions(language="en", max_chunk_s=6.0)))
    results = stream(an, x)
    assert an._vad.speaking  # the conversation runs on: no finished utterance yet
    pieces = [p for _, r in results for p in r.transcript]
    assert len(pieces) >= 2 and all(6.5 <= p.start <= p.end <= 22.5 for p in pieces)  # a word may be 0 s long
    assert len(" ".join(p.text for p in pieces).split()) >= 10


def test_background_transcripts_arrive_in_later_windows(clip0870):
    pytest.importorskip("faster_whisper", reason="faster-whisper (asr extra) is not installed")
    import time

    with VoicePerception(VoiceOptions(use_bridge=False, asr=TranscriberOptions(language="en", background=True))) as an:
        x = np.concatenate([clip0870, np.zeros(SAMPLE_RATE, np.float32)])
        results = stream(an, x)
        deadline = time.monotonic() + 30
        pieces = [p for _, r in results for p in r.transcript]
        while not pieces and time.monotonic() < deadline:  # the worker finishes after the last window
            time.sleep(0.2)
            pieces = an.summarize(np.zeros(0, np.float32), 0.0, [], 0.0, 10.0).transcript  # a window over them
    assert "dashwood" in " ".join(p.text for p in pieces).lower()


def test_every_aecb_cue_names_a_rule_cue():
    from edge_xemo.core.models import resolve
    from edge_xemo.voice.cues import rule_name

    outputs = {o["name"]: o for o in resolve("aecb").entry["outputs"]}
    labels = outputs["cue_probs"]["labels"]
    assert {rule_name(c) for c in labels} <= set(RULE_NAMES)
    assert rule_name("higher_pitch") == "pitch_high" and rule_name("fast") == "fast"


def test_words_go_to_the_windows_they_were_said_in():
    """The phone call of pyannote's sample: a window carries the words said in it and the 2 s before it (and
    words recognized late), so most windows over speech carry some, not just the one where a sentence ends."""
    pytest.importorskip("faster_whisper", reason="faster-whisper (asr extra) is not installed")
    from edge_xemo.voice.transcript import WORDS_BEFORE_S

    x = read_wav(need(DEMO_WAV, "the install step copies pyannote-audio's sample.wav there"))
    an = VoicePerception(VoiceOptions(use_bridge=False, use_emotion_model=False, asr=TranscriberOptions(language="en")))
    results = stream(an, x)
    spoken = [(t, r) for t, r in results if r.extra.get("speech_s", 0) >= 0.4]
    assert sum(bool(r.transcript) for _, r in spoken) >= 0.4 * len(spoken)
    assert all(w.start < t + 2.0 for t, r in results for w in r.transcript)  # never before it was said
    later = [(t, r) for t, r in results[1:] if r.transcript]
    assert any(all(w.end > t - WORDS_BEFORE_S for w in r.transcript) for t, r in later)  # the sentence's tail
