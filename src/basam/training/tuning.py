"""What fine-tuning trains: freezing, MSA-style adapters and LoRA on the image encoder.

Four modes (`TUNE_MODES`):

    full     image encoder + mask decoder (the prompt encoder is frozen unless `prompt_encoder`)
    decoder  mask decoder only
    adapter  bottleneck adapters in every encoder block + mask decoder; the backbone is frozen
    lora     low-rank updates of the encoder attention's qkv and proj + mask decoder

With `learnable_slopes`, BA-SAM's own parameters (`*.attn.mode.slopes`, and the `official`
preset's rel-pos gains) train too, in any mode; with `prompt_encoder`, the prompt encoder's point
and box embeddings and its mask_input path (a model trained from scratch needs them).

Nothing here renames SAM's parameters: adapters and LoRA factors are *added* as submodules of the
module they modify and act through forward hooks, so a plain SAM state dict still loads into an
adapted model and the hooks survive `copy.deepcopy`.

- LoRA is merged into qkv/proj at export (`merge_lora`): the exported file is a plain SAM.
- Adapters cannot be merged (there is a GELU inside), so the export carries them, under
  `image_encoder.blocks.<i>.attn.adapter.*` and `image_encoder.blocks.<i>.mlp.adapter.*`;
  `add_adapters_like(model, state)` rebuilds them from those keys before a strict load
  (`basam.load_model` does so).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from basam.modeling.attention import BASAM_PARAMETER

TUNE_MODES = ("full", "decoder", "adapter", "lora")


class Adapter(nn.Module):
    """Bottleneck (..., C) → (..., C): up(GELU(down(x))). `up` starts at zero, so a freshly added
    adapter leaves the model exactly as it was."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.down = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


# MSA (Wu et al., "Medical SAM Adapter"): after attention x + A(x) (here on the attention output,
# per token, so windowed blocks need nothing special), and a branch parallel to the MLP scaled by 0.5.
MLP_ADAPTER_SCALE = 0.5


def _attn_adapter_hook(module, inputs, output):
    return output + module.adapter(output)


def _mlp_adapter_hook(module, inputs, output):
    return output + MLP_ADAPTER_SCALE * module.adapter(inputs[0])


def _lora_hook(module, inputs, output):
    return output + (inputs[0] @ module.lora_a.T) @ module.lora_b.T * module.lora_scale


def add_adapters(model: nn.Module, hidden: int) -> None:
    """Add an adapter after the attention and one parallel to the MLP of every encoder block."""
    for block in model.image_encoder.blocks:
        dim = block.attn.proj.out_features
        for module, hook in ((block.attn, _attn_adapter_hook), (block.mlp, _mlp_adapter_hook)):
            if not hasattr(module, "adapter"):  # adding twice replaces the adapter, never doubles the hook
                module.register_forward_hook(hook)
            module.adapter = Adapter(dim, hidden).to(block.attn.proj.weight.device)


def add_adapters_like(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """Add adapters sized as in `state` (a state dict from an adapter run) if it has any.
    → whether it did. The hook for `load_model` before its strict load."""
    key = "image_encoder.blocks.0.attn.adapter.down.weight"
    if key not in state:
        return False
    add_adapters(model, state[key].shape[0])
    return True


def add_lora(model: nn.Module, rank: int, alpha: float) -> None:
    """W x + (alpha/rank)·B A x on every encoder attention's qkv and proj. A: (rank, in) random
    (kaiming-uniform, as LoRA/peft), B: (out, rank) zero, so the start is the unchanged model."""
    for block in model.image_encoder.blocks:
        for linear in (block.attn.qkv, block.attn.proj):
            w = linear.weight
            linear.lora_a = nn.Parameter(torch.empty(rank, w.shape[1], device=w.device, dtype=w.dtype))
            nn.init.kaiming_uniform_(linear.lora_a, a=math.sqrt(5))
            linear.lora_b = nn.Parameter(torch.zeros(w.shape[0], rank, device=w.device, dtype=w.dtype))
            if not hasattr(linear, "lora_scale"):  # adding twice replaces the factors, never doubles the hook
                linear.register_forward_hook(_lora_hook)
            linear.lora_scale = alpha / rank


@torch.no_grad()
def merge_lora(model: nn.Module) -> None:
    """Fold every LoRA update into its linear weight (W += scale·B A) and remove the factors and
    hooks: the model becomes a plain SAM with the same outputs (to float round-off)."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and hasattr(module, "lora_a"):
            module.weight += (module.lora_b @ module.lora_a) * module.lora_scale
            del module.lora_a, module.lora_b, module.lora_scale
            for key, hook in list(module._forward_hooks.items()):
                if hook is _lora_hook:
                    del module._forward_hooks[key]


def configure(
    model: nn.Module,
    mode: str,
    learnable_slopes: bool = False,
    adapter_dim: int = 0,
    lora_rank: int = 4,
    lora_alpha: float = 4.0,
    prompt_encoder: bool = False,
) -> dict[str, int]:
    """Add what `mode` needs and set requires_grad. → {"trainable": n, "total": n, "frozen": n}
    (parameter counts). adapter_dim 0 → a quarter of the encoder width (MSA's ratio)."""
    if mode not in TUNE_MODES:
        raise ValueError(f"unknown tune mode {mode!r}; choose from {', '.join(TUNE_MODES)}")
    if mode in ("adapter", "lora") and not hasattr(model.image_encoder, "blocks"):
        raise ValueError(f"--tune {mode} is built for SAM's ViT blocks; {model.cfg.name} takes --tune decoder or full")
    if mode == "adapter":
        add_adapters(model, adapter_dim or max(1, model.cfg.encoder_embed_dim // 4))
    elif mode == "lora":
        if lora_rank < 1:
            raise ValueError(f"--lora-rank must be ≥ 1, got {lora_rank}")
        add_lora(model, lora_rank, lora_alpha)
    for name, p in model.named_parameters():
        p.requires_grad_(is_trainable(name, mode, learnable_slopes, prompt_encoder))
    if learnable_slopes and not any(BASAM_PARAMETER in n for n, _ in model.named_parameters()):
        raise ValueError(
            "--learnable-slopes needs an attention setting with BA-SAM parameters "
            "(--attn bm or basam, which have the bias slopes)"
        )
    return count_parameters(model)


def is_trainable(name: str, mode: str, learnable_slopes: bool, prompt_encoder: bool = False) -> bool:
    """The freezing rule, by parameter name (SAM 2's sam_prompt_encoder / sam_mask_decoder as SAM's)."""
    name = name.removeprefix("sam_")
    if name.startswith("prompt_encoder."):
        return prompt_encoder
    if BASAM_PARAMETER in name:
        return learnable_slopes or mode == "full"
    if name.startswith("mask_decoder."):
        return True
    if name.startswith("image_encoder."):
        if mode == "full":
            return True
        if mode == "adapter":
            return ".adapter." in name
        if mode == "lora":
            return ".lora_" in name
    return False


def count_parameters(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "frozen": total - trainable, "total": total}


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name (what a training checkpoint stores)."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def export_copy(model: nn.Module) -> nn.Module:
    """A copy fit for `save_model`: LoRA merged, adapters kept, on the CPU, in eval mode."""
    import copy

    out = copy.deepcopy(model).cpu().eval()
    merge_lora(out)
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def frozen_fingerprint(model: nn.Module) -> float:
    """Σ|w| of the frozen weights: a resumed run must start from the same base model."""
    with torch.no_grad():
        return float(sum(p.detach().double().abs().sum() for p in model.parameters() if not p.requires_grad))
