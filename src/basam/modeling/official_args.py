"""The keyword arguments of segment_anything's modeling constructors, turned into basam's configs.

A client that builds SAM by hand (`ImageEncoderViT(depth=12, embed_dim=768, ...)`, then
`Sam(image_encoder=..., prompt_encoder=..., mask_decoder=...)`) gets basam's classes with the same
parameter names and the same computation. Options that would change the parameters a checkpoint
holds and that no SAM release uses (no relative positions, no absolute position embedding, no qkv
bias, other than 3 input channels) are refused in one line rather than built differently.
"""

from __future__ import annotations

from torch import nn

from basam.config import MODEL_CONFIGS, ModelConfig

# segment_anything.modeling.ImageEncoderViT's defaults
ENCODER_DEFAULTS = dict(
    img_size=1024,
    patch_size=16,
    in_chans=3,
    embed_dim=768,
    depth=12,
    num_heads=12,
    mlp_ratio=4.0,
    out_chans=256,
    qkv_bias=True,
    norm_layer=nn.LayerNorm,
    act_layer=nn.GELU,
    use_abs_pos=True,
    use_rel_pos=False,
    rel_pos_zero_init=True,
    window_size=0,
    global_attn_indexes=(),
)
# the options basam's ViT has only one way of; (value it needs, why)
_FIXED = {
    "in_chans": (3, "SAM reads RGB images"),
    "qkv_bias": (True, "every SAM checkpoint has qkv biases"),
    "use_abs_pos": (True, "every SAM checkpoint has pos_embed"),
    "use_rel_pos": (True, "basam's ViT always has SAM's relative positions, as every SAM checkpoint does"),
}


def encoder_config(**kwargs) -> tuple[ModelConfig, dict]:
    """segment_anything ImageEncoderViT keyword arguments → (ModelConfig of the encoder, the
    per-block options to apply after building: norm_layer, act_layer, mlp_ratio, rel_pos_zero_init)."""
    unknown = sorted(set(kwargs) - set(ENCODER_DEFAULTS))
    if unknown:
        raise TypeError(
            f"ImageEncoderViT got unexpected keyword argument(s) {', '.join(unknown)}; "
            f"it takes basam's (cfg, attn_cfg) or segment_anything's {', '.join(ENCODER_DEFAULTS)}"
        )
    args = {**ENCODER_DEFAULTS, **kwargs}
    for name, (needed, why) in _FIXED.items():
        if args[name] != needed:
            raise ValueError(f"ImageEncoderViT {name}={args[name]!r} is not supported: {why}; pass {name}={needed!r}")
    if args["img_size"] % args["patch_size"]:
        raise ValueError(
            f"ImageEncoderViT img_size={args['img_size']} is not a multiple of patch_size={args['patch_size']}"
        )
    cfg = ModelConfig(
        "custom",
        args["embed_dim"],
        args["depth"],
        args["num_heads"],
        tuple(args["global_attn_indexes"]),
        window_size=args["window_size"],
        patch_size=args["patch_size"],
        img_size=args["img_size"],
        prompt_embed_dim=args["out_chans"],
    )
    known = _known_name(cfg)
    if known:
        cfg = ModelConfig(**{**cfg.to_dict(), "name": known})
    blocks = {k: args[k] for k in ("norm_layer", "act_layer", "mlp_ratio", "rel_pos_zero_init")}
    return cfg, blocks


def apply_block_options(encoder: nn.Module, norm_layer, act_layer, mlp_ratio: float, rel_pos_zero_init: bool) -> None:
    """Give every block of a ViT encoder the official constructor's norm, activation and MLP width
    (basam builds them as SAM's builders do: LayerNorm eps 1e-6, GELU, ratio 4)."""
    from basam.modeling.common import MLPBlock

    for block in encoder.blocks:
        dim = block.norm1.normalized_shape[0]
        block.norm1, block.norm2 = norm_layer(dim), norm_layer(dim)
        if mlp_ratio != 4.0 or act_layer is not nn.GELU:
            block.mlp = MLPBlock(dim, int(dim * mlp_ratio), act_layer)
            block.mlp_hidden = int(dim * mlp_ratio)
        if not rel_pos_zero_init:  # the official init of trained-from-scratch tables
            nn.init.trunc_normal_(block.attn.rel_pos_h, std=0.02)
            nn.init.trunc_normal_(block.attn.rel_pos_w, std=0.02)


def config_from_parts(image_encoder: nn.Module, prompt_encoder: nn.Module, mask_decoder: nn.Module) -> ModelConfig:
    """The ModelConfig of a SAM assembled from separately built parts (the official Sam(...) form)."""
    enc = getattr(image_encoder, "cfg", None)
    if enc is None:
        raise TypeError(
            f"Sam(image_encoder=...) needs basam's ImageEncoderViT or TinyViT, got {type(image_encoder).__name__}"
        )
    transformer = mask_decoder.transformer
    cfg = ModelConfig(
        **{
            **enc.to_dict(),
            "name": enc.name,
            "prompt_embed_dim": prompt_encoder.embed_dim,
            "mask_in_chans": prompt_encoder.mask_downscaling[3].out_channels,
            "patch_size": prompt_encoder.patch_size,
            "decoder_depth": len(transformer.layers),
            "decoder_mlp_dim": transformer.mlp_dim,
            "decoder_num_heads": transformer.num_heads,
            "iou_head_hidden_dim": mask_decoder.iou_prediction_head.layers[0].out_features,
            "num_multimask_outputs": mask_decoder.num_multimask_outputs,
            "decoder_norm_eps": transformer.layers[0].norm1.eps if len(transformer.layers) else 1e-5,
        }
    )
    if cfg != MODEL_CONFIGS.get(cfg.name):  # a known encoder with another decoder
        cfg = ModelConfig(**{**cfg.to_dict(), "name": "custom"})
    return cfg


def _known_name(cfg: ModelConfig) -> str | None:
    """The name of the built-in size whose encoder `cfg` has (decoder fields aside), or None."""
    enc = (
        "encoder_embed_dim",
        "encoder_depth",
        "encoder_num_heads",
        "encoder_global_attn_indexes",
        "window_size",
        "patch_size",
        "img_size",
        "encoder",
    )
    mine = {k: getattr(cfg, k) for k in enc}
    for name, known in MODEL_CONFIGS.items():
        if {k: getattr(known, k) for k in enc} == mine:
            return name
    return None
