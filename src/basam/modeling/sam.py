"""The assembled model: image encoder, prompt encoder and mask decoder, at any input size."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from basam.config import AttentionConfig, ModelConfig
from basam.inference.transforms import PIXEL_MEAN, PIXEL_STD, masks_to_original
from basam.modeling.image_encoder import ImageEncoderViT
from basam.modeling.mask_decoder import MaskDecoder
from basam.modeling.mask_decoder_hq import MaskDecoderHQ
from basam.modeling.official_args import config_from_parts
from basam.modeling.prompt_encoder import PromptEncoder
from basam.modeling.tiny_vit import TinyViT
from basam.modeling.transformer import TwoWayTransformer


class Sam(nn.Module):
    """SAM with parameter names of the official release. pixel_mean/pixel_std are buffers kept out
    of the state dict, as upstream.

    Built from basam's configs, `Sam(cfg, attn_cfg=None)`, or as segment_anything builds it, from
    its parts: `Sam(image_encoder=..., prompt_encoder=..., mask_decoder=..., pixel_mean=...,
    pixel_std=...)` (positional too), the parts being basam.modeling's classes."""

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(
        self,
        cfg: ModelConfig | None = None,
        attn_cfg: AttentionConfig | None = None,
        *parts: nn.Module,
        image_encoder: nn.Module | None = None,
        prompt_encoder: nn.Module | None = None,
        mask_decoder: nn.Module | None = None,
        pixel_mean=PIXEL_MEAN,
        pixel_std=PIXEL_STD,
    ):
        super().__init__()
        if isinstance(cfg, nn.Module):  # segment_anything's positional form Sam(image_encoder, prompt_encoder, ...)
            given = (cfg, attn_cfg, *parts)
            if len(given) > 5:
                raise TypeError(f"Sam takes at most 5 positional arguments, got {len(given)}")
            defaults = (None, None, mask_decoder, pixel_mean, pixel_std)
            image_encoder, prompt_encoder, mask_decoder, pixel_mean, pixel_std = given + defaults[len(given) :]
            cfg = attn_cfg = None
        elif parts:
            raise TypeError(
                "Sam takes (cfg, attn_cfg) or segment_anything's (image_encoder, prompt_encoder, mask_decoder)"
            )
        if [tuple(map(float, v)) for v in (pixel_mean, pixel_std)] != [PIXEL_MEAN, PIXEL_STD]:
            raise ValueError(
                f"Sam: pixel_mean {list(pixel_mean)} / pixel_std {list(pixel_std)} are not SAM's "
                f"{list(PIXEL_MEAN)} / {list(PIXEL_STD)}, the only normalisation basam's predictor applies"
            )
        if cfg is None:
            if None in (image_encoder, prompt_encoder, mask_decoder):
                raise TypeError("Sam needs a ModelConfig, or all of image_encoder, prompt_encoder and mask_decoder")
            cfg = config_from_parts(image_encoder, prompt_encoder, mask_decoder)
            attn_cfg = getattr(image_encoder, "attn_cfg", None)
        self.cfg = cfg
        self.attn_cfg = attn_cfg or AttentionConfig()
        self.precision = "fp32"  # of the image encoder; basam.runtime.precision.set_precision changes it
        dim = cfg.prompt_embed_dim
        if image_encoder is None:
            encoder_class = TinyViT if cfg.encoder == "tiny_vit" else ImageEncoderViT
            image_encoder = encoder_class(cfg, self.attn_cfg)
            prompt_encoder = PromptEncoder(
                dim, cfg.mask_in_chans, cfg.patch_size, input_image_size=(cfg.img_size, cfg.img_size)
            )
            transformer = TwoWayTransformer(
                cfg.decoder_depth, dim, cfg.decoder_num_heads, cfg.decoder_mlp_dim, norm_eps=cfg.decoder_norm_eps
            )
            heads = {"num_multimask_outputs": cfg.num_multimask_outputs, "iou_head_hidden_dim": cfg.iou_head_hidden_dim}
            if cfg.hq:
                mask_decoder = MaskDecoderHQ(dim, transformer, image_encoder.early_dim, **heads)
            else:
                mask_decoder = MaskDecoder(dim, transformer, **heads)
        self.image_encoder, self.prompt_encoder, self.mask_decoder = image_encoder, prompt_encoder, mask_decoder
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def set_attention(self, attn_cfg: AttentionConfig) -> None:
        """Switch BA-SAM settings (preset or options) without touching SAM's weights. Learnable
        slopes or gains of the previous setting are discarded."""
        self.attn_cfg = attn_cfg
        self.image_encoder.set_attention(attn_cfg)

    @property
    def is_hq(self) -> bool:
        """An HQ-SAM model: its encoder also returns the early feature, its decoder reads it."""
        return self.cfg.hq

    def encode(self, images: torch.Tensor, windows: str | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised, padded images (B, 3, H, W) → embeddings (B, C, Hg, Wg) and, for HQ-SAM, the
        early features (B, C_vit, Hg, Wg) (None otherwise). windows: as image_encoder's."""
        out = self.image_encoder(images, windows=windows)
        return out if self.is_hq else (out, None)

    def decode(
        self,
        image_embeddings: torch.Tensor,
        image_hw: tuple[int, int],
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = False,
        early_features: torch.Tensor | None = None,
        hq_token_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts → masks for already-encoded images.

        image_embeddings: (1 or B, C, Hg, Wg); image_hw: the padded model input (H, W) in pixels,
        the frame of point (B, N, 2) xy / labels (B, N) and box (B, 4) xyxy coordinates;
        mask_input: (B, 1, 4Hg, 4Wg) logits. No prompt at all is the prompt-free call.
        HQ-SAM: early_features (1 or B, C_vit, Hg, Wg) from `encode` (required), hq_token_only as
        the release's (the HQ mask alone, else SAM's mask + the HQ mask); M is then always 1.
        Returns low-res mask logits (B, M, 4Hg, 4Wg) and predicted IoUs (B, M).
        """
        sparse, dense = self.prompt_encoder(points, boxes, mask_input, image_hw)
        if mask_input is None:  # the same no-mask embedding for every prompt set: added once
            dense = dense[:1]
        batch = image_embeddings.shape[0]
        if sparse.shape[0] == 1 and batch > 1:  # prompt-free: the same empty prompt for each image
            sparse, dense = sparse.expand(batch, -1, -1), dense.expand(batch, -1, -1, -1)
        hq = {"hq_token_only": hq_token_only, "early_features": early_features} if self.is_hq else {}
        return self.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(image_embeddings.shape[-2:]),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            **hq,
        )

    def forward(
        self,
        images: torch.Tensor | list[dict],
        points: tuple[torch.Tensor, torch.Tensor] | bool | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = False,
        hq_token_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor] | list[dict]:
        """Normalised, padded images (B, 3, H, W) with one prompt set each → (B, M, H/4, W/4) logits
        and (B, M) IoU predictions. Used by training; the predictor encodes once and decodes often.

        Called as segment_anything's Sam, `model(batched_input, multimask_output)` with a list of
        dicts, it returns what that does (see `forward_batched`)."""
        if isinstance(images, list):
            return self.forward_batched(images, points if isinstance(points, bool) else multimask_output, hq_token_only)
        embeddings, early = self.encode(images)
        return self.decode(
            embeddings, tuple(images.shape[-2:]), points, boxes, mask_input, multimask_output, early, hq_token_only
        )

    @torch.no_grad()
    def forward_batched(
        self, batched_input: list[dict], multimask_output: bool, hq_token_only: bool = False
    ) -> list[dict]:
        """segment_anything's Sam.forward: per image a dict with "image" (3, h, w) 0..255 already
        resized (ResizeLongestSide), "original_size" (H, W) and optional "point_coords" (B, N, 2),
        "point_labels" (B, N), "boxes" (B, 4), "mask_inputs" (B, 1, h', w') in the resized frame →
        per image {"masks": (B, M, H, W) bool, "iou_predictions": (B, M), "low_res_logits": (B, M, h', w')}."""
        images = torch.stack([self.preprocess(record["image"]) for record in batched_input])
        embeddings, early = self.encode(images)
        outputs = []
        for i, record in enumerate(batched_input):
            points = (record["point_coords"], record["point_labels"]) if "point_coords" in record else None
            low_res, iou = self.decode(
                embeddings[i : i + 1],
                tuple(images.shape[-2:]),
                points,
                record.get("boxes"),
                record.get("mask_inputs"),
                multimask_output,
                None if early is None else early[i : i + 1],
                hq_token_only,
            )
            masks = self.postprocess_masks(low_res, record["image"].shape[-2:], record["original_size"])
            outputs.append({"masks": masks > self.mask_threshold, "iou_predictions": iou, "low_res_logits": low_res})
        return outputs

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """(..., 3, h, w) pixel values 0..255 → normalised and zero-padded at the bottom and right to a
        square of the pretraining side (image_encoder.img_size), as segment_anything's Sam.preprocess;
        an input larger than that is padded to the square of its long side rounded up to the patch
        size (the frame of an integer `resolution`)."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        side = max(self.cfg.img_size, -(-max(h, w) // self.cfg.patch_size) * self.cfg.patch_size)
        return F.pad(x, (0, side - w, 0, side - h))

    def postprocess_masks(
        self, masks: torch.Tensor, input_size: tuple[int, ...], original_size: tuple[int, ...]
    ) -> torch.Tensor:
        """(B, M, h', w') low-res logits from the mask decoder → (B, M, H, W) logits at original_size:
        upsampled to the padded model input (img_size × img_size for SAM's 256 × 256 logits), cut to
        input_size (the resized image inside it), upsampled again; segment_anything's method."""
        scale = self.cfg.patch_size // 4  # low-res logits are 4 per token, a token is patch_size px
        padded_hw = (masks.shape[-2] * scale, masks.shape[-1] * scale)
        return masks_to_original(masks, padded_hw, tuple(input_size[-2:]), tuple(original_size))
