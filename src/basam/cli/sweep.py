"""`basam sweep`: attention presets × windows × resolutions × prompt kinds in one table, CSV and plot,
for one checkpoint or several side by side (--compare: e.g. an HQ-SAM checkpoint beside the SAM one)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from basam import load_model, use_fused_attention
from basam.cli.common import attention_overrides, check_hq_option
from basam.cli.eval import add_common_arguments, report_problems, settings_from_args
from basam.data.specs import is_synth, open_eval_data
from basam.evaluation.evaluate import HEADLINE, EvalResult, EvalSettings
from basam.evaluation.metrics import SegMetrics
from basam.evaluation.sweep import (
    METRICS,
    Column,
    model_names,
    run_sweep,
    saved_attention,
    split_list,
    sweep_rows,
    with_models,
)
from basam.inference.predictor import check_batch_size
from basam.inference.transforms import AUTO_MAX_SIDE, parse_resolution
from basam.runtime import distributed


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    p.add_argument(
        "--resolution",
        default="512,1024,1536,2048",
        help="comma-separated policies: N, native or auto (native/auto with synth: give --render-size)",
    )
    p.add_argument("--max-side", type=int, default=AUTO_MAX_SIDE, help="auto: largest long side (px)")
    p.add_argument("--metric", default="mIoU", help=f"metric of the table and plot ({', '.join(HEADLINE)}, …)")
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="CHECKPOINT",
        help="another checkpoint scored in the same table, loaded as --model (an HQ-SAM checkpoint is "
        "recognised by its keys: --model vit_b --checkpoint sam_vit_b.pth --compare sam_hq_vit_b.pth); "
        "repeatable",
    )


def run(args) -> int:
    # Every argument is checked before the first image is encoded.
    presets = split_list(args.attn or "sam,nsf,bm,basam")
    windows = split_list(args.windows or "fixed")
    prompts = split_list(args.prompt)
    for kind in prompts or [args.prompt]:  # '' fails as an unknown kind
        EvalSettings(prompt=kind)
    if args.metric not in METRICS:
        raise ValueError(f"unknown metric {args.metric!r}; choose from {', '.join(METRICS)}")
    overrides = {k: v for k, v in attention_overrides(args).items() if k != "windows"}
    if "checkpoint" in presets and args.compare:
        raise ValueError("--attn checkpoint is one checkpoint's own setting: it cannot be used with --compare")
    rows = sweep_rows(
        presets, windows, overrides, saved_attention(args.checkpoint) if "checkpoint" in presets else None
    )
    resolutions = [parse_resolution(r) for r in split_list(args.resolution)]
    if not resolutions:
        raise ValueError("--resolution: give at least one policy")
    parse_resolution(args.max_side)
    check_batch_size(args.batch_size)
    synth = is_synth(args.data)
    columns = [Column(str(r), r, (args.render_size or r) if synth else None) for r in resolutions]
    first = open_eval_data(args.data, args.split, columns[0].render_size, args.n)  # a bad spec fails here
    for column in columns[1:]:
        if synth and not isinstance(column.render_size, int):
            raise ValueError(
                f"synthetic data is rendered at a size N (square): give N or --render-size, not {column.label}"
            )
    settings = replace(
        settings_from_args(args, first, prompts[0]), group_by_prefix=args.group_by_prefix or synth
    )  # per family
    rank, world = distributed.setup(args.device)
    if args.fused_attention:
        use_fused_attention()
    checkpoints = [args.checkpoint, *args.compare]
    loaded = [
        load_model(args.model, checkpoint=c, attn=rows[0].attention, device=args.device, dtype=args.dtype)
        for c in checkpoints
    ]
    check_hq_option(args, *loaded)
    names = model_names(loaded, checkpoints)
    models, rows = dict(zip(names, loaded)), with_models(rows, names)

    def open_data(column: Column):
        return open_eval_data(args.data, args.split, column.render_size, args.n) if synth else first

    name = first.name.split("@")[0] + " rendered at each resolution" if synth and not args.render_size else first.name
    out = Path(args.out)
    records, problems = run_sweep(
        models,
        rows,
        columns,
        prompts,
        open_data,
        settings,
        out,
        args.metric,
        f"{name} ({' vs '.join(names)}, prompt {args.prompt})",
        rank,
        world,
        args.max_side,
        progress=not args.no_progress,
        batch_size=args.batch_size,
    )
    distributed.teardown()
    if rank != 0:
        return 0
    print((out / "sweep.md").read_text())
    report_problems(first, EvalResult(SegMetrics(), {}, [], problems))
    print(f"wrote {out}/sweep.md, sweep.csv, sweep.json and sweep.png")
    return 0
