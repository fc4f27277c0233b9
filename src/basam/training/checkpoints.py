"""What a training checkpoint (step_*.pt, best.pt) holds and how a model is rebuilt from it. It stores
only the weights its run trained; the rest comes from the run's base model."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from basam.training import tuning
from basam.training.config import TrainConfig


def build_model(cfg: TrainConfig, load_model: Callable[..., nn.Module]) -> nn.Module:
    """The model a run starts from, on the CPU, its parameters trainable or frozen as --tune says.
    `load_model` is basam.load_model, passed in because reading a training checkpoint rebuilds its
    base model through here while load_model itself reads training checkpoints."""

    torch.manual_seed(cfg.seed)  # random init (tiny without checkpoint, adapters, LoRA): the same on every rank
    model = load_model(
        cfg.model,
        checkpoint=cfg.checkpoint,
        attn=cfg.attn,
        device="cpu",
        **({"bm_learnable": True} if cfg.learnable_slopes else {}),
        **cfg.attn_overrides,
    )
    tuning.configure(
        model, cfg.tune, cfg.learnable_slopes, cfg.adapter_dim, cfg.lora_rank, cfg.lora_alpha, cfg.train_prompt_encoder
    )
    if model.attn_cfg.official:  # that preset never uses pos_embed; DDP refuses parameters without gradient
        model.image_encoder.pos_embed.requires_grad_(False)
    return model


def checkpoint_weights(ckpt: dict, source: str, load_model: Callable[..., nn.Module]) -> dict[str, torch.Tensor]:
    """The whole state dict of a training checkpoint (step_*.pt, best.pt), which stores only what
    its run trained: the base model rebuilt as the run built it, the trained weights on top, LoRA
    merged, as `model.safetensors` would hold them had the run ended there."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    base = ckpt.get("base") or {}
    cfg = TrainConfig(**{k: base.get(k, v) for k, v in ckpt["config"].items() if k in names})
    if cfg.checkpoint and not Path(cfg.checkpoint).is_file():
        raise ValueError(
            f"{source} holds only the weights its run trained (--tune {cfg.tune}); the rest comes "
            f"from its base checkpoint {cfg.checkpoint}, which is missing"
        )
    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg, load_model)
    load_trainable(model, ckpt, tuning.frozen_fingerprint(model), source)
    return tuning.export_copy(model).state_dict()


def load_trainable(model: nn.Module, ckpt: dict, fingerprint: float, source: str) -> None:
    """Put a checkpoint's trained weights into `model`, after checking that they go on the same
    frozen base (fingerprint) and the same set of trainable parameters."""
    if not math.isclose(ckpt["frozen_fingerprint"], fingerprint, rel_tol=1e-9):
        raise ValueError(
            f"{source}: the frozen base weights differ from the ones its run trained on "
            "(another --checkpoint or --model?)"
        )
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(ckpt["trainable"]) != set(named):
        raise ValueError(f"{source} was written by another --tune / --model setting than this run's")
    with torch.no_grad():
        for n, p in named.items():
            p.copy_(ckpt["trainable"][n])
