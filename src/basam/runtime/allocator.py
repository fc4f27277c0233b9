"""The C allocator's part in CPU speed.

glibc's malloc hands every large block (above 128 kB to 32 MB, its adaptive threshold) out as a
fresh memory mapping and gives it back to the kernel when freed. An encoder forward allocates and
frees tensors of tens to hundreds of MB, block after block, so each one arrives unmapped and its
first touch faults in every 4 kB page: system time, and on a busy machine a large share of the
wall time (`python -m benchmarks memory` measures it, with the official SAM code beside ours).
Asking malloc to serve large blocks from its heap and to keep freed memory removes most of it.
The price is memory: the heap fragments, so the peak grows (vit_b `basam` at 2048 px: 1.39 →
2.03 GiB), and the process keeps its peak until it exits. So it is opt-in, for a process that
encodes image after image at a size it can afford (docs/speed.md, "The allocator"); no
`basam` command applies it.
"""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD = -1  # <malloc.h>: free memory above this at the heap's top goes back to the kernel
_M_MMAP_THRESHOLD = -3  # <malloc.h>: blocks at least this large get their own mapping
_LARGEST = 2**31 - 1  # mallopt takes an int


def keep_freed_memory() -> bool:
    """Tell glibc malloc to serve large blocks from its heap and not to return freed memory to the
    kernel, for the rest of this process. Returns whether it applied (False where the C library is
    not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, _LARGEST)) and bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST))
