"""SAM 2's mask decoder, for any token grid Hg×Wg (square or not).

SAM's decoder plus what SAM 2 added: an object-score token ahead of the IoU token, the stride-4 and
stride-8 features of the image encoder added into the mask upscaling (`conv_s0`, `conv_s1` project
them, once per image), a sigmoid on the IoU head, and the single-mask fallback to the best multimask
output when the single mask is unstable. Parameter names are the release's (`sam_mask_decoder.*`).
"""

from __future__ import annotations

import torch
from torch import nn

from basam.config import Sam2Config
from basam.modeling.common import LayerNorm2d, LayersMLP
from basam.modeling.mask_decoder import MLP
from basam.modeling.transformer import TwoWayTransformer


class Sam2MaskDecoder(nn.Module):
    """Output tokens: object score, IoU, then num_multimask_outputs + 1 mask tokens (token 0 the
    single-mask answer)."""

    def __init__(self, cfg: Sam2Config):
        super().__init__()
        dim = self.transformer_dim = cfg.prompt_embed_dim
        self.transformer = TwoWayTransformer(
            cfg.decoder_depth,
            dim,
            cfg.decoder_num_heads,
            cfg.decoder_mlp_dim,
            norm_eps=cfg.decoder_norm_eps,
            mlp_block=LayersMLP,
        )
        self.num_multimask_outputs = cfg.num_multimask_outputs
        self.num_mask_tokens = cfg.num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.obj_score_token = nn.Embedding(1, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(dim, cfg.iou_head_hidden_dim, self.num_mask_tokens, 3, sigmoid_output=True)
        self.pred_obj_score_head = MLP(dim, dim, 1, 3)
        self.dynamic_multimask_via_stability = cfg.dynamic_multimask_via_stability
        self.stability_delta = cfg.dynamic_multimask_stability_delta
        self.stability_thresh = cfg.dynamic_multimask_stability_thresh

    def project_high_res(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """The encoder's stride-4 and stride-8 maps (B, C, 4Hg, 4Wg), (B, C, 2Hg, 2Wg) → (B, C/8, …),
        (B, C/4, …): done once per image, as the release does in forward_image."""
        return [self.conv_s0(features[0]), self.conv_s1(features[1])]

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        high_res_features: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """image_embeddings (1 or B, C, Hg, Wg) with no_mem_embed added; image_pe (1, C, Hg, Wg);
        sparse (B, n, C); dense (1 or B, C, Hg, Wg); high_res_features the projected maps
        (1 or B, C/8, 4Hg, 4Wg) and (1 or B, C/4, 2Hg, 2Wg). Returns mask logits (B, M, 4Hg, 4Wg),
        IoU predictions (B, M) and object-score logits (B, 1); M = num_multimask_outputs with
        multimask_output, else 1 (the stable single mask, or the best multimask one)."""
        masks, iou_pred, obj_logits = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, high_res_features
        )
        if multimask_output:
            return masks[:, 1:], iou_pred[:, 1:], obj_logits
        if self.dynamic_multimask_via_stability and not self.training:
            masks, iou_pred = self.stable_single_mask(masks, iou_pred)
            return masks, iou_pred, obj_logits
        return masks[:, :1], iou_pred[:, :1], obj_logits

    def predict_masks(
        self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, high_res_features
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All mask tokens' logits (B, T, 4Hg, 4Wg), IoUs (B, T) and object-score logits (B, 1)."""
        bs = sparse_prompt_embeddings.shape[0]
        if image_embeddings.shape[0] not in (1, bs):
            raise ValueError(f"{image_embeddings.shape[0]} image embeddings for {bs} prompt sets: expected 1 or {bs}")
        output_tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight])
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(bs, -1, -1), sparse_prompt_embeddings], dim=1)
        hs, keys = self.transformer(image_embeddings + dense_prompt_embeddings, image_pe, tokens)
        mask_tokens_out = hs[:, 2 : 2 + self.num_mask_tokens]

        b, c = keys.shape[0], keys.shape[2]
        src = keys.transpose(1, 2).reshape(b, c, *image_embeddings.shape[-2:])
        deconv1, norm1, act1, deconv2, act2 = self.output_upscaling
        feat_s0, feat_s1 = high_res_features
        upscaled = act1(norm1(deconv1(src) + feat_s1))
        upscaled = act2(deconv2(upscaled) + feat_s0)  # (B, C/8, 4Hg, 4Wg)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )  # (B, T, C/8)
        _, c8, uh, uw = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(upscaled.shape[0], c8, uh * uw)).reshape(b, -1, uh, uw)
        return masks, self.iou_prediction_head(hs[:, 1]), self.pred_obj_score_head(hs[:, 0])

    def stability_scores(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """IoU of a mask thresholded at +delta and at −delta: (B, M, h, w) → (B, M); 1 where both are empty."""
        flat = mask_logits.flatten(-2)
        inner = (flat > self.stability_delta).sum(-1).float()
        outer = (flat > -self.stability_delta).sum(-1).float()
        return torch.where(outer > 0, inner / outer, 1.0)

    def stable_single_mask(self, masks: torch.Tensor, iou_pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, h, w), (B, T) → the single mask (B, 1, h, w) and its IoU (B, 1), replaced by the best
        multimask output (highest predicted IoU) where its stability is under the threshold."""
        best = iou_pred[:, 1:].argmax(-1)
        rows = torch.arange(masks.shape[0], device=masks.device)
        best_masks, best_iou = masks[:, 1:][rows, best][:, None], iou_pred[:, 1:][rows, best][:, None]
        stable = self.stability_scores(masks[:, :1]) >= self.stability_thresh  # (B, 1)
        return (
            torch.where(stable[..., None, None], masks[:, :1], best_masks),
            torch.where(stable, iou_pred[:, :1], best_iou),
        )
