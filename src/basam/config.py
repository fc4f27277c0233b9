"""The two configuration objects of basam: model size and attention (BA-SAM) settings."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


def _known_fields(cls, d: dict) -> dict:
    """d, refused with one line if it names a field `cls` does not have: a config written by a
    newer basam must not load silently as another model."""
    names = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(k for k in d if k not in names):
        raise ValueError(
            f"{cls.__name__}: unknown option(s) {', '.join(map(repr, unknown))} "
            f"(written by a newer basam?); known: {', '.join(sorted(names))}"
        )
    return dict(d)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one SAM size. `img_size` is the pretraining input side (the pos_embed grid
    is img_size/patch_size tokens per side); the model itself runs at any H×W. `encoder` "vit" is
    SAM's ViT (the encoder_* fields); "tiny_vit" is MobileSAM's TinyViT-5M, whose stages are fixed
    in modeling/tiny_vit.py (the encoder_* fields then only describe its last stage). `hq`: HQ-SAM's
    mask decoder (modeling/mask_decoder_hq.py), whose extra output token also reads the encoder's
    early feature."""

    name: str
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    patch_size: int = 16
    img_size: int = 1024
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3
    # LayerNorm eps of the two-way transformer blocks: 1e-5 in the official SAM; Hugging Face's
    # SamConfig sets 1e-6 and basam follows the file it loads.
    decoder_norm_eps: float = 1e-5
    encoder: str = "vit"
    hq: bool = False

    @property
    def train_grid(self) -> tuple[int, int]:
        side = self.img_size // self.patch_size
        return side, side

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = _known_fields(cls, d)
        if "encoder_global_attn_indexes" in d:
            d["encoder_global_attn_indexes"] = tuple(d["encoder_global_attn_indexes"])
        return cls(**d)


def hq_config(cfg: ModelConfig) -> ModelConfig:
    """The HQ-SAM model of a SAM size: the same encoder, prompt encoder and decoder, plus the HQ
    parts (named hq_<size>; MobileSAM's TinyViT becomes hq_vit_tiny, as segment_anything_hq calls it)."""
    if cfg.hq:
        return cfg
    name = "hq_vit_tiny" if cfg.name == "vit_t" else f"hq_{cfg.name}"
    return dataclasses.replace(cfg, name=name, hq=True)


MODEL_CONFIGS: dict[str, ModelConfig] = {
    "vit_b": ModelConfig("vit_b", 768, 12, 12, (2, 5, 8, 11)),
    "vit_l": ModelConfig("vit_l", 1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": ModelConfig("vit_h", 1280, 32, 16, (7, 15, 23, 31)),
    # MobileSAM: TinyViT-5M (4 stages, 12 blocks, last stage 320 wide, 10 heads, windows 7), SAM's
    # prompt encoder and mask decoder.
    "vit_t": ModelConfig("vit_t", 320, 12, 10, (), window_size=7, encoder="tiny_vit"),
    # The embedded default model's architecture ("default" = this size + the shipped weights):
    # trained at 256 px only, a 16×16 token grid, as SAM was at 64×64.
    "mini": ModelConfig(
        "mini",
        192,
        6,
        3,
        (1, 3, 5),
        window_size=8,
        img_size=256,
        prompt_embed_dim=128,
        decoder_mlp_dim=512,
        decoder_num_heads=4,
        iou_head_hidden_dim=128,
    ),
    # For tests: a 16×16 pretraining grid, 4-token windows, two global blocks, small decoder.
    "tiny": ModelConfig(
        "tiny",
        64,
        4,
        2,
        (1, 3),
        window_size=4,
        img_size=256,
        prompt_embed_dim=32,
        mask_in_chans=4,
        decoder_mlp_dim=64,
        decoder_num_heads=2,
        iou_head_hidden_dim=32,
    ),
}
# HQ-SAM's releases (sam_hq_vit_b.pth, ..., sam_hq_vit_tiny.pth): SAM's sizes with the HQ decoder.
for _size in ("vit_b", "vit_l", "vit_h", "vit_t"):
    MODEL_CONFIGS[hq_config(MODEL_CONFIGS[_size]).name] = hq_config(MODEL_CONFIGS[_size])


@dataclass(frozen=True)
class Sam2Config:
    """Architecture of one SAM 2 / 2.1 image model (Hiera trunk, FPN neck, SAM 2 decoder), with the
    released configs' names. `img_size` is the training input side; the model runs at any H×W
    whose sides are multiples of 32 (Hiera's total stride). Stage s of the trunk has
    embed_dim·2^s channels, num_heads·2^s heads and a grid of (H/4)/2^s; its windowed blocks use
    window_spec[s] (the first block of a stage still the previous stage's window, pooled by 2)."""

    name: str
    embed_dim: int
    num_heads: int
    stages: tuple[int, ...]
    global_att_blocks: tuple[int, ...]
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14)
    img_size: int = 1024
    prompt_embed_dim: int = 256  # the neck's d_model and the decoder's width
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    # What build_sam2 sets for the image path (its apply_postprocessing=True): single-mask calls fall
    # back to the best multimask output when the single mask is unstable.
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    decoder_norm_eps: float = 1e-5
    encoder: str = "hiera"
    patch_size: int = 16  # the stride of the image embedding (backbone_stride), as SAM's patch

    @property
    def train_grid(self) -> tuple[int, int]:
        """The image embedding's grid at the training size (64×64 at 1024 px)."""
        side = self.img_size // self.patch_size
        return side, side

    @property
    def input_multiple(self) -> int:
        """Model input sides must be multiples of this: 4 (patch embedding) × 2^(stages − 1)."""
        return 4 * 2 ** (len(self.stages) - 1)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Sam2Config:
        d = _known_fields(cls, d)
        for key in (
            "stages",
            "global_att_blocks",
            "window_spec",
            "window_pos_embed_bkg_spatial_size",
            "fpn_top_down_levels",
        ):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)


def _sam2_sizes(version: str) -> dict[str, Sam2Config]:
    """The four released sizes (identical image paths in SAM 2 and SAM 2.1)."""
    return {
        f"{version}_hiera_t": Sam2Config(
            f"{version}_hiera_t", 96, 1, (1, 2, 7, 2), (5, 7, 9), window_pos_embed_bkg_spatial_size=(7, 7)
        ),
        f"{version}_hiera_s": Sam2Config(
            f"{version}_hiera_s", 96, 1, (1, 2, 11, 2), (7, 10, 13), window_pos_embed_bkg_spatial_size=(7, 7)
        ),
        f"{version}_hiera_b+": Sam2Config(f"{version}_hiera_b+", 112, 2, (2, 3, 16, 3), (12, 16, 20)),
        f"{version}_hiera_l": Sam2Config(
            f"{version}_hiera_l",
            144,
            2,
            (2, 6, 36, 4),
            (23, 33, 43),
            window_spec=(8, 4, 16, 8),
            window_pos_embed_bkg_spatial_size=(7, 7),
        ),
    }


SAM2_CONFIGS: dict[str, Sam2Config] = {
    **_sam2_sizes("sam2.1"),
    **_sam2_sizes("sam2"),
    # For tests: hiera_t's layout at a quarter of the width, one block per stage but the third, a
    # 32-wide decoder (the release fixes the decoder's other sizes in code).
    "sam2_tiny": Sam2Config(
        "sam2_tiny",
        24,
        1,
        (1, 1, 3, 1),
        (3,),
        window_pos_embed_bkg_spatial_size=(7, 7),
        img_size=256,
        prompt_embed_dim=32,
    ),
}
# The released config files' names (configs/sam2.1/sam2.1_hiera_t.yaml …) and checkpoints' stems.
SAM2_ALIASES = {
    **{f"configs/{v}/{v}_hiera_{s}.yaml": f"{v}_hiera_{s}" for v in ("sam2", "sam2.1") for s in ("t", "s", "b+", "l")},
    **{
        f"{v}_hiera_{long}": f"{v}_hiera_{s}"
        for v in ("sam2", "sam2.1")
        for s, long in (("t", "tiny"), ("s", "small"), ("b+", "base_plus"), ("l", "large"))
    },
}


# Presets of AttentionConfig, by name. `basam` is the paper's method, with the options chosen on
# the validation split of the miniature study (docs/study.md, section b): λ(N) in every
# block; ALiBi slopes / 4, acting only beyond the trained distances. At the training size `nsf`,
# `bm` and `basam` are exactly `sam`. The paper's own settings are the field defaults
# (--nsf-blocks global --bm-slope-scale 1 --bm-offset 0). `official` mirrors the released BA-SAM
# code (docs/method.md) and is kept for fidelity comparisons only.
_NSF = {"nsf": True, "nsf_blocks": "all"}
_BM = {"bias": True, "bm_slope_scale": 0.25, "bm_offset": "train"}
ATTENTION_PRESETS: dict[str, dict] = {
    "sam": {},
    "nsf": _NSF,
    "bm": _BM,
    "basam": {**_NSF, **_BM},
    "official": {"nsf": True, "official": True},
}


def _option(default, help_text: str):
    """A field the commands expose as an override flag (--bm-slope-scale for bm_slope_scale)."""
    return dataclasses.field(default=default, metadata={"flag": help_text})


@dataclass
class AttentionConfig:
    """How every attention call of the image encoder scales and biases its scores.

    nsf:            λ(N) = (ln N / ln N_train)/√d instead of 1/√d (the new scaling factor)
    nsf_blocks:     "global" | "all" — blocks that use λ(N) (windowed blocks have N fixed anyway)
    bias:           add the bias-mode attention mask (BM-AM)
    bm_distance:    "euclidean" | "manhattan" | "raster"
    bm_slope_scale: multiplies the ALiBi slopes 2^(-8h/H)
    bm_offset:      "0" or "train": the bias is −m·max(0, dist − offset); "train" = radius of the
                    pretraining grid, so the bias vanishes inside the trained range
    bm_blocks:      "global" | "all"
    bm_learnable:   slopes are parameters (fine-tuning) rather than fixed
    official:       the released BA-SAM code's variant (per-block rel-pos gain, no pretrained
                    rel-pos tables, no pos_embed)
    windows:        "fixed" | "scaled" — the windowed blocks' window: the trained one, or grown
                    with the content scale (trained window × input long side / pretraining side),
                    so it covers the part of the picture it covered in pretraining
    chunk_mb:       largest score tensor (MiB) one attention call may hold; queries are chunked
    """

    preset: str = "sam"
    nsf: bool = False
    nsf_blocks: str = _option("global", "blocks that use λ(N)")
    bias: bool = False
    bm_distance: str = _option("euclidean", "BM-AM distance")
    bm_slope_scale: float = _option(1.0, "BM-AM slope multiplier")
    bm_offset: str = _option("0", "BM-AM offset: 0, a number, or 'train'")
    bm_blocks: str = _option("global", "blocks with the bias")
    bm_learnable: bool = False
    official: bool = False
    windows: str = _option(
        "fixed", "fixed | scaled: windowed blocks keep their trained window, or grow it with the image"
    )
    chunk_mb: float = _option(256.0, "largest attention score chunk in MiB")

    CHOICES = {
        "nsf_blocks": ("global", "all"),
        "bm_distance": ("euclidean", "manhattan", "raster"),
        "bm_blocks": ("global", "all"),
        "windows": ("fixed", "scaled"),
    }

    def __post_init__(self):
        for name, allowed in self.CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"attention option {name}={getattr(self, name)!r}: expected one of {allowed}")
        self.bm_offset = str(self.bm_offset)
        if self.bm_offset != "train":
            try:
                if float(self.bm_offset) < 0:
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"attention option bm_offset={self.bm_offset!r}: expected 'train' or a number ≥ 0"
                ) from None
        for name in ("bm_slope_scale", "chunk_mb"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"attention option {name}={getattr(self, name)}: expected a finite number")
        if self.chunk_mb <= 0:
            raise ValueError("attention option chunk_mb must be > 0")

    @classmethod
    def override_fields(cls) -> list[dataclasses.Field]:
        """The fields a command may override on top of a preset, each with its help text."""
        return [f for f in dataclasses.fields(cls) if "flag" in f.metadata]

    @classmethod
    def from_preset(cls, name: str, **overrides) -> AttentionConfig:
        if name not in ATTENTION_PRESETS:
            raise ValueError(f"unknown attention preset {name!r}; choose from {', '.join(ATTENTION_PRESETS)}")
        return cls(preset=name, **{**ATTENTION_PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AttentionConfig:
        return cls(**_known_fields(cls, d))

    def describe(self) -> str:
        changed = {k: v for k, v in self.to_dict().items() if k != "preset" and v != getattr(AttentionConfig, k)}
        extra = ", ".join(f"{k}={v}" for k, v in changed.items())
        return f"{self.preset}" + (f" ({extra})" if extra else "")
