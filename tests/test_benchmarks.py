"""`python -m benchmarks SUITE --quick` for every suite: the JSON it writes carries the stamp
(versions, commit, CPU) and finite figures, and `python -m benchmarks.tables` renders it."""

import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch

import basam

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import tables  # noqa: E402 (after the path that makes benchmarks importable)
from benchmarks.__main__ import SUITES, main  # noqa: E402


@pytest.mark.slow
@pytest.mark.parametrize("suite", list(SUITES))
def test_quick_suite_writes_a_stamped_result(suite, tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        assert main([suite, "--quick", "--out", str(tmp_path), "--threads", "1"]) == 0
    finally:
        torch.set_num_threads(threads)
        basam.use_fused_attention(False)
    record = json.loads((tmp_path / f"{suite}-quick.json").read_text())
    stamp = record["stamp"]
    assert record["suite"] == suite and record["quick"] is True
    assert record["command"] == f"python -m benchmarks {suite} --quick --out {tmp_path} --threads 1"
    assert stamp["basam_version"] == basam.__version__
    assert stamp["torch"] == torch.__version__
    assert stamp["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert stamp["threads"] == 1
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", stamp["commit"])
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", stamp["src_tree"])
    assert stamp["cpu_model"] and stamp["date"][:2] == "20"
    assert record["figures"] and all(math.isfinite(v) for v in record["figures"].values())
    assert record["sections"]
    for section in record["sections"]:
        assert section["rows"], section["name"]
        assert all(len(row) == len(section["columns"]) for row in section["rows"]), section["name"]
    page = tables.render([record])
    assert "**Smoke figures**" in page and f"`{record['command']}`" in page
    assert all(f"### {section['title']}" in page for section in record["sections"])


def test_unknown_suite_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["encoderz", "--quick"])
    assert e.value.code == 2
    assert "unknown suite encoderz; choose from encoder, memory" in capsys.readouterr().err


def test_tables_refuses_a_file_that_is_not_a_result(tmp_path, capsys):
    (tmp_path / "notes.json").write_text(json.dumps({"suite": "encoder"}))
    with pytest.raises(SystemExit) as e:
        tables.main([str(tmp_path / "notes.json")])
    assert e.value.code == 2
    assert capsys.readouterr().err.startswith(f"benchmarks.tables: {tmp_path / 'notes.json'} is not a benchmark result")


def test_tables_render_a_table_and_a_full_run_unlabelled():
    record = {
        "suite": "windows",
        "quick": False,
        "command": "python -m benchmarks windows",
        "seconds": 5.0,
        "stamp": {
            "commit": "a" * 40,
            "dirty": False,
            "basam_version": "0",
            "torch": "t",
            "python": "3",
            "cpu_model": "CPU X",
            "cpu": "AVX2 (no bf16/vnni), 2 threads",
            "cores": 2,
            "date": "2026",
            "load_average": [1.0],
        },
        "sections": [
            {"name": "w", "title": "Windows", "text": "a note", "columns": ["a", "b"], "rows": [["1", "x|y"]]}
        ],
        "figures": {"w.a": 1.0},
    }
    page = tables.render([record])
    assert "### Windows\n\n| a | b |\n|---|---|\n| 1 | x\\|y |\n\na note" in page
    assert "Smoke figures" not in page and "on CPU X (AVX2 (no bf16/vnni), 2 threads; 2 cores)" in page


def test_a_full_run_supersedes_the_smoke_run_of_its_suite():
    def record(quick, title):
        return {
            "suite": "serve",
            "quick": quick,
            "command": "c",
            "seconds": 1.0,
            "figures": {},
            "stamp": {
                "commit": "b" * 40,
                "basam_version": "0",
                "torch": "t",
                "python": "3",
                "cpu_model": "m",
                "cpu": "c",
                "cores": 2,
                "date": "d",
            },
            "sections": [{"name": "s", "title": title, "text": "", "columns": ["a"], "rows": [["1"]]}],
        }

    page = tables.render([record(True, "Smoke title"), record(False, "Full title")])
    assert "### Full title" in page and "Smoke title" not in page
    assert "### Smoke title" in tables.render([record(True, "Smoke title")])


def test_markdown_tables_come_apart_when_printed_back_to_back():
    from benchmarks.suites._capture import leading_number, markdown_tables

    text = (
        "## 2a. title\n| size | IoU |\n|---|---|\n| 256 | 0.99 |\n| 256 | 0.98 |\n| size | IoU |\n|------|-----|\n"
        "| 1024 | 0.97 |\nnot a table\n| a |\n| b |\n\n| x | y |\n|:-:|---|\n| 1.5e-3 | 2× (1–3) |\n"
    )
    assert markdown_tables(text) == [
        (["size", "IoU"], [["256", "0.99"], ["256", "0.98"]]),
        (["size", "IoU"], [["1024", "0.97"]]),
        (["x", "y"], [["1.5e-3", "2× (1–3)"]]),
    ]
    assert leading_number("2× (1–3)") == 2.0 and leading_number("1.5e-3") == 0.0015
    with pytest.raises(ValueError):
        leading_number("IoU min")
