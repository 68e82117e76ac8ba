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
