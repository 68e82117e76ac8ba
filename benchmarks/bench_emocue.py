"""Cost of EmoCue-360 evaluation: rule-based cue extraction per description, MiniLM embeddings per cue.

    pytest benchmarks/bench_emocue.py --benchmark-columns=median,iqr,ops
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from edge_xemo.eval.cue_extract import extract_cues
from edge_xemo.core.models import ModelError

EMER_CSV = Path(__file__).parents[1].parent / "shared" / "data" / "emer_v2" / "emer_v2_dev.csv"
CUES = ["slightly furrowed brow", "raised eyebrows", "tone is low and monotonous", "speech is fast-paced",
        "sense of concern", "happiness", "corners of her mouth turned up", "hint of laughter"] * 4  # 32 cues


@pytest.fixture(scope="module")
def descriptions() -> list[str]:
    if not EMER_CSV.exists():
        pytest.skip(f"{EMER_CSV} absent")
    with open(EMER_CSV, newline="", encoding="utf-8") as f:
        return [r["english"] for r in csv.DictReader(f)]


def test_rule_extraction_250_descriptions(benchmark, descriptions):
    out = benchmark(lambda: [extract_cues(t) for t in descriptions])
    assert len(out) == len(descriptions)


@pytest.mark.parametrize("threads", [1, 2])
def test_minilm_embed_32_cues(benchmark, threads):
    from edge_xemo.reasoning.embeddings import EmbedderOptions, MiniLMEmbedder

    try:
        emb = MiniLMEmbedder.create_from_options(EmbedderOptions(threads=threads, cache_size=0))
    except ModelError as e:
        pytest.skip(str(e))
    out = benchmark(emb.embed, CUES)
    assert out.shape == (32, 384)
