"""benchmarks/gpu_check.py without a GPU: one line saying it is skipped, exit status 0."""

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_says_it_is_skipped_without_cuda():
    run = subprocess.run(
        [sys.executable, str(SCRIPT)],
        env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines() == [run.stdout.strip()]  # one line
    assert run.stdout.startswith("gpu_check: skipped: no CUDA device")
