"""The official SAM 2 code (PyPI sam2==1.1.0, Meta's code at 2b90b9f), imported with plain-torch
stand-ins for the torchvision names it uses: transforms.Normalize / Resize / ToTensor (what
torchvision computes on tensors: bilinear with antialias, align_corners=False) and
ops.boxes.batched_nms / box_area (tests/official.py)."""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from official import _torchvision_stand_in, randomize


class Resize(nn.Module):
    """torchvision.transforms.Resize((h, w)) on a (C, H, W) float tensor."""

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.size = [int(size[0]), int(size[1])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x[None], size=self.size, mode="bilinear", align_corners=False, antialias=True)[0]


class Normalize(nn.Module):
    def __init__(self, mean: list[float], std: list[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ToTensor:
    """HWC uint8 array or PIL image → CHW float32 in [0, 1]."""

    def __call__(self, image) -> torch.Tensor:
        array = np.asarray(image)
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float() / 255.0


def _install_stand_ins():
    mods = _torchvision_stand_in()
    mods["torchvision.transforms"].Normalize = Normalize
    mods["torchvision.transforms"].Resize = Resize
    mods["torchvision.transforms"].ToTensor = ToTensor
    for name, module in mods.items():
        sys.modules.setdefault(name, module)


_install_stand_ins()

from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator  # noqa: E402,F401
from sam2.build_sam import build_sam2  # noqa: E402
from sam2.sam2_image_predictor import SAM2ImagePredictor  # noqa: E402,F401

# A small SAM 2.1-style model for tests: hiera_t's layout at a quarter of the width (basam's
# "sam2_tiny"), built from the released tiny config with these overrides (the video modules keep
# their sizes: the image path never runs them).
TINY_OVERRIDES = [
    "++model.image_encoder.trunk.embed_dim=24",
    "++model.image_encoder.trunk.stages=[1,1,3,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.neck.d_model=32",
    "++model.image_encoder.neck.backbone_channel_list=[192,96,48,24]",
    "++model.image_encoder.neck.position_encoding.num_pos_feats=32",
    "++model.image_size=256",
]


def official_sam2(
    config: str = "configs/sam2.1/sam2.1_hiera_t.yaml", overrides: list[str] | None = None, seed: int = 0
):
    """The official SAM2Base with random weights (zero-initialised tables made non-zero)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build_sam2(config, ckpt_path=None, device="cpu", hydra_overrides_extra=list(overrides or []))
    return randomize(model, seed=seed).eval()


def release_state_dict(model) -> dict:
    """What a released .pt holds: {"model": state_dict} of the whole (video) model."""
    return {"model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
