"""`basam sweep`: the one evaluation loop over attention presets × windows × resolutions × prompt
kinds, for one model or several side by side (`--compare`: e.g. an HQ-SAM checkpoint beside the
SAM one). `basam demo` and the study script run it too.

Everything is validated before the first image is encoded; the table, CSV, JSON and plot are
rewritten after each resolution, so a crash at the last size keeps the others on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from basam.config import AttentionConfig
from basam.evaluation.evaluate import EvalSettings, evaluate_prompts, merge_ranks
from basam.evaluation.metrics import SCORES
from basam.evaluation.report import write_sweep
from basam.inference.predictor import Predictor
from basam.inference.transforms import AUTO_MAX_SIDE

METRICS = ("count", *SCORES, "HCE")


@dataclass(frozen=True)
class Row:
    """One line of the table: an attention setting, the windows, and optionally a resolution
    policy of its own (e.g. "auto" on each column's images) instead of the column's; `model`: the
    key of its model when run_sweep is given several."""

    label: str
    attention: AttentionConfig
    windows: str = "fixed"
    policy: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class Column:
    """One resolution: the predictor's policy, and the size synthetic scenes are rendered at
    (None for files from disk)."""

    label: str
    resolution: int | str
    render_size: int | None = None


def run_sweep(
    model,
    rows: list[Row],
    columns: list[Column],
    prompts: list[str],
    open_data: Callable[[Column], object],
    settings: EvalSettings,
    out: Path | None,
    metric: str = "mIoU",
    title: str = "",
    rank: int = 0,
    world: int = 1,
    max_side: int = AUTO_MAX_SIDE,
    log: Callable[[str], None] = print,
    progress: bool = True,
    batch_size: int = 1,
):
    """Score every row × column × prompt kind → (records, problems). `model`: one model, or
    {name: model} with each row's `model` naming its own. Each image is encoded once per row and
    column and decoded once per prompt kind; up to `batch_size` images of the same input size per
    encoder forward. settings.hq_token_only applies to HQ-SAM models only. Rank 0 rewrites `out`
    after each column."""
    records, problems = [], {}
    for column in columns:
        dataset = open_data(column)
        for row in rows:
            row_model = model[row.model] if isinstance(model, dict) else model
            if row_model.attn_cfg != row.attention:
                row_model.set_attention(row.attention)
            predictor = Predictor(row_model, row.policy or column.resolution, max_side, row.windows)
            hq_token_only = settings.hq_token_only and row_model.is_hq
            row_settings = replace(settings, prompt=prompts[0], hq_token_only=hq_token_only)
            parts = evaluate_prompts(predictor, dataset, row_settings, prompts, rank, world, progress, batch_size)
            for kind in prompts:
                result = merge_ranks(parts[kind])
                if result is None:
                    continue
                problems.update(dict.fromkeys(result.problems))
                records.append(
                    {
                        "preset": row.label,
                        "prompt": kind,
                        "resolution": column.label,
                        "model": row_model.cfg.name,
                        "hq_token_only": row_settings.hq_token_only,
                        "attention": row.attention.preset,
                        "windows": row.windows,
                        "policy": str(predictor.resolution),
                        **result.summary(),
                    }
                )
                log(f"{row.label:>18} {kind:>6} @ {column.label:>6}: {metric} {records[-1][metric]:.4f}")
        if rank == 0 and out is not None and records:
            write_sweep(_ordered(records, rows, prompts), out, metric, title)
    return _ordered(records, rows, prompts), list(problems)


def _ordered(records: list[dict], rows: list[Row], prompts: list[str]) -> list[dict]:
    labels = [r.label for r in rows]
    return sorted(
        records, key=lambda r: (prompts.index(r["prompt"]), labels.index(r["preset"]))
    )  # columns stay in order


def sweep_rows(
    presets: list[str], windows: list[str], overrides: dict, saved: AttentionConfig | None = None
) -> list[Row]:
    """presets × windows, labelled by the preset (and the windows when there are several). The
    preset "checkpoint" is the checkpoint's own setting `saved`, its learned slopes included."""
    if "checkpoint" in presets and len(presets) > 1:
        raise ValueError(
            "--attn checkpoint stands alone: switching to another preset discards the checkpoint's learned slopes"
        )
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


def with_models(rows: list[Row], names: list[str]) -> list[Row]:
    """The rows once per model, labelled "<model>, <row>" when there are several models."""
    if len(names) == 1:
        return [replace(row, model=names[0]) for row in rows]
    return [replace(row, label=f"{name}, {row.label}", model=name) for name in names for row in rows]


def model_names(models: list, checkpoints: list[str | None]) -> list[str]:
    """Table names of the models: their size (hq_vit_b …), or their checkpoint's file name where sizes repeat."""
    sizes = [m.cfg.name for m in models]
    if len(set(sizes)) == len(sizes):
        return sizes
    names = [Path(c).stem if c else s for s, c in zip(sizes, checkpoints)]
    if len(set(names)) < len(names):
        raise ValueError(f"--compare: the models' names repeat ({', '.join(names)}); give distinct checkpoints")
    return names


def saved_attention(checkpoint: str | None) -> AttentionConfig:
    from basam.formats.checkpoint import read_checkpoint

    saved = read_checkpoint(checkpoint)[1].get("attention") if checkpoint else None
    if saved is None:
        raise ValueError(
            "--attn checkpoint needs a --checkpoint that records its attention setting (a basam export "
            "or training checkpoint)"
        )
    return AttentionConfig.from_dict(saved)


def split_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]
