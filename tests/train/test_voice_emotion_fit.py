"""The voice model's recipe and the judgement's stream fit: five seeds merged into one network compute the mean of
their logits; the smoothing fit scores the live Judge over labelled streams."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="training needs torch (pip install -e .[train])")

from train.judgement_fit import stream_scores  # noqa: E402
from train.voice_emotion import LABELS, fit_ensemble, fit_mlp  # noqa: E402


def test_the_merged_ensemble_computes_the_mean_of_its_networks_logits():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(len(LABELS)), 12)
    x = (rng.normal(size=(len(y), 6)) + y[:, None]).astype(np.float32)
    merged = fit_ensemble(x, y, weight_decay=0.01, seeds=3)
    nets = [fit_mlp(x, y, 0.01, seed) for seed in range(3)]
    assert merged.w1.shape == (6, 3 * nets[0].w1.shape[1])
    mean = np.mean([n.logits(x) for n in nets], axis=0)
    assert np.allclose(merged.logits(x), mean, atol=1e-5)
    assert not np.allclose(nets[0].logits(x), mean, atol=1e-3)  # the seeds differ: the mean is not one of them


def test_the_stream_fit_scores_the_live_judge_and_smoothing_lags_behind_a_change():
    def dist(label):
        return {e: (0.9 if e == label else 0.1 / 6) for e in LABELS}

    stream = [(float(t), dist("happy"), "happy") for t in range(1, 5)] + [(5.0, dist("sad"), "sad")]
    off, slow = stream_scores([stream], "voice", 0.0), stream_scores([stream], "voice", 8.0)
    assert off["uar"] == 1.0 and slow["uar"] == 0.5  # smoothed, the one sad window still reads happy
    assert slow["balanced_nll"] > off["balanced_nll"]


def test_the_synthetic_neutral_takes_are_speech_of_other_voices_at_16_khz():
    from train import voice_emotion as ve

    pytest.importorskip("kokoro_onnx", reason="the Kokoro takes need kokoro-onnx (pip install -e .[train])")
    if not ve.kokoro_styles().is_dir():
        pytest.skip(f"{ve.KOKORO_JS} is not unpacked: python -m train.rebuild --only sources")
    first, other_statement, next_voice = (ve.synthetic_neutral(ve.JOE_TAKES + k) for k in (0, 1, 2))
    for take in (first, other_statement, next_voice):
        assert take.dtype == np.float32 and 1.0 < len(take) / 16000 < 4.0  # one statement, about 2 s
        assert 0.05 < np.abs(take).max() <= 1.0
    assert len(first) != len(other_statement)  # one voice's two statements, each at its own random pace

    def pitch(x):  # median F0 (Hz) of a take by autocorrelation over its voiced 40 ms frames
        frames = x[: len(x) // 640 * 640].reshape(-1, 640)
        frames = frames[np.sqrt((frames**2).mean(1)) > 0.02]
        lags = [np.argmax(np.correlate(f, f, "full")[640 + 40 : 640 + 320]) + 40 for f in frames]
        return 16000 / np.median(lags)

    assert ve.KOKORO_VOICES[0].startswith("af_") and ve.KOKORO_VOICES[11].startswith("am_")
    assert pitch(first) > 1.3 * pitch(ve.synthetic_neutral(ve.JOE_TAKES + 22))  # af_alloy's take vs am_echo's
    both = ve.synthetic_neutral(ve.JOE_TAKES + ve.KOKORO_TAKES)  # af_alloy again, both statements in one breath
    assert 3.0 < len(both) / 16000 < 7.0
    loud = np.sqrt((both[: len(both) // 320 * 320].reshape(-1, 320) ** 2).mean(1))  # 20 ms frames
    middle = loud[len(loud) // 4 : -len(loud) // 4] < 0.05 * loud.max()
    assert np.convolve(middle, np.ones(5), "valid").max() == 5  # a pause of 100 ms or more between the statements
