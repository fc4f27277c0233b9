"""`basam export-hf`: save a model as a Hugging Face SamModel folder."""

from __future__ import annotations

import argparse

from basam.cli.common import add_model_arguments, load_model_from_args
from basam.formats.hf import save_hf


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--out", required=True, help="folder for config.json + model.safetensors")


def run(args: argparse.Namespace) -> int:
    model = load_model_from_args(args)
    out = save_hf(model, args.out)
    print(
        f"wrote {out}/config.json and model.safetensors: {model.cfg.name}, attention {model.attn_cfg.describe()} "
        f"(transformers.{'SamHQModel' if model.is_hq else 'SamModel'}.from_pretrained({str(out)!r}) opens it; "
        "BA-SAM settings are in config.json's basam section)"
    )
    return 0
