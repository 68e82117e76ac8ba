"""Train the compact audio encoder + AECB (Audio Emotional Cue Bridge) on the prosody corpus.

    nice python -m train.audio_data          # build runs/aecb_data (a few minutes)
    nice python -m train.aecb                # train -> runs/aecb/ckpt.pt, metrics.json
    python -m export.aecb                    # ONNX fp32 + int8, parity, sidecar
    python -m train.aecb --smoke --out DIR   # 20 steps on the smoke corpus ($EDGE_XEMO_REBUILD_DIR/train.audio_data)
    torchrun --nproc_per_node=2 -m train.aecb [--smoke --out DIR]   # DDP (gloo on CPU, nccl on GPU)
    python -m train.aecb --set device=cuda   # one GPU (device=auto, the default, takes it when there is one)

Distributed: every rank draws the same global batch (same seeded generators), takes its share of
the rows and DistributedDataParallel averages the gradients, so N processes take the steps one
process takes (up to dropout masks, seeded seed + rank, and summation order). The master alone
writes the checkpoint, metrics and the per-step loss log (`<out>/aecb_loss.jsonl`).

Model: frame features (B, 198, 96: log-mel + pitch bands, edge_xemo.voice.features)
-> conv stack (stride 4) -> 50 frame tokens at 25 Hz (B, 50, d)
-> AECB: [baseline token, 8 learned queries, frame tokens] through 2 transformer layers
-> 8 audio tokens (B, 8, d). The baseline token is the speaker's mean `voice` embedding (the mean
frame token of earlier windows), so that "higher pitch / faster / louder than usual" is judged
against the speaker's own voice, as the runtime does with a running mean.
Heads: cue-phrase multi-label classification, prosody regression (Praat teacher), and contrastive
alignment with the cue phrases embedded by all-MiniLM-L6-v2 (frozen) + a linear text head.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train.audio_data import CUES, NEUTRAL_PHRASE, PHRASES, PROSODY  # noqa: E402
from edge_xemo.voice.features import N_FEATURES, N_MELS  # noqa: E402
from train.bridge import Block, contrastive_loss, phrase_embeddings  # noqa: E402

RELATIVE_CUES = ("higher_pitch", "lower_pitch", "fast", "slow", "loud", "soft")
LOUD, SOFT = CUES.index("loud"), CUES.index("soft")


@dataclass
class AecbConfig:
    n_feats: int = 96  # edge_xemo.voice.features.N_FEATURES
    n_frames: int = 198  # 2.0 s at 10 ms hop, 25 ms window, no centering
    d: int = 128
    n_heads: int = 4
    n_layers: int = 2
    n_queries: int = 8
    ff: int = 256
    dropout: float = 0.2
    n_cues: int = len(CUES)
    n_prosody: int = len(PROSODY)


@dataclass
class TrainConfig:
    data: str = "runs/aecb_data"
    out: str = "runs/aecb"
    seed: int = 1337
    steps: int = 1500
    batch: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.05
    n_ref: int = 1  # neutral windows of the same speaker averaged into the baseline (training)
    eval_n_ref: int = 4  # ... at evaluation, closer to the runtime's running mean
    self_baseline: float = 0.1  # share of samples whose baseline is their own voice (runtime start)
    gain_aug_db: float = 10.0
    relative_gain: float = 0.3  # share of steady-level windows moved alone by a loud/soft-sized step
    relative_gain_db: tuple[float, float] = (7.0, 12.0)  # the step: train.audio_data's loud/soft gains are 6-12 dB
    w_cls: float = 1.0
    w_reg: float = 0.5
    w_con: float = 0.5
    temperature: float = 0.1
    threads: int = 1
    device: str = "auto"  # auto | cpu | cuda (under torchrun: rank r takes cuda:<local rank r>)
    model: AecbConfig = field(default_factory=AecbConfig)


class AudioEncoder(nn.Module):
    """frame features (B, T, 96) -> frame tokens (B, ceil(T/4), d) at 25 Hz."""

    def __init__(self, c: AecbConfig):
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(c.n_feats))
        self.register_buffer("feat_std", torch.ones(c.n_feats))
        self.conv = nn.Sequential(
            nn.Conv1d(c.n_feats, c.d, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(c.d, c.d, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(c.d, c.d, 3, padding=1), nn.GELU(),
        )
        self.ln = nn.LayerNorm(c.d)

    def forward(self, feats):
        x = ((feats - self.feat_mean) / self.feat_std).transpose(1, 2)  # (B, 96, T)
        return self.ln(self.conv(x).transpose(1, 2))  # (B, T', d)


class AECB(nn.Module):
    """Encoder + bridge + heads. forward -> tokens, cue logits, prosody (normalized), voice."""

    def __init__(self, c: AecbConfig):
        super().__init__()
        self.c = c
        n_tok = (c.n_frames + 3) // 4
        self.encoder = AudioEncoder(c)
        self.pos = nn.Parameter(torch.randn(1, n_tok, c.d) * 0.02)
        self.queries = nn.Parameter(torch.randn(1, c.n_queries, c.d) * 0.02)
        self.base_proj = nn.Linear(c.d, c.d)
        # as the shipped AECB was trained and exported: logits * (1/sqrt(head dim)), width traced from x.shape
        self.blocks = nn.ModuleList(Block(c.d, c.n_heads, c.ff, c.dropout, scale="mul", traced_width=True)
                                    for _ in range(c.n_layers))
        self.ln = nn.LayerNorm(c.d)
        self.cue_head = nn.Linear(c.d * c.n_queries, c.n_cues)
        self.prosody_head = nn.Linear(c.d * c.n_queries, c.n_prosody)
        self.align_head = nn.Linear(c.d * c.n_queries, c.d)
        self.register_buffer("prosody_mean", torch.zeros(c.n_prosody))
        self.register_buffer("prosody_std", torch.ones(c.n_prosody))

    def voice(self, mel):
        """Frame tokens and their mean (B, d): the embedding the speaker baseline averages."""
        frames = self.encoder(mel)
        return frames, frames.mean(dim=1)

    def bridge(self, frames, baseline):
        B = frames.shape[0]
        x = torch.cat([self.base_proj(baseline)[:, None], self.queries.expand(B, -1, -1), frames + self.pos], dim=1)
        for blk in self.blocks:
            x = blk(x)
        tokens = self.ln(x[:, 1 : 1 + self.c.n_queries])  # (B, 8, d)
        flat = tokens.flatten(1)
        return tokens, self.cue_head(flat), self.prosody_head(flat), self.align_head(flat)


class OnnxAECB(nn.Module):
    """The exported graph: (features, baseline) -> tokens, cue_probs, prosody (real units), voice."""

    def __init__(self, m: AECB):
        super().__init__()
        self.m = m

    def forward(self, mel, baseline):
        frames, voice = self.m.voice(mel)
        tokens, cue_logits, pros, _ = self.m.bridge(frames, baseline)
        return tokens, torch.sigmoid(cue_logits), pros * self.m.prosody_std + self.m.prosody_mean, voice


def load_split(folder: Path, split: str) -> dict:
    z = np.load(folder / f"{split}.npz")
    return {k: z[k] for k in z.files}


class Batcher:
    """Samples windows plus `n_ref` neutral windows of the same speaker for the baseline."""

    def __init__(self, d: dict, cfg: TrainConfig, seed: int):
        self.d, self.cfg = d, cfg
        self.rng = np.random.default_rng(seed)
        self.mel = torch.from_numpy(d["feats"].astype(np.float32))
        self.refs = {s: np.flatnonzero((d["speaker"] == s) & (d["neutral"] == 1)) for s in np.unique(d["speaker"])}

    def make(self, idx: np.ndarray, train: bool):
        cfg, d = self.cfg, self.d
        n_ref = cfg.n_ref if train else cfg.eval_n_ref
        ref = np.stack([self.rng.choice(self.refs[d["speaker"][i]], n_ref) for i in idx])
        mel, ref_mel = self.mel[idx], self.mel[ref.reshape(-1)].view(len(idx), n_ref, *self.mel.shape[1:])
        labels = torch.from_numpy(d["labels"][idx].copy())
        self_base = torch.zeros(len(idx), dtype=torch.bool)
        if train:
            # a gain adds dB / 10 to the log10-power mel bands (the pitch bands are level-free);
            # one level per speaker-session: sample and references move together
            g = torch.from_numpy(self.rng.uniform(-1, 1, len(idx)).astype(np.float32)) * cfg.gain_aug_db / 10
            bands = (torch.arange(N_FEATURES) < N_MELS).float()
            # relative level: a window at its speaker's level (neither loud nor soft: |gain| <= 1.5 dB in
            # train.audio_data) moved by a loud/soft-sized step alone; labels follow the step
            steady = (labels[:, LOUD] == 0) & (labels[:, SOFT] == 0)
            pick = steady & torch.from_numpy(self.rng.random(len(idx)) < cfg.relative_gain)
            step = torch.from_numpy(self.rng.uniform(*cfg.relative_gain_db, len(idx)).astype(np.float32))
            step = step * torch.from_numpy(self.rng.choice([-1.0, 1.0], len(idx)).astype(np.float32)) * pick
            labels[:, LOUD] = torch.where(step > 0, 1.0, labels[:, LOUD])
            labels[:, SOFT] = torch.where(step < 0, 1.0, labels[:, SOFT])
            mel = mel + ((g + step / 10)[:, None] * bands)[:, None]
            ref_mel = ref_mel + (g[:, None] * bands)[:, None, None]
            self_base = torch.from_numpy(self.rng.random(len(idx)) < cfg.self_baseline)
            rel = torch.tensor([CUES.index(c) for c in RELATIVE_CUES])
            labels[torch.nonzero(self_base)[:, :1], rel] = 0  # no baseline yet: nothing is "than usual"
        return mel, ref_mel, self_base, labels, torch.from_numpy(d["prosody"][idx])


def forward_batch(model: AECB, mel, ref_mel, self_base):
    B, R = ref_mel.shape[:2]
    frames, voice = model.voice(torch.cat([mel, ref_mel.flatten(0, 1)]))
    baseline = voice[B:].view(B, R, -1).mean(1)
    baseline = torch.where(self_base[:, None], voice[:B], baseline)
    return model.bridge(frames[:B], baseline)


def losses(model, text_head, phrase_emb, out, labels, prosody, cfg):
    tokens, cue_logits, pros, align = out
    l_cls = F.binary_cross_entropy_with_logits(cue_logits, labels)
    target = (prosody - model.prosody_mean) / model.prosody_std
    ok = torch.isfinite(target)
    l_reg = F.smooth_l1_loss(pros[ok], target[ok])
    # contrastive: audio vs. every phrase; a window without cues has the neutral phrase as its positive
    pos = torch.cat([labels, (labels.sum(1, keepdim=True) == 0).float()], dim=1)  # (B, C+1)
    l_con, logits = contrastive_loss(align, text_head, phrase_emb, pos, cfg.temperature)
    return l_cls, l_reg, l_con, logits, pos


@torch.no_grad()
def evaluate(model, text_head, phrase_emb, d, cfg) -> dict:
    model.eval()
    dev = next(model.parameters()).device
    b = Batcher(d, cfg, seed=0)
    idx = np.arange(len(d["labels"]))
    outs = [b.make(idx[i : i + 256], train=False) for i in range(0, len(idx), 256)]
    tot = {"cls": 0.0, "reg": 0.0, "con": 0.0}
    probs, preds, hits = [], [], []
    for batch in outs:
        mel, ref_mel, sb, labels, prosody = (t.to(dev) for t in batch)
        out = forward_batch(model, mel, ref_mel, sb)
        l_cls, l_reg, l_con, logits, pos = losses(model, text_head, phrase_emb, out, labels, prosody, cfg)
        for k, v in zip(tot, (l_cls, l_reg, l_con)):
            tot[k] += float(v) * len(labels) / len(idx)
        probs.append(torch.sigmoid(out[1]))
        preds.append(out[2] * model.prosody_std + model.prosody_mean)
        hits.append(pos.gather(1, logits.argmax(1, keepdim=True)).squeeze(1))
    p, y = torch.cat(probs).cpu().numpy(), d["labels"]
    yhat = (p >= 0.5).astype(np.float32)
    per_cue = {}
    for i, c in enumerate(CUES):
        tp, fp, fn = [float(((yhat[:, i] == a) & (y[:, i] == b_)).sum()) for a, b_ in ((1, 1), (1, 0), (0, 1))]
        per_cue[c] = {"accuracy": float((yhat[:, i] == y[:, i]).mean()), "f1": 2 * tp / max(2 * tp + fp + fn, 1),
                      "positives": int(y[:, i].sum())}
    pr, t = torch.cat(preds).cpu().numpy(), d["prosody"]
    mae = {k: float(np.nanmean(np.abs(pr[:, j] - t[:, j]))) for j, k in enumerate(PROSODY)}
    model.train()
    return {"loss": tot, "cue_accuracy": float((yhat == y).mean()),
            "cue_macro_f1": float(np.mean([v["f1"] for v in per_cue.values()])),
            "exact_match": float((yhat == y).all(1).mean()), "per_cue": per_cue, "prosody_mae": mae,
            "contrastive_recall_at_1": float(torch.cat(hits).mean()), "windows": len(idx)}


class _Objective(nn.Module):
    """Model + text head as one module, forward = the weighted training loss (what DDP wraps)."""

    def __init__(self, model: AECB, text_head: nn.Linear, phrase_emb: torch.Tensor, cfg: TrainConfig):
        super().__init__()
        self.model, self.text_head, self.cfg = model, text_head, cfg
        self.register_buffer("phrase_emb", phrase_emb, persistent=False)

    def forward(self, mel, ref_mel, self_base, labels, prosody):
        out = forward_batch(self.model, mel, ref_mel, self_base)
        l_cls, l_reg, l_con, _, _ = losses(self.model, self.text_head, self.phrase_emb, out, labels, prosody, self.cfg)
        return self.cfg.w_cls * l_cls + self.cfg.w_reg * l_reg + self.cfg.w_con * l_con, l_cls, l_reg, l_con


def main(cfg: TrainConfig) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from train.engine import FitConfig, cpu_state, device_name, setup, teardown

    info = setup(FitConfig(seed=cfg.seed, threads=cfg.threads, device=cfg.device))  # torchrun: gloo / nccl group
    if cfg.batch % info.world_size:
        raise ValueError(f"batch {cfg.batch} does not split evenly over {info.world_size} processes")
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank (DDP also broadcasts them)
    data, out = Path(cfg.data), Path(cfg.out)
    if info.master:
        out.mkdir(parents=True, exist_ok=True)
    tr, va = load_split(data, "train"), load_split(data, "val")
    # transformers only: the shipped AECB was trained on those embeddings (the ONNX copy rounds differently)
    phrase_emb = phrase_embeddings(data / "phrase_emb.npy", [PHRASES[c] for c in CUES] + [NEUTRAL_PHRASE], info,
                                   runtime_first=False)
    model = AECB(cfg.model)
    mel = tr["feats"].astype(np.float32)
    model.encoder.feat_mean.copy_(torch.from_numpy(mel.mean((0, 1))))
    model.encoder.feat_std.copy_(torch.from_numpy(mel.std((0, 1)) + 1e-3))
    model.prosody_mean.copy_(torch.from_numpy(np.nanmean(tr["prosody"], 0)))
    model.prosody_std.copy_(torch.from_numpy(np.nanstd(tr["prosody"], 0) + 1e-3))
    text_head = nn.Linear(phrase_emb.shape[1], cfg.model.d)
    objective = _Objective(model, text_head, phrase_emb, cfg).to(info.device)  # initialized on the CPU, then moved
    params = list(model.parameters()) + list(text_head.parameters())
    if info.ddp:
        objective = DDP(objective, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
    if info.rank:  # dropout masks seeded seed + rank; rank 0 continues the single-process stream
        torch.manual_seed(cfg.seed + info.rank)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    batcher, rng = Batcher(tr, cfg, cfg.seed), np.random.default_rng(cfg.seed)
    t0, n = time.time(), len(tr["labels"])
    share = slice(info.rank * cfg.batch // info.world_size, (info.rank + 1) * cfg.batch // info.world_size)
    log_path = out / "aecb_loss.jsonl"
    if info.master:
        log_path.unlink(missing_ok=True)
    for step in range(cfg.steps):
        batch = batcher.make(rng.choice(n, cfg.batch, replace=False), train=True)  # the same on every rank
        loss, l_cls, l_reg, l_con = objective(*(t[share].to(info.device) for t in batch))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        terms = torch.stack([loss, l_cls, l_reg, l_con]).detach()
        if info.ddp:  # log the global-batch mean
            dist.all_reduce(terms)
            terms /= info.world_size
        loss_v, cls_v, reg_v, con_v = terms.tolist()
        if info.master:
            with open(log_path, "a") as f:
                f.write(json.dumps({"step": step + 1, "lr": sched.get_last_lr()[0], "loss": loss_v, "cls": cls_v,
                                    "reg": reg_v, "con": con_v, "time": round(time.time() - t0, 3)}) + "\n")
            if step % 100 == 0 or step == cfg.steps - 1:
                print(f"step {step} cls {cls_v:.3f} reg {reg_v:.3f} con {con_v:.3f} {time.time() - t0:.0f}s", flush=True)
    if not info.master:
        teardown()
        return
    train_eval, val_eval = evaluate(model, text_head, phrase_emb, tr, cfg), evaluate(model, text_head, phrase_emb, va, cfg)
    metrics = {"train": train_eval, "val": val_eval, "steps": cfg.steps, "train_seconds": round(time.time() - t0, 1),
               "final_train_batch_loss": {"cls": cls_v, "reg": reg_v, "con": con_v},
               "processes": info.world_size, "device": info.device.type, "device_name": device_name(info.device),
               "config": asdict(cfg)}
    tmp = out / "ckpt.pt.tmp"  # written then renamed: never a half-written checkpoint
    torch.save({"model": cpu_state(model), "text_head": cpu_state(text_head), "config": asdict(cfg)}, tmp)
    tmp.replace(out / "ckpt.pt")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(json.dumps({k: metrics["val"][k] for k in ("loss", "cue_accuracy", "cue_macro_f1", "contrastive_recall_at_1")}))
    teardown()


def cli(argv: list[str] | None = None) -> None:
    from train.config import load_config, stage_parser
    from train.engine import require_device

    args = stage_parser(__doc__.splitlines()[0]).parse_args(argv)
    cfg = load_config(TrainConfig, args.config, args.set)
    require_device(cfg.device, "train.aecb")
    if args.smoke:  # toy run on the smoke corpus of train.audio_data
        cfg.steps, cfg.batch = 20, 8
        rebuild = os.environ.get("EDGE_XEMO_REBUILD_DIR")
        if not args.set or not any(s.startswith("data=") for s in args.set):
            cfg.data = str(Path(rebuild or "runs/rebuild-smoke") / "train.audio_data")
    if args.out:
        cfg.out = args.out
    if not (Path(cfg.data) / "train.npz").exists():
        if args.smoke:
            from train.config import skip_stage

            skip_stage(f"no AECB smoke data in {cfg.data} (train.audio_data did not run)")
        raise SystemExit(f"no AECB data in {cfg.data}: run python -m train.audio_data"
                         + (" --smoke --out " + cfg.data if args.smoke else ""))
    main(cfg)


if __name__ == "__main__":
    cli()
