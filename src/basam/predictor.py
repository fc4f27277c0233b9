"""segment_anything.predictor's module path: `from basam.predictor import SamPredictor`. The
predictor itself lives in basam.inference.predictor."""

from basam.inference.sam_api import SamPredictor

__all__ = ["SamPredictor"]
