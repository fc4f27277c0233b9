"""The official HQ-SAM code (PyPI segment-anything-hq, imported as segment_anything_hq), imported
with plain-torch stand-ins for what it takes from torchvision (see official.py) and, at package
import, from timm (its TinyViT file: DropPath, to_2tuple, trunc_normal_, register_model)."""

import sys
import types

from official import _torchvision_stand_in


def _timm_stand_in():
    import torch
    from torch import nn

    class DropPath(nn.Module):
        """Stochastic depth; the models here are built with drop_path_rate 0 and run in eval."""

        def __init__(self, drop_prob=0.0):
            super().__init__()
            self.drop_prob = drop_prob

        def forward(self, x):
            if not self.training or not self.drop_prob:
                return x
            keep = torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device) >= self.drop_prob
            return x * keep / (1 - self.drop_prob)

    def to_2tuple(x):
        return tuple(x) if isinstance(x, (tuple, list)) else (x, x)

    mods = {
        name: types.ModuleType(name) for name in ("timm", "timm.models", "timm.models.layers", "timm.models.registry")
    }
    mods["timm.models.layers"].DropPath = DropPath
    mods["timm.models.layers"].to_2tuple = to_2tuple
    mods["timm.models.layers"].trunc_normal_ = nn.init.trunc_normal_
    mods["timm.models.registry"].register_model = lambda fn: fn
    return mods


def official_hq():
    """The segment_anything_hq package, imported with the stand-ins in sys.modules (removed again
    afterwards)."""
    if "segment_anything_hq" in sys.modules:
        return sys.modules["segment_anything_hq"]
    stand_ins = {**_torchvision_stand_in(), **_timm_stand_in()}
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update(stand_ins)
    try:
        import segment_anything_hq
        import segment_anything_hq.automatic_mask_generator  # noqa: F401
        import segment_anything_hq.predictor  # noqa: F401
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return segment_anything_hq


def official_hq_sam(cfg):
    """The official HQ-SAM (ViT encoder) built with the sizes of a basam ModelConfig."""
    from functools import partial

    import torch

    m = official_hq().modeling
    grid = cfg.img_size // cfg.patch_size
    encoder = m.ImageEncoderViT(
        depth=cfg.encoder_depth,
        embed_dim=cfg.encoder_embed_dim,
        img_size=cfg.img_size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=cfg.encoder_num_heads,
        patch_size=cfg.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=cfg.encoder_global_attn_indexes,
        window_size=cfg.window_size,
        out_chans=cfg.prompt_embed_dim,
    )
    prompt_encoder = m.PromptEncoder(
        embed_dim=cfg.prompt_embed_dim,
        image_embedding_size=(grid, grid),
        input_image_size=(cfg.img_size, cfg.img_size),
        mask_in_chans=cfg.mask_in_chans,
    )
    transformer = m.TwoWayTransformer(
        depth=cfg.decoder_depth,
        embedding_dim=cfg.prompt_embed_dim,
        mlp_dim=cfg.decoder_mlp_dim,
        num_heads=cfg.decoder_num_heads,
    )
    decoder = m.MaskDecoderHQ(
        num_multimask_outputs=cfg.num_multimask_outputs,
        transformer=transformer,
        transformer_dim=cfg.prompt_embed_dim,
        iou_head_depth=3,
        iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        vit_dim=cfg.encoder_embed_dim,
    )
    return m.Sam(image_encoder=encoder, prompt_encoder=prompt_encoder, mask_decoder=decoder).eval()
