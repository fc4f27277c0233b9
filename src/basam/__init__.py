"""basam: Segment Anything at any resolution, with BA-SAM's scaling factor and bias-mode mask."""

__version__ = "0.2.0"

from basam.config import ATTENTION_PRESETS, MODEL_CONFIGS, AttentionConfig, ModelConfig
from basam.formats.checkpoint import load_model, save_model
from basam.formats.errors import CheckpointError
from basam.inference.amg import AutomaticMaskGenerator
from basam.inference.predictor import Predictor
from basam.modeling.sam import Sam
from basam.runtime.allocator import keep_freed_memory
from basam.runtime.kernels import use_fused_attention

__all__ = [
    "ATTENTION_PRESETS", "MODEL_CONFIGS", "AttentionConfig", "AutomaticMaskGenerator", "CheckpointError",
    "ModelConfig", "Predictor", "Sam", "__version__", "keep_freed_memory", "load_model", "save_model",
    "use_fused_attention",
]
