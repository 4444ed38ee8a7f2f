"""Zeroed R-sized host buffers, taken from the OS in transparent huge pages where it offers them.

A fold's accumulators and a lazy read's are as large as the R they sum (125 MB for issue 12's store) and new.
``torch.zeros`` writes every byte, and the first write to each 4 KiB page is a page fault. Fresh anonymous memory
is zero already, and advised into 2 MiB pages it faults 512 times less often: two (10,000 x 1,562) float32 buffers
made and then added to once took 53 ms with ``torch.zeros`` and 13 ms from huge pages, on one thread of a 2-core
VM (docs/benchmarks.md). Where the kernel gives no huge pages (transparent_hugepage "never", other systems),
faulting 4 KiB pages in during the first pass was slower than ``torch.zeros`` (79 ms), so it is used instead.
"""

from __future__ import annotations

import functools
import mmap
from pathlib import Path

import torch

# Smaller buffers come from the allocator's own pools.
MIN_BYTES = 8 << 20
_THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@functools.cache
def huge_pages_available() -> bool:
    """Whether anonymous memory advised ``MADV_HUGEPAGE`` gets transparent huge pages here."""
    if not hasattr(mmap, "MADV_HUGEPAGE"):
        return False
    try:
        mode = _THP_SETTING.read_text()
    except OSError:
        return False
    return "[always]" in mode or "[madvise]" in mode


def zeros(rows: int, cols: int, device: torch.device | None = None) -> torch.Tensor:
    """A zero ``(rows, cols)`` float32 tensor on ``device`` (the CPU by default); a large one on the CPU in huge
    pages when :func:`huge_pages_available`. It owns its memory: the mapping goes with the tensor."""
    device = torch.device("cpu") if device is None else device
    nbytes = rows * cols * 4
    if device.type != "cpu" or nbytes < MIN_BYTES or not huge_pages_available():
        return torch.zeros(rows, cols, device=device)
    buffer = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        buffer.madvise(mmap.MADV_HUGEPAGE)
    except OSError:  # refused (a kernel without THP): still zeroed memory, in small pages
        pass
    return torch.frombuffer(buffer, dtype=torch.float32).view(rows, cols)
