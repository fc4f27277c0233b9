"""`basam train`: fine-tune on one machine or many (torchrun); one flag per TrainConfig field."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from basam.cli.common import add_model_arguments, attention_overrides
from basam.training.train import TrainConfig, train

HELP = {
    "config": "YAML file of TrainConfig fields (names as the flags, - or _); flags given here win",
    "data": "LAYOUT:PATH[@w][,…] or synth:FAMILIES (all | salient,thin,…); repeatable; @w = mixture weight",
    "tune": "full | decoder | adapter | lora",
    "learnable_slopes": "train BA-SAM's bias slopes (*.attn.mode.slopes)",
    "resolution": "R[,R…]: long side → R px, padded to R×R; one drawn per step",
    "prompt": "prompt kinds drawn per sample: box, center, point (one random inside), points, box+center, none",
    "batch_size": "global batch, split over ranks and --accum micro-batches",
    "resume": "continue from the last checkpoint in --out",
    "bf16": "auto | on | off",
    "train_prompt_encoder": "train the prompt encoder too (point/box embeddings, the mask_input path); "
    "for a model trained from scratch",
    "multimask": "one-point prompts train SAM's three multimask outputs: the mask loss on the best of "
    "the three only, the IoU head on all three",
    "refine_iters": "interactive refinement: after the first prediction, N clicks drawn from the error "
    "region (missed → foreground, wrongly covered → background) with the previous "
    "logits as mask_input; loss over all N+1 predictions",
    "any_object": "probability of prompting a random object of a synthetic scene instead of its target"
    " (a prompt-free example always asks for the target)",
}
_MODEL_FLAGS = ("model", "checkpoint", "attn", "device")  # added by cli.add_model_arguments


class _GivenOnly:
    """The parser seen through `add_argument` with every default SUPPRESS, so that the parsed
    namespace holds only the flags actually given: those override the YAML file and the defaults."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        return self.parser.add_argument(*args, **{**kwargs, "default": argparse.SUPPRESS})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (--batch-size ↔ batch_size), plus the shared model flags."""
    p = _GivenOnly(parser)
    add_model_arguments(p, dtype=False)  # training has its own --bf16 (autocast)
    p.add_argument("--config", help=HELP["config"])
    for f in dataclasses.fields(TrainConfig):
        if f.name in _MODEL_FLAGS or f.name == "attn_overrides":
            continue
        flag, kind = "--" + f.name.replace("_", "-"), str(f.type)
        if kind == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=HELP.get(f.name))
        else:
            typ = int if kind.startswith("int") else float if kind.startswith("float") else str
            p.add_argument(
                flag,
                type=typ,
                action="append" if f.name == "data" else None,
                help=HELP.get(f.name),
                metavar=f.name.upper(),
            )


def resolve_config(given: dict) -> TrainConfig:
    """defaults < DIR/config.yaml of the run being resumed < --config YAML < flags."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    from_file = _read_yaml(given["config"], names) if "config" in given else {}
    values = {}
    out = given.get("out", from_file.get("out", TrainConfig.out))
    resume = bool(given.get("resume", from_file.get("resume", False)))
    if resume and (Path(out) / "config.yaml").is_file():
        values.update(_read_yaml(Path(out) / "config.yaml", names))
    values.update(from_file)
    values.update({k: v for k, v in given.items() if k in names})
    values["attn_overrides"] = {**values.get("attn_overrides", {}), **attention_overrides(argparse.Namespace(**given))}
    values["resume"] = resume
    return TrainConfig(**values)


def _read_yaml(path, names: set) -> dict:
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read config {path}: {e}") from None
    if not isinstance(values, dict):
        raise ValueError(f"config {path}: expected a mapping of TrainConfig fields")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    if set(values) - names:
        raise ValueError(f"config {path}: unknown fields {', '.join(sorted(set(values) - names))}")
    return values


def run(args: argparse.Namespace) -> int:
    train(resolve_config(vars(args)))
    return 0
