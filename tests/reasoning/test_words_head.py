"""The words head (artifact `words_head`, train/words_head.py): text normalization, parity with the training side's
probabilities kept in the sidecar, obvious sentences, a corrupt file, and MELD dev UAR recomputed."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from edge_xemo.core.models import ModelError, load_manifest, resolve
from edge_xemo.core.types import EMOTIONS
from edge_xemo.reasoning.words import WordsHead, joined_context, normalize_text

MELD_DEV = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "meld" / "dev_sent_emo.csv"


@pytest.fixture(scope="module")
def head() -> WordsHead:
    try:
        resolve("minilm")
    except ModelError as e:
        pytest.skip(f"MiniLM ONNX not installed ({e}); run python -m export.minilm --out $EDGE_XEMO_HOME/minilm")
    return WordsHead.load(threads=2)


@pytest.fixture(scope="module")
def sidecar() -> dict:
    return load_manifest()["artifacts"]["words_head"]


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("You must\x92ve had", "You must've had"),
        ("let\u00c2\u2019s talk", "let's talk"),
        ("company\u00e2\u20ac\u2122s", "company's"),
        ("company\u2019s \u201cKL-5\u201d\u2026", 'company\'s "KL-5"...'),
        ("  Oh  \u2014  no ", "Oh - no"),
        ("plain text.", "plain text."),
    ],
)
def test_normalize_text(raw, clean):
    assert normalize_text(raw) == clean


def test_joined_context_puts_the_preceding_words_first():
    assert joined_context("  I got\u2019 it.", "Great!") == "I got' it. Great!"
    assert joined_context("", "Great!") == "Great!"


def test_labels_are_the_projects_without_worried(head, sidecar):
    assert set(head.labels) <= set(EMOTIONS) and "worried" not in head.labels
    assert len(head.labels) == 7 and head.temperature > 0
    assert sidecar["terms"]["licence"] == "GPL-3.0" and "MELD" in sidecar["licence"]


def test_runtime_reproduces_the_training_side_probabilities(head, sidecar):
    examples = sidecar["parity_examples"]
    assert len(examples) == 3
    for ex in examples:
        got = head(ex["text"], ex["context"])
        assert list(got) == list(ex["probabilities"])
        np.testing.assert_allclose(
            list(got.values()), list(ex["probabilities"].values()), atol=1e-5, err_msg=ex["text"]
        )
        assert abs(sum(got.values()) - 1.0) < 1e-6


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I am so happy for you!", {"happy"}),
        ("Get out of my room, I hate you!", {"angry", "disgust"}),
        ("Okay.", {"neutral"}),
    ],
)
def test_obvious_sentences(head, text, expected):
    p = head(text)
    assert max(p, key=p.get) in expected, p


def test_context_is_ignored_by_a_head_without_it(head):
    if head.context:
        pytest.skip("the shipped head reads context")
    assert head("Okay.", "I hate you!") == head("Okay.")


def test_corrupt_file_is_a_model_error(tmp_path, monkeypatch):
    data = bytearray(resolve("words_head").path.read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "words_head.npy").write_bytes(bytes(data))
    monkeypatch.setenv("EDGE_XEMO_MODELS", str(tmp_path))
    with pytest.raises(ModelError, match="sha256"):
        WordsHead.load()


def test_a_missing_file_is_a_model_error(tmp_path, monkeypatch):
    monkeypatch.delenv("EDGE_XEMO_MODELS", raising=False)
    monkeypatch.setattr("edge_xemo.core.models.MODELS_DIR", tmp_path)  # an empty folder: the artifact is not there
    with pytest.raises(ModelError, match="words_head"):
        WordsHead.load()


@pytest.mark.shared
def test_meld_dev_uar_matches_the_sidecar(head, sidecar):
    """All 1,109 MELD dev utterances (a few seconds with 2 threads) through the runtime head."""
    from sklearn.metrics import recall_score

    if not MELD_DEV.exists():
        pytest.skip(f"{MELD_DEV} is absent (../shared/data is only on the project's machines)")
    from train.words_head import MELD_TO_LABEL as meld

    with open(MELD_DEV, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if head.context:
        pytest.skip("the shipped head reads context: this check feeds utterances alone")
    probs = head.probabilities([r["Utterance"] for r in rows])
    truth = [head.labels.index(meld[r["Emotion"]]) for r in rows]
    uar = recall_score(truth, probs.argmax(1), average="macro")
    recorded = sidecar["metrics"]["quality"]["dev"]["uar"]
    assert uar == pytest.approx(recorded, abs=0.005)
    assert uar >= 0.40
