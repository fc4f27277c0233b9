"""What one training step computes: BCE + Dice on the mask logits and MSE of the IoU head
(`segmentation_loss`), over a micro-batch decoded by prompt kind (`TrainStep`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def segmentation_loss(low_res: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                      pos_weight: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample BCE + Dice + IoU-head MSE.

    low_res (b, 1, H/4, W/4) logits are upsampled (bilinear) to the model input; the losses are
    taken over the unpadded area `valid` (b, H, W) against target (b, H, W) in {0, 1}. The IoU
    head (b, 1) learns the true IoU of (logits > 0) with the target. → (loss (b,), parts (b, 3)).
    """
    logits = F.interpolate(low_res.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    v = valid.float()
    area = v.sum((1, 2)).clamp_min(1)
    pw = None if pos_weight is None else torch.tensor(pos_weight, device=logits.device)
    bce = (F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none") * v).sum((1, 2)) / area
    prob = torch.sigmoid(logits) * v
    dice = 1 - (2 * (prob * target).sum((1, 2)) + 1) / (prob.sum((1, 2)) + target.sum((1, 2)) + 1)
    with torch.no_grad():
        pred, gt = (logits > 0) & valid, target > 0.5
        inter, union = (pred & gt).sum((1, 2)).float(), (pred | gt).sum((1, 2)).float()
        true_iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    iou_mse = (iou_pred[:, 0].float() - true_iou) ** 2
    return bce + dice + iou_mse, torch.stack([bce, dice, iou_mse], dim=1)


class TrainStep(nn.Module):
    """The forward pass of a micro-batch as one module, so DDP sees one forward per backward.
    The image encoder runs once; samples are decoded in groups of one prompt kind."""

    def __init__(self, model: nn.Module, pos_weight: float | None):
        super().__init__()
        self.model, self.pos_weight = model, pos_weight

    def forward(self, images, targets, valid, groups) -> tuple[torch.Tensor, torch.Tensor]:
        """images (b, 3, R, R) → (loss (b,), parts (b, 3)) in the batch's sample order."""
        emb = self.model.image_encoder(images)
        loss, parts = torch.zeros(len(images), device=images.device), torch.zeros(len(images), 3, device=images.device)
        for idx, points, labels, boxes in groups.values():
            low, iou = self.model.decode(emb[idx], tuple(images.shape[-2:]), None if points is None else (points, labels),
                                         boxes, multimask_output=False)
            l, p = segmentation_loss(low, iou, targets[idx], valid[idx], self.pos_weight)
            loss, parts = loss.index_put((idx,), l), parts.index_put((idx,), p)
        return loss, parts
