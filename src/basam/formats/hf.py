"""Hugging Face `transformers.SamModel` and `SamHQModel` (HQ-SAM) checkpoints, in and out, without
importing transformers.

A `save_pretrained` folder holds config.json (a SamConfig) and model.safetensors (or shards listed
in model.safetensors.index.json, or pytorch_model.bin). Its parameter names differ from the
official release's, which basam uses; `hf_name` maps one basam name to its HF name, and loading
inverts that map over the names the model expects, so both directions stay one table.

One numerical difference is the file's to decide: HF's two-way transformer blocks use the mask
decoder config's `layer_norm_eps` (1e-6 by default) where the official SAM uses 1e-5. basam
follows the file (`ModelConfig.decoder_norm_eps`) and warns when it differs from the official.

BA-SAM's settings and parameters (learnable slopes, the `official` preset's gains) have no place
in a SamModel: they travel in a "basam" section of config.json, which transformers ignores.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from pathlib import Path

import torch

from basam.config import MODEL_CONFIGS, ModelConfig, hq_config
from basam.formats.errors import CheckpointError
from basam.formats.hf_sam2 import HF_SAM2_MODEL_TYPE, exportable_state, read_hf_sam2, save_hf_sam2
from basam.modeling.attention import BASAM_PARAMETER

OFFICIAL_DECODER_NORM_EPS = 1e-5
HF_DEFAULT_DECODER_NORM_EPS = 1e-6  # SamMaskDecoderConfig's default

# basam (official) name → HF name, applied in order; the first matching pattern wins.
_RULES = [
    (re.compile(a), b)
    for a, b in (
        (r"^image_encoder\.patch_embed\.proj\.", "vision_encoder.patch_embed.projection."),
        (r"^image_encoder\.blocks\.(\d+)\.norm(\d)\.", r"vision_encoder.layers.\1.layer_norm\2."),
        (r"^image_encoder\.blocks\.", "vision_encoder.layers."),
        (r"^image_encoder\.neck\.0\.", "vision_encoder.neck.conv1."),
        (r"^image_encoder\.neck\.1\.", "vision_encoder.neck.layer_norm1."),
        (r"^image_encoder\.neck\.2\.", "vision_encoder.neck.conv2."),
        (r"^image_encoder\.neck\.3\.", "vision_encoder.neck.layer_norm2."),
        (r"^image_encoder\.", "vision_encoder."),
        (
            r"^prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$",
            "shared_image_embedding.positional_embedding",
        ),
        (r"^prompt_encoder\.point_embeddings\.", "prompt_encoder.point_embed."),
        (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
        (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
        (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
        (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
        (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
        (r"^mask_decoder\.transformer\.layers\.(\d+)\.norm(\d)\.", r"mask_decoder.transformer.layers.\1.layer_norm\2."),
        (r"^mask_decoder\.transformer\.norm_final_attn\.", "mask_decoder.transformer.layer_norm_final_attn."),
        (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
        (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
        (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
        # HQ-SAM's decoder (SamHQModel)
        (r"^mask_decoder\.hf_token\.", "mask_decoder.hq_token."),
        (r"^mask_decoder\.compress_vit_feat\.0\.", "mask_decoder.compress_vit_conv1."),
        (r"^mask_decoder\.compress_vit_feat\.1\.", "mask_decoder.compress_vit_norm."),
        (r"^mask_decoder\.compress_vit_feat\.3\.", "mask_decoder.compress_vit_conv2."),
        (r"^mask_decoder\.embedding_encoder\.0\.", "mask_decoder.encoder_conv1."),
        (r"^mask_decoder\.embedding_encoder\.1\.", "mask_decoder.encoder_norm."),
        (r"^mask_decoder\.embedding_encoder\.3\.", "mask_decoder.encoder_conv2."),
        (r"^mask_decoder\.embedding_maskfeature\.0\.", "mask_decoder.mask_conv1."),
        (r"^mask_decoder\.embedding_maskfeature\.1\.", "mask_decoder.mask_norm."),
        (r"^mask_decoder\.embedding_maskfeature\.3\.", "mask_decoder.mask_conv2."),
    )
]
# HF ties the prompt encoder's copy of the Fourier matrix to this one; files may hold either name.
_PE_ALIAS = ("prompt_encoder.shared_embedding.positional_embedding", "shared_image_embedding.positional_embedding")
_HEAD_LAYER = re.compile(
    r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head|hf_mlp))\.layers\.(\d+)\.(.*)$"
)
_HQ_MODEL_TYPE = "sam_hq"


def hf_name(name: str) -> str:
    """The HF SamModel name of one basam parameter. The decoder's 3-layer MLP heads name their
    layers proj_in, layers.0, proj_out."""
    head = _HEAD_LAYER.match(name)
    if head:
        prefix, i, rest = head.group(1), int(head.group(2)), head.group(3)
        layer = "proj_in" if i == 0 else "proj_out" if i == 2 else f"layers.{i - 1}"
        return f"{prefix.replace('.hf_mlp', '.hq_mask_mlp')}.{layer}.{rest}"
    for pattern, replacement in _RULES:
        if pattern.search(name):
            return pattern.sub(replacement, name, count=1)
    return name


# --- config.json ↔ ModelConfig ---------------------------------------------------------------------


# SamConfig's defaults (transformers writes them all out, but a hand-written config.json may not).
_HF_DEFAULTS = {
    "vision_config": {
        "hidden_size": 768,
        "output_channels": 256,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 1024,
        "patch_size": 16,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-6,
        "qkv_bias": True,
        "mlp_ratio": 4.0,
        "use_abs_pos": True,
        "use_rel_pos": True,
        "window_size": 14,
        "global_attn_indexes": [2, 5, 8, 11],
        "num_pos_feats": 128,
        "mlp_dim": None,
    },
    "prompt_encoder_config": {
        "hidden_size": 256,
        "image_size": 1024,
        "patch_size": 16,
        "mask_input_channels": 16,
        "num_point_embeddings": 4,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-6,
    },
    "mask_decoder_config": {
        "hidden_size": 256,
        "hidden_act": "relu",
        "mlp_dim": 2048,
        "num_hidden_layers": 2,
        "num_attention_heads": 8,
        "attention_downsample_rate": 2,
        "num_multimask_outputs": 3,
        "iou_head_depth": 3,
        "iou_head_hidden_dim": 256,
        "layer_norm_eps": HF_DEFAULT_DECODER_NORM_EPS,
    },
}


def model_config_from_hf(config: dict, name: str | None = None) -> ModelConfig:
    """A SamConfig (or SamHQConfig) dict → ModelConfig; one clear error for what basam's
    architecture cannot run. `name` None: the name of the basam size with this architecture, else "hf"."""
    hq = config.get("model_type") == _HQ_MODEL_TYPE
    vision, prompt, decoder = ({**_HF_DEFAULTS[k], **(config.get(k) or {})} for k in _HF_DEFAULTS)
    width, dim, image, patch = (
        vision["hidden_size"],
        vision["output_channels"],
        vision["image_size"],
        vision["patch_size"],
    )
    fixed = {  # what basam's modules hard-wire: the value each must have
        "vision_config.mlp_dim": (vision["mlp_dim"] or int(width * vision["mlp_ratio"]), 4 * width),
        "vision_config.qkv_bias": (vision["qkv_bias"], True),
        "vision_config.use_abs_pos": (vision["use_abs_pos"], True),
        "vision_config.use_rel_pos": (vision["use_rel_pos"], True),
        "vision_config.hidden_act": (vision["hidden_act"], "gelu"),
        "vision_config.layer_norm_eps": (vision["layer_norm_eps"], 1e-6),
        "vision_config.num_pos_feats": (vision["num_pos_feats"], dim // 2),
        "prompt_encoder_config.hidden_size": (prompt["hidden_size"], dim),
        "prompt_encoder_config.image_size": (prompt["image_size"], image),
        "prompt_encoder_config.patch_size": (prompt["patch_size"], patch),
        "prompt_encoder_config.num_point_embeddings": (prompt["num_point_embeddings"], 4),
        "prompt_encoder_config.hidden_act": (prompt["hidden_act"], "gelu"),
        "prompt_encoder_config.layer_norm_eps": (prompt["layer_norm_eps"], 1e-6),
        "mask_decoder_config.hidden_size": (decoder["hidden_size"], dim),
        "mask_decoder_config.hidden_act": (decoder["hidden_act"], "relu"),
        "mask_decoder_config.attention_downsample_rate": (decoder["attention_downsample_rate"], 2),
        "mask_decoder_config.iou_head_depth": (decoder["iou_head_depth"], 3),
    }
    if hq:  # the HQ decoder reads the encoder's early feature, as wide as the encoder
        fixed["mask_decoder_config.vit_dim"] = (decoder.get("vit_dim", 768), width)
    for key, (value, expected) in fixed.items():
        if value != expected:
            raise ValueError(f"SamConfig {key}={value!r} is not supported (basam's SAM needs {expected!r})")
    cfg = ModelConfig(
        name=name or "hf",
        encoder_embed_dim=width,
        encoder_depth=vision["num_hidden_layers"],
        encoder_num_heads=vision["num_attention_heads"],
        encoder_global_attn_indexes=tuple(vision["global_attn_indexes"]),
        window_size=vision["window_size"],
        patch_size=patch,
        img_size=image,
        prompt_embed_dim=dim,
        mask_in_chans=prompt["mask_input_channels"],
        decoder_depth=decoder["num_hidden_layers"],
        decoder_mlp_dim=decoder["mlp_dim"],
        decoder_num_heads=decoder["num_attention_heads"],
        iou_head_hidden_dim=decoder["iou_head_hidden_dim"],
        num_multimask_outputs=decoder["num_multimask_outputs"],
        decoder_norm_eps=float(decoder["layer_norm_eps"]),
        hq=hq,
    )
    if name is None:  # a known architecture keeps its name (vit_b …), whatever its eps
        for known in (hq_config(c) if hq else c for c in MODEL_CONFIGS.values() if not c.hq):
            if dataclasses.replace(known, decoder_norm_eps=cfg.decoder_norm_eps) == dataclasses.replace(
                cfg, name=known.name
            ):
                return dataclasses.replace(cfg, name=known.name)
    return cfg


def hf_config(cfg: ModelConfig) -> dict:
    """ModelConfig → the SamConfig (SamHQConfig for HQ-SAM) dict transformers reads (every size
    written out)."""
    if cfg.encoder != "vit":
        raise ValueError(
            f"{cfg.name} has the {cfg.encoder} encoder, which a Hugging Face SamModel/SamHQModel cannot hold"
        )
    kind = _HQ_MODEL_TYPE if cfg.hq else "sam"
    config = {
        "model_type": kind,
        "architectures": ["SamHQModel" if cfg.hq else "SamModel"],
        "vision_config": {
            "model_type": f"{kind}_vision_model",
            "hidden_size": cfg.encoder_embed_dim,
            "num_hidden_layers": cfg.encoder_depth,
            "num_attention_heads": cfg.encoder_num_heads,
            "global_attn_indexes": list(cfg.encoder_global_attn_indexes),
            "window_size": cfg.window_size,
            "image_size": cfg.img_size,
            "patch_size": cfg.patch_size,
            "output_channels": cfg.prompt_embed_dim,
            "num_pos_feats": cfg.prompt_embed_dim // 2,
            "mlp_dim": 4 * cfg.encoder_embed_dim,
            "layer_norm_eps": 1e-6,
        },
        "prompt_encoder_config": {
            "model_type": f"{kind}_prompt_encoder",
            "hidden_size": cfg.prompt_embed_dim,
            "image_size": cfg.img_size,
            "patch_size": cfg.patch_size,
            "image_embedding_size": cfg.img_size // cfg.patch_size,
            "mask_input_channels": cfg.mask_in_chans,
            "layer_norm_eps": 1e-6,
        },
        "mask_decoder_config": {
            "model_type": f"{kind}_mask_decoder",
            "hidden_size": cfg.prompt_embed_dim,
            "mlp_dim": cfg.decoder_mlp_dim,
            "num_hidden_layers": cfg.decoder_depth,
            "num_attention_heads": cfg.decoder_num_heads,
            "iou_head_hidden_dim": cfg.iou_head_hidden_dim,
            "num_multimask_outputs": cfg.num_multimask_outputs,
            "layer_norm_eps": cfg.decoder_norm_eps,
        },
    }
    if cfg.hq:
        config["mask_decoder_config"]["vit_dim"] = cfg.encoder_embed_dim
    return config


# --- reading ----------------------------------------------------------------------------------------


def is_hf_checkpoint(path: Path) -> bool:
    """A save_pretrained folder (config.json of a SamConfig), or a weights file written by one."""
    if path.is_dir():
        return (path / "config.json").is_file()
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return any(k.startswith("vision_encoder.") for k in f.keys())
        except Exception:
            return False  # not readable: the ordinary reader says why
    return False


def read_hf_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """→ (state dict under basam's names, {"model": …, "attention": …} as a basam export's)."""
    folder = path if path.is_dir() else path.parent
    config_file = folder / "config.json"
    try:
        config = json.loads(config_file.read_text()) if config_file.is_file() else None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {config_file}: {e}") from None
    if config is not None and config.get("model_type") not in ("sam", _HQ_MODEL_TYPE, HF_SAM2_MODEL_TYPE):
        raise CheckpointError(
            f"{config_file} describes a {config.get('model_type')!r} model, not a SamModel ('sam'), "
            f"SamHQModel ('sam_hq') or Sam2Model ('sam2')"
        )
    hf_state = _read_weights(path)
    if config is not None and config["model_type"] == HF_SAM2_MODEL_TYPE:
        return read_hf_sam2(hf_state, config, path)
    basam = (config or {}).get("basam", {})
    try:
        if config is not None:
            cfg = model_config_from_hf(config, basam.get("model", {}).get("name"))
        else:
            cfg = _guess_config(hf_state)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if cfg.decoder_norm_eps != OFFICIAL_DECODER_NORM_EPS:
        warnings.warn(
            f"{path}: mask decoder LayerNorm eps {cfg.decoder_norm_eps:g} as its config says (the official "
            f"SAM uses {OFFICIAL_DECODER_NORM_EPS:g}); basam follows the file, as transformers does",
            stacklevel=2,
        )
    names = _basam_names(cfg)
    state = {names.get(k, k): v for k, v in hf_state.items() if k != _PE_ALIAS[0] or _PE_ALIAS[1] not in hf_state}
    state.update({k: torch.tensor(v, dtype=torch.float32) for k, v in basam.get("parameters", {}).items()})
    saved = {"model": cfg.to_dict()}
    if "attention" in basam:
        saved["attention"] = basam["attention"]
    return state, saved


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """One safetensors file, a folder's model.safetensors, its shards, or its pytorch_model.bin."""
    from safetensors.torch import load_file

    if path.is_dir():
        index = path / "model.safetensors.index.json"
        candidates = [path / "model.safetensors", index, path / "pytorch_model.bin"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise CheckpointError(
                f"{path} has a config.json but none of model.safetensors, "
                f"model.safetensors.index.json, pytorch_model.bin"
            )
    else:
        found = path
    try:
        if found.name.endswith(".index.json"):
            shards = sorted(set(json.loads(found.read_text())["weight_map"].values()))
            state = {}
            for shard in shards:
                state.update(load_file(str(found.parent / shard)))
            return state
        if found.suffix == ".bin":
            return torch.load(found, map_location="cpu", weights_only=True)
        return load_file(str(found))
    except Exception as e:
        raise CheckpointError(
            f"cannot read checkpoint {found}: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
        ) from None


def _guess_config(hf_state: dict[str, torch.Tensor]) -> ModelConfig:
    """A lone weights file: the basam size whose encoder width, depth and grid match, with HF's
    default decoder eps (the file cannot say otherwise)."""
    pos = hf_state.get("vision_encoder.pos_embed")
    depth = len({k.split(".")[2] for k in hf_state if k.startswith("vision_encoder.layers.")})
    hq = "mask_decoder.hq_token.weight" in hf_state
    for cfg in MODEL_CONFIGS.values():
        if (
            pos is not None
            and cfg.hq == hq
            and (cfg.encoder_embed_dim, cfg.encoder_depth, cfg.train_grid)
            == (pos.shape[3], depth, tuple(pos.shape[1:3]))
        ):
            return dataclasses.replace(cfg, decoder_norm_eps=HF_DEFAULT_DECODER_NORM_EPS)
    raise ValueError("no config.json beside it, and its shapes match no known SAM size; put its config.json next to it")


def _basam_names(cfg: ModelConfig) -> dict[str, str]:
    """HF name → basam name for every parameter a `sam` model of this size has (built on the meta
    device: names only, no memory)."""
    from basam.modeling.sam import Sam

    with torch.device("meta"):
        names = Sam(cfg).state_dict().keys()
    mapping = {hf_name(k): k for k in names}
    mapping[_PE_ALIAS[0]] = mapping[_PE_ALIAS[1]]
    return mapping


# --- writing ----------------------------------------------------------------------------------------


def save_hf(model, folder: str | os.PathLike) -> Path:
    """Write `folder`/config.json and model.safetensors that transformers.SamModel.from_pretrained
    (SamHQModel for HQ-SAM, Sam2Model for SAM 2: basam.formats.hf_sam2) opens; BA-SAM's settings
    and parameters go in config.json's "basam" section."""
    from safetensors.torch import save_file

    if model.cfg.encoder == "hiera":
        return save_hf_sam2(model, folder)
    folder = Path(folder)
    state = exportable_state(model, folder, "SamModel")
    tensors = {hf_name(k): v.detach().cpu().contiguous() for k, v in state.items() if BASAM_PARAMETER not in k}
    parameters = {k: v.detach().cpu().tolist() for k, v in state.items() if BASAM_PARAMETER in k}
    config = {
        **hf_config(model.cfg),
        "basam": {
            "note": "BA-SAM settings for basam; transformers ignores this section and runs plain SAM attention",
            "model": model.cfg.to_dict(),
            "attention": model.attn_cfg.to_dict(),
            "parameters": parameters,
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors.tmp"), metadata={"format": "pt"})
    os.replace(folder / "model.safetensors.tmp", folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder
