"""basam's kept benchmarks: one entry point, named suites, one JSON file per run.

    python -m benchmarks SUITE [SUITE ...] [--quick] [--out results/bench] [--threads 2]
    python -m benchmarks.tables results/bench/*.json > docs/benchmarks.md

Suites: encoder (speed against the official code, precision of bf16/int8), memory (peak RSS at
large sizes), amg (the mask generator against the official one), serve (the page's latency),
windows (cost of scaled windows), onnx (ONNX Runtime against torch). --quick runs each at tiny
sizes in seconds: smoke figures that check the machinery, not measurements to quote.

The folder also holds the scripts the suites call into, which still run on their own:
bench_encoder.py (every encoder section at full size; each precision's masks on your checkpoint and
images), bench_amg.py (segment everything on your image), flops_encoder.py (FLOPs by size) and
_common.py (shared helpers; one peak-RSS measurement from the command line).
"""

import sys
from pathlib import Path

# The scripts here import each other as top-level modules (`import _common`), as they do when run
# directly; the suites import them the same way.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))
