"""segment_anything.automatic_mask_generator's module path:
`from basam.automatic_mask_generator import SamAutomaticMaskGenerator`. The generator itself lives
in basam.inference.amg."""

from basam.inference.sam_api import SamAutomaticMaskGenerator

__all__ = ["SamAutomaticMaskGenerator"]
