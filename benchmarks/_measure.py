"""Timing and process-memory readings shared by the benchmark scripts (CUDA-synchronised timer; Linux /proc).

The resident high-water mark (VmHWM) is reset through ``/proc/self/clear_refs`` before a measured call,
so each call's peak is read in-process; where the reset is refused, ``ru_maxrss`` (the process peak) is
the fallback.
"""

from __future__ import annotations

import resource
import time


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def rss() -> int:
    """Current resident set size in bytes."""
    return _status("VmRSS")


def hwm_reset() -> bool:
    """Reset the resident high-water mark; False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def hwm(reset_ok: bool = True) -> int:
    """Peak resident set size in bytes since the last reset (or of the process, when it failed)."""
    if reset_ok:
        return _status("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed(fn, cuda: bool) -> float:
    """Seconds of one call of ``fn``, synchronising the GPU before and after when ``cuda``."""
    import torch

    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t
