"""Convert face-api's FaceExpressionNet (uint8-quantized tfjs weights) to an ONNX graph, numpy + onnx only.

Source: npm `@vladmandic/face-api` 1.7.15 (MIT, Copyright (c) Vladimir Mandic; the net is Vincent
Mühler's face-api.js, MIT), files model/face_expression_model.bin + face_expression_model-weights_manifest.json.
Upstream says the model was trained on public data sets plus faces scraped from the web; not retrained here.

    npm pack @vladmandic/face-api@1.7.15            # -> vladmandic-face-api-1.7.15.tgz
    python -m export.face_api_expression vladmandic-face-api-1.7.15.tgz \
        [--out runs/face_expression/face_api_expression.onnx]

The architecture, read from the package's src/ (faceFeatureExtractor/, faceExpressionNet/, common/):
input (n, 112, 112, 3) RGB -> minus mean RGB (122.782, 117.001, 104.298), /255 -> 4 dense blocks
(32, 64, 128, 256 channels; each: conv0 stride 2 [a plain 3x3 conv in dense0, depthwise-separable after],
then conv1..conv3 depthwise-separable stride 1, each fed relu(sum of all earlier outputs of the block),
block output relu(sum of all four)) -> 7x7 average pool -> fully connected 256 -> 7 -> softmax.
Labels (FaceExpressions.ts): neutral, happy, sad, angry, fearful, disgusted, surprised.
TensorFlow 'same' padding with stride 2 pads only bottom/right, so pads are explicit.
face-api feeds the face box (1.2x the 68-landmark box when landmarks are used) zero-padded to a centred square
and resized bilinearly to 112x112.

The graph: input `pixels` (n, 3, 112, 112) float32 RGB 0..255; outputs `embedding` (n, 256) (the pooled
features the classifier reads) and `scores` (n, 7) softmax in the label order above.
"""

from __future__ import annotations

import argparse
import json
import tarfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
MEAN_RGB = (122.782, 117.001, 104.298)
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "runs" / "face_expression" / "face_api_expression.onnx"


def read_package(src: Path) -> tuple[list, bytes]:
    """(manifest weights list, weights .bin bytes) from an npm tarball or an unpacked package folder."""
    names = ("model/face_expression_model-weights_manifest.json", "model/face_expression_model.bin")
    if src.is_dir():
        root = src / "package" if (src / "package").is_dir() else src
        manifest, blob = ((root / n).read_bytes() for n in names)
    else:
        with tarfile.open(src) as tar:
            manifest, blob = (tar.extractfile(f"package/{n}").read() for n in names)
    groups = json.loads(manifest)
    return [w for g in groups for w in g["weights"]], blob


def dequantize(weights: list, blob: bytes) -> dict[str, np.ndarray]:
    """Weights by name as float32, uint8 ones dequantized as q * scale + min (tfjs' rule)."""
    out, pos = {}, 0
    for w in weights:
        n = int(np.prod(w["shape"]))
        q = w.get("quantization")
        if q:
            dt = np.dtype(q["dtype"])
            raw = np.frombuffer(blob, dt, n, pos)
            val = raw.astype(np.float32) * q["scale"] + q["min"]
        else:
            dt = np.dtype(w["dtype"])
            val = np.frombuffer(blob, dt, n, pos).astype(np.float32)
        pos += n * dt.itemsize
        out[w["name"]] = val.reshape(w["shape"])
    if pos != len(blob):
        raise ValueError(f"manifest covers {pos} bytes, the .bin has {len(blob)}")
    return out


def build(w: dict[str, np.ndarray]) -> onnx.ModelProto:
    nodes, inits = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, np.float32), name))
        return name

    def conv(x, out, weight, bias, stride, group=1):
        pads = [0, 0, 1, 1] if stride == 2 else [1, 1, 1, 1]  # TF 'same' (3x3): stride 2 pads bottom/right only
        if weight.shape[-1] == 1:
            pads = [0, 0, 0, 0]
        ins = [x, const(out + "/W", weight)] + ([const(out + "/B", bias)] if bias is not None else [])
        nodes.append(helper.make_node("Conv", ins, [out], strides=[stride] * 2, pads=pads, group=group))
        return out

    def sep_conv(x, name, stride):
        dw = w[f"{name}/depthwise_filter"]  # (3, 3, C, 1) -> (C, 1, 3, 3)
        pw = w[f"{name}/pointwise_filter"]  # (1, 1, Cin, Cout) -> (Cout, Cin, 1, 1)
        d = conv(x, name + "/dw", dw.transpose(2, 3, 0, 1), None, stride, group=dw.shape[2])
        return conv(d, name, pw.transpose(3, 2, 0, 1), w[f"{name}/bias"], 1)

    def op(kind, ins, out):
        nodes.append(helper.make_node(kind, ins, [out]))
        return out

    mean = np.array(MEAN_RGB, np.float32).reshape(1, 3, 1, 1)
    x = op("Sub", ["pixels", const("mean_rgb", mean)], "centred")
    x = op("Div", [x, const("scale255", np.float32(255.0))], "normalized")
    for b in range(4):
        p = f"dense{b}"
        if b == 0:
            c0 = conv(x, p + "/conv0", w[p + "/conv0/filters"].transpose(3, 2, 0, 1), w[p + "/conv0/bias"], 2)
        else:
            c0 = sep_conv(x, p + "/conv0", 2)
        outs = [op("Relu", [c0], p + "/out1")]
        for k in (1, 2, 3):
            inp = outs[0] if k == 1 else op("Relu", [op("Sum", outs, f"{p}/sum{k}")], f"{p}/in{k + 1}")
            outs.append(sep_conv(inp, f"{p}/conv{k}", 1))
        x = op("Relu", [op("Sum", outs, p + "/sum4")], p + "/out")
    nodes.append(helper.make_node("AveragePool", [x], ["pooled"], kernel_shape=[7, 7], strides=[2, 2]))
    emb = op("Flatten", ["pooled"], "embedding")
    nodes.append(
        helper.make_node("Gemm", [emb, const("fc/W", w["fc/weights"]), const("fc/B", w["fc/bias"])], ["logits"])
    )
    nodes.append(helper.make_node("Softmax", ["logits"], ["scores"], axis=1))
    graph = helper.make_graph(
        nodes,
        "face_api_expression",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 3, 112, 112])],
        [
            helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", 256]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 7]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="edge-xemo")
    model.metadata_props.add(key="labels", value=",".join(LABELS))
    model.metadata_props.add(key="source", value="@vladmandic/face-api 1.7.15 model/face_expression_model.bin (MIT)")
    onnx.checker.check_model(model)
    return model


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "package", type=Path, help="npm tarball (vladmandic-face-api-1.7.15.tgz) or unpacked package folder"
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    a = ap.parse_args(argv)
    model = build(dequantize(*read_package(a.package)))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_bytes(model.SerializeToString())
    print(f"wrote {a.out} ({a.out.stat().st_size / 1e6:.2f} MB), labels {', '.join(LABELS)}")


if __name__ == "__main__":
    main()
