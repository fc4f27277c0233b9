"""Hugging Face `transformers.Sam2Model` folders for SAM 2 / 2.1 image models, in and out, without
importing transformers.

A `save_pretrained` folder holds config.json (a Sam2Config, model_type "sam2") and the weights
(read by basam.formats.hf). `hf_sam2_name` maps one basam (release) name to its HF name, and loading
inverts that map over the names the model expects. One tensor has no one-to-one name: the release
keeps the four point-label embeddings apart (`sam_prompt_encoder.point_embeddings.{0..3}.weight`,
(1, C) each), HF stacks them (`prompt_encoder.point_embed.weight`, (4, C)).

BA-SAM's settings travel in a "basam" section of config.json, which transformers ignores.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from basam.config import SAM2_CONFIGS, Sam2Config
from basam.modeling.attention import BASAM_PARAMETER

HF_SAM2_MODEL_TYPE = "sam2"
_POINT_EMBED = "prompt_encoder.point_embed.weight"
_POINT_PREFIX = "sam_prompt_encoder.point_embeddings."
# The prompt encoder's copy of the Fourier matrix (transformers keeps both as buffers; they must agree).
_PE_ALIAS = ("prompt_encoder.shared_embedding.positional_embedding", "shared_image_embedding.positional_embedding")
_HEAD = r"(output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head)"

# basam (release) name → HF name: every rule is applied, in order.
_RULES = [
    (re.compile(a), b)
    for a, b in (
        (r"^no_mem_embed$", "no_memory_embedding"),
        (r"^image_encoder\.trunk\.patch_embed\.proj\.", "image_encoder.trunk.patch_embed.projection."),
        (r"^(image_encoder\.trunk\.blocks\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
        (r"^(image_encoder\.trunk\.blocks\.\d+\.mlp)\.layers\.0\.", r"\1.proj_in."),
        (r"^(image_encoder\.trunk\.blocks\.\d+\.mlp)\.layers\.1\.", r"\1.proj_out."),
        (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
        (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
        (r"^sam_prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$", _PE_ALIAS[1]),
        (r"^sam_prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
        (r"^sam_prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
        (r"^sam_prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
        (r"^sam_prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
        (r"^sam_prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
        (r"^sam_prompt_encoder\.", "prompt_encoder."),
        (r"^(sam_mask_decoder\.transformer\.layers\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
        (r"^(sam_mask_decoder\.transformer\.layers\.\d+\.mlp)\.layers\.0\.", r"\1.proj_in."),
        (r"^(sam_mask_decoder\.transformer\.layers\.\d+\.mlp)\.layers\.1\.", r"\1.proj_out."),
        (r"^(sam_mask_decoder\.transformer\..*)\.out_proj\.", r"\1.o_proj."),
        (r"^sam_mask_decoder\.transformer\.norm_final_attn\.", "sam_mask_decoder.transformer.layer_norm_final_attn."),
        (r"^sam_mask_decoder\.output_upscaling\.0\.", "sam_mask_decoder.upscale_conv1."),
        (r"^sam_mask_decoder\.output_upscaling\.1\.", "sam_mask_decoder.upscale_layer_norm."),
        (r"^sam_mask_decoder\.output_upscaling\.3\.", "sam_mask_decoder.upscale_conv2."),
        (rf"^(sam_mask_decoder\.{_HEAD})\.layers\.0\.", r"\1.proj_in."),
        (rf"^(sam_mask_decoder\.{_HEAD})\.layers\.1\.", r"\1.layers.0."),
        (rf"^(sam_mask_decoder\.{_HEAD})\.layers\.2\.", r"\1.proj_out."),
        (r"^sam_mask_decoder\.", "mask_decoder."),
    )
]


def hf_sam2_name(name: str) -> str:
    """The HF Sam2Model name of one basam SAM 2 parameter (the point embeddings excepted, module docstring)."""
    for pattern, replacement in _RULES:
        name = pattern.sub(replacement, name, count=1)
    return name


# --- config.json ↔ Sam2Config -----------------------------------------------------------------------


def sam2_config_from_hf(config: dict, name: str | None = None) -> Sam2Config:
    """A Sam2Config dict (transformers' config.json) → basam's Sam2Config; one clear error for what
    basam's architecture cannot run. `name` None: the released size with this architecture, else "hf_sam2"."""
    vision = config.get("vision_config") or {}
    trunk = vision.get("backbone_config") or {}
    prompt = config.get("prompt_encoder_config") or {}
    decoder = config.get("mask_decoder_config") or {}
    stages = tuple(trunk.get("blocks_per_stage", (1, 2, 7, 2)))
    embed_dim, heads = trunk.get("hidden_size", 96), trunk.get("num_attention_heads", 1)
    image = trunk.get("image_size", [1024, 1024])
    image = image if isinstance(image, int) else image[0]
    dim = vision.get("fpn_hidden_size", 256)
    widths = [embed_dim * 2**s for s in range(len(stages))]
    fixed = {  # what basam's modules hard-wire: the value each must have
        "backbone_config.embed_dim_per_stage": (trunk.get("embed_dim_per_stage", widths), widths),
        "backbone_config.num_attention_heads_per_stage": (
            trunk.get("num_attention_heads_per_stage", [heads * 2**s for s in range(len(stages))]),
            [heads * 2**s for s in range(len(stages))],
        ),
        "backbone_config.patch_kernel_size": (_pair(trunk.get("patch_kernel_size", 7)), [7, 7]),
        "backbone_config.patch_stride": (_pair(trunk.get("patch_stride", 4)), [4, 4]),
        "backbone_config.patch_padding": (_pair(trunk.get("patch_padding", 3)), [3, 3]),
        "backbone_config.query_stride": (_pair(trunk.get("query_stride", 2)), [2, 2]),
        "backbone_config.num_query_pool_stages": (trunk.get("num_query_pool_stages", 3), len(stages) - 1),
        "backbone_config.mlp_ratio": (trunk.get("mlp_ratio", 4.0), 4.0),
        "backbone_config.hidden_act": (trunk.get("hidden_act", "gelu"), "gelu"),
        "backbone_config.layer_norm_eps": (trunk.get("layer_norm_eps", 1e-6), 1e-6),
        "backbone_config.image_size": (_pair(trunk.get("image_size", 1024)), [image, image]),
        "vision_config.backbone_channel_list": (vision.get("backbone_channel_list", widths[::-1]), widths[::-1]),
        "vision_config.fpn_kernel_size": (vision.get("fpn_kernel_size", 1), 1),
        "vision_config.fpn_stride": (vision.get("fpn_stride", 1), 1),
        "vision_config.fpn_padding": (vision.get("fpn_padding", 0), 0),
        "vision_config.num_feature_levels": (vision.get("num_feature_levels", 3), 3),
        "prompt_encoder_config.hidden_size": (prompt.get("hidden_size", 256), dim),
        "prompt_encoder_config.image_size": (prompt.get("image_size", 1024), image),
        "prompt_encoder_config.patch_size": (prompt.get("patch_size", 16), 16),
        "prompt_encoder_config.num_point_embeddings": (prompt.get("num_point_embeddings", 4), 4),
        "prompt_encoder_config.hidden_act": (prompt.get("hidden_act", "gelu"), "gelu"),
        "prompt_encoder_config.layer_norm_eps": (prompt.get("layer_norm_eps", 1e-6), 1e-6),
        "prompt_encoder_config.scale": (prompt.get("scale", 1), 1),
        "mask_decoder_config.hidden_size": (decoder.get("hidden_size", 256), dim),
        # HF gives each two-way block's MLP num_hidden_layers layers; the release has 2 blocks of 2.
        "mask_decoder_config.num_hidden_layers": (decoder.get("num_hidden_layers", 2), 2),
        "mask_decoder_config.attention_downsample_rate": (decoder.get("attention_downsample_rate", 2), 2),
        "mask_decoder_config.iou_head_depth": (decoder.get("iou_head_depth", 3), 3),
    }
    for key, (value, expected) in fixed.items():
        if value != expected:
            raise ValueError(f"Sam2Config {key}={value!r} is not supported (basam's SAM 2 needs {expected!r})")
    cfg = Sam2Config(
        name=name or "hf_sam2",
        embed_dim=embed_dim,
        num_heads=heads,
        stages=stages,
        global_att_blocks=tuple(trunk.get("global_attention_blocks", (5, 7, 9))),
        window_spec=tuple(trunk.get("window_size_per_stage", (8, 4, 14, 7))),
        window_pos_embed_bkg_spatial_size=tuple(trunk.get("window_positional_embedding_background_size", (7, 7))),
        img_size=image,
        prompt_embed_dim=dim,
        mask_in_chans=prompt.get("mask_input_channels", 16),
        decoder_mlp_dim=decoder.get("mlp_dim", 2048),
        decoder_num_heads=decoder.get("num_attention_heads", 8),
        iou_head_hidden_dim=decoder.get("iou_head_hidden_dim", 256),
        num_multimask_outputs=decoder.get("num_multimask_outputs", 3),
        fpn_top_down_levels=tuple(vision.get("fpn_top_down_levels", (2, 3))),
        dynamic_multimask_via_stability=decoder.get("dynamic_multimask_via_stability", True),
        dynamic_multimask_stability_delta=decoder.get("dynamic_multimask_stability_delta", 0.05),
        dynamic_multimask_stability_thresh=decoder.get("dynamic_multimask_stability_thresh", 0.98),
    )
    if name is None:  # a released architecture keeps its name (the 2.1 name: both share the image path)
        for known in SAM2_CONFIGS.values():
            if Sam2Config.from_dict({**known.to_dict(), "name": cfg.name}) == cfg:
                return Sam2Config.from_dict({**cfg.to_dict(), "name": known.name})
    return cfg


def _pair(value) -> list:
    return [value, value] if isinstance(value, int) else list(value)


def hf_sam2_config(cfg: Sam2Config) -> dict:
    """basam's Sam2Config → the Sam2Config dict transformers reads (every size written out)."""
    widths = [cfg.embed_dim * 2**s for s in range(len(cfg.stages))]
    side = cfg.img_size
    return {
        "model_type": HF_SAM2_MODEL_TYPE,
        "architectures": ["Sam2Model"],
        "vision_config": {
            "model_type": "sam2_vision_model",
            "backbone_config": {
                "model_type": "sam2_hiera_det_model",
                "hidden_size": cfg.embed_dim,
                "num_attention_heads": cfg.num_heads,
                "image_size": [side, side],
                "blocks_per_stage": list(cfg.stages),
                "embed_dim_per_stage": widths,
                "num_attention_heads_per_stage": [cfg.num_heads * 2**s for s in range(len(cfg.stages))],
                "window_size_per_stage": list(cfg.window_spec),
                "global_attention_blocks": list(cfg.global_att_blocks),
                "window_positional_embedding_background_size": list(cfg.window_pos_embed_bkg_spatial_size),
                "num_query_pool_stages": len(cfg.stages) - 1,
            },
            "backbone_channel_list": widths[::-1],
            # The three levels the image path uses at the training size (strides 4, 8, 16).
            "backbone_feature_sizes": [[side // s, side // s] for s in (4, 8, 16)],
            "fpn_hidden_size": cfg.prompt_embed_dim,
            "fpn_top_down_levels": list(cfg.fpn_top_down_levels),
        },
        "prompt_encoder_config": {
            "model_type": "sam2_prompt_encoder",
            "hidden_size": cfg.prompt_embed_dim,
            "image_size": side,
            "patch_size": cfg.patch_size,
            "mask_input_channels": cfg.mask_in_chans,
        },
        "mask_decoder_config": {
            "model_type": "sam2_mask_decoder",
            "hidden_size": cfg.prompt_embed_dim,
            "mlp_dim": cfg.decoder_mlp_dim,
            "num_hidden_layers": cfg.decoder_depth,
            "num_attention_heads": cfg.decoder_num_heads,
            "iou_head_hidden_dim": cfg.iou_head_hidden_dim,
            "num_multimask_outputs": cfg.num_multimask_outputs,
            "dynamic_multimask_via_stability": cfg.dynamic_multimask_via_stability,
            "dynamic_multimask_stability_delta": cfg.dynamic_multimask_stability_delta,
            "dynamic_multimask_stability_thresh": cfg.dynamic_multimask_stability_thresh,
        },
    }


# --- reading and writing ----------------------------------------------------------------------------


def read_hf_sam2(hf_state: dict[str, torch.Tensor], config: dict, source: Path) -> tuple[dict, dict]:
    """HF tensors and config.json → (state dict under basam's names, {"model": …, "attention": …})."""
    basam = config.get("basam", {})
    try:
        cfg = sam2_config_from_hf(config, basam.get("model", {}).get("name"))
    except ValueError as e:
        from basam.formats.errors import CheckpointError

        raise CheckpointError(f"{source}: {e}") from None
    pe = [hf_state[k] for k in _PE_ALIAS if k in hf_state]
    if len(pe) == 2 and not torch.equal(*pe):
        from basam.formats.errors import CheckpointError

        raise CheckpointError(
            f"{source}: {_PE_ALIAS[0]} differs from {_PE_ALIAS[1]}; SAM 2 has one Fourier matrix for "
            "the prompts and the image grid"
        )
    names = _basam_names(cfg)
    state = {}
    for key, value in hf_state.items():
        if key == _POINT_EMBED:  # (4, C) → four (1, C)
            state.update({f"{_POINT_PREFIX}{i}.weight": row[None] for i, row in enumerate(value)})
        elif key != _PE_ALIAS[0] or _PE_ALIAS[1] not in hf_state:
            state[names.get(key, key)] = value
    state.update({k: torch.tensor(v, dtype=torch.float32) for k, v in basam.get("parameters", {}).items()})
    saved = {"model": cfg.to_dict()}
    if "attention" in basam:
        saved["attention"] = basam["attention"]
    return state, saved


def _basam_names(cfg: Sam2Config) -> dict[str, str]:
    """HF name → basam name for every parameter a SAM 2 model of this size has (built on the meta device)."""
    from basam.modeling.sam2 import Sam2

    with torch.device("meta"):
        names = Sam2(cfg).state_dict().keys()
    mapping = {hf_sam2_name(k): k for k in names if not k.startswith(_POINT_PREFIX)}
    mapping[_PE_ALIAS[0]] = mapping[_PE_ALIAS[1]]
    return mapping


def exportable_state(model, folder: Path, hf_class: str) -> dict[str, torch.Tensor]:
    """The model's state dict, once `folder` and the model are known to fit a Hugging Face folder of
    `hf_class` (SamModel, SamHQModel, Sam2Model): folder is not a file, no adapter or LoRA tensors."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file; the Hugging Face format is a folder")
    state = model.state_dict()
    foreign = [k for k in state if BASAM_PARAMETER not in k and (".adapter." in k or ".lora_" in k)]
    if foreign:
        raise ValueError(
            f"the model carries {len(foreign)} adapter/LoRA tensors ({foreign[0]}, …) that a {hf_class} "
            f"has no place for; merge LoRA, or keep adapter models in basam's format"
        )
    return state


def save_hf_sam2(model, folder: str | os.PathLike) -> Path:
    """Write `folder`/config.json and model.safetensors that transformers.Sam2Model.from_pretrained opens."""
    from safetensors.torch import save_file

    folder = Path(folder)
    state = exportable_state(model, folder, "Sam2Model")
    kept = {k: v for k, v in state.items() if BASAM_PARAMETER not in k}
    points = [kept.pop(f"{_POINT_PREFIX}{i}.weight") for i in range(4)]
    tensors = {hf_sam2_name(k): v.detach().cpu().contiguous() for k, v in kept.items()}
    tensors[_POINT_EMBED] = torch.cat(points).detach().cpu().contiguous()
    tensors[_PE_ALIAS[0]] = tensors[_PE_ALIAS[1]].clone()  # two buffers in transformers, neither tied
    config = {
        **hf_sam2_config(model.cfg),
        "basam": {
            "note": "BA-SAM settings for basam; transformers ignores this section and runs plain SAM 2 attention",
            "model": model.cfg.to_dict(),
            "attention": model.attn_cfg.to_dict(),
            "parameters": {k: v.detach().cpu().tolist() for k, v in state.items() if BASAM_PARAMETER in k},
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors.tmp"), metadata={"format": "pt"})
    os.replace(folder / "model.safetensors.tmp", folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder
