"""keep_freed_memory(): a freed large block is reused without faulting its pages in again."""

import subprocess
import sys

import pytest

PROGRAM = """
import resource, sys, torch, basam
applied = basam.keep_freed_memory() if sys.argv[1] == "keep" else False
block = torch.ones(64 * 2**20 // 4)  # 64 MB, above malloc's largest adaptive mmap threshold
del block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
# Smaller than the freed block: one of the same size asks for a few bytes more than the freed chunk
# holds (aligned allocation), misses it and grows the heap: the fragmentation that raises the peak.
block = torch.ones(48 * 2**20 // 4)
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults_on_reallocation(mode: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_reuses_a_freed_block_without_page_faults():
    applied, kept = faults_on_reallocation("keep")
    _, default = faults_on_reallocation("default")
    assert applied
    assert default > 10_000  # 48 MB of fresh 4 kB pages
    assert kept < 1_000
