"""Hugging Face text model (local folder) -> ONNX through optimum: export, graph optimization, int8.

Runs in the optimum venv (`export.optimum_env`: runs/venv-optimum), never in the project's venv:
optimum-onnx 0.1.0 requires transformers < 4.58, the project's train extra transformers >= 5.

    runs/venv-optimum/bin/python -m export.optimum_text MODEL_DIR OUT_DIR [--task feature-extraction]
        [--opset 18] [--variants]

OUT_DIR/model.onnx: `optimum.exporters.onnx.main_export` on the local folder (local files only,
no hub; TorchScript exporter, fp32, weights inside the file), with the tokenizer files beside it.
--variants adds OUT_DIR/model_optimized.onnx (`ORTOptimizer`, level O2: transformer fusions, exact
GELU, fp32) and OUT_DIR/model_int8.onnx (`ORTQuantizer`, dynamic int8 of the fp32 export with the
`arm64` config: u8 activations, s8 per-channel symmetric weights, optimum's default operators).
Prints one JSON line: the files written and the versions of the tools that wrote them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

OPSET = 18
"""optimum's own default for BERT-like encoders (`OnnxConfig.DEFAULT_ONNX_OPSET` in optimum-onnx 0.1.0)."""
TOOLS = ("optimum", "optimum-onnx", "torch", "transformers", "onnx", "onnxruntime")


def export(model_dir: Path, out: Path, task: str, opset: int) -> Path:
    from optimum.exporters.onnx import main_export

    main_export(str(model_dir), str(out), task=task, opset=opset, library_name="transformers",
                local_files_only=True, device="cpu")
    return out / "model.onnx"


def variants(out: Path) -> dict[str, Path]:
    """model_optimized.onnx (O2) and model_int8.onnx (dynamic int8) beside out/model.onnx."""
    from optimum.onnxruntime import ORTOptimizer, ORTQuantizer
    from optimum.onnxruntime.configuration import AutoOptimizationConfig, AutoQuantizationConfig

    written = {}
    with tempfile.TemporaryDirectory() as tmp:
        ORTOptimizer.from_pretrained(out).optimize(AutoOptimizationConfig.O2(), Path(tmp) / "o2")
        shutil.move(Path(tmp) / "o2" / "model_optimized.onnx", out / "model_optimized.onnx")
        written["optimized"] = out / "model_optimized.onnx"
        ORTQuantizer.from_pretrained(out, file_name="model.onnx").quantize(AutoQuantizationConfig.arm64(is_static=False), Path(tmp) / "q")
        shutil.move(Path(tmp) / "q" / "model_quantized.onnx", out / "model_int8.onnx")
        written["int8"] = out / "model_int8.onnx"
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path, help="local Hugging Face / sentence-transformers model folder")
    ap.add_argument("out", type=Path)
    ap.add_argument("--task", default="feature-extraction")
    ap.add_argument("--opset", type=int, default=OPSET)
    ap.add_argument("--variants", action="store_true", help="also the O2-optimized and the int8 models")
    args = ap.parse_args(argv)
    files = {"fp32": export(args.model_dir, args.out, args.task, args.opset)}
    if args.variants:
        files |= variants(args.out)
    print(json.dumps({"files": {k: str(v) for k, v in files.items()}, "task": args.task, "opset": args.opset,
                      "versions": {t: version(t) for t in TOOLS}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
