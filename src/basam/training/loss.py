"""What one training step computes, as SAM was trained: BCE + Dice on the mask logits and MSE of
the IoU head (`segmentation_loss`); for a one-point prompt the three multimask outputs, of which
only the best receives the mask loss; interactive refinement, where each further click is drawn
from the error region of the previous mask (`error_points`), fed back with that mask's logits as
`mask_input` (`TrainStep`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def segmentation_loss(
    low_res: torch.Tensor,
    iou_pred: torch.Tensor,
    target: torch.Tensor,
    valid: torch.Tensor,
    pos_weight: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample BCE + Dice of the best of M masks + IoU-head MSE over all M.

    low_res (b, M, H/4, W/4) logits are upsampled (bilinear) to the model input; the losses are
    taken over the unpadded area `valid` (b, H, W) against target (b, H, W) in {0, 1}. Of M > 1
    outputs (SAM's multimask) only the one with the lowest BCE + Dice is trained on the mask, so
    the three may specialise (whole, part, subpart); the IoU head (b, M) learns the true IoU of
    (logits > 0) with the target for every output. → (loss (b,), parts (b, 3): bce, dice, iou_mse).
    """
    logits = F.interpolate(low_res.float(), size=target.shape[-2:], mode="bilinear", align_corners=False)
    v, t = valid.float()[:, None], target[:, None].float()
    area = v.sum((2, 3)).clamp_min(1)
    pw = None if pos_weight is None else torch.tensor(pos_weight, device=logits.device)
    bce = (F.binary_cross_entropy_with_logits(logits, t.expand_as(logits), pos_weight=pw, reduction="none") * v).sum(
        (2, 3)
    ) / area
    prob = torch.sigmoid(logits) * v
    dice = 1 - (2 * (prob * t).sum((2, 3)) + 1) / (prob.sum((2, 3)) + t.sum((2, 3)) + 1)
    with torch.no_grad():
        true_iou = mask_iou(logits > 0, target, valid)
    best = (bce + dice).argmin(1, keepdim=True)  # (b, 1); min's gradient reaches only this output
    bce, dice = bce.gather(1, best)[:, 0], dice.gather(1, best)[:, 0]
    iou_mse = ((iou_pred.float() - true_iou) ** 2).mean(1)
    return bce + dice + iou_mse, torch.stack([bce, dice, iou_mse], dim=1)


def mask_iou(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """IoU of bool masks pred (b, M, H, W) with target (b, H, W) over `valid` → (b, M); empty ∪ → 1."""
    pred, gt = pred & valid[:, None], (target > 0.5)[:, None]
    inter, union = (pred & gt).sum((2, 3)).float(), (pred | gt).sum((2, 3)).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


@torch.no_grad()
def error_points(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, u: torch.Tensor):
    """The next click of interactive refinement: one pixel drawn uniformly from the error region of
    the mask `logits` (b, 1, h, w) > 0 against target (b, H, W) within `valid`; a missed object
    pixel (false negative) becomes a foreground point, a wrongly covered one (false positive) a
    background point. u (b,) in [0, 1) picks the pixel (the k = ⌊u·n⌋-th of the n error pixels in
    raster order), so the click is a pure function of the data. → points (b, 1, 2) xy in model-input
    pixels, labels (b, 1): 1, 0, or -1 (no error left: a padding point the prompt encoder ignores).
    """
    H, W = target.shape[-2:]
    pred = F.interpolate(logits.float(), size=(H, W), mode="bilinear", align_corners=False)[:, 0] > 0
    gt = target > 0.5
    error = ((pred ^ gt) & valid).flatten(1)
    n = error.sum(1)
    k = (u.to(n.device) * n).long().clamp_max((n - 1).clamp_min(0))
    index = (error.cumsum(1) > k[:, None]).int().argmax(1)  # the first pixel where the count passes k
    xy = torch.stack([index % W, index // W], 1).float()
    labels = torch.where(n > 0, gt.flatten(1).gather(1, index[:, None])[:, 0].long(), torch.full_like(n, -1))
    return xy[:, None], labels[:, None]


class TrainStep(nn.Module):
    """The forward pass of a micro-batch as one module, so DDP sees one forward per backward.
    The image encoder runs once; samples are decoded in groups of one prompt kind. multimask: a
    prompt of exactly one point uses the three multimask outputs; refine_iters: clicks added from
    the error region after the first prediction (the loss is the mean over all predictions)."""

    def __init__(self, model: nn.Module, pos_weight: float | None, multimask: bool = False, refine_iters: int = 0):
        super().__init__()
        self.model, self.pos_weight, self.multimask, self.refine_iters = model, pos_weight, multimask, refine_iters

    def forward(self, images, targets, valid, groups, refine_u=None) -> tuple[torch.Tensor, torch.Tensor]:
        """images (b, 3, R, R), refine_u (b, refine_iters) in [0, 1) → (loss (b,), parts (b, 3)) in
        the batch's sample order."""
        # the second output: HQ-SAM's early feature, SAM 2's high-resolution maps (list), else None
        (emb, extra), hw = self.model.encode(images), tuple(images.shape[-2:])
        sam2 = isinstance(extra, list)

        def decode(idx, *args, **kwargs):
            if sam2:
                kwargs["high_res_features"] = [level[idx] for level in extra]
            elif extra is not None:
                kwargs["early_features"] = extra[idx]  # HQ-SAM's decoder reads the early feature
            return self.model.decode(emb[idx], hw, *args, **kwargs)

        loss, parts = torch.zeros(len(images), device=images.device), torch.zeros(len(images), 3, device=images.device)
        for idx, points, labels, boxes in groups.values():
            t, v = targets[idx], valid[idx]
            multi = self.multimask and boxes is None and points is not None and points.shape[1] == 1
            low, iou = decode(idx, None if points is None else (points, labels), boxes, multimask_output=multi)
            sample_loss, p = segmentation_loss(low, iou, t, v, self.pos_weight)
            clicks = self.refine_iters if points is not None or boxes is not None else 0
            for i in range(clicks):
                # SAM feeds back the logits of the output it would show: the one its IoU head ranks first
                previous = low.gather(1, iou.argmax(1)[:, None, None, None].expand(-1, 1, *low.shape[-2:])).detach()
                xy, lab = error_points(previous, t, v, refine_u[idx, i])
                points, labels = (
                    (xy, lab) if points is None else (torch.cat([points, xy], 1), torch.cat([labels, lab], 1))
                )
                low, iou = decode(idx, (points, labels), boxes, previous, multimask_output=False)
                li, pi = segmentation_loss(low, iou, t, v, self.pos_weight)
                sample_loss, p = sample_loss + li, p + pi
            loss, parts = loss.index_put((idx,), sample_loss / (clicks + 1)), parts.index_put((idx,), p / (clicks + 1))
        return loss, parts
