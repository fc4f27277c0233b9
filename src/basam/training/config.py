"""`TrainConfig`: everything a training run depends on, validated where it is made."""

from __future__ import annotations

from dataclasses import dataclass, field

from basam.inference.transforms import parse_resolution
from basam.training import tuning

VAL_COLUMNS = ("mIoU", "mDice", "MAE", "Smeasure", "wFmeasure", "maxFm", "meanEm")  # logged
VAL_METRICS = (*VAL_COLUMNS, "maxEm", "adpEm", "adpFm")  # SegMetrics.results(); any may pick the best
LOWER_IS_BETTER = ("MAE",)
# settings a resumed run may change without a note (they do not change the weights, or just extend the run)
RESUME_MAY_CHANGE = (
    "resume",
    "out",
    "progress",
    "workers",
    "device",
    "steps",
    "val_every",
    "checkpoint_every",
    "keep_last",
)


@dataclass
class TrainConfig:
    """Everything a run depends on. Lists may be given as comma-separated strings."""

    # model
    model: str = "default"
    checkpoint: str | None = None
    attn: str | None = None
    attn_overrides: dict = field(default_factory=dict)  # bm_distance=…, nsf_blocks=…
    device: str = "cpu"
    # what is trained
    tune: str = "decoder"  # full | decoder | adapter | lora
    learnable_slopes: bool = False
    adapter_dim: int = 0  # 0 → encoder width / 4
    lora_rank: int = 4
    lora_alpha: float = 4.0
    train_prompt_encoder: bool = False
    # SAM's training recipe
    multimask: bool = False
    refine_iters: int = 0
    any_object: float = 0.0
    # data
    data: list = field(default_factory=list)  # "LAYOUT:PATH[@w]" | "synth:FAMILIES[@w]"
    resolution: list = field(default_factory=lambda: [1024])  # one drawn per step
    prompt: list = field(default_factory=lambda: ["box"])  # one drawn per sample
    box_jitter: float = 0.1
    n_points: int = 3
    flip: bool = True
    min_scale: float = 0.6  # scale-crop; 1 = off
    workers: int = 0
    # optimisation
    steps: int = 1000
    batch_size: int = 8  # global, over all ranks and accumulation micro-batches
    accum: int = 1
    lr: float = 1e-4
    min_lr_ratio: float = 0.1
    warmup: int = 50
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # 0 = off
    pos_weight: float | None = None
    bf16: str = "auto"  # auto (CUDA with bf16) | on | off
    seed: int = 0
    # validation, checkpoints, logs
    val_every: int = 0
    val_data: list | None = None  # default: --data, split val_split
    val_split: str = "val"
    val_size: int = 32
    val_resolution: int | None = None  # default: the largest training resolution
    val_prompt: str = "box"
    best_metric: str = "mIoU"
    checkpoint_every: int = 0  # 0: only at the end
    keep_last: int = 2
    out: str = "basam-train"
    resume: bool = False
    progress: bool = True

    def __post_init__(self):
        def split(v):  # "a,b" or ["a,b", "c"] → ["a", "b", "c"]
            return [
                t.strip()
                for item in ([v] if isinstance(v, (str, int)) else v)
                for t in str(item).split(",")
                if t.strip()
            ]

        self.data, self.prompt = split(self.data), split(self.prompt)
        self.resolution = [_resolution(r) for r in split(self.resolution)]
        self.val_data = split(self.val_data) if self.val_data else None
        if self.tune not in tuning.TUNE_MODES:
            raise ValueError(f"unknown tune mode {self.tune!r}; choose from {', '.join(tuning.TUNE_MODES)}")
        if self.bf16 not in ("auto", "on", "off"):
            raise ValueError(f"--bf16 {self.bf16!r}: expected auto, on or off")
        for name in ("steps", "batch_size", "accum"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}")
        if not self.data:
            raise ValueError("--data is required: LAYOUT:PATH[,LAYOUT:PATH…] or synth:FAMILIES")
        if not 0 <= self.any_object <= 1:
            raise ValueError(f"--any-object must be a probability in [0, 1], got {self.any_object}")
        if int(self.refine_iters) < 0:
            raise ValueError(f"--refine-iters must be ≥ 0, got {self.refine_iters}")
        if not 0 < self.min_scale <= 1:
            raise ValueError(f"--min-scale must be in (0, 1], got {self.min_scale}")
        if self.best_metric not in VAL_METRICS:
            raise ValueError(f"--best-metric {self.best_metric!r}: expected one of {', '.join(VAL_METRICS)}")


def _resolution(r) -> int:
    value = parse_resolution(r)
    if value == "native":
        raise ValueError("--resolution: training needs fixed sizes (N: long side → N, padded to N×N), not native")
    return value
