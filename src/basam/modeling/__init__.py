"""Every part of the models, with the parameter names of the released checkpoints. attention.py holds
BA-SAM itself: the scaling factor λ(N), the distance bias and the one attention function.

The names segment_anything.modeling exports are here too, constructible with its keyword arguments
(basam.modeling.official_args), so that code building SAM by hand runs unchanged."""

from basam.modeling.image_encoder import ImageEncoderViT, window_partition, window_unpartition
from basam.modeling.mask_decoder import MaskDecoder
from basam.modeling.prompt_encoder import PromptEncoder
from basam.modeling.sam import Sam
from basam.modeling.tiny_vit import TinyViT
from basam.modeling.transformer import TwoWayTransformer

__all__ = [
    "ImageEncoderViT",
    "MaskDecoder",
    "PromptEncoder",
    "Sam",
    "TinyViT",
    "TwoWayTransformer",
    "window_partition",
    "window_unpartition",
]
