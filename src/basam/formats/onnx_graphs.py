"""The prompt decoders as exportable modules: SAM's (the official decoder export's inputs and outputs)
and HQ-SAM's; SAM 2's builds on DecoderGraph in onnx_sam2.py. formats/onnx.py exports them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from basam.modeling.sam import Sam


class DecoderGraph(nn.Module):
    """Prompt encoder + mask decoder + mask post-processing of one grid, with the official decoder
    export's inputs and outputs (see the module docstring)."""

    def __init__(self, model: Sam, input_hw: tuple[int, int], return_single_mask: bool):
        super().__init__()
        self.model = model
        self.input_hw = input_hw
        self.return_single_mask = return_single_mask
        grid = model.prompt_encoder.grid_size(input_hw)
        self.register_buffer("image_pe", model.prompt_encoder.get_dense_pe(grid), persistent=False)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """(1, N, 2) xy, (1, N) float labels → (1, N, C), as PromptEncoder does for points and box
        corners, written with masks instead of control flow."""
        pe_layer = self.model.prompt_encoder.pe_layer
        h, w = self.input_hw
        xy = (coords + 0.5) / torch.tensor([w, h], dtype=coords.dtype)
        embedding = pe_layer._pe_encoding(xy)
        labels = labels.unsqueeze(-1)
        embedding = embedding * (labels != -1) + self.model.prompt_encoder.not_a_point_embed.weight * (labels == -1)
        for i, kind in enumerate(self.model.prompt_encoder.point_embeddings):
            embedding = embedding + kind.weight * (labels == i)
        return embedding

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input, orig_im_size):
        prompt = self.model.prompt_encoder
        sparse = self.embed_points(point_coords, point_labels)
        no_mask = prompt.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = has_mask_input * prompt.mask_downscaling(mask_input) + (1 - has_mask_input) * no_mask
        masks, scores = self.model.mask_decoder.predict_masks(image_embeddings, self.image_pe, sparse, dense)
        if self.return_single_mask:
            masks, scores = self.select_mask(masks, scores, point_coords.shape[1])
        return self.to_original(masks, orig_im_size), scores, masks

    @staticmethod
    def select_mask(masks: torch.Tensor, scores: torch.Tensor, num_points) -> tuple[torch.Tensor, torch.Tensor]:
        """The official rule without branches: with more than one real point (num_points counts the
        padding point) the single-mask token, else the best-scored of the multimask tokens."""
        prefer_single = torch.zeros(scores.shape[1], dtype=scores.dtype)
        prefer_single[0] = 1000.0
        best = torch.argmax(scores + (num_points - 2.5) * prefer_single, dim=1)
        rows = torch.arange(masks.shape[0])
        return masks[rows, best].unsqueeze(1), scores[rows, best].unsqueeze(1)

    def to_original(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """Low-res logits → the model input size → cut to the resized image → the original size."""
        h, w = self.input_hw
        masks = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False)
        orig = orig_im_size.to(torch.float32)
        scale = torch.min(torch.tensor([h, w], dtype=torch.float32) / orig)
        resized = torch.floor(orig * scale + 0.5).to(torch.int64)
        masks = masks[..., : resized[0], : resized[1]]
        size = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)


class HQDecoderGraph(DecoderGraph):
    """DecoderGraph of an HQ-SAM model: takes the early features after the image embeddings and
    returns the release's one mask (hq_token_only and multimask fixed at export)."""

    def __init__(self, model: Sam, input_hw: tuple[int, int], hq_token_only: bool, multimask: bool):
        super().__init__(model, input_hw, return_single_mask=True)
        self.hq_token_only, self.multimask = hq_token_only, multimask

    def forward(
        self, image_embeddings, early_features, point_coords, point_labels, mask_input, has_mask_input, orig_im_size
    ):
        prompt, decoder = self.model.prompt_encoder, self.model.mask_decoder
        sparse = self.embed_points(point_coords, point_labels)
        no_mask = prompt.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = has_mask_input * prompt.mask_downscaling(mask_input) + (1 - has_mask_input) * no_mask
        iou_pred, mask_tokens, keys = decoder.run_transformer(image_embeddings, self.image_pe, sparse, dense)
        hq = decoder.hq_features(image_embeddings, early_features)
        token, scores = decoder.select_sam_mask(iou_pred, self.multimask)
        sam_token = None if self.hq_token_only else token
        masks = decoder.hq_masks(mask_tokens, keys, image_embeddings.shape[-2:], hq, sam_token)
        return self.to_original(masks, orig_im_size), scores, masks
