"""SAM 2's prompt encoder: SAM's, with box corners given as points labelled 2 and 3.

SAM 2's image predictor passes a box as two points (labels 2, 3) in front of the clicks and always
appends the padding point; the corner embeddings are then added by label. Parameter names are the
release's (`sam_prompt_encoder.*`); the size of the input is given per call, as for SAM.
"""

from __future__ import annotations

import torch

from basam.modeling.prompt_encoder import PromptEncoder

BOX_CORNER_LABELS = (2, 3)  # top-left, bottom-right


class Sam2PromptEncoder(PromptEncoder):
    """forward(points, boxes, masks, image_hw) as PromptEncoder; boxes (B, 4) xyxy become two
    labelled points ahead of the clicks, so the sparse output is (B, 2 + N + 1, C) with a box."""

    def _embed_points(
        self, points: torch.Tensor, labels: torch.Tensor, pad: bool, image_hw: tuple[int, int]
    ) -> torch.Tensor:
        """(B, N, 2) xy pixels, (B, N) labels in {-1, 0, 1, 2, 3} -> (B, N or N+1, C)."""
        points = points + 0.5  # pixel index -> pixel centre
        if pad:
            points = torch.cat([points, points.new_zeros((points.shape[0], 1, 2))], dim=1)
            labels = torch.cat([labels, -labels.new_ones((labels.shape[0], 1))], dim=1)
        pe = self.pe_layer.forward_with_coords(points, image_hw)
        labels = labels[..., None]
        out = torch.where(labels == -1, self.not_a_point_embed.weight, pe)
        for label, embedding in enumerate(self.point_embeddings):
            out = out + torch.where(labels == label, embedding.weight, 0.0)
        return out

    def forward(self, points, boxes, masks, image_hw):
        """See PromptEncoder.forward; here a box is embedded as SAM 2 embeds it (module docstring)."""
        if boxes is not None:
            corners = boxes.reshape(-1, 2, 2)
            corner_labels = torch.tensor([BOX_CORNER_LABELS], device=corners.device).expand(corners.shape[0], -1)
            if points is None:
                points = (corners, corner_labels)
            else:
                coords, labels = points
                if coords.shape[0] != corners.shape[0]:
                    raise ValueError(f"prompt batch sizes differ: points {coords.shape[0]}, boxes {corners.shape[0]}")
                points = (torch.cat([corners, coords], dim=1), torch.cat([corner_labels, labels.long()], dim=1))
        return super().forward(points, None, masks, image_hw)
