"""Stage (a) alignment, XEmoGPT style: one projector per modality, bridge tokens -> decoder embeddings.

    nice python -m train.projector_data                  # the cached windows (runs/projector_data/)
    nice python -m train.projector_align                 # -> runs/projector_align/ckpt.pt, losses
    nice python -m train.projector_align --smoke --out DIR
    python -m train.projector_align --set device=cuda       # one GPU (device=auto takes it when there is one)
    torchrun --nproc_per_node=N -m train.projector_align    # DDP over the projector (gloo on CPU, nccl on GPU)
    python -m export.projector runs/projector_align/ckpt.pt   # ONNX + sidecars in edge_xemo/models/

The decoder is frozen: SmolLM2-135M-Instruct dequantized from the runtime's Q4_1 GGUF by transformers
(`train.decoder_lora.load_base`) with the shipped LoRA adapter (edge_xemo/models/decoder_lora.gguf)
merged into its q/k/v/o weights in PyTorch (q/k rows brought back from llama.cpp's rotary order).
Only the projector trains (`nn.Linear(128, n_embd)`). A sequence is a short alignment turn

    <|im_start|>user\\n<Video>[8 projected VECB tokens]</Video>\\nDescribe the visual cues.<|im_end|>\\n
    <|im_start|>assistant\\nVisual cues: <the window's cue phrases, strongest first>.<|im_end|>

(audio: `<Audio>`, "vocal cues", AECB tokens); the loss is on the answer tokens only. The runtime
prompt's system message is left out to keep CPU sequences short (~50 tokens instead of ~170).

Evaluation on held-out clips (cap13_edit2.mp4; the LibriVox reader): the answer loss with the
window's own projected tokens, with the projected tokens of another held-out window (a shuffle:
what a projector gives without window-specific information) and with the slot removed.

Distributed: every rank draws the same global batch (same seeded order) and takes batch_size / N of
its windows; its loss is its summed answer cross-entropy times N / the global batch's answer tokens,
so DistributedDataParallel's gradient mean is one process's gradient. Every rank evaluates (the same
numbers); the master alone writes ckpt.pt, losses.json and metrics.json.
"""

from __future__ import annotations

import json
import logging
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_xemo.reasoning.prompt import END, LABEL_LEAD, Segment, build_prompt, training_target  # noqa: E402
from train.config import load_config, skip_stage, stage_parser  # noqa: E402
from train.decoder_lora import answer_tokens, encode, forward_loss, load_base  # noqa: E402
from train.engine import DistInfo, FitConfig, device_name, require_device, setup, teardown  # noqa: E402
from train.projector_data import load  # noqa: E402

log = logging.getLogger("edge_xemo.train")

REPO = Path(__file__).resolve().parents[1]
ADAPTER = REPO / "edge_xemo" / "models" / "decoder_lora.gguf"
GGUF_PROJ = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}
MODALITIES = {"visual": ("video", "Video", "visual", "Visual cues"),
              "audio": ("audio", "Audio", "vocal", "Vocal cues")}


@dataclass
class AlignConfig:
    """Hyper-parameters of the alignment stage (each settable with --set name=value)."""

    data_dir: str = "runs/projector_data"
    out_dir: str = "runs/projector_align"
    modalities: list[str] = field(default_factory=lambda: ["visual", "audio"])
    d_bridge: int = 128
    lr: float = 3e-3  # AdamW, linear warm-up then cosine to lr/10
    weight_decay: float = 0.01
    warmup: int = 10
    steps: int = 120  # optimizer steps per modality
    batch_size: int = 8
    max_train: int = 0  # use at most this many training windows (0: all)
    max_heldout: int = 64
    seed: int = 1337
    threads: int = 2
    device: str = "auto"  # auto | cpu | cuda (under torchrun: rank r takes cuda:<local rank r>)
    use_lora: bool = True  # merge the shipped decoder LoRA into the frozen base
    eval_before: bool = True  # also measure the held-out loss of the untrained projector
    context: str = "short"  # "short": the alignment turn; "runtime": the runtime prompt (system message,
    # the cue text) with the answer's cue sections as target: teaches the decoder to keep its format


def inverse_permute_rows(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo convert_hf_to_gguf's LlamaModel.permute on the rows of `w` (llama.cpp -> HF q/k order)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def merge_adapter(model, path: Path = ADAPTER) -> dict:
    """Add the GGUF LoRA adapter's (alpha / r) B A to the HF model's q/k/v/o weights; returns its info."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    alpha = float(reader.get_field(gguf.Keys.Adapter.LORA_ALPHA).contents())
    tensors = {t.name: np.array(t.data, dtype=np.float32) for t in reader.tensors}
    cfg = model.config
    rank = None
    for i, layer in enumerate(model.model.layers):
        for proj, gname in GGUF_PROJ.items():
            a = tensors[f"blk.{i}.{gname}.weight.lora_a"]
            b = tensors[f"blk.{i}.{gname}.weight.lora_b"]
            if proj in ("q_proj", "k_proj"):
                b = inverse_permute_rows(b, cfg.num_attention_heads if proj == "q_proj" else cfg.num_key_value_heads)
            rank = a.shape[0]
            lin = getattr(layer.self_attn, proj)
            lin.weight.data += torch.from_numpy((b @ a) * (alpha / rank))
    return {"file": str(path.relative_to(REPO)), "alpha": alpha, "rank": rank}


def align_segments(modality: str, with_slot: bool = True) -> list[Segment]:
    """The alignment turn's prompt (see module doc); without the slot for the no-token baseline."""
    slot, tag, word, _ = MODALITIES[modality]
    tail = f"Describe the {word} cues.{END}\n<|im_start|>assistant\n"
    if not with_slot:
        return [Segment("text", f"<|im_start|>user\n{tail}")]
    return [Segment("text", f"<|im_start|>user\n<{tag}>"), Segment(slot), Segment("text", f"</{tag}>\n{tail}")]


def align_target(modality: str, phrases: list[str]) -> str:
    """'Visual cues: a, b.<|im_end|>' ('none' when the window had no cue)."""
    return f"{MODALITIES[modality][3]}: {', '.join(phrases) if phrases else 'none'}.{END}"


def make_projector(d_in: int, n_embd: int, embed_weight: torch.Tensor, seed: int) -> nn.Linear:
    """A linear projector whose initial outputs have the scale of the decoder's token embeddings."""
    g = torch.Generator().manual_seed(seed)
    proj = nn.Linear(d_in, n_embd)
    rms = float(embed_weight.pow(2).mean().sqrt())
    with torch.no_grad():
        proj.weight.copy_(torch.randn(n_embd, d_in, generator=g) * rms / math.sqrt(d_in))
        proj.bias.copy_(embed_weight.mean(0))
    return proj


class Aligner:
    """Encodes windows and computes the answer loss of the frozen decoder for one modality."""

    def __init__(self, model, tok, modality: str, n_tokens: int, context: str = "short"):
        if context not in ("short", "runtime"):
            raise ValueError(f"context must be 'short' or 'runtime', got {context!r}")
        self.model, self.tok, self.modality, self.context = model, tok, modality, context
        self.device = model.get_input_embeddings().weight.device
        self.slot = MODALITIES[modality][0]
        self.pad = tok.eos_token_id if tok.eos_token_id is not None else 0
        self.n_tokens = n_tokens

    def encoded(self, phrases: list[str], with_slot: bool = True):
        lengths = {self.slot: self.n_tokens} if with_slot else None
        if self.context == "runtime":
            v, a = (phrases, []) if self.modality == "visual" else ([], phrases)
            segments = build_prompt(v, a, None, with_slot and self.slot == "video", with_slot and self.slot == "audio")
            target = training_target(v, a, "neutral").split(f" {LABEL_LEAD}")[0]  # the cue sections only
            return encode(self.tok, segments, target, 512, slot_lengths=lengths)
        return encode(self.tok, align_segments(self.modality, with_slot), align_target(self.modality, phrases),
                      512, slot_lengths=lengths)

    def loss(self, projector, tokens: np.ndarray | None, phrases: list[list[str]], scale: float = 0.0) -> torch.Tensor:
        """Mean answer cross-entropy; `tokens` (B, n, d) fill the slot, None removes the slot.
        `scale` > 0: the summed cross-entropy times `scale` instead (a DDP rank's share)."""
        enc = [self.encoded(p, tokens is not None) for p in phrases]
        reduction = "sum" if scale else "mean"
        if tokens is None:
            loss = forward_loss(self.model, enc, self.pad, reduction=reduction)
        else:
            embeds = projector(torch.from_numpy(np.asarray(tokens, np.float32)).to(self.device))
            loss = forward_loss(self.model, enc, self.pad, slot_embeds=[{self.slot: e} for e in embeds],
                                reduction=reduction)
        return loss * scale if scale else loss


def evaluate(al: Aligner, projector, tokens: np.ndarray, phrases: list, seed: int, batch: int = 8) -> dict:
    """Held-out answer loss: own tokens, another window's tokens (seeded derangement), no slot."""
    rng = np.random.default_rng(seed)
    n = len(tokens)
    perm = np.roll(rng.permutation(n), 1)  # a shuffle that differs from the identity
    shuffled = np.empty_like(perm)
    shuffled[rng.permutation(n)] = perm
    shuffled = np.where(shuffled == np.arange(n), (np.arange(n) + 1) % n, shuffled)
    out = {}
    with torch.no_grad():
        for name, toks in (("own_tokens", tokens), ("shuffled_tokens", tokens[shuffled]), ("no_slot", None)):
            losses = []
            for i in range(0, n, batch):
                part = None if toks is None else toks[i : i + batch]
                losses.append(al.loss(projector, part, phrases[i : i + batch]).item() * len(phrases[i : i + batch]))
            out[name] = sum(losses) / n
    out["windows"] = n
    return out


def train_modality(cfg: AlignConfig, model, tok, modality: str, info: DistInfo | None = None) -> dict:
    """Train one projector on `model`'s device (DDP when `info` says torchrun started several processes);
    returns {"state" (CPU tensors), "losses", "heldout_before", "heldout_after", "data"}."""
    info = info or DistInfo(0, 0, 1, next(model.parameters()).device)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    tr_tokens, tr_phrases, tr_clips = load(Path(cfg.data_dir), f"{modality}_train")
    he_tokens, he_phrases, he_clips = load(Path(cfg.data_dir), f"{modality}_heldout")
    if cfg.max_train:
        keep = np.random.default_rng(cfg.seed).permutation(len(tr_tokens))[: cfg.max_train]
        tr_tokens, tr_phrases, tr_clips = tr_tokens[keep], [tr_phrases[i] for i in keep], [tr_clips[i] for i in keep]
    if cfg.context == "runtime":  # the runtime explains no window without cues or tokens: no "slot removed" case
        keep = [i for i, p in enumerate(he_phrases) if p]
        he_tokens, he_phrases, he_clips = he_tokens[keep], [he_phrases[i] for i in keep], [he_clips[i] for i in keep]
    he_tokens, he_phrases, he_clips = he_tokens[: cfg.max_heldout], he_phrases[: cfg.max_heldout], he_clips[: cfg.max_heldout]
    if len(tr_tokens) == 0 or len(he_tokens) < 2:
        raise ValueError(f"{modality}: too few windows with tokens ({len(tr_tokens)} train, {len(he_tokens)} held out)")
    emb = model.get_input_embeddings().weight.detach().cpu()
    projector = make_projector(cfg.d_bridge, emb.shape[1], emb, cfg.seed).to(info.device)  # same start on any device
    al = Aligner(model, tok, modality, tr_tokens.shape[1], cfg.context)
    opt = torch.optim.AdamW(projector.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    trained = projector
    if info.ddp:
        trained = DDP(projector, device_ids=[info.local_rank] if info.device.type == "cuda" else None)

    def lr_at(step):
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    before = evaluate(al, projector, he_tokens, he_phrases, cfg.seed) if cfg.eval_before else None
    log.info("%s held-out before: %s", modality, before)
    losses, order, t0 = [], [], time.time()
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:
            order += random.sample(range(len(tr_tokens)), len(tr_tokens))
        idx = [order.pop() for _ in range(min(cfg.batch_size, len(tr_tokens)))]  # the same on every rank
        if len(idx) % info.world_size:
            raise ValueError(f"batch of {len(idx)} windows does not split evenly over {info.world_size} processes")
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        if info.ddp:
            mine = idx[info.rank * len(idx) // info.world_size : (info.rank + 1) * len(idx) // info.world_size]
            scale = info.world_size / answer_tokens([al.encoded(tr_phrases[i]) for i in idx])
            loss = al.loss(trained, tr_tokens[mine], [tr_phrases[i] for i in mine], scale)
        else:
            loss = al.loss(projector, tr_tokens[idx], [tr_phrases[i] for i in idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(projector.parameters(), 1.0)
        opt.step()
        value = loss.detach()
        if info.ddp:  # log the global batch's mean, the number one process logs
            dist.all_reduce(value)
            value /= info.world_size
        losses.append((step + 1, value.item()))
        log.info("%s step %d/%d: loss %.4f lr %.2e (%.0f s)", modality, step + 1, cfg.steps, losses[-1][1],
                 lr_at(step), time.time() - t0)
    after = evaluate(al, projector, he_tokens, he_phrases, cfg.seed)
    log.info("%s held-out after: %s", modality, after)
    return {
        "state": {k: v.detach().cpu().clone() for k, v in projector.state_dict().items()},
        "losses": losses, "seconds": time.time() - t0,
        "heldout_before": before, "heldout_after": after,
        "data": {"train_windows": len(tr_tokens), "train_clips": sorted(set(tr_clips)),
                 "train_windows_with_cues": sum(bool(p) for p in tr_phrases),
                 "heldout_windows": len(he_tokens), "heldout_clips": sorted(set(he_clips))},
        "sample_inputs": he_tokens[:2].reshape(-1, he_tokens.shape[-1]),
    }


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = stage_parser(__doc__).parse_args(argv)
    cfg = load_config(AlignConfig, args.config, args.set)
    require_device(cfg.device, "train.projector_align")
    if args.smoke:
        cfg.steps, cfg.batch_size, cfg.warmup, cfg.max_train, cfg.max_heldout = 2, 2, 1, 4, 4
        root = Path(__import__("os").environ.get("EDGE_XEMO_REBUILD_DIR", ""))
        if (root / "train.projector_data" / "visual_train.npz").exists():
            cfg.data_dir = str(root / "train.projector_data")
        elif not (Path(cfg.data_dir) / "visual_train.npz").exists():
            skip_stage(f"no projector data in {cfg.data_dir} or {root / 'train.projector_data'}: train.projector_data did not run")
    if args.out:
        cfg.out_dir = args.out
    info = setup(FitConfig(seed=cfg.seed, threads=cfg.threads, device=cfg.device))  # torchrun: gloo / nccl group
    model, tok = load_base(cfg.threads)
    model.eval()
    adapter = merge_adapter(model) if cfg.use_lora else None  # on the CPU, in fp32, then moved
    model.to(info.device)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results, t0 = {}, time.time()
    for m in cfg.modalities:  # the checkpoint is rewritten after each modality: a cut run keeps what is done
        results[m] = train_modality(cfg, model, tok, m, info)
        if not info.master:
            continue
        ckpt = {"config": asdict(cfg), "adapter": adapter, "n_embd": model.config.hidden_size,
                "command": "python -m train.projector_align " + " ".join(argv if argv is not None else sys.argv[1:]),
                "modalities": results}
        torch.save(ckpt, out / "ckpt.pt")
        summary = {k: {f: v for f, v in r.items() if f not in ("state", "sample_inputs")} for k, r in results.items()}
        (out / "losses.json").write_text(json.dumps(summary, indent=1))
        metrics = {"processes": info.world_size, "device": info.device.type, "device_name": device_name(info.device),
                   "seconds": round(time.time() - t0, 1),
                   "final_train_loss": {k: r["losses"][-1][1] for k, r in results.items()},
                   "heldout_after": {k: r["heldout_after"] for k, r in results.items()}}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
        log.info("wrote %s (%s)", out / "ckpt.pt", ", ".join(results))
    teardown()


if __name__ == "__main__":
    main()
