"""Segmentation metrics: a thin layer over pysodmetrics (py_sod_metrics) plus IoU and Dice.

The SOD metrics (MAE, S-measure, E-measure, F-measure beta^2 = 0.3, weighted F, HCE) are
pysodmetrics' own classes, fed exactly as it documents: pred uint8 0..255 (it min-max
normalises it, MATLAB's mapminmax), gt uint8 0..255 (it binarises gt > 128). IoU and Dice are
on the binary prediction pred >= 0.5 against gt > 127, per image, then averaged over images.
HCE (DIS) is computed on that same binary prediction.

Distributed evaluation: `state()` is a picklable dict of per-image lists; `SegMetrics.merge`
rebuilds one accumulator from several, so the summary is exactly that of one process that saw
every image, in order of the keys given to `update` (or in the order of the states).
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import py_sod_metrics as sod

# name in state() -> (attribute of SegMetrics, attribute of the pysodmetrics object)
_FIELDS = {
    "maes": ("_mae", "maes"),
    "sms": ("_sm", "sms"),
    "weighted_fms": ("_wfm", "weighted_fms"),
    "adaptive_ems": ("_em", "adaptive_ems"),
    "changeable_ems": ("_em", "changeable_ems"),
    "adaptive_fms": ("_fm", "adaptive_fms"),
    "changeable_fms": ("_fm", "changeable_fms"),
    "precisions": ("_fm", "precisions"),
    "recalls": ("_fm", "recalls"),
    "hces": ("_hce", "hces"),
}
_CURVES = ("changeable_ems", "changeable_fms", "precisions", "recalls")


def _check(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (pred float64 (H, W) in [0, 1], gt uint8 (H, W) 0..255), or ValueError."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    if gt.ndim != 2:
        raise ValueError(f"gt must be (H, W), got shape {gt.shape}")
    if pred.shape != gt.shape:
        raise ValueError(
            f"pred shape {pred.shape} != gt shape {gt.shape}: metrics are taken at "
            "the ground truth's original resolution; resize the prediction to it"
        )
    pred = pred.astype(np.float64)
    if not np.isfinite(pred).all():
        raise ValueError("pred must be a probability map in [0, 1]; it holds NaN or inf")
    if pred.size and (pred.min() < 0 or pred.max() > 1):
        raise ValueError(
            f"pred must be a probability map in [0, 1], got range [{pred.min()}, "
            f"{pred.max()}] (apply a sigmoid to logits)"
        )
    if gt.dtype == bool:
        gt = gt.astype(np.uint8) * 255
    elif gt.dtype != np.uint8:
        raise ValueError(f"gt must be uint8 0..255 or bool, got {gt.dtype}")
    return pred, gt


def iou_dice(pred_bin: np.ndarray, gt_bin: np.ndarray) -> tuple[float, float]:
    """Two bool (H, W) masks -> (IoU, Dice). Both empty counts as a perfect match (1, 1)."""
    inter = np.count_nonzero(pred_bin & gt_bin)
    union = np.count_nonzero(pred_bin | gt_bin)
    total = np.count_nonzero(pred_bin) + np.count_nonzero(gt_bin)
    if union == 0:
        return 1.0, 1.0
    return inter / union, 2.0 * inter / total


# The scores of every evaluation, in report order (HCE is added for DIS5K).
SCORES = ("MAE", "Smeasure", "wFmeasure", "meanEm", "maxEm", "adpEm", "meanFm", "maxFm", "adpFm", "mIoU", "mDice")


class SegMetrics:
    """Accumulates per-image metrics; `results()` gives the dataset summary.

    >>> m = SegMetrics(hce=False)
    >>> row = m.update(prob_map, gt)      # prob_map float (H, W) in [0, 1], gt uint8/bool (H, W)
    >>> m.results()["MAE"]
    """

    def __init__(self, hce: bool = False):
        self.hce = hce
        self._mae, self._sm, self._em = sod.MAE(), sod.Smeasure(), sod.Emeasure()
        self._wfm = sod.WeightedFmeasure()
        with warnings.catch_warnings():  # Fmeasure warns it is 'to be replaced'; same numbers
            warnings.simplefilter("ignore")
            self._fm = sod.Fmeasure(beta=0.3)
        self._hce = sod.HumanCorrectionEffortMeasure() if hce else None
        self.ious: list[float] = []
        self.dices: list[float] = []
        self.keys: list = []

    def __len__(self) -> int:
        return len(self.ious)

    def update(self, pred: np.ndarray, gt: np.ndarray, key=None) -> dict:
        """Add one image. pred float (H, W) in [0, 1]; gt uint8 0..255 or bool (H, W), same
        size. key: a sortable id (e.g. the dataset index) that fixes the order after `merge`.
        -> per-image values {mae, smeasure, wfmeasure, adp_em, adp_fm, max_fm, iou, dice[, hce]}.
        """
        pred, gt = _check(pred, gt)
        # pysodmetrics' documented input: uint8 0..255 (rounded, as an 8-bit PNG would store it)
        pred8 = np.rint(pred * 255).astype(np.uint8)
        for metric in (self._mae, self._sm, self._em, self._wfm, self._fm):
            metric.step(pred=pred8, gt=gt)
        binary = pred >= 0.5
        iou, dice = iou_dice(binary, gt > 127)
        self.ious.append(iou)
        self.dices.append(dice)
        self.keys.append(key)
        row = {
            "mae": float(self._mae.maes[-1]),
            "smeasure": float(self._sm.sms[-1]),
            "wfmeasure": float(self._wfm.weighted_fms[-1]),
            "adp_em": float(self._em.adaptive_ems[-1]),
            "adp_fm": float(self._fm.adaptive_fms[-1]),
            "max_fm": float(np.max(self._fm.changeable_fms[-1])),
            "iou": iou,
            "dice": dice,
        }
        if self._hce is not None:
            # HCE wants a binary prediction; 0/255 survives pysodmetrics' min-max unchanged
            self._hce.step(pred=binary.astype(np.uint8) * 255, gt=gt)
            row["hce"] = float(self._hce.hces[-1])
        return row

    def state(self) -> dict:
        """Picklable per-image lists (numpy arrays, curves (n, 256)) for `merge`."""
        out = {
            "hce": self.hce,
            "keys": list(self.keys),
            "ious": np.asarray(self.ious, dtype=np.float64),
            "dices": np.asarray(self.dices, dtype=np.float64),
        }
        for name, (owner, attr) in _FIELDS.items():
            if getattr(self, owner) is None:
                continue
            values = getattr(getattr(self, owner), attr)
            if name in _CURVES:
                out[name] = np.stack(values).astype(np.float64) if values else np.zeros((0, 256))
            else:
                out[name] = np.asarray(values, dtype=np.float64)
        return out

    @classmethod
    def merge(cls, states: list[dict]) -> SegMetrics:
        """One accumulator holding every image of `states` (from `state()` on each rank).
        Images are ordered by key when every image has one, else kept in the given order;
        float sums depend on order, so this is what makes the result exactly reproducible."""
        if not states:
            raise ValueError("merge needs at least one state")
        hce = {bool(s["hce"]) for s in states}
        if len(hce) != 1:
            raise ValueError("cannot merge states with and without HCE")
        merged = cls(hce=hce.pop())
        keys = [k for s in states for k in s["keys"]]
        order = list(range(len(keys)))
        if keys and all(k is not None for k in keys):
            order.sort(key=lambda i: keys[i])  # stable: equal keys keep the states' order
        merged.keys = [keys[i] for i in order]

        def gather(name):
            return [v for s in states for v in s[name]]

        ious, dices = gather("ious"), gather("dices")
        merged.ious = [float(ious[i]) for i in order]
        merged.dices = [float(dices[i]) for i in order]
        for name, (owner, attr) in _FIELDS.items():
            if getattr(merged, owner) is not None:
                values = gather(name)
                setattr(getattr(merged, owner), attr, [values[i] for i in order])
        return merged

    def results(self) -> dict:
        """-> {count, MAE, Smeasure, wFmeasure, meanEm, maxEm, adpEm, meanFm, maxFm, adpFm,
        mIoU, mDice[, HCE]} as floats (NaN when no image was added). Fm is beta^2 = 0.3;
        mean/max are over the 256 thresholds of the dataset-mean curve, as in the SOD papers."""
        keys = [*SCORES, *(["HCE"] if self.hce else [])]
        if len(self) == 0:
            return {"count": 0, **{k: math.nan for k in keys}}
        em = self._em.get_results()["em"]
        fm = self._fm.get_results()["fm"]
        out = {
            "count": len(self),
            "MAE": self._mae.get_results()["mae"],
            "Smeasure": self._sm.get_results()["sm"],
            "wFmeasure": self._wfm.get_results()["wfm"],
            "meanEm": em["curve"].mean(),
            "maxEm": em["curve"].max(),
            "adpEm": em["adp"],
            "meanFm": fm["curve"].mean(),
            "maxFm": fm["curve"].max(),
            "adpFm": fm["adp"],
            "mIoU": np.mean(np.asarray(self.ious, dtype=np.float64)),
            "mDice": np.mean(np.asarray(self.dices, dtype=np.float64)),
        }
        if self._hce is not None:
            out["HCE"] = self._hce.get_results()["hce"]
        return {k: (v if k == "count" else float(v)) for k, v in out.items()}

    def curves(self) -> dict:
        """Dataset-mean curves over the 256 thresholds, for plots: precision, recall, fm, em."""
        if len(self) == 0:
            raise ValueError("no images added")
        fm = self._fm.get_results()
        return {
            "precision": fm["pr"]["p"],
            "recall": fm["pr"]["r"],
            "fm": fm["fm"]["curve"],
            "em": self._em.get_results()["em"]["curve"],
        }


def _plain(x):
    """numpy scalars/arrays -> Python; NaN/inf -> None (strict JSON has neither)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def write_per_image_csv(rows: list[dict], path: str | Path) -> Path:
    """One row per image; columns are the union of the rows' keys in first-seen order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _plain(v) for k, v in row.items()})
    return path


def write_summary_json(summary: dict, path: str | Path) -> Path:
    """A summary dict (numpy values allowed) -> strict JSON file, NaN written as null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(summary), indent=2, allow_nan=False) + "\n")
    return path
