"""The official segment-anything modeling code, imported without its package __init__
(which pulls in torchvision through the predictor)."""

import importlib.util
import pathlib
import sys
import types


def official_modeling():
    if "segment_anything.modeling" not in sys.modules:
        spec = importlib.util.find_spec("segment_anything")
        if spec is None or spec.origin is None:
            raise ImportError("segment-anything is not installed (pip install segment-anything)")
        pkg = types.ModuleType("segment_anything")
        pkg.__path__ = [str(pathlib.Path(spec.origin).parent)]
        sys.modules["segment_anything"] = pkg
    import segment_anything.modeling as modeling

    return modeling


def official_sam(cfg):
    """The official Sam built with the sizes of a basam ModelConfig."""
    from functools import partial

    import torch

    m = official_modeling()
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
    decoder = m.MaskDecoder(
        num_multimask_outputs=cfg.num_multimask_outputs,
        transformer=transformer,
        transformer_dim=cfg.prompt_embed_dim,
        iou_head_depth=3,
        iou_head_hidden_dim=cfg.iou_head_hidden_dim,
    )
    return m.Sam(image_encoder=encoder, prompt_encoder=prompt_encoder, mask_decoder=decoder).eval()


def twins(cfg, seed=0, attn=None):
    """(official Sam, basam Sam) with a ModelConfig's sizes, in eval mode, holding the same random
    weights (`randomize(seed)`), loaded strictly: the pair every comparison with the official code
    starts from. `attn`: basam's AttentionConfig (default: SAM's attention)."""
    import basam

    official = randomize(official_sam(cfg), seed)
    ours = basam.Sam(cfg) if attn is None else basam.Sam(cfg, attn)
    ours.load_state_dict(official.state_dict(), strict=True)
    return official, ours.eval()


def randomize(model, seed=0, std=0.05):
    """Give every parameter (rel-pos tables and pos_embed included, which init to zero) random
    values, so that an equivalence test exercises all of them. LayerNorms keep weight ≈ 1."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * std
            p.copy_(1 + noise if ("norm" in name and name.endswith("weight")) else noise)
    return model


def _torchvision_stand_in():
    """The few torchvision functions the official predictor and generator import, in plain torch
    and PIL (torchvision is unusable here): boxes.batched_nms / box_area and
    transforms.functional.resize / to_pil_image on PIL images."""
    import torch
    from PIL import Image

    def box_area(boxes):
        return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])

    def nms(boxes, scores, iou_threshold):
        order = torch.sort(scores, descending=True, stable=True).indices
        keep, alive = [], torch.ones(len(boxes), dtype=torch.bool)
        for pos, i in enumerate(order.tolist()):
            if not alive[pos]:
                continue
            keep.append(i)
            other = boxes[order[pos + 1 :]]
            lt = torch.maximum(boxes[i, :2], other[:, :2])
            rb = torch.minimum(boxes[i, 2:], other[:, 2:])
            inter = (rb - lt).clamp(min=0).prod(1)
            iou = inter / (box_area(boxes[i][None]) + box_area(other) - inter)
            alive[pos + 1 :] &= ~(iou.double() > iou_threshold)
        return torch.tensor(keep, dtype=torch.int64)

    def batched_nms(boxes, scores, idxs, iou_threshold):
        if len(boxes) == 0:
            return torch.zeros(0, dtype=torch.int64)
        shifted = boxes + (idxs.to(boxes) * (boxes.max() + 1))[:, None]
        return nms(shifted, scores, iou_threshold)

    def resize(image, size):
        h, w = size
        return image.resize((w, h), Image.BILINEAR)

    mods = {
        name: types.ModuleType(name)
        for name in (
            "torchvision",
            "torchvision.ops",
            "torchvision.ops.boxes",
            "torchvision.transforms",
            "torchvision.transforms.functional",
        )
    }
    mods["torchvision.ops.boxes"].batched_nms = batched_nms
    mods["torchvision.ops.boxes"].box_area = box_area
    mods["torchvision.transforms.functional"].resize = resize
    mods["torchvision.transforms.functional"].to_pil_image = Image.fromarray
    return mods


def official_predictor_and_generator():
    """(SamPredictor, SamAutomaticMaskGenerator) of the installed segment_anything, imported with
    the torchvision stand-in above in sys.modules (removed again afterwards)."""
    official_modeling()
    saved = {name: sys.modules.get(name) for name in _torchvision_stand_in()}
    sys.modules.update(_torchvision_stand_in())
    try:
        from segment_anything.automatic_mask_generator import SamAutomaticMaskGenerator
        from segment_anything.predictor import SamPredictor
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return SamPredictor, SamAutomaticMaskGenerator


def official_package():
    """The installed segment_anything's public surface as one namespace, with the names a client
    imports from it (the predictor, generator and transforms imported with the torchvision stand-in)."""
    SamPredictor, SamAutomaticMaskGenerator = official_predictor_and_generator()
    import segment_anything.build_sam as build_sam
    import segment_anything.utils.amg as amg
    import segment_anything.utils.onnx as onnx
    import segment_anything.utils.transforms as transforms

    return types.SimpleNamespace(
        name="segment_anything",
        sam_model_registry=build_sam.sam_model_registry,
        SamPredictor=SamPredictor,
        SamAutomaticMaskGenerator=SamAutomaticMaskGenerator,
        modeling=official_modeling(),
        ResizeLongestSide=transforms.ResizeLongestSide,
        amg=amg,
        SamOnnxModel=onnx.SamOnnxModel,
        build_sam=build_sam,
    )


def basam_package():
    """basam's counterpart of official_package: the same names, from basam's module paths."""
    import basam
    import basam.modeling
    import basam.utils.amg
    import basam.utils.onnx
    import basam.utils.transforms

    return types.SimpleNamespace(
        name="basam",
        sam_model_registry=basam.sam_model_registry,
        SamPredictor=basam.SamPredictor,
        SamAutomaticMaskGenerator=basam.SamAutomaticMaskGenerator,
        modeling=basam.modeling,
        ResizeLongestSide=basam.utils.transforms.ResizeLongestSide,
        amg=basam.utils.amg,
        SamOnnxModel=basam.utils.onnx.SamOnnxModel,
        build_sam=basam.build_sam,
    )
