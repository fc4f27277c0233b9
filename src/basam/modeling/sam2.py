"""The SAM 2 / 2.1 image model: Hiera encoder with its FPN neck, prompt encoder and mask decoder, at
any input size (sides multiples of 32).

Parameter names are the release's, so the image-path part of a released `.pt` loads strictly; the
video parts (memory encoder and attention, object pointers, temporal encodings) are not built.
"""

from __future__ import annotations

import torch
from torch import nn

from basam.config import AttentionConfig, Sam2Config
from basam.inference.transforms import PIXEL_MEAN, PIXEL_STD
from basam.modeling.fpn_neck import Sam2ImageEncoder
from basam.modeling.sam2_decoder import Sam2MaskDecoder
from basam.modeling.sam2_prompt_encoder import Sam2PromptEncoder

# Released parameters the image path never reads (the video model's), by prefix.
VIDEO_ONLY_PREFIXES = (
    "memory_attention.",
    "memory_encoder.",
    "maskmem_tpos_enc",
    "no_mem_pos_enc",
    "obj_ptr_proj.",
    "obj_ptr_tpos_proj.",
    "no_obj_ptr",
    "mask_downsample.",
    "no_obj_embed_spatial",
)


class Sam2(nn.Module):
    """SAM 2 for images. `encode` gives what SAM2ImagePredictor keeps per image (the embedding with
    no_mem_embed added, and the two projected high-resolution maps); `decode` answers prompts."""

    def __init__(self, cfg: Sam2Config, attn_cfg: AttentionConfig | None = None):
        super().__init__()
        self.cfg = cfg
        self.attn_cfg = _check_attention(attn_cfg or AttentionConfig())
        self.precision = "fp32"  # of the image encoder; basam.precision.set_precision changes it
        dim = cfg.prompt_embed_dim
        self.image_encoder = Sam2ImageEncoder(cfg, self.attn_cfg)
        self.sam_prompt_encoder = Sam2PromptEncoder(dim, cfg.mask_in_chans, cfg.patch_size)
        self.sam_mask_decoder = Sam2MaskDecoder(cfg)
        # Added to the image embedding when there is no memory, as the image predictor does.
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def is_hq(self) -> bool:
        """SAM 2 has no HQ-SAM token (the predictor asks every model)."""
        return False

    @property
    def prompt_encoder(self) -> Sam2PromptEncoder:
        return self.sam_prompt_encoder

    @property
    def mask_decoder(self) -> Sam2MaskDecoder:
        return self.sam_mask_decoder

    def set_attention(self, attn_cfg: AttentionConfig) -> None:
        """Switch BA-SAM settings (preset or options) without touching the weights."""
        self.attn_cfg = _check_attention(attn_cfg)
        self.image_encoder.set_attention(attn_cfg)

    def encode(self, images: torch.Tensor, windows: str | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Normalised images (B, 3, H, W), sides multiples of 32 → image embedding (B, C, H/16, W/16)
        with no_mem_embed added, and high-resolution features [(B, C/8, H/4, W/4), (B, C/4, H/8, W/8)]
        already projected by the decoder's conv_s0 / conv_s1."""
        stride4, stride8, stride16 = self.image_encoder(images, windows)
        high_res = self.sam_mask_decoder.project_high_res([stride4, stride8])
        return stride16 + self.no_mem_embed.view(1, -1, 1, 1), high_res

    def decode(
        self,
        image_embeddings: torch.Tensor,
        image_hw: tuple[int, int],
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = False,
        high_res_features: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts → masks for encoded images (see Sam.decode for the prompt shapes; image_hw is the
        model input in pixels). high_res_features: `encode`'s second output, for the same images.
        Returns low-res mask logits (B, M, 4Hg, 4Wg) and predicted IoUs (B, M)."""
        if high_res_features is None:
            raise ValueError("SAM 2 decodes with the image's high-resolution features (Sam2.encode's second output)")
        sparse, dense = self.sam_prompt_encoder(points, boxes, mask_input, image_hw)
        if mask_input is None:
            dense = dense[:1]
        batch = image_embeddings.shape[0]
        if sparse.shape[0] == 1 and batch > 1:
            sparse, dense = sparse.expand(batch, -1, -1), dense.expand(batch, -1, -1, -1)
        masks, iou_pred, _ = self.sam_mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=self.sam_prompt_encoder.get_dense_pe(image_embeddings.shape[-2:]),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            high_res_features=high_res_features,
        )
        return masks, iou_pred

    def forward(self, images, points=None, boxes=None, mask_input=None, multimask_output: bool = False):
        """Normalised images (B, 3, H, W) with one prompt set each → (B, M, H/4, W/4) logits and (B, M) IoUs."""
        embeddings, high_res = self.encode(images)
        return self.decode(embeddings, tuple(images.shape[-2:]), points, boxes, mask_input, multimask_output, high_res)


def _check_attention(attn_cfg: AttentionConfig) -> AttentionConfig:
    if attn_cfg.official:
        raise ValueError(
            "the 'official' attention preset mirrors the released BA-SAM code for SAM's ViT (its "
            "rel-pos gain and tables); Hiera has no rel-pos terms: choose sam, nsf, bm or basam"
        )
    return attn_cfg
