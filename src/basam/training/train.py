"""`basam train`: fine-tune SAM / BA-SAM on one dataset or a weighted mixture, at one resolution or
several, on one process or many (`torchrun … basam train …`: DDP, gloo on CPU, nccl on GPU).

Plain loop, nanoGPT style. The data of step s is a pure function of (seed, s) (data/training_data.py),
so a checkpoint's data position is its step and `--resume` continues a killed run to exactly the
weights of an uninterrupted one on CPU. Settings: one dataclass, `TrainConfig`, from flags and an
optional YAML file; the resolved one goes to DIR/config.yaml. DIR also gets model.safetensors (the
export `basam.load_model` reads), checkpoints/step_*.pt (last k) + best.pt, log.csv, summary.json, tb/.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from basam.formats.checkpoint import load_model, save_model
from basam.training import data as td
from basam.training import tuning
from basam.training.checkpoints import build_model, load_trainable
from basam.training.config import LOWER_IS_BETTER, RESUME_MAY_CHANGE, VAL_COLUMNS, TrainConfig
from basam.training.loss import TrainStep


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
    return {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(key.copy()), *rest),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    kind, key, *rest = state["numpy"]
    random.setstate(state["python"])
    np.random.set_state((kind, key.numpy(), *rest))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) training; → summary dict (also written to DIR/summary.json by rank 0)."""
    import torch.distributed as dist

    world, rank, local = (int(os.environ.get(k, d)) for k, d in (("WORLD_SIZE", 1), ("RANK", 0), ("LOCAL_RANK", 0)))
    if cfg.batch_size % world or (cfg.batch_size // world) % cfg.accum:
        raise ValueError(
            f"--batch-size {cfg.batch_size} must split evenly over {world} process(es) × --accum {cfg.accum}"
        )
    out, ckpt_dir, master = Path(cfg.out), Path(cfg.out) / "checkpoints", rank == 0
    existing = sorted(ckpt_dir.glob("step_*.pt"))
    if cfg.resume and not existing:
        raise ValueError(f"--resume: no checkpoint in {ckpt_dir}")
    if not cfg.resume and existing:
        raise ValueError(
            f"{out} already holds checkpoints; pass --resume to continue that run, or choose another --out"
        )
    data = td.TrainData(
        td.parse_data(cfg.data),
        cfg.resolution,
        cfg.prompt,
        cfg.seed,
        cfg.flip,
        cfg.min_scale,
        cfg.box_jitter,
        cfg.n_points,
        cfg.batch_size,
        cfg.any_object,
        cfg.refine_iters,
    )
    val_set = None
    if cfg.val_every and master:
        val_set = td.validation_set(
            td.parse_data(cfg.val_data or cfg.data),
            cfg.val_split,
            cfg.val_size,
            cfg.val_resolution or max(cfg.resolution),
            cfg.val_prompt,
            cfg.seed,
            flat_ok=bool(cfg.val_data),
        )
    device = torch.device(cfg.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    model = build_model(cfg, load_model)
    counts, fingerprint = tuning.count_parameters(model), tuning.frozen_fingerprint(model)
    # what a checkpoint's trainable weights go on top of, for `load_model(checkpoint=best.pt)`
    base = {"checkpoint": cfg.checkpoint and str(Path(cfg.checkpoint).resolve())}
    model.to(device).train()
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for _, p in named if p.ndim >= 2], "weight_decay": cfg.weight_decay},  # matrices decay,
            {"params": [p for _, p in named if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )  # biases, norms, slopes not
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    start, best = 0, {"metric": cfg.best_metric, "value": None, "step": None}
    if cfg.resume:
        ckpt = torch.load(existing[-1], map_location="cpu", weights_only=True)
        load_trainable(model, ckpt, fingerprint, str(existing[-1]))
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start, best = ckpt["data"]["step"], ckpt["best"]
        set_rng_state(ckpt["rng"])
        now = dataclasses.asdict(cfg)
        changed = sorted(k for k, v in ckpt["config"].items() if now.get(k) != v and k not in RESUME_MAY_CHANGE)
        if master and changed:
            print(f"note: resuming with changed settings: {', '.join(changed)}", file=sys.stderr)
    if master:
        import yaml

        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
        print(
            f"basam train: {cfg.model}, tune {cfg.tune}{' + slopes' if cfg.learnable_slopes else ''}, attention "
            f"{model.attn_cfg.describe()}; trainable parameters {counts['trainable']:,} of {counts['total']:,} "
            f"({100 * counts['trainable'] / counts['total']:.2f}%); {world} process(es); from step {start}"
        )

    step_module = TrainStep(model, cfg.pos_weight, cfg.multimask, cfg.refine_iters)
    if world > 1:  # a trained prompt encoder has parts a batch may not use (box corners, mask_input)
        step_module = nn.parallel.DistributedDataParallel(
            step_module,
            device_ids=[local] if device.type == "cuda" else None,
            find_unused_parameters=cfg.train_prompt_encoder,
        )
    use_bf16 = cfg.bf16 == "on" or (cfg.bf16 == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    sampler = td.StepBatches(start, cfg.steps, cfg.batch_size, rank, world, cfg.accum)
    batches = iter(
        torch.utils.data.DataLoader(data, batch_sampler=sampler, collate_fn=td.collate, num_workers=cfg.workers)
    )
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
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for _, p in named], cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        )
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done, last_loss = step + 1, float(totals[0])
        row = {
            "step": done,
            "lr": lr,
            "grad_norm": float(grad_norm),
            "resolution": data.resolution(step),
            "seconds": round(time.time() - t0, 3),
            **dict(zip(("loss", "bce", "dice", "iou_mse"), totals.tolist())),
        }
        better = False
        if val_set is not None and (done % cfg.val_every == 0 or done == cfg.steps):
            metrics = td.validate(model, val_set, device, use_bf16)
            row.update(_val_columns(metrics))
            value, old = metrics[cfg.best_metric], best["value"]
            better = old is None or (value < old if cfg.best_metric in LOWER_IS_BETTER else value > old)
            best = {"metric": cfg.best_metric, "value": value, "step": done} if better else best
        if master:
            log.write(row)  # before the checkpoint: a kill between the two must not lose the step's row
            due = done == cfg.steps or (cfg.checkpoint_every and done % cfg.checkpoint_every == 0)
            state = (
                None
                if not (due or better)
                else {
                    "trainable": tuning.trainable_state(model),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "data": {"step": done},
                    "rng": rng_state(),
                    "best": best,
                    "config": dataclasses.asdict(cfg),
                    "frozen_fingerprint": fingerprint,
                    "base": base,
                    "basam": {"model": model.cfg.to_dict(), "attention": model.attn_cfg.to_dict()},
                }
            )
            if due:
                atomic_save(state, ckpt_dir / f"step_{done:07d}.pt")
                for old in sorted(ckpt_dir.glob("step_*.pt"))[: -max(1, cfg.keep_last)]:
                    old.unlink()
            if better:
                atomic_save(state, ckpt_dir / "best.pt")
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.2e}")
    bar.close()
    log.close()
    summary = {
        "out": str(out),
        "steps": cfg.steps,
        "final_loss": last_loss,
        "parameters": counts,
        "best": best,
        "world_size": world,
        "tune": cfg.tune,
        "learnable_slopes": cfg.learnable_slopes,
    }
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

    COLUMNS = (
        "step",
        "loss",
        "bce",
        "dice",
        "iou_mse",
        "lr",
        "grad_norm",
        "resolution",
        "seconds",
        *(f"val_{k}" for k in VAL_COLUMNS),
    )

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
