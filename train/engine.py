"""Shared training engine: configs, DDP, seeding, resumable checkpoints, loss logs, one `fit` loop.

nanoGPT style, read top to bottom. Every stage that trains builds a model, a dataset and a
`loss_fn(model, batch) -> {"loss": total, other terms...}` and calls `fit`:

    cfg = load_config(FitConfig, args.config, args.set)       # --config FILE --set key=value
    result = fit(model, loss_fn, dataset, cfg)                 # python -m ... or torchrun ...

Distributed: launched by `torchrun --nproc_per_node=N`, the RANK / WORLD_SIZE / LOCAL_RANK
variables switch on DistributedDataParallel (gloo on CPU, nccl on GPU). `cfg.batch_size` is the
GLOBAL batch; each rank takes batch_size / world_size rows of the same seeded permutation
(DistributedSampler), so one process and N processes see the same rows per step and, without
dropout, reach the same parameters up to float rounding. Only the master process writes logs and
checkpoints. Checkpoints hold model, optimizer, step, config and every rank's RNG states, and are
written to a temporary name then renamed, so an interrupted save never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from train.config import add_config_args, load_config, stage_parser

__all__ = ["CheckpointError", "DeviceError", "DistInfo", "FitConfig", "FitResult", "add_config_args", "cpu_state",
           "device_name", "fit", "load_checkpoint", "load_config", "lr_at", "pick_device", "require_device",
           "save_checkpoint", "seed_everything", "setup", "stage_parser", "teardown", "unwrap"]

log = logging.getLogger("edge_xemo")
CHECKPOINT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupt or does not fit the model; the message names it."""


# ----------------------------------------------------------------------------- configs
@dataclass
class FitConfig:
    """Options of the generic training loop (every stage nests or extends this)."""

    out_dir: str = "runs/stage"  # checkpoints and the loss log go here
    steps: int = 100  # optimizer steps in total (resuming continues up to this; sets the LR schedule)
    stop_at: int = 0  # end this run after this many steps, checkpointed (a job time slot); 0: run to `steps`
    batch_size: int = 32  # GLOBAL batch: split evenly over the DDP ranks and accumulation micro-steps
    grad_accum: int = 1  # micro-steps per optimizer step (a big global batch on a small GPU)
    find_unused_parameters: bool = False  # DDP: a loss that skips some trainable parameters needs this
    lr: float = 1e-3  # peak learning rate (AdamW)
    min_lr: float = 0.0  # cosine decay ends here
    warmup_steps: int = 0  # linear warm-up from 0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    seed: int = 1337  # rank r seeds its RNGs with seed + r; the sampler uses seed on every rank
    ckpt_every: int = 0  # save every N steps (0: only at the end)
    resume: bool = True  # continue from out_dir/ckpt.pt when it exists
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch intra-op threads per rank (0: cores / local world size)
    num_workers: int = 0  # DataLoader workers (0 keeps the order exactly reproducible)
    log_every: int = 10  # console line every N steps (the JSONL log gets every step)


# ----------------------------------------------------------------------------- distributed set-up
@dataclass(frozen=True, slots=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def ddp(self) -> bool:
        return self.world_size > 1


class DeviceError(ValueError):
    """The requested device cannot be used here (an unknown name, cuda without CUDA); one line naming it."""


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` | `cpu` | `cuda` -> this process's device (cuda:<local_rank>); DeviceError when it cannot be had."""
    if name not in ("auto", "cpu", "cuda"):
        raise DeviceError(f"unknown device {name!r}; choose auto, cpu or cuda")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        why = "this torch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise DeviceError(f"device=cuda asked for, but {why} (torch {torch.__version__}); use device=cpu or auto")
    if local_rank >= torch.cuda.device_count():
        raise DeviceError(f"device=cuda: local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible); "
                          "start at most one process per GPU")
    return torch.device("cuda", local_rank)


def require_device(name: str, stage: str) -> None:
    """Exit with one line '<stage>: <why>' when this process cannot use device `name` (call before heavy work)."""
    try:
        pick_device(name, int(os.environ.get("LOCAL_RANK", 0)))
    except DeviceError as e:
        raise SystemExit(f"{stage}: {e}") from None


def setup(cfg: FitConfig) -> DistInfo:
    """Detect torchrun, pick the device, start the process group, seed and make torch deterministic.

    Raises DeviceError (one line) when `cfg.device` cannot be used here."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = pick_device(cfg.device, local_rank)
    want_cuda = device.type == "cuda"
    if want_cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS determinism (CUDA docs)
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // local_world))
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    seed_everything(cfg.seed + rank)
    return DistInfo(rank, local_rank, world, device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DDP) else model


def cpu_state(model: torch.nn.Module) -> dict:
    """The (unwrapped) model's state_dict with every tensor on the CPU: loadable on a machine without a GPU."""
    return {k: v.cpu() for k, v in unwrap(model).state_dict().items()}


def device_name(device: torch.device) -> str:
    """'cpu' or the GPU's name (e.g. 'NVIDIA H100 80GB HBM3'), for metrics."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


# ----------------------------------------------------------------------------- checkpoints
def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(("MT19937", state["numpy"]["keys"].numpy().astype(np.uint32), state["numpy"]["pos"], 0, 0.0))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, model, optimizer, step: int, cfg: Any, rng: list[dict], extra: dict | None = None) -> None:
    """Write-then-rename: a crash mid-save leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
               "step": step, "config": asdict(cfg), "rng": rng, "extra": extra or {}}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load and sanity-check a checkpoint; any problem raises CheckpointError naming the file."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, pickle/zip/EOF errors for damaged files
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable: {str(e).splitlines()[0]}") from e
    missing = {"format", "model", "optimizer", "step", "config", "rng"} - set(ckpt if isinstance(ckpt, dict) else ())
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(sorted(missing))}: not an edge-xemo engine checkpoint")
    if ckpt["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} has format {ckpt['format']}, this engine reads {CHECKPOINT_FORMAT}")
    return ckpt


# ----------------------------------------------------------------------------- the loop
@dataclass(frozen=True, slots=True)
class FitResult:
    step: int  # optimizer steps done in total
    losses: dict  # last step's loss terms (averaged over ranks)
    checkpoint: Path | None  # the final checkpoint (master only)
    log_path: Path | None  # JSONL loss log (master only)
    seconds: float  # wall time of this call
    metrics: dict  # what `evaluate` returned (master only; else empty)


def lr_at(step: int, cfg: FitConfig) -> float:
    """Linear warm-up then cosine decay to min_lr (nanoGPT's schedule)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    ratio = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * ratio)) * (cfg.lr - cfg.min_lr)


def _batches(dataset: Dataset, sampler: DistributedSampler, per_rank: int, start: int, cfg: FitConfig, collate):
    """Endless batches; epoch e uses permutation seed + e, so a resumed run replays the same order."""
    # its own generator: a DataLoader iterator otherwise draws from the global RNG, so a resumed
    # run (which opens one more iterator) would shift every later dropout mask
    loader = DataLoader(dataset, batch_size=per_rank, sampler=sampler, drop_last=True, num_workers=cfg.num_workers,
                        collate_fn=collate, generator=torch.Generator().manual_seed(cfg.seed))
    per_epoch = len(loader)
    if per_epoch == 0:
        raise ValueError(f"dataset of {len(dataset)} rows is smaller than one global batch of {cfg.batch_size}")
    epoch, skip = divmod(start, per_epoch)  # `start` micro-batches were consumed before a resume
    while True:
        sampler.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if i >= skip:
                yield batch
        epoch, skip = epoch + 1, 0


def _to(batch, device):
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to(v, device) for v in batch)
    return batch


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, Any], dict | torch.Tensor],
    dataset: Dataset,
    cfg: FitConfig,
    *,
    collate: Callable | None = None,
    params: list | None = None,
    evaluate: Callable[[torch.nn.Module], dict] | None = None,
    stage: str = "stage",
    extra: dict | None = None,
) -> FitResult:
    """Train `model` on `dataset` for `cfg.steps` AdamW steps (resuming from out_dir/ckpt.pt if there).

    loss_fn(model, batch) returns the total loss tensor or a dict of named scalar tensors with the
    total under "loss"; every term is logged, every step, to out_dir/<stage>_loss.jsonl.
    `params` restricts what is optimized (default: every parameter that requires grad).
    `evaluate(raw_model)` runs on the master at the end; its dict goes into the log and the result.
    `extra` (e.g. the model's own hyper-parameters) is stored in every checkpoint under "extra", so
    loading one needs nothing else (nanoGPT's habit).
    """
    t0 = time.time()
    info = setup(cfg)
    if cfg.grad_accum < 1 or cfg.batch_size % (info.world_size * cfg.grad_accum):
        raise ValueError(f"batch_size {cfg.batch_size} does not split evenly over {info.world_size} processes "
                         f"x {cfg.grad_accum} accumulation micro-steps")
    out = Path(cfg.out_dir)
    ckpt_path, log_path = out / "ckpt.pt", out / f"{stage}_loss.jsonl"
    model.to(info.device)
    params = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    step = 0
    if cfg.resume and ckpt_path.exists():
        # on the CPU: RNG states must stay CPU tensors; load_state_dict copies weights and Adam
        # moments to wherever the parameters live
        ckpt = load_checkpoint(ckpt_path, map_location="cpu")
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"checkpoint {ckpt_path} does not fit this model: {str(e).splitlines()[0]}") from e
        step = int(ckpt["step"])
        if len(ckpt["rng"]) == info.world_size:
            _set_rng_state(ckpt["rng"][info.rank])
        else:  # a different world size cannot replay per-rank streams; reseed deterministically instead
            seed_everything(cfg.seed + info.rank + step)
        if info.master:
            log.info("%s: resumed from %s at step %d", stage, ckpt_path, step)
    if info.ddp:
        model = DDP(model, device_ids=[info.local_rank] if info.device.type == "cuda" else None,
                    find_unused_parameters=cfg.find_unused_parameters)
    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    micro = cfg.batch_size // (info.world_size * cfg.grad_accum)
    batches = _batches(dataset, sampler, micro, step * cfg.grad_accum, cfg, collate)
    if info.master:
        out.mkdir(parents=True, exist_ok=True)
        if step == 0:
            log_path.unlink(missing_ok=True)
    terms: dict = {}
    model.train()
    last = min(cfg.steps, cfg.stop_at) if cfg.stop_at else cfg.steps
    while step < last:
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        sums: dict = {}
        for i in range(cfg.grad_accum):
            # no_sync: DDP all-reduces gradients only on the last micro-step
            sync = i == cfg.grad_accum - 1 or not info.ddp
            with contextlib.nullcontext() if sync else model.no_sync():
                result = loss_fn(model, _to(next(batches), info.device))
                result = result if isinstance(result, dict) else {"loss": result}
                (result["loss"] / cfg.grad_accum).backward()
            for k, v in result.items():
                sums[k] = sums.get(k, 0.0) + v.detach().float().reshape(()) / cfg.grad_accum
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        step += 1
        names = sorted(sums)
        values = torch.stack([sums[k] for k in names])
        if info.ddp:  # log the global-batch mean, the same number a single process would log
            dist.all_reduce(values)
            values /= info.world_size
        terms = dict(zip(names, values.tolist()))
        if info.master:
            with open(log_path, "a") as f:
                f.write(json.dumps({"step": step, "lr": lr, **terms, "time": round(time.time() - t0, 3)}) + "\n")
            if step % cfg.log_every == 0 or step == last:
                log.info("%s step %d/%d %s", stage, step, cfg.steps, " ".join(f"{k} {v:.4f}" for k, v in terms.items()))
        if (cfg.ckpt_every and step % cfg.ckpt_every == 0) or step == last:
            rng = [_rng_state()]
            if info.ddp:
                rng = [None] * info.world_size
                dist.all_gather_object(rng, _rng_state())
            if info.master:
                save_checkpoint(ckpt_path, model, optimizer, step, cfg, rng, extra)
    metrics = {}
    if evaluate is not None and info.master:
        unwrap(model).eval()
        with torch.no_grad():
            metrics = evaluate(unwrap(model))
        with open(log_path, "a") as f:
            f.write(json.dumps({"step": step, "eval": metrics}) + "\n")
    if info.ddp:
        dist.barrier()
    return FitResult(step, terms, ckpt_path if info.master else None, log_path if info.master else None,
                     time.time() - t0, metrics)


def teardown() -> None:
    """Leave the process group (call once at the end of a torchrun script, on every rank). The ranks leave
    together: the others wait here while the master evaluates and writes. A rank that destroyed its group
    while the master was still working was aborted once (SIGABRT) in a full test run."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
