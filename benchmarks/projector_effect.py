"""Explanations of the shared sample with projectors read from a folder (nothing installed).

    python benchmarks/projector_effect.py DIR [OUT.jsonl]   # DIR holds projector_visual.onnx / projector_audio.onnx
    python benchmarks/projector_effect.py none              # the decoder without projectors

Runs `edge-xemo analyze ../shared/data/xemogpt_sample/sample_00000007.mp4` in-process with
`edge_xemo.reasoning.decoder.load_projector` reading DIR, and prints each explanation with its label and score;
used to decide whether trained projectors ship (docs/projector_align.md).
"""

import json
import sys
from pathlib import Path

import onnxruntime as ort

import edge_xemo.reasoning.decoder as dec
from edge_xemo.cli import app
from edge_xemo.reasoning.projector import Projector

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "xemogpt_sample" / "sample_00000007.mp4"
SUBTITLE = "Be there or be square. Oh, okay, goodbye."


def main(folder: str, out: str = "/tmp/projector_effect.jsonl") -> None:
    def load(name, threads=1, provider="cpu", manifest=None):
        path = Path(folder) / f"{name}.onnx"
        if folder == "none" or not path.exists():
            return None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return Projector(name, session, "tokens", False, 128, session.get_outputs()[0].shape[-1])

    dec.load_projector = load
    try:
        app(["analyze", str(SAMPLE), "--jsonl", out, "--quiet", "--subtitle", SUBTITLE])
    except SystemExit as e:
        if e.code:
            raise
    for line in open(out):
        d = json.loads(line)
        if d["type"] == "explanation":
            print(d["t_start"], d["emotion"]["label"], round(max(d["emotion"]["scores"].values()), 3), repr(d["text"]))


if __name__ == "__main__":
    main(*sys.argv[1:])
