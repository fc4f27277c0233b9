"""`basam <command>`: one module per command in this package, each providing
`add_arguments(parser)` and `run(args) -> int`. This file dispatches and turns the errors a user
can cause into one line on stderr and a non-zero exit. Library modules never import this package."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from basam import __version__
from basam.runtime.kernels import KernelBuildError

# command → (module under basam.cli, one-line help)
COMMANDS = {
    "predict": ("predict", "segment one image from points/boxes (or no prompt)"),
    "amg": ("amg", "segment everything: every object's mask in an image or a folder"),
    "eval": ("eval", "evaluate on a dataset with the standard metrics"),
    "sweep": ("sweep", "evaluate presets × windows × resolutions × prompts; table, CSV and plot"),
    "synth": ("synth", "render the synthetic multi-resolution benchmark"),
    "train": ("train", "fine-tune (one machine or many through torchrun)"),
    "demo": ("demo", "the offline demo: BA-SAM vs SAM across resolutions on the embedded model"),
    "export-onnx": ("export_onnx", "export the encoder at one input size and the prompt decoder to ONNX"),
    "export-hf": ("export_hf", "save a model as a Hugging Face SamModel folder (config.json + safetensors)"),
    "serve": ("serve", "a local click-to-segment web page (needs basam[serve])"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="basam", description="Segment Anything at any resolution (BA-SAM).")
    parser.add_argument("--version", action="version", version=f"basam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text)
    if not argv or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help or the unknown-command error
        parser.print_help()
        return 2
    name = argv[0]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(f"basam.cli.{module_name}")
    run = module.run
    cmd_parser = argparse.ArgumentParser(prog=f"basam {name}", description=help_text)
    module.add_arguments(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    try:
        out = getattr(args, "out", None)
        if out and Path(out).exists() and not Path(out).is_dir():
            raise ValueError(f"--out {out} is an existing file; give a folder")
        return run(args) or 0
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, KernelBuildError) as e:
        print(f"basam {name}: error: {e}", file=sys.stderr)
        return 2
