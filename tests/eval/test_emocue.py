"""EmoCue-360 on hand-checked cases. The embedding is a fixed lookup table (the metric is under test)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_xemo.eval.emocue import score

TABLE = {
    "a": [1.0, 0.0, 0.0],
    "b": [0.0, 1.0, 0.0],
    "c": [2.0, 2.0, 0.0],  # unnormalized on purpose: cosine with a and b is 1/sqrt(2)
    "d": [0.0, 0.0, 3.0],
    "e": [3.0, 0.0, 4.0],  # cosine with a 0.6, with d 0.8
}
S = 1 / math.sqrt(2)


def fake_embed(texts):
    return np.array([TABLE[t] for t in texts])  # KeyError = a cue that should have been dropped


def f1(r, p):
    return 2 * r * p / (r + p)


def test_visual_two_samples_exact():
    ref = {"s1": {"visual": ["a", "b"]}, "s2": {"visual": ["a"]}}
    pred = {"s1": {"visual": ["c"]}, "s2": {"visual": ["a", "b"]}}
    got = score(pred, ref, fake_embed)["visual"]
    # s1: rows a,b vs column c -> every entry 1/sqrt(2); s2: row a vs (a, b) -> [1, 0]
    r1, p1 = S, S
    r2, p2 = 1.0, (1.0 + 0.0) / 2
    assert got["n"] == 2
    assert got["recall"] == pytest.approx((r1 + r2) / 2, abs=1e-12)
    assert got["precision"] == pytest.approx((p1 + p2) / 2, abs=1e-12)
    assert got["f1"] == pytest.approx((f1(r1, p1) + f1(r2, p2)) / 2, abs=1e-12)
    assert got["f1"] != pytest.approx(f1(got["recall"], got["precision"]))  # mean of F1s, not F1 of means


def test_row_and_column_max_are_not_symmetric():
    ref = {"s": {"visual": ["a", "d"]}}
    pred = {"s": {"visual": ["e"]}}
    got = score(pred, ref, fake_embed)["visual"]
    assert got["recall"] == pytest.approx((0.6 + 0.8) / 2)  # each gt cue's best match
    assert got["precision"] == pytest.approx(0.8)  # e's best gt match
    assert got["f1"] == pytest.approx(f1(0.7, 0.8))


def test_subtitle_cues_dropped_on_both_sides_and_empty_gt_skipped():
    ref = {"s1": {"auditory": ["a", "subtitle text: hello"]}, "s2": {"auditory": ["the text reads hi"]}}
    pred = {"s1": {"auditory": ["a", "quotes the text"]}, "s2": {"auditory": ["b"]}}
    got = score(pred, ref, fake_embed)["auditory"]
    assert got == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "n": 1}  # s2 has no gt left: skipped


def test_empty_or_missing_prediction_scores_zero():
    ref = {"s1": {"visual": ["a"], "emotional": ["b"]}, "s2": {"visual": ["a"], "emotional": ["b"]}}
    pred = {"s1": {"visual": [], "emotional": ["b"]}, "s2": {"emotional": ["b"]}}
    got = score(pred, ref, fake_embed)
    assert got["visual"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "n": 2}
    assert got["emotional"]["f1"] == 1.0


def test_missing_emotional_key_scores_zero_even_with_empty_gt():
    ref = {"s1": {"emotional": ["a"]}, "s2": {"emotional": []}, "s3": {"emotional": []}, "s4": {"emotional": ["a"]}}
    pred = {"s1": {"visual": ["a"]}, "s2": {"visual": ["a"]}, "s3": {"emotional": ["a"]}, "s4": {"emotional": ["a"]}}
    got = score(pred, ref, fake_embed)["emotional"]
    # s1, s2: no emotional key -> 0 (reference behaviour); s3: gt empty -> skipped; s4: 1
    assert got["n"] == 3
    assert got["f1"] == pytest.approx(1 / 3)
    assert got["recall"] == pytest.approx(1 / 3)


def test_names_in_one_file_only_are_reported_not_scored():
    ref = {"s1": {"visual": ["a"]}, "only_ref": {"visual": ["a"]}}
    pred = {"s1": {"visual": ["a"]}, "only_pred": {"visual": ["b"]}}
    got = score(pred, ref, fake_embed)
    assert got["names"] == {"scored": 1, "only_in_pred": ["only_pred"], "only_in_ref": ["only_ref"]}
    assert got["visual"]["f1"] == 1.0


def test_no_scored_sample_gives_none():
    got = score({}, {}, fake_embed)
    assert got["visual"] == {"precision": None, "recall": None, "f1": None, "n": 0}


@pytest.mark.parametrize(
    "pred, match",
    [
        ({"s": {"visual": "a"}}, "must be a list"),
        ({"s": {"visual": ["a", 3]}}, "not a string"),
        ({"s": ["a"]}, "must be an object"),
    ],
)
def test_malformed_entries_name_the_sample(pred, match):
    with pytest.raises(ValueError, match=match):
        score(pred, {"s": {"visual": ["a"]}}, fake_embed)
