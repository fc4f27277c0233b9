"""HQ-SAM's mask decoder (Ke et al., "Segment Anything in High Quality", NeurIPS 2023), for any
token grid Hg×Wg.

SAM's decoder (`MaskDecoder`, reused as is) plus one more learned output token, the HQ token
(`hf_token`, with its own hypernetwork `hf_mlp`), whose mask is read from a feature that fuses the
encoder's early feature with its final embedding:

    hq_features = embedding_encoder(image embedding) + compress_vit_feat(early feature)    (C/8, 4Hg, 4Wg)
    HQ mask     = hf_mlp(HQ token) · (embedding_maskfeature(SAM's upscaled embedding) + hq_features)

The early feature is the output of the encoder's first global-attention block (ViT), or of
TinyViT's first attention stage, at the grid of this image: (B, C_vit, Hg, Wg). Both 2×2 stride-2
transposed convolutions follow the grid, so nothing here is tied to 1024 px.

The released decoder always returns one mask per prompt: SAM's single-mask output (or, with
multimask_output, SAM's multimask output with the highest predicted IoU, and that IoU), plus the HQ
mask; with hq_token_only the HQ mask alone. Parameter names are the release's.
"""

from __future__ import annotations

import torch
from torch import nn

from basam.modeling.common import LayerNorm2d
from basam.modeling.mask_decoder import MLP, MaskDecoder


class MaskDecoderHQ(MaskDecoder):
    """MaskDecoder with HQ-SAM's output token. `vit_dim`: channels of the encoder's early feature."""

    def __init__(
        self,
        transformer_dim: int,
        transformer: nn.Module,
        vit_dim: int,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__(
            transformer_dim, transformer, num_multimask_outputs, iou_head_depth, iou_head_hidden_dim, activation
        )
        c = transformer_dim
        self.hf_token = nn.Embedding(1, c)
        self.hf_mlp = MLP(c, c, c // 8, 3)
        # Early feature (C_vit, Hg, Wg) and final embedding (C, Hg, Wg) → (C/8, 4Hg, 4Wg) each.
        self.compress_vit_feat = nn.Sequential(
            nn.ConvTranspose2d(vit_dim, c, kernel_size=2, stride=2),
            LayerNorm2d(c),
            nn.GELU(),
            nn.ConvTranspose2d(c, c // 8, kernel_size=2, stride=2),
        )
        self.embedding_encoder = nn.Sequential(
            nn.ConvTranspose2d(c, c // 4, kernel_size=2, stride=2),
            LayerNorm2d(c // 4),
            nn.GELU(),
            nn.ConvTranspose2d(c // 4, c // 8, kernel_size=2, stride=2),
        )
        # Refines SAM's upscaled embedding (C/8, 4Hg, 4Wg) before the HQ features are added.
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(c // 8, c // 4, 3, 1, 1),
            LayerNorm2d(c // 4),
            nn.GELU(),
            nn.Conv2d(c // 4, c // 8, 3, 1, 1),
        )

    @property
    def hq_token_index(self) -> int:
        """Index of the HQ token among the mask tokens that run_transformer returns."""
        return self.num_mask_tokens

    def output_tokens(self) -> torch.Tensor:
        """(1 + T + 1, C): the IoU token, SAM's mask tokens, the HQ token."""
        return torch.cat([super().output_tokens(), self.hf_token.weight], dim=0)

    def hq_features(self, image_embeddings: torch.Tensor, early_features: torch.Tensor) -> torch.Tensor:
        """image_embeddings (B, C, Hg, Wg) and early_features (B, C_vit, Hg, Wg) → (B, C/8, 4Hg, 4Wg);
        one per image, shared by all its prompts."""
        if (
            early_features.shape[0] != image_embeddings.shape[0]
            or early_features.shape[-2:] != image_embeddings.shape[-2:]
        ):
            raise ValueError(
                f"early feature {tuple(early_features.shape)} does not match the image embedding "
                f"{tuple(image_embeddings.shape)}"
            )
        dtype = self.compress_vit_feat[0].weight.dtype
        return self.embedding_encoder(image_embeddings) + self.compress_vit_feat(early_features.to(dtype))

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        hq_token_only: bool = False,
        early_features: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Shapes as MaskDecoder.forward, plus early_features (1 or B, C_vit, Hg, Wg), the image's
        early encoder feature. Returns masks (B, 1, 4Hg, 4Wg) logits and iou_pred (B, 1)."""
        if early_features is None:
            raise ValueError("the HQ mask decoder needs the image encoder's early feature (early_features)")
        iou_pred, mask_tokens_out, keys = self.run_transformer(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        hq = self.hq_features(image_embeddings, early_features)
        token, score = self.select_sam_mask(iou_pred, multimask_output)
        masks = self.hq_masks(mask_tokens_out, keys, image_embeddings.shape[-2:], hq, None if hq_token_only else token)
        return masks, score

    def select_sam_mask(self, iou_pred: torch.Tensor, multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """iou_pred (B, T) → which of SAM's mask tokens the release pairs with the HQ mask (B,) and
        its predicted IoU (B, 1): token 0, or the multimask token ranked first by its IoU."""
        if not multimask_output:
            return torch.zeros(len(iou_pred), dtype=torch.long, device=iou_pred.device), iou_pred[:, :1]
        score, best = iou_pred[:, 1 : self.num_mask_tokens].max(dim=1)
        return best + 1, score[:, None]

    def hq_masks(
        self,
        mask_tokens_out: torch.Tensor,
        keys: torch.Tensor,
        grid_hw: tuple[int, int],
        hq_features: torch.Tensor,
        sam_token: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask tokens (B, T + 1, C) and image tokens (B, Hg·Wg, C) from run_transformer, hq_features
        (1 or B, C/8, 4Hg, 4Wg) → (B, 1, 4Hg, 4Wg): the HQ mask logits, plus those of SAM's mask
        token `sam_token` (B,) of each prompt unless it is None (hq_token_only)."""
        b, _, c = keys.shape
        upscaled = self.output_upscaling(keys.transpose(1, 2).reshape(b, c, *grid_hw))  # B, C/8, 4Hg, 4Wg
        upscaled_hq = self.embedding_maskfeature(upscaled) + hq_features
        _, c8, uh, uw = upscaled.shape
        hyper_hq = self.hf_mlp(mask_tokens_out[:, self.hq_token_index])  # B, C/8
        masks = hyper_hq[:, None] @ upscaled_hq.reshape(b, c8, uh * uw)
        if sam_token is not None:
            # every hypernetwork on its token (B×C, cheap), then each prompt's chosen one
            hyper = torch.stack([mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 1)
            chosen = hyper[torch.arange(b, device=hyper.device), sam_token]  # B, C/8
            masks = masks + chosen[:, None] @ upscaled.reshape(b, c8, uh * uw)
        return masks.reshape(b, 1, uh, uw)
