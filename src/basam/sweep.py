"""`basam sweep`: the one evaluation loop over attention presets × windows × resolutions × prompt
kinds. `basam demo` and the study script run it too.

Everything is validated before the first image is encoded; the table, CSV, JSON and plot are
rewritten after each resolution, so a crash at the last size keeps the others on disk.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from . import distributed
from .config import AttentionConfig
from .data.specs import is_synth, open_eval_data
from .evaluate import HEADLINE, EvalResult, EvalSettings, add_common_arguments, report_problems, settings_from_args, evaluate_prompts, merge_ranks
from .metrics import SegMetrics
from .predictor import Predictor, check_batch_size
from .report import write_sweep
from .transforms import AUTO_MAX_SIDE, parse_resolution

METRICS = ("count", "MAE", "Smeasure", "wFmeasure", "meanEm", "maxEm", "adpEm", "meanFm", "maxFm", "adpFm", "mIoU",
           "mDice", "HCE")


@dataclass(frozen=True)
class Row:
    """One line of the table: an attention setting, the windows, and optionally a resolution
    policy of its own (e.g. "auto" on each column's images) instead of the column's."""

    label: str
    attention: AttentionConfig
    windows: str = "fixed"
    policy: str | None = None


@dataclass(frozen=True)
class Column:
    """One resolution: the predictor's policy, and the size synthetic scenes are rendered at
    (None for files from disk)."""

    label: str
    resolution: int | str
    render_size: int | None = None


def run_sweep(model, rows: list[Row], columns: list[Column], prompts: list[str], open_data: Callable[[Column], object],
              settings: EvalSettings, out: Path | None, metric: str = "mIoU", title: str = "", rank: int = 0,
              world: int = 1, max_side: int = AUTO_MAX_SIDE, log: Callable[[str], None] = print,
              progress: bool = True, batch_size: int = 1):
    """Score every row × column × prompt kind → (records, problems). Each image is encoded once
    per row and column and decoded once per prompt kind; up to `batch_size` images of the same input
    size per encoder forward. Rank 0 rewrites `out` after each column."""
    records, problems = [], {}
    for column in columns:
        dataset = open_data(column)
        for row in rows:
            if model.attn_cfg != row.attention:
                model.set_attention(row.attention)
            predictor = Predictor(model, row.policy or column.resolution, max_side, row.windows)
            parts = evaluate_prompts(predictor, dataset, replace(settings, prompt=prompts[0]), prompts, rank, world,
                                     progress, batch_size)
            for kind in prompts:
                result = merge_ranks(parts[kind])
                if result is None:
                    continue
                problems.update(dict.fromkeys(result.problems))
                records.append({"preset": row.label, "prompt": kind, "resolution": column.label,
                                "attention": row.attention.preset, "windows": row.windows,
                                "policy": str(predictor.resolution), **result.summary()})
                log(f"{row.label:>18} {kind:>6} @ {column.label:>6}: {metric} {records[-1][metric]:.4f}")
        if rank == 0 and out is not None and records:
            write_sweep(_ordered(records, rows, prompts), out, metric, title)
    return _ordered(records, rows, prompts), list(problems)


def _ordered(records: list[dict], rows: list[Row], prompts: list[str]) -> list[dict]:
    labels = [r.label for r in rows]
    return sorted(records, key=lambda r: (prompts.index(r["prompt"]), labels.index(r["preset"])))  # columns stay in order


def sweep_rows(presets: list[str], windows: list[str], overrides: dict, saved: AttentionConfig | None = None) -> list[Row]:
    """presets × windows, labelled by the preset (and the windows when there are several). The
    preset "checkpoint" is the checkpoint's own setting `saved`, its learned slopes included."""
    if "checkpoint" in presets and len(presets) > 1:
        raise ValueError("--attn checkpoint stands alone: switching to another preset discards the checkpoint's "
                         "learned slopes")
    rows = []
    for preset in presets:
        if preset == "checkpoint":
            attention = AttentionConfig.from_dict({**saved.to_dict(), **overrides})
        else:
            attention = AttentionConfig.from_preset(preset, **overrides)
        for w in windows:
            AttentionConfig(windows=w)  # validates the name
            rows.append(Row(preset if len(windows) == 1 else f"{preset}, windows {w}", attention, w))
    return rows


def _saved_attention(checkpoint: str | None) -> AttentionConfig:
    from .checkpoint import read_checkpoint

    saved = read_checkpoint(checkpoint)[1].get("attention") if checkpoint else None
    if saved is None:
        raise ValueError("--attn checkpoint needs a --checkpoint that records its attention setting (a basam export "
                         "or training checkpoint)")
    return AttentionConfig.from_dict(saved)


def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


# --- command line --------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    p.add_argument("--resolution", default="512,1024,1536,2048",
                   help="comma-separated policies: N, native or auto (native/auto with synth: give --render-size)")
    p.add_argument("--max-side", type=int, default=AUTO_MAX_SIDE, help="auto: largest long side (px)")
    p.add_argument("--metric", default="mIoU", help=f"metric of the table and plot ({', '.join(HEADLINE)}, …)")


def run(args) -> int:
    from . import load_model, use_fused_attention
    from .cli import attention_overrides

    # Every argument is checked before the first image is encoded.
    presets = _split(args.attn or "sam,nsf,bm,basam")
    windows = _split(args.windows or "fixed")
    prompts = _split(args.prompt)
    for kind in prompts or [args.prompt]:  # '' fails as an unknown kind
        EvalSettings(prompt=kind)
    if args.metric not in METRICS:
        raise ValueError(f"unknown metric {args.metric!r}; choose from {', '.join(METRICS)}")
    overrides = {k: v for k, v in attention_overrides(args).items() if k != "windows"}
    rows = sweep_rows(presets, windows, overrides, _saved_attention(args.checkpoint) if "checkpoint" in presets else None)
    resolutions = [parse_resolution(r) for r in _split(args.resolution)]
    if not resolutions:
        raise ValueError("--resolution: give at least one policy")
    parse_resolution(args.max_side)
    check_batch_size(args.batch_size)
    synth = is_synth(args.data)
    columns = [Column(str(r), r, (args.render_size or r) if synth else None) for r in resolutions]
    first = open_eval_data(args.data, args.split, columns[0].render_size, args.n)  # a bad spec fails here
    for column in columns[1:]:
        if synth and not isinstance(column.render_size, int):
            raise ValueError(f"synthetic data is rendered at a size N (square): give N or --render-size, not {column.label}")
    settings = replace(settings_from_args(args, first, prompts[0]), group_by_prefix=args.group_by_prefix or synth)  # per family
    rank, world = distributed.setup(args.device)
    if args.fused_attention:
        use_fused_attention()
    model = load_model(args.model, checkpoint=args.checkpoint, attn=rows[0].attention, device=args.device,
                       dtype=args.dtype)

    def open_data(column: Column):
        return open_eval_data(args.data, args.split, column.render_size, args.n) if synth else first

    name = first.name.split("@")[0] + " rendered at each resolution" if synth and not args.render_size else first.name
    out = Path(args.out)
    records, problems = run_sweep(model, rows, columns, prompts, open_data, settings, out, args.metric,
                                  f"{name} ({model.cfg.name}, prompt {args.prompt})", rank, world, args.max_side,
                                  batch_size=args.batch_size)
    distributed.teardown()
    if rank != 0:
        return 0
    print((out / "sweep.md").read_text())
    report_problems(first, EvalResult(SegMetrics(), {}, [], problems))
    print(f"wrote {out}/sweep.md, sweep.csv, sweep.json and sweep.png")
    return 0
