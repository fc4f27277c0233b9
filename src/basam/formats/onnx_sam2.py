"""ONNX graphs of a SAM 2 image model: the encoder with its three outputs and the prompt decoder.

encoder.onnx   image (1, 3, H, W) float32, normalised and zero-padded (sides multiples of 32)
               → image_embeddings (1, C, H/16, W/16) with no_mem_embed added,
               high_res_feats_0 (1, C/8, H/4, W/4), high_res_feats_1 (1, C/4, H/8, W/8), already
               projected by the decoder's conv_s0 / conv_s1 (what Sam2.encode returns).
decoder.onnx   image_embeddings, high_res_feats_0, high_res_feats_1, then SAM's decoder contract:
               point_coords (1, N, 2) xy in model-input pixels, point_labels (1, N) (1 fg, 0 bg,
               2/3 box corners, -1 padding), mask_input (1, 1, 4Hg, 4Wg), has_mask_input (1,),
               orig_im_size (2,) = (h, w) → masks (1, M, h, w) logits at the original size,
               iou_predictions (1, M), low_res_masks (1, M, 4Hg, 4Wg) clamped to ±32 as SAM 2's
               image predictor does. M = 4: token 0 (single mask) then the three multimask outputs;
               with return_single_mask M = 1, the single mask or, where it is unstable, the best
               multimask output (the decoder's own rule).
"""

from __future__ import annotations

import torch
from torch import nn

from basam.formats.onnx_graphs import DecoderGraph
from basam.modeling.sam2 import Sam2

LOW_RES_CLAMP = 32.0  # SAM2ImagePredictor clamps the low-res logits it returns to ±32
ENCODER_OUTPUTS = ["image_embeddings", "high_res_feats_0", "high_res_feats_1"]
DECODER_INPUTS = [
    "image_embeddings",
    "high_res_feats_0",
    "high_res_feats_1",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
]


class Sam2EncoderGraph(nn.Module):
    """Sam2.encode as one graph with three outputs (see the module docstring)."""

    def __init__(self, model: Sam2):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        embeddings, (feats_0, feats_1) = self.model.encode(image)
        return embeddings, feats_0, feats_1


class Sam2DecoderGraph(DecoderGraph):
    """SAM 2's prompt encoder + mask decoder + post-processing of one grid. Points and box corners
    are embedded exactly as for SAM (the SAM 2 prompt encoder differs only in how it orders a box)."""

    def forward(
        self,
        image_embeddings,
        high_res_feats_0,
        high_res_feats_1,
        point_coords,
        point_labels,
        mask_input,
        has_mask_input,
        orig_im_size,
    ):
        prompt, decoder = self.model.prompt_encoder, self.model.mask_decoder
        sparse = self.embed_points(point_coords, point_labels)
        no_mask = prompt.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = has_mask_input * prompt.mask_downscaling(mask_input) + (1 - has_mask_input) * no_mask
        masks, scores, _ = decoder.predict_masks(
            image_embeddings, self.image_pe, sparse, dense, [high_res_feats_0, high_res_feats_1]
        )
        if self.return_single_mask:
            masks, scores = decoder.stable_single_mask(masks, scores)
        return self.to_original(masks, orig_im_size), scores, masks.clamp(-LOW_RES_CLAMP, LOW_RES_CLAMP)


def sam2_decoder_example_inputs(model: Sam2, input_hw: tuple[int, int], num_points: int = 2) -> dict:
    """Inputs of decoder.onnx with the shapes of this grid (used to trace the export)."""
    hg, wg = model.prompt_encoder.grid_size(input_hw)
    c = model.cfg.prompt_embed_dim
    return {
        "image_embeddings": torch.randn(1, c, hg, wg),
        "high_res_feats_0": torch.randn(1, c // 8, 4 * hg, 4 * wg),
        "high_res_feats_1": torch.randn(1, c // 4, 2 * hg, 2 * wg),
        "point_coords": torch.randint(0, min(input_hw), (1, num_points, 2)).float(),
        "point_labels": torch.randint(-1, 4, (1, num_points)).float(),
        "mask_input": torch.randn(1, 1, 4 * hg, 4 * wg),
        "has_mask_input": torch.tensor([1.0]),
        "orig_im_size": torch.tensor([input_hw[0] * 0.75, input_hw[1] * 1.5]).round(),
    }
