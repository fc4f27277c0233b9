"""Load and save models: official SAM .pth files, safetensors, and basam's own exports.

Loading is strict. BA-SAM's own parameters (learnable slopes, the `official` preset's gains) are the
only keys a checkpoint may lack: they start from their initial values, as they would for a user
switching BA-SAM on over an official checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import torch

from basam.config import MODEL_CONFIGS, SAM2_ALIASES, SAM2_CONFIGS, AttentionConfig, ModelConfig, Sam2Config, hq_config
from basam.formats.errors import CheckpointError
from basam.modeling.attention import BASAM_PARAMETER
from basam.modeling.sam import Sam
from basam.modeling.sam2 import VIDEO_ONLY_PREFIXES, Sam2
from basam.runtime.precision import PRECISIONS, set_precision

ASSETS = Path(__file__).parent.parent / "assets"
DEFAULT_WEIGHTS = ASSETS / "default.safetensors"
# MobileSAM's release keeps TinyViT's ImageNet classifier, which SAM never calls.
_UNUSED_HEAD = ("image_encoder.norm_head.", "image_encoder.head.")
_HQ_KEY = "mask_decoder.hf_token.weight"  # HQ-SAM's releases: SAM's keys plus the HQ decoder's


def load_model(
    model_type: str = "default",
    checkpoint: str | os.PathLike | None = None,
    attn: str | AttentionConfig | None = None,
    device: str | torch.device = "cpu",
    dtype: str = "fp32",
    **attn_overrides,
) -> Sam:
    """Build a model and load its weights.

    model_type: "vit_b" | "vit_l" | "vit_h" | "vit_t" (MobileSAM) | "tiny" | "default" (the embedded model);
        HQ-SAM: "hq_vit_b" | "hq_vit_l" | "hq_vit_h" | "hq_vit_tiny", or a SAM size with an HQ-SAM
        checkpoint (recognised by its keys: sam_hq_vit_b.pth loads with "vit_b", sam_hq_vit_tiny.pth with "vit_t");
        SAM 2: "sam2.1_hiera_t|s|b+|l" | "sam2_hiera_t|s|b+|l" (the released config paths, e.g.
        "configs/sam2.1/sam2.1_hiera_t.yaml", and checkpoint stems, e.g. "sam2.1_hiera_tiny", name them too).
    checkpoint: None → random init (the embedded weights for "default"); an official .pth or SAM 2
        .pt, a safetensors file, a basam export, or a Hugging Face SamModel folder or weights file
        (SamHQModel, and Sam2Model folders for SAM 2).
    attn: a preset name, an AttentionConfig, or None → the setting saved in the checkpoint (basam
        exports) or plain SAM. Keyword overrides change single fields (bm_distance="manhattan").
    dtype: the image encoder's precision, "fp32" | "bf16" | "int8" | "auto" (basam.runtime.precision);
        `model.precision` says which one "auto" chose.
    """
    if dtype not in PRECISIONS:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {', '.join(PRECISIONS)}")
    state, saved = ({}, {})
    if model_type == "default" and checkpoint is None:
        if not DEFAULT_WEIGHTS.exists():
            raise CheckpointError(f"the embedded default model is missing ({DEFAULT_WEIGHTS}); reinstall basam")
        checkpoint = DEFAULT_WEIGHTS
    if checkpoint is not None:
        state, saved = read_checkpoint(checkpoint)
    cfg = _model_config(model_type, saved, checkpoint)
    if is_hq_state(state) and not cfg.hq and "model" not in saved:  # an HQ-SAM release named by its SAM size
        cfg = hq_config(cfg)
    attn_cfg = _attention_config(attn, saved, attn_overrides)
    model = (Sam2 if isinstance(cfg, Sam2Config) else Sam)(cfg, attn_cfg)
    if checkpoint is not None:
        from basam.training.tuning import add_adapters_like

        add_adapters_like(model, state)  # exports of `basam train --tune adapter` carry adapters
        load_state(model, state, str(checkpoint))
        if attn_cfg.official and not saved.get("attention", {}).get("official"):
            _drop_pretrained_rel_pos(model)
    model = model.to(device).eval()
    set_precision(model, dtype)
    return model


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """→ (state dict, basam metadata or {}). Any unreadable file becomes a CheckpointError."""
    from basam.formats.hf import is_hf_checkpoint, read_hf_checkpoint

    path = Path(path)
    if is_hf_checkpoint(path):
        return read_hf_checkpoint(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder without a Hugging Face config.json")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}
            saved = json.loads(meta["basam"]) if "basam" in meta else {}
        else:
            state, saved = torch.load(path, map_location="cpu", weights_only=True), {}
            if isinstance(state, dict) and isinstance(state.get("model"), dict):  # a training checkpoint
                saved = state.get("basam", {})
                state = state["model"]
    except Exception as e:  # truncated, corrupt, not a checkpoint at all
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("trainable"), dict):  # basam train's step_*.pt, best.pt
        from basam.training.checkpoints import checkpoint_weights

        try:
            saved, state = state.get("basam", {}), checkpoint_weights(state, str(path), load_model)
        except (ValueError, KeyError) as e:
            raise CheckpointError(
                str(e) if isinstance(e, ValueError) else f"{path}: not a basam training checkpoint ({e})"
            ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    # DistributedDataParallel prefixes every key with "module."
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return state, saved


def load_state(model: Sam | Sam2, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strict load, with one readable error naming what does not fit. A SAM 2 release's video-only
    parameters are dropped, said in one line."""
    own = model.state_dict()
    if isinstance(model, Sam2):
        video = [k for k in state if k.startswith(VIDEO_ONLY_PREFIXES)]
        if video:
            print(
                f"basam: {source}: leaving out {len(video)} video-only tensors (memory encoder and attention, "
                "object pointers, temporal encodings), unused for images",
                file=sys.stderr,
            )
            state = {k: v for k, v in state.items() if k not in video}
    if model.cfg.encoder == "tiny_vit":
        head = [k for k in state if k.startswith(_UNUSED_HEAD)]
        if head:
            print(
                f"basam: {source}: ignoring TinyViT's classifier head ({len(head)} tensors: norm_head, head), "
                "unused by SAM",
                file=sys.stderr,
            )
            state = {k: v for k, v in state.items() if k not in head}
    missing = [k for k in own if k not in state and BASAM_PARAMETER not in k]
    unexpected = [k for k in state if k not in own and BASAM_PARAMETER not in k]
    dropped = [k for k in state if k not in own and BASAM_PARAMETER in k]
    wrong = [
        f"{k} {tuple(state[k].shape)}≠{tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = [f"{source} does not fit model {model.cfg.name}"]
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{len(keys)} {label}: {_first(keys)}")
        guess = guess_model_type(state)
        parts.append(f"the file looks like {guess}" if guess else "the file matches no known SAM size")
        raise CheckpointError("; ".join(parts))
    if dropped:
        warnings.warn(
            f"{source}: ignoring {len(dropped)} BA-SAM parameters the chosen attention setting does not use",
            stacklevel=2,
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def is_hq_state(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict holds HQ-SAM's decoder (its HQ output token)."""
    return _HQ_KEY in state


def guess_model_type(state: dict[str, torch.Tensor]) -> str | None:
    """The SAM size whose encoder width, depth and pos_embed grid match the state dict (hq_<size>
    when it holds HQ-SAM's decoder)."""
    size = _guess_size(state)
    if size in MODEL_CONFIGS and is_hq_state(state):
        return hq_config(MODEL_CONFIGS[size]).name
    return size


def _guess_size(state: dict[str, torch.Tensor]) -> str | None:
    if "image_encoder.patch_embed.seq.0.c.weight" in state:
        return "vit_t"
    hiera = state.get("image_encoder.trunk.pos_embed")
    if hiera is not None and hiera.ndim == 4:
        depth = len({k.split(".")[3] for k in state if k.startswith("image_encoder.trunk.blocks.")})
        for name, cfg in SAM2_CONFIGS.items():
            if (cfg.embed_dim, sum(cfg.stages)) == (hiera.shape[1], depth):
                return name  # SAM 2 and 2.1 share the image path; the 2.1 name comes first
        return f"an unknown SAM 2 size (width {hiera.shape[1]}, {depth} blocks)"
    pos = state.get("image_encoder.pos_embed")
    if pos is None or pos.ndim != 4:
        return None
    depth = len({k.split(".")[2] for k in state if k.startswith("image_encoder.blocks.")})
    for name, cfg in MODEL_CONFIGS.items():
        if not cfg.hq and (cfg.encoder_embed_dim, cfg.encoder_depth, cfg.train_grid) == (
            pos.shape[3],
            depth,
            tuple(pos.shape[1:3]),
        ):
            return name
    return f"an unknown size (width {pos.shape[3]}, {depth} blocks, {pos.shape[1]}×{pos.shape[2]} grid)"


def save_model(model: Sam, path: str | os.PathLike, format: str = "basam") -> Path:
    """Write a safetensors file whose metadata holds the model and attention configs, so that
    `load_model` can rebuild it without being told the size. format="hf": a folder that
    transformers.SamModel.from_pretrained opens (basam.formats.hf; Sam2Model for SAM 2: basam.formats.hf_sam2)."""
    from safetensors.torch import save_file

    if model.precision != "fp32":
        raise ValueError(
            f"cannot save a model loaded with dtype {model.precision}: "
            "save the fp32 model and choose the dtype when loading"
        )
    if format == "hf":
        from basam.formats.hf import save_hf

        return save_hf(model, path)
    if format != "basam":
        raise ValueError(f"unknown checkpoint format {format!r}; choose basam or hf")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"basam": json.dumps({"model": model.cfg.to_dict(), "attention": model.attn_cfg.to_dict()})}
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def _model_config(model_type: str, saved: dict, checkpoint) -> ModelConfig | Sam2Config:
    model_type = SAM2_ALIASES.get(model_type, model_type)
    if "model" in saved:
        is_sam2 = saved["model"].get("encoder") == "hiera"
        cfg = (Sam2Config if is_sam2 else ModelConfig).from_dict(saved["model"])
        named = MODEL_CONFIGS.get(model_type) or SAM2_CONFIGS.get(model_type)
        hq = [hq_config(named).name] if isinstance(named, ModelConfig) else []
        allowed = () if named is None else (named.name, *hq)
        if isinstance(named, Sam2Config) and Sam2Config.from_dict({**saved["model"], "name": named.name}) == named:
            return named  # SAM 2 and 2.1 share the image path: either name opens the other's folder
        if named is not None and cfg.name not in allowed:  # vit_b opens an hq_vit_b export
            raise CheckpointError(f"{checkpoint} holds a {cfg.name} model, not {model_type}")
        return cfg
    if model_type in SAM2_CONFIGS:
        return SAM2_CONFIGS[model_type]
    if model_type not in MODEL_CONFIGS:
        known = [*MODEL_CONFIGS, "default", *SAM2_CONFIGS]
        raise CheckpointError(f"unknown model type {model_type!r}; choose from {', '.join(known)}")
    return MODEL_CONFIGS[model_type]


def _attention_config(attn, saved: dict, overrides: dict) -> AttentionConfig:
    if isinstance(attn, AttentionConfig):
        base = attn
    elif attn is None and "attention" in saved:
        base = AttentionConfig.from_dict(saved["attention"])
    else:
        return AttentionConfig.from_preset(attn or "sam", **overrides)
    return AttentionConfig.from_dict({**base.to_dict(), **overrides}) if overrides else base


def _drop_pretrained_rel_pos(model: Sam) -> None:
    """The released BA-SAM code trains rel-pos tables from zero instead of loading SAM's."""
    with torch.no_grad():
        for block in model.image_encoder.blocks:
            block.attn.rel_pos_h.zero_()
            block.attn.rel_pos_w.zero_()


def _first(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f", … (+{len(keys) - n})" if len(keys) > n else "")
