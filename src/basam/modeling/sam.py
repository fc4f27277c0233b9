"""The assembled model: image encoder, prompt encoder and mask decoder, at any input size."""

from __future__ import annotations

import torch
from torch import nn

from basam.config import AttentionConfig, ModelConfig
from basam.inference.transforms import PIXEL_MEAN, PIXEL_STD
from basam.modeling.image_encoder import ImageEncoderViT
from basam.modeling.mask_decoder import MaskDecoder
from basam.modeling.mask_decoder_hq import MaskDecoderHQ
from basam.modeling.prompt_encoder import PromptEncoder
from basam.modeling.tiny_vit import TinyViT
from basam.modeling.transformer import TwoWayTransformer


class Sam(nn.Module):
    """SAM with parameter names of the official release. pixel_mean/pixel_std are buffers kept out
    of the state dict, as upstream."""

    def __init__(self, cfg: ModelConfig, attn_cfg: AttentionConfig | None = None):
        super().__init__()
        self.cfg = cfg
        self.attn_cfg = attn_cfg or AttentionConfig()
        self.precision = "fp32"  # of the image encoder; basam.runtime.precision.set_precision changes it
        dim = cfg.prompt_embed_dim
        self.image_encoder = (TinyViT if cfg.encoder == "tiny_vit" else ImageEncoderViT)(cfg, self.attn_cfg)
        self.prompt_encoder = PromptEncoder(dim, cfg.mask_in_chans, cfg.patch_size)
        transformer = TwoWayTransformer(cfg.decoder_depth, dim, cfg.decoder_num_heads, cfg.decoder_mlp_dim,
                                        norm_eps=cfg.decoder_norm_eps)
        heads = {"num_multimask_outputs": cfg.num_multimask_outputs, "iou_head_hidden_dim": cfg.iou_head_hidden_dim}
        if cfg.hq:
            self.mask_decoder = MaskDecoderHQ(dim, transformer, self.image_encoder.early_dim, **heads)
        else:
            self.mask_decoder = MaskDecoder(dim, transformer, **heads)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def set_attention(self, attn_cfg: AttentionConfig) -> None:
        """Switch BA-SAM settings (preset or options) without touching SAM's weights. Learnable
        slopes or gains of the previous setting are discarded."""
        self.attn_cfg = attn_cfg
        self.image_encoder.set_attention(attn_cfg)

    @property
    def is_hq(self) -> bool:
        """An HQ-SAM model: its encoder also returns the early feature, its decoder reads it."""
        return self.cfg.hq

    def encode(self, images: torch.Tensor, windows: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised, padded images (B, 3, H, W) → embeddings (B, C, Hg, Wg) and, for HQ-SAM, the
        early features (B, C_vit, Hg, Wg) (None otherwise). windows: as image_encoder's."""
        out = self.image_encoder(images, windows=windows)
        return out if self.is_hq else (out, None)

    def decode(
        self,
        image_embeddings: torch.Tensor,
        image_hw: tuple[int, int],
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = False,
        early_features: torch.Tensor | None = None,
        hq_token_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts → masks for already-encoded images.

        image_embeddings: (1 or B, C, Hg, Wg); image_hw: the padded model input (H, W) in pixels,
        the frame of point (B, N, 2) xy / labels (B, N) and box (B, 4) xyxy coordinates;
        mask_input: (B, 1, 4Hg, 4Wg) logits. No prompt at all is the prompt-free call.
        HQ-SAM: early_features (1 or B, C_vit, Hg, Wg) from `encode` (required), hq_token_only as
        the release's (the HQ mask alone, else SAM's mask + the HQ mask); M is then always 1.
        Returns low-res mask logits (B, M, 4Hg, 4Wg) and predicted IoUs (B, M).
        """
        sparse, dense = self.prompt_encoder(points, boxes, mask_input, image_hw)
        if mask_input is None:  # the same no-mask embedding for every prompt set: added once
            dense = dense[:1]
        batch = image_embeddings.shape[0]
        if sparse.shape[0] == 1 and batch > 1:  # prompt-free: the same empty prompt for each image
            sparse, dense = sparse.expand(batch, -1, -1), dense.expand(batch, -1, -1, -1)
        hq = {"hq_token_only": hq_token_only, "early_features": early_features} if self.is_hq else {}
        return self.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(image_embeddings.shape[-2:]),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            **hq,
        )

    def forward(
        self,
        images: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = False,
        hq_token_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised, padded images (B, 3, H, W) with one prompt set each → (B, M, H/4, W/4) logits
        and (B, M) IoU predictions. Used by training; the predictor encodes once and decodes often."""
        embeddings, early = self.encode(images)
        return self.decode(embeddings, tuple(images.shape[-2:]), points, boxes, mask_input, multimask_output,
                           early, hq_token_only)
