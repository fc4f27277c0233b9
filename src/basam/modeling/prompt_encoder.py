"""SAM's prompt encoder, without a fixed image size.

The official encoder stores the input size (1024, 1024) and the grid (64, 64) at construction.
Here both are given per call: `image_hw` is the padded model input in pixels and the token grid is
image_hw // patch_size, so the same weights serve any H×W. At a square 1024 input the result is
the official one. Parameter and buffer names match the official release.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from basam.modeling.common import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of 2-D positions normalised to [0, 1]².

    Encodes (..., 2) xy coordinates into (..., 2 * num_pos_feats) features.
    """

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        # A buffer, not a parameter: the frequencies are fixed at init and saved with the model.
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 2) xy in [0, 1] -> (..., 2F) as [sin, cos]."""
        coords = 2 * coords - 1  # the frequencies were drawn for a [-1, 1] square
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of the centres of an h×w grid of cells -> (2F, h, w)."""
        h, w = size
        matrix = self.positional_encoding_gaussian_matrix
        ys = (torch.arange(h, device=matrix.device, dtype=matrix.dtype) + 0.5) / h
        xs = (torch.arange(w, device=matrix.device, dtype=matrix.dtype) + 0.5) / w
        grid = torch.stack([xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)], dim=-1)  # (h, w, 2) as xy
        return self._pe_encoding(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords_input: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """(B, N, 2) xy in pixels of an image of size (H, W) -> (B, N, 2F)."""
        h, w = image_size
        coords = coords_input.to(self.positional_encoding_gaussian_matrix.dtype)
        # x is normalised by the width and y by the height; at a square input this is the
        # official behaviour, on a non-square one it keeps [0, 1] meaning "inside the input".
        coords = torch.stack([coords[..., 0] / w, coords[..., 1] / h], dim=-1)
        return self._pe_encoding(coords)


class PromptEncoder(nn.Module):
    """Turns points, boxes and a low-res mask into the decoder's sparse and dense prompts.

    Sparse: (B, n, C) tokens, one per point and two per box. Dense: (B, C, Hg, Wg), from the mask
    or a learned "no mask" vector. C = embed_dim.
    """

    def __init__(
        self,
        embed_dim: int,
        mask_in_chans: int = 16,
        patch_size: int = 16,
        activation: type[nn.Module] = nn.GELU,
        *,
        image_embedding_size: tuple[int, int] | None = None,
        input_image_size: tuple[int, int] | None = None,
    ) -> None:
        """input_image_size, image_embedding_size: the (H, W) model input and token grid of a call
        that gives no image_hw (segment_anything's arguments, by keyword; the patch size is their
        ratio). Default: a 1024 px input (64×64 grid with 16 px patches), SAM's."""
        super().__init__()
        if not isinstance(mask_in_chans, int):
            raise TypeError(
                "PromptEncoder: give segment_anything's arguments by keyword (embed_dim=..., "
                "image_embedding_size=..., input_image_size=..., mask_in_chans=...)"
            )
        if input_image_size is not None and image_embedding_size is not None:
            patch_size = int(input_image_size[0]) // int(image_embedding_size[0])
        self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.input_image_size = tuple(int(s) for s in (input_image_size or (64 * patch_size,) * 2))
        self.image_embedding_size = self.grid_size(self.input_image_size)
        self.mask_input_size = (4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1])
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)

        # 0: negative point, 1: positive point, 2: box top-left, 3: box bottom-right.
        self.num_point_embeddings = 4
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)

        # Two stride-2 convs bring a 4Hg×4Wg mask down to the Hg×Wg token grid.
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def grid_size(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """Token grid (Hg, Wg) of a padded model input of image_hw pixels."""
        h, w = int(image_hw[0]), int(image_hw[1])
        if h <= 0 or w <= 0 or h % self.patch_size or w % self.patch_size:
            raise ValueError(f"model input size {h}x{w} must be positive multiples of the patch size {self.patch_size}")
        return h // self.patch_size, w // self.patch_size

    def get_dense_pe(self, grid_hw: tuple[int, int] | None = None) -> torch.Tensor:
        """Positional encoding of every cell of an Hg×Wg token grid (default: image_embedding_size)
        -> (1, C, Hg, Wg)."""
        grid_hw = self.image_embedding_size if grid_hw is None else grid_hw
        return self.pe_layer((int(grid_hw[0]), int(grid_hw[1]))).unsqueeze(0)

    def _embed_points(
        self, points: torch.Tensor, labels: torch.Tensor, pad: bool, image_hw: tuple[int, int]
    ) -> torch.Tensor:
        """(B, N, 2) xy pixels, (B, N) labels -> (B, N or N+1, C)."""
        points = points + 0.5  # pixel index -> pixel centre
        if pad:
            # Without a box, the model was trained with one extra "not a point" token in the
            # place where box corners would be; leaving it out changes the masks.
            points = torch.cat([points, points.new_zeros((points.shape[0], 1, 2))], dim=1)
            labels = torch.cat([labels, -labels.new_ones((labels.shape[0], 1))], dim=1)
        pe = self.pe_layer.forward_with_coords(points, image_hw)
        labels = labels[..., None]
        # Labels: -1 padding (its position means nothing, so only the learned vector remains),
        # 0 negative, 1 positive; any other label keeps the bare positional encoding.
        out = torch.where(labels == -1, self.not_a_point_embed.weight, pe)
        out = out + torch.where(labels == 0, self.point_embeddings[0].weight, 0.0)
        out = out + torch.where(labels == 1, self.point_embeddings[1].weight, 0.0)
        return out

    def _embed_boxes(self, boxes: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        """(B, 4) xyxy pixels -> (B, 2, C): one token per corner."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        pe = self.pe_layer.forward_with_coords(corners, image_hw)
        corner_kind = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight], dim=0)
        return pe + corner_kind

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
        image_hw: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed the prompts for a model input of image_hw = (H, W) pixels (after padding; default
        input_image_size, as segment_anything's encoder, which has no such argument).

        points: (coords (B, N, 2) xy in model-input pixels, labels (B, N)) or None
        boxes:  (B, 4) xyxy in model-input pixels, or None
        masks:  (B, 1, 4Hg, 4Wg) low-res mask logits, or None; (Hg, Wg) = image_hw // patch_size
        Returns sparse (B, n, C) and dense (B, C, Hg, Wg). With no prompt at all, B = 1 and n = 0.
        """
        image_hw = self.input_image_size if image_hw is None else image_hw
        hg, wg = self.grid_size(image_hw)
        sizes = {
            name: t.shape[0]
            for name, t in (("points", None if points is None else points[0]), ("boxes", boxes), ("masks", masks))
            if t is not None
        }
        if len(set(sizes.values())) > 1:
            raise ValueError(f"prompt batch sizes differ: {sizes}")
        bs = next(iter(sizes.values()), 1)
        device = self.point_embeddings[0].weight.device

        sparse = [torch.empty((bs, 0, self.embed_dim), device=device)]
        if points is not None:
            coords, labels = points
            sparse.append(self._embed_points(coords, labels, pad=boxes is None, image_hw=image_hw))
        if boxes is not None:
            sparse.append(self._embed_boxes(boxes, image_hw))
        sparse_embeddings = torch.cat(sparse, dim=1)

        if masks is not None:
            if tuple(masks.shape[1:]) != (1, 4 * hg, 4 * wg):
                raise ValueError(
                    f"mask prompt of shape {tuple(masks.shape)} does not fit a {image_hw[0]}x{image_hw[1]} "
                    f"input: expected (B, 1, {4 * hg}, {4 * wg})"
                )
            dense_embeddings = self.mask_downscaling(masks)
        else:
            dense_embeddings = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, hg, wg)
        return sparse_embeddings, dense_embeddings
