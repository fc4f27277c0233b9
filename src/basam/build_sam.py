"""segment_anything's model registry and builders under basam: `sam_model_registry["vit_h"](checkpoint=...)`.

Keys and meanings are segment_anything's ("default" is vit_h there, so it is here), plus basam's own:

    "default", "vit_h"  ViT-H SAM          "vit_l"  ViT-L SAM          "vit_b"  ViT-B SAM
    "vit_t"             MobileSAM (TinyViT), the key mobile_sam's registry uses
    "basam_default"     basam's embedded model (checkpoint None loads the weights shipped with basam)
    "vit_tiny"          HQ-SAM's light model (segment_anything_hq's key); "hq_vit_b|l|h|tiny" the HQ sizes

Every builder takes the official `checkpoint=None` (None: random weights, as segment_anything) and
basam's options as keywords, with SAM's behaviour as their defaults: `attn` (a preset name or an
AttentionConfig; default "sam"), any AttentionConfig field (`windows="scaled"`, ...), `dtype`
("fp32"), `device` ("cpu"). They return an eval-mode basam.Sam (basam.load_model).
"""

from __future__ import annotations

from collections.abc import Callable

from basam.formats.checkpoint import load_model
from basam.modeling.sam import Sam

# registry key → basam model type (basam.load_model's model_type)
OFFICIAL_KEYS = {"default": "vit_h", "vit_h": "vit_h", "vit_l": "vit_l", "vit_b": "vit_b"}
BASAM_KEYS = {"vit_t": "vit_t", "basam_default": "default"}
# segment_anything_hq's registry has the four keys above (an HQ-SAM checkpoint given to them loads as
# HQ-SAM, recognised by its keys; checkpoint None builds SAM there, HQ-SAM in segment_anything_hq)
# and "vit_tiny", its light HQ model; basam's own names of the HQ sizes come with it.
HQ_KEYS = {
    "vit_tiny": "hq_vit_tiny",
    "hq_vit_b": "hq_vit_b",
    "hq_vit_l": "hq_vit_l",
    "hq_vit_h": "hq_vit_h",
    "hq_vit_tiny": "hq_vit_tiny",
}
# Other packages' keys join here, one dict each, merged into the registry below (sam2's model types
# once basam loads those models).
EXTRA_KEYS: dict[str, str] = {}


def _builder(model_type: str, name: str) -> Callable[..., Sam]:
    def build(checkpoint=None, **options) -> Sam:
        return load_model(model_type, checkpoint=checkpoint, **options)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"segment_anything's {name}(checkpoint=None) → basam.Sam of type {model_type!r}; keyword "
        "options as basam.load_model (attn, windows and the other AttentionConfig fields, dtype, device)."
    )
    build.model_type = model_type
    return build


build_sam_vit_h = _builder("vit_h", "build_sam_vit_h")
build_sam_vit_l = _builder("vit_l", "build_sam_vit_l")
build_sam_vit_b = _builder("vit_b", "build_sam_vit_b")
build_sam_vit_t = _builder("vit_t", "build_sam_vit_t")
build_sam = build_sam_vit_h  # segment_anything's alias

_BUILDERS = {"vit_h": build_sam_vit_h, "vit_l": build_sam_vit_l, "vit_b": build_sam_vit_b, "vit_t": build_sam_vit_t}


class ModelRegistry(dict):
    """A dict of key → builder, whose unknown keys fail with one line listing the known ones."""

    def __missing__(self, key):
        raise KeyError(f"unknown SAM model type {key!r}; basam.sam_model_registry has {', '.join(map(repr, self))}")


sam_model_registry = ModelRegistry(
    {
        key: _BUILDERS.get(model_type) or _builder(model_type, f"build_{key}")
        for key, model_type in {**OFFICIAL_KEYS, **BASAM_KEYS, **HQ_KEYS, **EXTRA_KEYS}.items()
    }
)
