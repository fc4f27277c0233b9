"""basam: Segment Anything at any resolution, with BA-SAM's scaling factor and bias-mode mask."""

__version__ = "0.2.0"

from basam.build_sam import (
    build_sam,
    build_sam_vit_b,
    build_sam_vit_h,
    build_sam_vit_l,
    build_sam_vit_t,
    sam_model_registry,
)
from basam.config import ATTENTION_PRESETS, MODEL_CONFIGS, SAM2_CONFIGS, AttentionConfig, ModelConfig, Sam2Config
from basam.formats.checkpoint import load_model, save_model
from basam.formats.errors import CheckpointError
from basam.inference.amg import AutomaticMaskGenerator
from basam.inference.predictor import Predictor
from basam.inference.sam2_predictor import SAM2ImagePredictor, build_sam2
from basam.inference.sam_api import SamAutomaticMaskGenerator, SamPredictor
from basam.modeling.sam import Sam
from basam.modeling.sam2 import Sam2
from basam.runtime.allocator import keep_freed_memory
from basam.runtime.kernels import use_fused_attention

__all__ = [
    "ATTENTION_PRESETS",
    "MODEL_CONFIGS",
    "AttentionConfig",
    "AutomaticMaskGenerator",
    "CheckpointError",
    "ModelConfig",
    "Predictor",
    "SAM2_CONFIGS",
    "SAM2ImagePredictor",
    "Sam",
    "Sam2",
    "Sam2Config",
    "SamAutomaticMaskGenerator",
    "SamPredictor",
    "__version__",
    "build_sam",
    "build_sam2",
    "build_sam_vit_b",
    "build_sam_vit_h",
    "build_sam_vit_l",
    "build_sam_vit_t",
    "keep_freed_memory",
    "load_model",
    "sam_model_registry",
    "save_model",
    "use_fused_attention",
]
