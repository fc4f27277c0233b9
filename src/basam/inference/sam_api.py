"""segment_anything's SamPredictor and SamAutomaticMaskGenerator: basam's Predictor and
AutomaticMaskGenerator under the official names, with the official constructor arguments first and
their defaults (SAM's resize-longest-side to the model's pretraining side), basam's after them."""

from __future__ import annotations

from basam.inference.amg import AutomaticMaskGenerator
from basam.inference.predictor import Predictor
from basam.inference.transforms import AUTO_MAX_SIDE, Resolution
from basam.modeling.sam import Sam


class SamPredictor(Predictor):
    """`SamPredictor(sam_model)` as segment_anything's, plus basam's `resolution` (None: the model's
    pretraining side, as SAM; an int, "native" or "auto"), `max_side` and `windows` (see Predictor)."""

    def __init__(self, sam_model: Sam, resolution: Resolution | None = None, max_side: int = AUTO_MAX_SIDE,
                 windows: str | None = None) -> None:
        super().__init__(sam_model, resolution=resolution, max_side=max_side, windows=windows)


class SamAutomaticMaskGenerator(AutomaticMaskGenerator):
    """`SamAutomaticMaskGenerator(model, points_per_side=32, ...)` with segment_anything's arguments,
    order and defaults; basam's (resolution, tile_size, ...) follow as keywords (see
    AutomaticMaskGenerator)."""
