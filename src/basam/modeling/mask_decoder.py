"""SAM's mask decoder, for any token grid Hg×Wg (square or not).

Parameter names match the official release.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from basam.modeling.common import LayerNorm2d


class MLP(nn.Module):
    """Plain MLP with ReLU between layers: (..., input_dim) -> (..., output_dim)."""

    def __init__(
        self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int, sigmoid_output: bool = False
    ) -> None:
        super().__init__()
        self.num_layers = num_layers
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        x = self.layers[-1](x)
        return torch.sigmoid(x) if self.sigmoid_output else x


class MaskDecoder(nn.Module):
    """Predicts masks and their IoU scores from an image embedding and prompt embeddings.

    Output tokens: one IoU token, then num_multimask_outputs + 1 mask tokens. Mask token 0 is the
    single-mask answer; tokens 1.. are the multimask (ambiguity-resolving) answers.
    """

    def __init__(
        self,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs

        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)

        # Two stride-2 transposed convs: Hg×Wg tokens -> 4Hg×4Wg low-res mask, C -> C/8 channels.
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        # Each mask token becomes the weights of a per-pixel linear map over the C/8 channels.
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode masks.

        image_embeddings:         (1 or B, C, Hg, Wg); a single image is shared by all B prompts
        image_pe:                 (1, C, Hg, Wg)
        sparse_prompt_embeddings: (B, n, C)
        dense_prompt_embeddings:  (1 or B, C, Hg, Wg)
        Returns masks (B, M, 4Hg, 4Wg) logits and iou_pred (B, M), M = num_multimask_outputs if
        multimask_output else 1.
        """
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        keep = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, keep], iou_pred[:, keep]

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All num_mask_tokens masks (B, T, 4Hg, 4Wg) and scores (B, T); see forward."""
        iou_pred, mask_tokens_out, keys = self.run_transformer(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        return self.upscale_masks(mask_tokens_out, keys, image_embeddings.shape[-2:]), iou_pred

    def run_transformer(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        prepared: dict | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The two-way transformer and the IoU head, without the mask upscaling (a caller that
        drops masks on their predicted IoU can upscale only the rest). Shapes as forward, with
        dense (1 or B, C, Hg, Wg). prepared: `prepare_image` of these image, pe and dense
        embeddings, computed once for many calls. Returns iou_pred (B, T), mask tokens (B, T, C)
        and the image tokens (B, Hg·Wg, C) for upscale_masks (T: every output token after the IoU
        token)."""
        bs = sparse_prompt_embeddings.shape[0]
        output_tokens = self.output_tokens()
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(bs, -1, -1), sparse_prompt_embeddings], dim=1)

        # The official code always repeats the image once per prompt set, which is right for the
        # usual single image but gives B² rows for B images; pair images and prompts one to one,
        # and keep a single image single (the transformer shares its projections).
        if image_embeddings.shape[0] not in (1, bs):
            raise ValueError(f"{image_embeddings.shape[0]} image embeddings for {bs} prompt sets: expected 1 or {bs}")
        hs, keys = self.transformer(
            None,
            None,
            tokens,
            prepared=self.prepare_image(image_embeddings, image_pe, dense_prompt_embeddings)
            if prepared is None
            else prepared,
        )
        iou_pred = self.iou_prediction_head(hs[:, 0, :])
        return iou_pred, hs[:, 1 : output_tokens.shape[0], :], keys

    def output_tokens(self) -> torch.Tensor:
        """The learned output tokens (1 + T, C) put before the prompt tokens: IoU token, mask tokens."""
        return torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)

    def prepare_image(
        self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, dense_prompt_embeddings: torch.Tensor
    ) -> dict:
        """What run_transformer computes from the image side alone (the transformer's `prepare`
        of image + dense embedding): with one image and one dense embedding (1, C, Hg, Wg) shared
        by every prompt group, as "segment everything" has, it is computed once per image."""
        return self.transformer.prepare(image_embeddings + dense_prompt_embeddings, image_pe)

    def upscale_masks(
        self, mask_tokens_out: torch.Tensor, keys: torch.Tensor, grid_hw: tuple[int, int], tokens: slice = slice(None)
    ) -> torch.Tensor:
        """Mask tokens (B, T, C) and image tokens (B, Hg·Wg, C) from run_transformer -> low-res mask
        logits (B, T', 4Hg, 4Wg) of the mask tokens in `tokens` (all T by default)."""
        b, _, c = keys.shape
        (gh, gw), t = grid_hw, len(range(self.num_mask_tokens)[tokens])
        upscaled = self._upscale_tokens(keys.reshape(b, gh, gw, c))  # (B, Hg, Wg, 2, 2, 2, 2, C/8)
        mlps = self.output_hypernetworks_mlps[tokens]
        chosen = range(self.num_mask_tokens)[tokens]
        hyper_in = torch.stack([mlp(mask_tokens_out[:, i, :]) for i, mlp in zip(chosen, mlps)], dim=1)  # (B, T', C/8)
        masks = upscaled.reshape(b, gh * gw * 16, upscaled.shape[-1]) @ hyper_in.transpose(1, 2)  # (B, Hg·Wg·16, T')
        # (B, Hg, Wg, i1, j1, i2, j2, T') → (B, T', Hg, i1, i2, Wg, j1, j2): row 4·y + 2·i1 + i2, col alike
        masks = masks.reshape(b, gh, gw, 2, 2, 2, 2, t).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return masks.reshape(b, t, 4 * gh, 4 * gw)

    def _upscale_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """output_upscaling on the token grid (B, Hg, Wg, C), channels last, without reordering
        memory: a stride-2 2×2 transposed convolution gives each token its own 2×2 block of
        pixels, i.e. a linear map C → 2·2·C', so the map stays (B, Hg, Wg, i, j, C') with the
        sub-pixel offsets as axes, and the LayerNorm over channels is one F.layer_norm.
        Returns (B, Hg, Wg, 2, 2, 2, 2, C/8): pixel (4y + 2·i1 + i2, 4x + 2·j1 + j2)."""
        up1, norm, act1, up2, act2 = self.output_upscaling
        x = act1(F.layer_norm(_transposed_conv_as_linear(up1, x), norm.weight.shape, norm.weight, norm.bias, norm.eps))
        return act2(_transposed_conv_as_linear(up2, x))


def _transposed_conv_as_linear(conv: nn.ConvTranspose2d, x: torch.Tensor) -> torch.Tensor:
    """A kernel-2 stride-2 ConvTranspose2d on channels-last (..., C_in) → (..., 2, 2, C_out)."""
    c_in, c_out = conv.weight.shape[:2]
    weight = conv.weight.permute(2, 3, 1, 0).reshape(4 * c_out, c_in)  # rows (i, j, out)
    return F.linear(x, weight, conv.bias.repeat(4)).unflatten(-1, (2, 2, c_out))
