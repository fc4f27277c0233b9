"""`basam eval`: one model, one dataset, the standard metrics; also the flags `basam sweep` shares."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from basam.cli.common import (
    add_hq_arguments,
    add_model_arguments,
    add_progress_argument,
    add_resolution_arguments,
    check_hq_option,
    load_model_from_args,
)
from basam.data.datasets import Dataset
from basam.data.specs import open_eval_data
from basam.evaluation.evaluate import HEADLINE, EvalResult, EvalSettings, evaluate, merge_ranks
from basam.evaluation.metrics import write_per_image_csv, write_summary_json
from basam.inference.predictor import Predictor, check_batch_size
from basam.inference.transforms import parse_resolution
from basam.runtime import distributed


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="LAYOUT:PATH or PATH (duts, dis5k, cod10k, isic2016, coco, "
        "generic), or synth[:FAMILIES] rendered at each resolution",
    )
    p.add_argument("--n", type=int, default=10, help="scenes per family for --data synth")
    p.add_argument(
        "--render-size",
        type=int,
        default=None,
        help="--data synth: render scenes at this size, whatever the model's input resolution "
        "(default: at the resolution, so each resolution gets its own detail)",
    )
    p.add_argument("--split", default=None, help="dataset split (default: the test split)")
    add_model_arguments(p)
    add_hq_arguments(p)
    p.add_argument(
        "--prompt", default="box", help="box | center | points | box+center | none (sweep: several, comma-separated)"
    )
    p.add_argument("--box-jitter", type=float, default=0.0, help="box jitter, fraction of the box side")
    p.add_argument("--n-pos", type=int, default=1, help="positive points for --prompt points")
    p.add_argument("--n-neg", type=int, default=0, help="negative points for --prompt points")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="score only the first N samples")
    p.add_argument("--hce", choices=("auto", "on", "off"), default="auto", help="HCE (default: on for DIS5K)")
    p.add_argument("--group-by-prefix", action="store_true", help="also report per name prefix (e.g. synthetic family)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="encode up to N images of the same model input size per encoder forward",
    )
    add_progress_argument(p)
    p.add_argument("--out", default="basam-eval")


def settings_from_args(args, dataset: Dataset, prompt: str) -> EvalSettings:
    hce = dataset.layout == "dis5k" if args.hce == "auto" else args.hce == "on"
    return EvalSettings(
        prompt,
        args.box_jitter,
        args.n_pos,
        args.n_neg,
        args.seed,
        args.limit,
        hce,
        args.group_by_prefix,
        args.hq_token_only,
    )


def report_problems(dataset: Dataset, result: EvalResult) -> None:
    problems = dataset.problems + result.problems
    if problems:
        print(f"{len(problems)} file(s) not scored:")
        for name, reason in problems:
            print(f"  {name}: {reason}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_common_arguments(p)
    add_resolution_arguments(p)


def run(args) -> int:
    check_batch_size(args.batch_size)
    rank, world = distributed.setup(args.device)
    model = load_model_from_args(args)
    check_hq_option(args, model)
    predictor = Predictor(model, args.resolution, args.max_side)
    args.resolution = predictor.resolution
    policy = parse_resolution(args.resolution)
    # synthetic scenes under "square" (SAM 2's default) are rendered at the model's pretraining side
    render = args.render_size or (model.cfg.img_size if policy == "square" else policy)
    dataset = open_eval_data(args.data, args.split, render, args.n)
    settings = settings_from_args(args, dataset, args.prompt)
    result = merge_ranks(
        evaluate(predictor, dataset, settings, rank, world, progress=not args.no_progress, batch_size=args.batch_size)
    )
    distributed.teardown()
    if result is None:
        return 0
    out = Path(args.out)
    summary = {
        "dataset": dataset.summary(),
        "model": model.cfg.name,
        "checkpoint": args.checkpoint,
        "attention": model.attn_cfg.to_dict(),
        "resolution": args.resolution,
        "settings": asdict(settings),
        "processes": world,
        "metrics": result.summary(),
        "not_scored": [{"name": n, "reason": r} for n, r in result.problems],
    }
    write_per_image_csv(result.rows, out / "per_image.csv")
    write_summary_json(summary, out / "summary.json")
    scores = result.metrics.results()
    print(
        f"{dataset.name}: {scores['count']} images, attention {model.attn_cfg.describe()}, resolution {args.resolution}"
    )
    print("  " + "  ".join(f"{k} {scores[k]:.4f}" for k in (*HEADLINE, *(["HCE"] if settings.hce else []))))
    report_problems(dataset, result)
    print(f"wrote {out}/per_image.csv and {out}/summary.json")
    return 0
