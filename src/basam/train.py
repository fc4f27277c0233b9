"""`basam train`: fine-tune SAM / BA-SAM on one dataset or a weighted mixture, at one resolution or
several, on one process or many (`torchrun … basam train …`: DDP, gloo on CPU, nccl on GPU).

Plain loop, nanoGPT style. The data of step s is a pure function of (seed, s) (data/training_data.py),
so a checkpoint's data position is its step and `--resume` continues a killed run to exactly the
weights of an uninterrupted one on CPU. Settings: one dataclass, `TrainConfig`, from flags and an
optional YAML file; the resolved one goes to DIR/config.yaml. DIR also gets model.safetensors (the
export `basam.load_model` reads), checkpoints/step_*.pt (last k) + best.pt, log.csv, summary.json, tb/.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import tuning
from .data import training_data as td
from .loss import TrainStep
from .transforms import parse_resolution

VAL_COLUMNS = ("mIoU", "mDice", "MAE", "Smeasure", "wFmeasure", "maxFm", "meanEm")  # logged
VAL_METRICS = (*VAL_COLUMNS, "maxEm", "adpEm", "adpFm")  # SegMetrics.results(); any may pick the best
LOWER_IS_BETTER = ("MAE",)
# settings a resumed run may change without a note (they do not change the weights, or just extend the run)
_FREE = ("resume", "out", "progress", "workers", "device", "steps", "val_every", "checkpoint_every", "keep_last")


@dataclass
class TrainConfig:
    """Everything a run depends on. Lists may be given as comma-separated strings."""

    # model
    model: str = "default"
    checkpoint: str | None = None
    attn: str | None = None
    attn_overrides: dict = field(default_factory=dict)  # bm_distance=…, nsf_blocks=…
    device: str = "cpu"
    # what is trained
    tune: str = "decoder"  # full | decoder | adapter | lora
    learnable_slopes: bool = False
    adapter_dim: int = 0  # 0 → encoder width / 4
    lora_rank: int = 4
    lora_alpha: float = 4.0
    train_prompt_encoder: bool = False
    # SAM's training recipe
    multimask: bool = False
    refine_iters: int = 0
    any_object: float = 0.0
    # data
    data: list = field(default_factory=list)  # "LAYOUT:PATH[@w]" | "synth:FAMILIES[@w]"
    resolution: list = field(default_factory=lambda: [1024])  # one drawn per step
    prompt: list = field(default_factory=lambda: ["box"])  # one drawn per sample
    box_jitter: float = 0.1
    n_points: int = 3
    flip: bool = True
    min_scale: float = 0.6  # scale-crop; 1 = off
    workers: int = 0
    # optimisation
    steps: int = 1000
    batch_size: int = 8  # global, over all ranks and accumulation micro-batches
    accum: int = 1
    lr: float = 1e-4
    min_lr_ratio: float = 0.1
    warmup: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # 0 = off
    pos_weight: float | None = None
    bf16: str = "auto"  # auto (CUDA with bf16) | on | off
    seed: int = 0
    # validation, checkpoints, logs
    val_every: int = 0
    val_data: list | None = None  # default: --data, split val_split
    val_split: str = "val"
    val_size: int = 32
    val_resolution: int | None = None  # default: the largest training resolution
    val_prompt: str = "box"
    best_metric: str = "mIoU"
    checkpoint_every: int = 0  # 0: only at the end
    keep_last: int = 2
    out: str = "basam-train"
    resume: bool = False
    progress: bool = True

    def __post_init__(self):
        def split(v):  # "a,b" or ["a,b", "c"] → ["a", "b", "c"]
            return [t.strip() for item in ([v] if isinstance(v, (str, int)) else v) for t in str(item).split(",") if t.strip()]

        self.data, self.prompt = split(self.data), split(self.prompt)
        self.resolution = [_resolution(r) for r in split(self.resolution)]
        self.val_data = split(self.val_data) if self.val_data else None
        if self.tune not in tuning.TUNE_MODES:
            raise ValueError(f"unknown tune mode {self.tune!r}; choose from {', '.join(tuning.TUNE_MODES)}")
        if self.bf16 not in ("auto", "on", "off"):
            raise ValueError(f"--bf16 {self.bf16!r}: expected auto, on or off")
        for name in ("steps", "batch_size", "accum"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}")
        if not self.data:
            raise ValueError("--data is required: LAYOUT:PATH[,LAYOUT:PATH…] or synth:FAMILIES")
        if not 0 <= self.any_object <= 1:
            raise ValueError(f"--any-object must be a probability in [0, 1], got {self.any_object}")
        if int(self.refine_iters) < 0:
            raise ValueError(f"--refine-iters must be ≥ 0, got {self.refine_iters}")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"--min-scale must be in (0, 1], got {self.min_scale}")
        if self.best_metric not in VAL_METRICS:
            raise ValueError(f"--best-metric {self.best_metric!r}: expected one of {', '.join(VAL_METRICS)}")


def _resolution(r) -> int:
    value = parse_resolution(r)
    if value == "native":
        raise ValueError("--resolution: training needs fixed sizes (N: long side → N, padded to N×N), not native")
    return value


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over `warmup` steps, then cosine from 1 down to min_lr_ratio at `steps`."""
    warmup = min(cfg.warmup, cfg.steps - 1)
    if step < warmup:
        return (step + 1) / (warmup + 1)
    t = (step - warmup) / max(1, cfg.steps - warmup)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))


def atomic_save(obj, path: Path) -> None:
    """torch.save to a temporary file, then os.replace: a crash mid-write leaves the previous file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def rng_state() -> dict:
    kind, key, *rest = np.random.get_state()
    return {"python": random.getstate(), "numpy": (kind, torch.from_numpy(key.copy()), *rest),
            "torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    kind, key, *rest = state["numpy"]
    random.setstate(state["python"])
    np.random.set_state((kind, key.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_model(cfg: TrainConfig) -> nn.Module:
    """The model a run starts from, on the CPU, its parameters trainable or frozen as --tune says."""
    from . import load_model

    torch.manual_seed(cfg.seed)  # random init (tiny without checkpoint, adapters, LoRA): the same on every rank
    model = load_model(cfg.model, checkpoint=cfg.checkpoint, attn=cfg.attn, device="cpu",
                       **({"bm_learnable": True} if cfg.learnable_slopes else {}), **cfg.attn_overrides)
    tuning.configure(model, cfg.tune, cfg.learnable_slopes, cfg.adapter_dim, cfg.lora_rank, cfg.lora_alpha,
                     cfg.train_prompt_encoder)
    if model.attn_cfg.official:  # that preset never uses pos_embed; DDP refuses parameters without gradient
        model.image_encoder.pos_embed.requires_grad_(False)
    return model


def checkpoint_weights(ckpt: dict, source: str) -> dict[str, torch.Tensor]:
    """The whole state dict of a training checkpoint (step_*.pt, best.pt), which stores only what
    its run trained: the base model rebuilt as the run built it, the trained weights on top, LoRA
    merged, as `model.safetensors` would hold them had the run ended there."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    base = ckpt.get("base") or {}
    cfg = TrainConfig(**{k: base.get(k, v) for k, v in ckpt["config"].items() if k in names})
    if cfg.checkpoint and not Path(cfg.checkpoint).is_file():
        raise ValueError(f"{source} holds only the weights its run trained (--tune {cfg.tune}); the rest comes "
                         f"from its base checkpoint {cfg.checkpoint}, which is missing")
    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg)
    _load_trainable(model, ckpt, tuning.frozen_fingerprint(model), source)
    return tuning.export_copy(model).state_dict()


def _load_trainable(model: nn.Module, ckpt: dict, fingerprint: float, source: str) -> None:
    """Put a checkpoint's trained weights into `model`, after checking that they go on the same
    frozen base (fingerprint) and the same set of trainable parameters."""
    if not math.isclose(ckpt["frozen_fingerprint"], fingerprint, rel_tol=1e-9):
        raise ValueError(f"{source}: the frozen base weights differ from the ones its run trained on "
                         "(another --checkpoint or --model?)")
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(ckpt["trainable"]) != set(named):
        raise ValueError(f"{source} was written by another --tune / --model setting than this run's")
    with torch.no_grad():
        for n, p in named.items():
            p.copy_(ckpt["trainable"][n])


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) training; → summary dict (also written to DIR/summary.json by rank 0)."""
    import torch.distributed as dist

    from . import save_model

    world, rank, local = (int(os.environ.get(k, d)) for k, d in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)))
    if cfg.batch_size % world or (cfg.batch_size // world) % cfg.accum:
        raise ValueError(f"--batch-size {cfg.batch_size} must split evenly over {world} process(es) × --accum {cfg.accum}")
    out, ckpt_dir, master = Path(cfg.out), Path(cfg.out) / "checkpoints", rank == 0
    existing = sorted(ckpt_dir.glob("step_*.pt"))
    if cfg.resume and not existing:
        raise ValueError(f"--resume: no checkpoint in {ckpt_dir}")
    if not cfg.resume and existing:
        raise ValueError(f"{out} already holds checkpoints; pass --resume to continue that run, or choose another --out")
    data = td.TrainData(td.parse_data(cfg.data), cfg.resolution, cfg.prompt, cfg.seed, cfg.flip, cfg.min_scale,
                        cfg.box_jitter, cfg.n_points, cfg.batch_size, cfg.any_object, cfg.refine_iters)
    val_set = None
    if cfg.val_every and master:
        val_set = td.validation_set(td.parse_data(cfg.val_data or cfg.data), cfg.val_split, cfg.val_size,
                                    cfg.val_resolution or max(cfg.resolution), cfg.val_prompt, cfg.seed,
                                    flat_ok=bool(cfg.val_data))
    device = torch.device(cfg.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    model = build_model(cfg)
    counts, fingerprint = tuning.count_parameters(model), tuning.frozen_fingerprint(model)
    # what a checkpoint's trainable weights go on top of, for `load_model(checkpoint=best.pt)`
    base = {"checkpoint": cfg.checkpoint and str(Path(cfg.checkpoint).resolve())}
    model.to(device).train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": [p for _, p in named if p.ndim >= 2], "weight_decay": cfg.weight_decay},  # matrices decay,
         {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0}], lr=cfg.lr)  # biases, norms, slopes not
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    start, best = 0, {"metric": cfg.best_metric, "value": None, "step": None}
    if cfg.resume:
        ckpt = torch.load(existing[-1], map_location="cpu", weights_only=True)
        _load_trainable(model, ckpt, fingerprint, str(existing[-1]))
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start, best = ckpt["data"]["step"], ckpt["best"]
        set_rng_state(ckpt["rng"])
        now = dataclasses.asdict(cfg)
        changed = sorted(k for k, v in ckpt["config"].items() if now.get(k) != v and k not in _FREE)
        if master and changed:
            print(f"note: resuming with changed settings: {', '.join(changed)}", file=sys.stderr)
    if master:
        import yaml

        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
        print(f"basam train: {cfg.model}, tune {cfg.tune}{' + slopes' if cfg.learnable_slopes else ''}, attention "
              f"{model.attn_cfg.describe()}; trainable parameters {counts['trainable']:,} of {counts['total']:,} "
              f"({100 * counts['trainable'] / counts['total']:.2f}%); {world} process(es); from step {start}")

    step_module = TrainStep(model, cfg.pos_weight, cfg.multimask, cfg.refine_iters)
    if world > 1:  # a trained prompt encoder has parts a batch may not use (box corners, mask_input)
        step_module = nn.parallel.DistributedDataParallel(step_module, device_ids=[local] if device.type == "cuda" else None,
                                                          find_unused_parameters=cfg.train_prompt_encoder)
    use_bf16 = cfg.bf16 == "on" or (cfg.bf16 == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    sampler = td.StepBatches(start, cfg.steps, cfg.batch_size, rank, world, cfg.accum)
    batches = iter(torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=td.collate, num_workers=cfg.workers))
    log, per_rank, last_loss, t0 = _Log(out, start, master), cfg.batch_size // world, float("nan"), time.time()
    if val_set is not None and start == 0:  # the validation curve starts at the model as loaded
        log.write({"step": 0, **_val_columns(td.validate(model, val_set, device, use_bf16))})
    bar = tqdm(total=cfg.steps, initial=start, disable=not (master and cfg.progress), desc="train", unit="step")
    for step in range(start, cfg.steps):
        totals = torch.zeros(4, device=device)  # loss, bce, dice, iou_mse summed over this rank's samples
        for m in range(cfg.accum):
            batch = next(batches)
            images, targets, valid, refine_u = (batch[k].to(device) for k in ("images", "targets", "valid", "refine_u"))
            groups = {k: tuple(None if t is None else t.to(device) for t in g) for k, g in batch["groups"].items()}
            if world > 1:  # gradients are averaged across ranks only on the last micro-batch
                step_module.require_backward_grad_sync = m == cfg.accum - 1
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss, parts = step_module(images, targets, valid, groups, refine_u)
            # Σ over the rank's samples / per_rank: the accumulated gradient is the rank's mean, and
            # DDP's average over ranks makes it the global batch mean, as in one process.
            (loss.sum() / per_rank).backward()
            totals += torch.cat([loss.sum()[None], parts.sum(0)]).detach()
        if world > 1:
            dist.all_reduce(totals)
        totals /= cfg.batch_size
        grad_norm = torch.nn.utils.clip_grad_norm_([p for _, p in named], cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done, last_loss = step + 1, float(totals[0])
        row = {"step": done, "lr": lr, "grad_norm": float(grad_norm), "resolution": data.resolution(step),
               "seconds": round(time.time() - t0, 3), **dict(zip(("loss", "bce", "dice", "iou_mse"), totals.tolist()))}
        better = False
        if val_set is not None and (done % cfg.val_every == 0 or done == cfg.steps):
            metrics = td.validate(model, val_set, device, use_bf16)
            row.update(_val_columns(metrics))
            value, old = metrics[cfg.best_metric], best["value"]
            better = old is None or (value < old if cfg.best_metric in LOWER_IS_BETTER else value > old)
            best = {"metric": cfg.best_metric, "value": value, "step": done} if better else best
        if master:
            due = done == cfg.steps or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0)
            state = None if not (due or better) else {
                "trainable": tuning.trainable_state(model), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "data": {"step": done}, "rng": rng_state(), "best": best,
                "config": dataclasses.asdict(cfg), "frozen_fingerprint": fingerprint, "base": base,
                "basam": {"model": model.cfg.to_dict(), "attention": model.attn_cfg.to_dict()}}
            if due:
                atomic_save(state, ckpt_dir / f"step_{done:07d}.pt")
                for old in sorted(ckpt_dir.glob("step_*.pt"))[: -max(1, cfg.keep_last)]:
                    old.unlink()
            if better:
                atomic_save(state, ckpt_dir / "best.pt")
            log.write(row)
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
    bar.close()
    log.close()
    summary = {"out": str(out), "steps": cfg.steps, "final_loss": last_loss, "parameters": counts, "best": best,
               "world_size": world, "tune": cfg.tune, "learnable_slopes": cfg.learnable_slopes}
    if master:
        save_model(tuning.export_copy(model), out / "model.safetensors")
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"wrote {out / 'model.safetensors'} (step {cfg.steps}, loss {last_loss:.4f})")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def _val_columns(metrics: dict) -> dict:
    return {f"val_{k}": metrics.get(k) for k in VAL_COLUMNS}


class _Log:
    """log.csv (rows after the resumed step are dropped: the resumed run rewrites them) and
    TensorBoard under tb/ when it is installed."""

    COLUMNS = ("step", "loss", "bce", "dice", "iou_mse", "lr", "grad_norm", "resolution", "seconds",
               *(f"val_{k}" for k in VAL_COLUMNS))

    def __init__(self, out: Path, start: int, master: bool):
        self.file = self.tb = None
        if not master:
            return
        path = out / "log.csv"
        rows = list(csv.DictReader(path.open())) if path.is_file() and start else []
        self.file = path.open("w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=self.COLUMNS, restval="")
        self.writer.writeheader()
        self.writer.writerows([r for r in rows if int(r["step"]) <= start])
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))
        except ImportError:  # tensorboard is optional
            pass

    def write(self, row: dict) -> None:
        self.writer.writerow(row)
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and v is not None:
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        for f in filter(None, (self.file, self.tb)):
            f.close()


HELP = {
    "config": "YAML file of TrainConfig fields (names as the flags, - or _); flags given here win",
    "data": "LAYOUT:PATH[@w][,…] or synth:FAMILIES (all | salient,thin,…); repeatable; @w = mixture weight",
    "tune": "full | decoder | adapter | lora", "learnable_slopes": "train BA-SAM's bias slopes (*.attn.mode.slopes)",
    "resolution": "R[,R…]: long side → R px, padded to R×R; one drawn per step",
    "prompt": "prompt kinds drawn per sample: box, center, point (one random inside), points, box+center, none",
    "batch_size": "global batch, split over ranks and --accum micro-batches",
    "resume": "continue from the last checkpoint in --out", "bf16": "auto | on | off",
    "train_prompt_encoder": "train the prompt encoder too (point/box embeddings, the mask_input path); "
                            "for a model trained from scratch",
    "multimask": "one-point prompts train SAM's three multimask outputs: the mask loss on the best of "
                 "the three only, the IoU head on all three",
    "refine_iters": "interactive refinement: after the first prediction, N clicks drawn from the error "
                    "region (missed → foreground, wrongly covered → background) with the previous "
                    "logits as mask_input; loss over all N+1 predictions",
    "any_object": "probability of prompting a random object of a synthetic scene instead of its target"
                  " (a prompt-free example always asks for the target)",
}
_MODEL_FLAGS = ("model", "checkpoint", "attn", "device")  # added by cli.add_model_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (--batch-size ↔ batch_size), plus the shared model flags."""
    from .cli import add_model_arguments

    add_model_arguments(p, dtype=False)  # training has its own --bf16 (autocast)
    p.add_argument("--config", help=HELP["config"])
    for f in dataclasses.fields(TrainConfig):
        if f.name in _MODEL_FLAGS or f.name == "attn_overrides":
            continue
        flag, kind = "--" + f.name.replace("_", "-"), str(f.type)
        if kind == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=HELP.get(f.name))
        else:
            typ = int if kind.startswith("int") else float if kind.startswith("float") else str
            p.add_argument(flag, type=typ, action="append" if f.name == "data" else None, help=HELP.get(f.name),
                           metavar=f.name.upper())
    for action in p._actions:  # only flags actually given override the YAML file and the defaults
        if action.dest != "help":
            action.default = argparse.SUPPRESS


def resolve_config(given: dict) -> TrainConfig:
    """defaults < DIR/config.yaml of the run being resumed < --config YAML < flags."""
    from .cli import attention_overrides

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    from_file = _read_yaml(given["config"], names) if "config" in given else {}
    values = {}
    out = given.get("out", from_file.get("out", TrainConfig.out))
    resume = bool(given.get("resume", from_file.get("resume", False)))
    if resume and (Path(out) / "config.yaml").is_file():
        values.update(_read_yaml(Path(out) / "config.yaml", names))
    values.update(from_file)
    values.update({k: v for k, v in given.items() if k in names})
    values["attn_overrides"] = {**values.get("attn_overrides", {}), **attention_overrides(argparse.Namespace(**given))}
    values["resume"] = resume
    return TrainConfig(**values)


def _read_yaml(path, names: set) -> dict:
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read config {path}: {e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config {path}: expected a mapping of TrainConfig fields")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    if set(values) - names:
        raise ValueError(f"config {path}: unknown fields {', '.join(sorted(set(values) - names))}")
    return values


def run(args: argparse.Namespace) -> int:
    train(resolve_config(vars(args)))
    return 0
