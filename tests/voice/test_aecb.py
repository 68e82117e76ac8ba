"""Audio front end, AECB ONNX export parity, and the AudioBridge runtime on real speech."""

from __future__ import annotations

import importlib.util
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from edge_xemo.voice.aecb import WINDOW_SAMPLES, AudioBridge
from edge_xemo.voice.features import (N_FEATURES, N_MELS, StreamFrames, frame_features, log_mel, mel_filterbank,
                                      n_frames, pitch_bands)
from edge_xemo.core.models import MODELS_DIR, ModelError, resolve

REPO = Path(__file__).resolve().parents[2]
FP32_TOL = 1e-4  # ONNX fp32 vs PyTorch, max abs difference (tokens, cue probabilities)
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")  # the held-out speaker (apt pocketsphinx-testdata)
HAS_TORCH = importlib.util.find_spec("torch") is not None


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert w.getframerate() == 16000 and w.getsampwidth() == 2
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels())
    return x.mean(axis=1).astype(np.float32) / 32768.0


@pytest.fixture(scope="module")
def speech(request) -> np.ndarray:
    """Real speech the model never saw: the LibriVox reader (held out) or the shared sample clip."""
    if LIBRIVOX.exists():
        return np.concatenate([read_wav(p) for p in sorted(LIBRIVOX.glob("*.wav"))])
    shared = REPO.parent / "shared" / "data" / "xemogpt_sample" / "sample_00000007.wav"
    if shared.exists():
        return read_wav(shared)
    pytest.skip("no real speech: apt-get install pocketsphinx-testdata, or ../shared/data")


@pytest.fixture(scope="module")
def have_model():
    try:
        resolve("aecb")
    except ModelError as e:
        pytest.skip(str(e))


# ------------------------------------------------------------------ front end
def test_log_mel_shape_and_tone_band():
    t = np.arange(WINDOW_SAMPLES) / 16000
    mel = log_mel((0.1 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    assert mel.shape == (n_frames(WINDOW_SAMPLES), N_MELS) == (198, 64) and mel.dtype == np.float32
    centres = mel_filterbank().argmax(0)  # FFT bin at each band's peak; 1 kHz = bin 32
    assert abs(int(np.argmax(mel.mean(0))) - int(np.argmin(np.abs(centres - 32)))) <= 1


def test_log_mel_level_is_kept_and_bad_input_rejected():
    x = np.random.default_rng(0).standard_normal(WINDOW_SAMPLES).astype(np.float32) * 0.01
    # +20 dB adds 2.0 to log10 power: absolute level stays visible (loud / soft cues)
    assert np.allclose(log_mel(10 * x) - log_mel(x), 2.0, atol=1e-3)
    assert log_mel(np.zeros(100, np.float32)).shape == (0, N_MELS)
    with pytest.raises(ValueError, match="mono"):
        log_mel(np.zeros((2, 16000), np.float32))


def test_pitch_bands_move_with_pitch_not_with_speaker():
    """A 4-semitone rise moves the autocorrelation peak by ~4 bands (1.09 semitones per band)."""
    t = np.arange(WINDOW_SAMPLES) / 16000

    def peak(f0):
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 10)).astype(np.float32) * 0.05
        p = pitch_bands(x).mean(0)
        return int(np.argmax(p[:20])), float(p.max())  # bands 0-19 = 450-110 Hz: the first period

    (b_lo, r_lo), (b_hi, r_hi) = peak(150.0), peak(150.0 * 2 ** (4 / 12))
    assert r_lo > 0.9 and r_hi > 0.9 and 3 <= b_lo - b_hi <= 5
    noise = np.random.default_rng(0).standard_normal(WINDOW_SAMPLES).astype(np.float32) * 0.01
    assert np.abs(pitch_bands(noise)).mean() < 0.1 and not pitch_bands(np.zeros(WINDOW_SAMPLES, np.float32)).any()
    assert frame_features(noise).shape == (198, N_FEATURES)


def test_stream_frames_equal_the_window_front_end_and_compute_each_frame_once():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(5 * 16000) * 0.05).astype(np.float32)
    stream = StreamFrames()
    sizes = rng.integers(300, 1700, size=200)  # uneven blocks, as devices deliver them
    edges = np.concatenate([[0], np.cumsum(sizes)])
    edges = edges[edges < len(x)].tolist() + [len(x)]
    windows = []
    for a, b in zip(edges[:-1], edges[1:]):
        stream.push(x[a:b], 10.0 + a / 16000)  # a stream that starts at 10 s source time
        while b >= (len(windows) + 1) * 16000:  # a window closes every second: the last 2 s
            end = (len(windows) + 1) * 16000
            windows.append(stream.window(10.0 + end / 16000 - 2.0, WINDOW_SAMPLES))
    for k, got in enumerate(windows, start=1):
        end = k * 16000
        window = x[max(0, end - WINDOW_SAMPLES):end]
        window = np.concatenate([np.zeros(WINDOW_SAMPLES - len(window), np.float32), window])  # before the stream: zeros
        assert np.array_equal(got, frame_features(window)), k
    assert stream.computed < 1.2 * (n_frames(len(x)) + 100)  # overlapping halves were not computed twice
    stream.push(x[:1600], 30.0)  # a jump: a new grid, nothing of the old stream
    assert np.array_equal(stream.window(30.0, 1600), frame_features(x[:1600]))
    assert StreamFrames().window(0.0, WINDOW_SAMPLES) is None


def test_stream_frames_serve_a_window_the_stream_has_run_ahead_of():
    """Offline the audio is decoded ahead of the video, and a window closes with the video: its
    samples must still be there, or the window says it has none (never silently zeros)."""
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(12 * 16000) * 0.05).astype(np.float32)
    stream = StreamFrames(keep_s=8.0)
    for a in range(0, len(x), 1024):
        stream.push(x[a : a + 1024], a / 16000)
    assert np.array_equal(stream.window(5.0, WINDOW_SAMPLES), frame_features(x[5 * 16000 : 7 * 16000]))
    assert stream.window(2.0, WINDOW_SAMPLES) is None  # trimmed: older than the 8 s kept


# ------------------------------------------------------------------ export parity (needs torch)
@pytest.mark.skipif(not HAS_TORCH, reason="torch is a training/export dependency only")
def test_onnx_export_matches_pytorch(tmp_path):
    import onnxruntime as ort
    import torch

    from export.aecb import export_fp32
    from train.aecb import AECB, AecbConfig, OnnxAECB

    torch.manual_seed(0)
    model = AECB(AecbConfig()).eval()
    mel, base = torch.randn(2, 198, N_FEATURES), torch.randn(2, 128)
    with torch.no_grad():
        ref = [t.numpy() for t in OnnxAECB(model)(mel, base)]
    export_fp32(model, tmp_path / "aecb.onnx")
    got = ort.InferenceSession(str(tmp_path / "aecb.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"features": mel.numpy(), "baseline": base.numpy()})
    for a, b in zip(got, ref):
        assert a.shape == b.shape and np.abs(a - b).max() < FP32_TOL


@pytest.mark.skipif(not HAS_TORCH, reason="torch is a training/export dependency only")
def test_shipped_onnx_matches_checkpoint(have_model, speech):
    ckpt = REPO / "runs" / "aecb" / "ckpt.pt"
    if not ckpt.exists():
        pytest.skip(f"{ckpt} is absent (python -m train.aecb writes it)")
    import onnxruntime as ort
    import torch

    from export.aecb import load
    from train.aecb import OnnxAECB

    model, _ = load(ckpt)
    mel = np.stack([frame_features(speech[i : i + WINDOW_SAMPLES]) for i in (0, 16000, 32000)])
    base = np.zeros((3, 128), np.float32)
    with torch.no_grad():
        ref = [t.numpy() for t in OnnxAECB(model)(torch.from_numpy(mel), torch.from_numpy(base))]
    got = ort.InferenceSession(str(resolve("aecb").path), providers=["CPUExecutionProvider"]).run(
        None, {"features": mel, "baseline": base})
    assert max(float(np.abs(a - b).max()) for a, b in zip(got[:2], ref[:2])) < FP32_TOL


# ------------------------------------------------------------------ runtime (no torch)
def test_sidecar_records_training_and_parity(have_model):
    entry = json.loads((MODELS_DIR / "aecb.json").read_text())
    m = entry["metrics"]
    assert entry["trained_on"]["held_out"] == "librivox"
    assert m["parity_vs_pytorch"]["max_abs_diff"]["cue_probs"] < FP32_TOL
    assert set(m["final_loss"]["val"]) == {"cls", "reg", "con"}
    assert 0.5 < m["val_cue_accuracy"] <= 1.0


def test_bridge_outputs_and_bad_input(have_model, speech):
    bridge = AudioBridge(threads=1)
    out = bridge.run(speech[:WINDOW_SAMPLES])
    assert out.tokens.shape == (8, 128) and out.tokens.dtype == np.float32 and np.isfinite(out.tokens).all()
    assert set(out.cue_scores) == set(bridge.cues) and all(0 <= p <= 1 for p in out.cue_scores.values())
    assert out.baseline_windows == 0 and bridge.baseline_windows == 1
    assert out.phrases["higher_pitch"] == "higher pitch than usual"
    # first window: compared with itself, so no "than usual" cue fires
    assert max(out.cue_scores[c] for c in ("higher_pitch", "lower_pitch", "loud", "soft")) < 0.5
    for bad, msg in ((np.zeros(0, np.float32), "non-empty"), (np.zeros((2, 100), np.float32), "mono"),
                     (np.zeros(100, np.int16), "float"), (np.full(100, np.nan, np.float32), "NaN")):
        with pytest.raises(ValueError, match=msg):
            bridge.run(bad)
    bridge.reset()
    assert bridge.baseline_windows == 0
    with pytest.raises(ValueError, match="aecb"):
        AudioBridge(model="nope")


def test_bridge_crops_to_last_two_seconds(have_model, speech):
    a, b = AudioBridge(), AudioBridge()
    long = a.run(speech[: 3 * 16000])
    last = b.run(speech[16000 : 3 * 16000])
    assert np.allclose(long.tokens, last.tokens, atol=1e-5)


def _baseline(bridge: AudioBridge, x: np.ndarray) -> None:
    for s in range(0, len(x) - WINDOW_SAMPLES + 1, 8000):
        bridge.run(x[s : s + WINDOW_SAMPLES])


def test_louder_and_softer_than_the_speakers_baseline(have_model, speech):
    """Unseen real speech: after a baseline at the speaker's level, +/-12 dB reads loud / soft.

    Averaged over three windows: a single window's own level varies by a few dB around the
    speaker's mean, and the training labels start at +/-6 dB.
    """
    bridge = AudioBridge()
    _baseline(bridge, speech)

    def mean_scores(gain_db):
        outs = [bridge.run(speech[s : s + WINDOW_SAMPLES] * 10 ** (gain_db / 20), update_baseline=False)
                for s in (16000, 80000, 144000)]
        return {c: float(np.mean([o.cue_scores[c] for o in outs])) for c in ("loud", "soft")}

    same, loud, soft = mean_scores(0), mean_scores(12), mean_scores(-12)
    assert loud["loud"] > 0.5 > same["loud"] and soft["soft"] > 0.5 > same["soft"]
    assert loud["soft"] < 0.5 and soft["loud"] < 0.5


def _repitch(x: np.ndarray, semitones: float) -> np.ndarray:
    """Praat PSOLA pitch shift (formants kept), as in training; parselmouth is a training dependency."""
    parselmouth = pytest.importorskip("parselmouth", reason="praat-parselmouth (training dependency) re-pitches")
    from parselmouth.praat import call

    snd = parselmouth.Sound(x.astype(np.float64), 16000)
    manip = call(snd, "To Manipulation", 0.01, 75, 500)
    tier = call(manip, "Extract pitch tier")
    call(tier, "Multiply frequencies", snd.xmin, snd.xmax, 2 ** (semitones / 12))
    call([tier, manip], "Replace pitch tier")
    return call(manip, "Get resynthesis (overlap-add)").values[0].astype(np.float32)


def test_higher_and_lower_pitch_than_the_speakers_baseline(have_model, speech):
    """Unseen real speech re-pitched by +/-5 semitones reads as higher / lower than usual.

    Averaged over four windows: pitch cues are the AECB's weakest (held-out F1 about 0.6) and a
    single window's scores and F0 estimate (held-out MAE about 2.5 st) swing from one to the next."""
    bridge = AudioBridge()
    _baseline(bridge, speech)
    runs = {s: [] for s in (-5.0, 0.0, 5.0)}
    for start in (16000, 48000, 80000, 112000):
        w = speech[start : start + WINDOW_SAMPLES]
        for s in runs:
            runs[s].append(bridge.run(_repitch(w, s), update_baseline=False))

    def mean(shift, get):
        return float(np.mean([get(r) for r in runs[shift]]))

    def cue(name):
        return lambda r: r.cue_scores[name]

    assert mean(5.0, cue("higher_pitch")) > 0.5 > mean(0.0, cue("higher_pitch"))
    assert mean(-5.0, cue("lower_pitch")) > 0.5 > mean(0.0, cue("lower_pitch"))
    f0 = [mean(s, lambda r: r.prosody["f0_median_st"]) for s in (5.0, 0.0, -5.0)]
    assert f0[0] > f0[1] > f0[2], f0
