"""basam: Segment Anything at any resolution, with BA-SAM's scaling factor and bias-mode mask."""

from .allocator import keep_freed_memory
from .amg import AutomaticMaskGenerator
from .checkpoint import CheckpointError, load_model, save_model
from .config import ATTENTION_PRESETS, MODEL_CONFIGS, AttentionConfig, ModelConfig
from .kernels import use_fused_attention
from .modeling.sam import Sam
from .predictor import Predictor

__all__ = [
    "ATTENTION_PRESETS", "MODEL_CONFIGS", "AttentionConfig", "AutomaticMaskGenerator", "CheckpointError",
    "ModelConfig", "Predictor", "Sam", "keep_freed_memory", "load_model", "save_model",
    "use_fused_attention",
]
