"""segment_anything.utils.onnx.SamOnnxModel: the prompt encoder, mask decoder and mask
post-processing of a SAM model as one traceable module, for the official decoder export
(`torch.onnx.export(SamOnnxModel(sam, return_single_mask=True), ...)`), on basam's
formats.onnx_graphs.DecoderGraph at the model's pretraining side (img_size × img_size input).

Inputs and outputs are the official ones: image_embeddings (1, C, Hg, Wg), point_coords (1, N, 2) xy
in resized-image pixels, point_labels (1, N) (1 fg, 0 bg, 2/3 box corners, -1 padding), mask_input
(1, 1, 4Hg, 4Wg), has_mask_input (1,), orig_im_size (2,) → masks (1, M, H, W) logits at orig_im_size,
iou_predictions (1, M), low_res_masks (1, M, 4Hg, 4Wg); with return_extra_metrics also the stability
scores and areas of the masks before low_res_masks. `basam export-onnx` exports any other input size.
"""

from __future__ import annotations

import torch

from basam.formats.onnx_graphs import DecoderGraph
from basam.modeling.sam import Sam
from basam.utils.amg import calculate_stability_score


class SamOnnxModel(DecoderGraph):
    """segment_anything's SamOnnxModel(model, return_single_mask, use_stability_score=False,
    return_extra_metrics=False); use_stability_score replaces the predicted IoUs by the low-res
    masks' stability scores (offset 1.0)."""

    def __init__(
        self,
        model: Sam,
        return_single_mask: bool,
        use_stability_score: bool = False,
        return_extra_metrics: bool = False,
    ) -> None:
        side = model.image_encoder.img_size
        super().__init__(model, (side, side), return_single_mask)
        self.mask_decoder = model.mask_decoder
        self.img_size = side
        self.use_stability_score = use_stability_score
        self.stability_score_offset = 1.0
        self.return_extra_metrics = return_extra_metrics

    @staticmethod
    def resize_longest_image_size(input_image_size: torch.Tensor, longest_side: int) -> torch.Tensor:
        """(2,) (h, w) → the (2,) int64 size with the long side scaled to longest_side, rounded half up."""
        size = input_image_size.to(torch.float32)
        return torch.floor(size * (longest_side / torch.max(size)) + 0.5).to(torch.int64)

    def _embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        return self.embed_points(point_coords, point_labels)

    def _embed_masks(self, input_mask: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        prompt = self.model.prompt_encoder
        no_mask = prompt.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return has_mask_input * prompt.mask_downscaling(input_mask) + (1 - has_mask_input) * no_mask

    def mask_postprocessing(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        return self.to_original(masks, orig_im_size)

    def select_masks(self, masks: torch.Tensor, iou_preds: torch.Tensor, num_points: int):
        return self.select_mask(masks, iou_preds, num_points)

    @torch.no_grad()
    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size):
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input)
        masks, scores = self.model.mask_decoder.predict_masks(image_embeddings, self.image_pe, sparse, dense)
        if self.use_stability_score:
            scores = calculate_stability_score(masks, self.model.mask_threshold, self.stability_score_offset)
        if self.return_single_mask:
            masks, scores = self.select_masks(masks, scores, point_coords.shape[1])
        upscaled = self.mask_postprocessing(masks, orig_im_size)
        if self.return_extra_metrics:
            stability = calculate_stability_score(upscaled, self.model.mask_threshold, self.stability_score_offset)
            areas = (upscaled > self.model.mask_threshold).sum(-1).sum(-1)
            return upscaled, scores, stability, areas, masks
        return upscaled, scores, masks
