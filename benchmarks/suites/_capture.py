"""Running a benchmark script's main() in-process and reading back the markdown tables it prints."""

from __future__ import annotations

import contextlib
import io
import re
import sys


def captured(main, argv: list[str]) -> str:
    """stdout of main() run with sys.argv = argv (the scripts parse sys.argv themselves); also
    echoed, so that a long run shows its progress."""
    saved, out = sys.argv, io.StringIO()
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(out):
            main()
    finally:
        sys.argv = saved
    print(out.getvalue(), end="", flush=True)
    return out.getvalue()


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every markdown table in text as (header cells, body rows of cells). A separator row starts a
    new table with the row above it as header, so tables printed back to back come apart."""
    blocks, block = [], []
    for line in text.splitlines() + [""]:
        if line.strip().startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif block:
            blocks.append(block)
            block = []
    tables = []
    for block in blocks:
        seps = [i for i, cells in enumerate(block) if i and all(re.fullmatch(r":?-+:?", c) for c in cells)]
        for n, i in enumerate(seps):
            end = seps[n + 1] - 1 if n + 1 < len(seps) else len(block)
            tables.append((block[i - 1], block[i + 1 : end]))
    return tables


def leading_number(cell: str) -> float:
    """1.92 from '1.92× (0.96–2.76)', 0.5 from '0.500 TFLOP'; ValueError if the cell starts otherwise."""
    m = re.match(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?", cell.replace(",", ""))
    if m is None:
        raise ValueError(f"no number in {cell!r}")
    return float(m.group())
