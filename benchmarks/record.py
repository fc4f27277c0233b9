"""What one suite run writes: the stamp of the machine and versions, its tables, its figures.

A result is a JSON object

    {"suite": str, "quick": bool, "command": str, "stamp": {...}, "seconds": float,
     "sections": [{"name", "title", "text", "columns": [str], "rows": [[str]]}],
     "figures": {"SECTION.NAME": float}}

rows are the table cells as printed (already formatted); figures are the numbers a reader quotes
or a test checks (ratios measured in one run, seconds, GB), all finite.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo ('unknown' where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def git_commit() -> tuple[str, str, bool]:
    """(commit of the working tree, git's id of its src/ tree, whether tracked files have uncommitted
    changes). The src/ tree id names the measured library even after the commit is rebased."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        dirty = git("status", "--porcelain", "--untracked-files=no") != ""
        return git("rev-parse", "HEAD"), git("rev-parse", "HEAD:src"), dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", "unknown", False


def stamp() -> dict:
    """Versions and machine of this run."""
    import basam
    from basam.runtime.precision import describe_cpu

    commit, src_tree, dirty = git_commit()
    return {
        "basam_version": basam.__version__,
        "commit": commit,
        "src_tree": src_tree,
        "dirty": dirty,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu": describe_cpu(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average": load_average(),
    }


@dataclass
class Section:
    name: str
    title: str
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    text: str = ""

    def row(self, *cells) -> None:
        self.rows.append([str(c) for c in cells])
        print("  | " + " | ".join(self.rows[-1]) + " |", flush=True)


@dataclass
class Result:
    """What a suite builds: sections (tables) and figures, with a name prefix per section."""

    sections: list[Section] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def section(self, name: str, title: str, columns: list[str], text: str = "") -> Section:
        print(f"\n## {title}\n", flush=True)
        self.sections.append(Section(name, title, list(columns), [], text))
        return self.sections[-1]

    def figure(self, section: Section, name: str, value: float) -> None:
        """A number to keep; a NaN or infinity means the measurement broke, so it is refused here."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{section.name}.{name} is not finite: {value}")
        self.figures[f"{section.name}.{name}"] = value

    def note(self, section: Section, text: str) -> None:
        section.text = (section.text + "\n\n" + text).strip()
        print(text, flush=True)


def ratio_cell(r: tuple[float, float, float]) -> str:
    """A paired ratio (median, min, max) as 'median× (min–max)'."""
    return f"{r[0]:.2f}× ({r[1]:.2f}–{r[2]:.2f})"
