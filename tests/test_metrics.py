"""SegMetrics against pysodmetrics called directly, a hand-checked 4x4 case, and exact merges."""

import csv
import json
import pickle
import warnings

import numpy as np
import py_sod_metrics as sod
import pytest

from basam.evaluation.metrics import SegMetrics, iou_dice, write_per_image_csv, write_summary_json


def _cases(n=6, seed=0):
    """n (prob map, gt) pairs, 24x20, with blobs so every metric is non-trivial."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        gt = np.zeros((24, 20), np.uint8)
        r, c = rng.integers(2, 10, size=2)
        gt[r : r + 10, c : c + 8] = 255
        if i == 0:
            gt[:] = 0  # an empty gt must work too
        noise = rng.random((24, 20))
        pred = np.clip(0.6 * (gt / 255.0) + 0.8 * noise - 0.2, 0, 1)
        out.append((pred, gt))
    return out


def test_equals_pysodmetrics_directly():
    cases = _cases()
    m = SegMetrics(hce=True)
    rows = [m.update(p, g) for p, g in cases]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fm = sod.Fmeasure()
    mae, sm, em, wfm, hce = (
        sod.MAE(),
        sod.Smeasure(),
        sod.Emeasure(),
        sod.WeightedFmeasure(),
        sod.HumanCorrectionEffortMeasure(),
    )
    for p, g in cases:
        p8 = np.rint(p * 255).astype(np.uint8)  # pysodmetrics' documented uint8 input
        for metric in (mae, sm, em, wfm, fm):
            metric.step(pred=p8, gt=g)
        hce.step(pred=np.where(p >= 0.5, 255, 0).astype(np.uint8), gt=g)
    res = m.results()
    fmr, emr = fm.get_results()["fm"], em.get_results()["em"]
    expected = {
        "MAE": mae.get_results()["mae"],
        "Smeasure": sm.get_results()["sm"],
        "wFmeasure": wfm.get_results()["wfm"],
        "HCE": hce.get_results()["hce"],
        "meanEm": emr["curve"].mean(),
        "maxEm": emr["curve"].max(),
        "adpEm": emr["adp"],
        "meanFm": fmr["curve"].mean(),
        "maxFm": fmr["curve"].max(),
        "adpFm": fmr["adp"],
    }
    for k, v in expected.items():
        assert res[k] == float(v), k  # the same calls on the same arrays: exact
    assert res["count"] == 6 and 0 < res["Smeasure"] < 1 and res["HCE"] > 0
    assert [r["smeasure"] for r in rows] == pytest.approx(sm.sms)
    assert [r["mae"] for r in rows] == pytest.approx(mae.maes)
    assert [r["hce"] for r in rows] == pytest.approx(hce.hces)


def test_hand_checked_4x4():
    gt = np.zeros((4, 4), np.uint8)
    gt[:2, :2] = 255
    # values k/255 so the uint8 conversion is exact; min 0 and max 1 so pysodmetrics'
    # min-max normalisation leaves it unchanged
    pred = np.array([[1.0, 1.0, 0.2, 0.0], [1.0, 0.2, 0.0, 0.0], [0.6, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    m = SegMetrics()
    row = m.update(pred, gt)
    # |err|: 0.8 at (1,1), 0.2 at (0,2), 0.6 at (2,0) -> 1.6 / 16
    assert row["mae"] == pytest.approx(0.1)
    # binary pred: (0,0) (0,1) (1,0) (2,0); gt: 2x2 block -> inter 3, union 5
    assert row["iou"] == pytest.approx(3 / 5) and row["dice"] == pytest.approx(6 / 8)
    res = m.results()
    assert res["MAE"] == pytest.approx(0.1) and res["mIoU"] == pytest.approx(0.6)
    assert res["mDice"] == pytest.approx(0.75) and "HCE" not in res
    assert iou_dice(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == (1.0, 1.0)
    # bool gt is the same as 0/255
    m2 = SegMetrics()
    assert m2.update(pred, gt > 0) == row


def test_input_errors():
    m = SegMetrics()
    gt = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="original resolution"):
        m.update(np.zeros((4, 5)), gt)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m.update(np.full((4, 4), 3.0), gt)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        m.update(np.full((4, 4), np.nan), gt)
    with pytest.raises(ValueError, match="uint8"):
        m.update(np.zeros((4, 4)), gt.astype(np.float32))
    assert len(m) == 0 and m.results()["count"] == 0 and np.isnan(m.results()["MAE"])


def test_merge_equals_one_pass():
    cases = _cases(n=7, seed=1)
    whole = SegMetrics(hce=True)
    for i, (p, g) in enumerate(cases):
        whole.update(p, g, key=i)
    # two ranks with contiguous halves, states sent through pickle as a process would
    a, b = SegMetrics(hce=True), SegMetrics(hce=True)
    for i, (p, g) in enumerate(cases):
        (a if i < 4 else b).update(p, g, key=i)
    merged = SegMetrics.merge([pickle.loads(pickle.dumps(s)) for s in (a.state(), b.state())])
    assert merged.results() == whole.results()  # exact, not approx
    # interleaved ranks (a DistributedSampler's split) come back in key order
    r0, r1 = SegMetrics(hce=True), SegMetrics(hce=True)
    for i, (p, g) in enumerate(cases):
        (r0 if i % 2 == 0 else r1).update(p, g, key=i)
    merged = SegMetrics.merge([r1.state(), r0.state()])
    assert merged.results() == whole.results()
    assert merged.keys == list(range(7))
    for name in ("precision", "recall", "fm", "em"):
        np.testing.assert_array_equal(merged.curves()[name], whole.curves()[name])
    with pytest.raises(ValueError, match="HCE"):
        SegMetrics.merge([SegMetrics(hce=False).state(), whole.state()])


def test_writers(tmp_path):
    m = SegMetrics()
    rows = [{"name": "a", **m.update(*_cases(2)[1])}, {"name": "b", "error": "unreadable"}]
    path = write_per_image_csv(rows, tmp_path / "out" / "per_image.csv")
    read = list(csv.DictReader(open(path)))
    assert [r["name"] for r in read] == ["a", "b"] and read[1]["mae"] == ""
    assert float(read[0]["mae"]) == rows[0]["mae"]
    summary = {"metrics": m.results(), "nan": float("nan"), "arr": np.arange(3)}
    data = json.loads(write_summary_json(summary, tmp_path / "s.json").read_text())
    assert data["nan"] is None and data["arr"] == [0, 1, 2]
    assert data["metrics"]["MAE"] == m.results()["MAE"]
