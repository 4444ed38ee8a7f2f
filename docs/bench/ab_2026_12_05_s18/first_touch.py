"""First fill of a journal chunk-row buffer, (40, 694,402) float32 as every-weight tracking of the paper CNN uses,
row by row with ``torch.sub(out=)``, page faults included; one torch thread. Run one process per line:

    for i in 1 2 3 4 5 6; do python first_touch.py empty empty; python first_touch.py huge huge huge; done

"empty": ``torch.empty``; "huge": an anonymous mapping advised ``MADV_HUGEPAGE`` (``responsibility.store._memory``).
"""

from __future__ import annotations

import mmap
import sys
import time

import torch

ROWS, WIDTH = 40, 694_402


def buffer(kind: str) -> torch.Tensor:
    if kind == "empty":
        return torch.empty(ROWS, WIDTH)
    m = mmap.mmap(-1, ROWS * WIDTH * 4, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_HUGEPAGE)
    return torch.frombuffer(m, dtype=torch.float32).view(ROWS, WIDTH)


def main() -> None:
    torch.set_num_threads(1)
    p, s = torch.randn(WIDTH), torch.randn(WIDTH)
    out = []
    for kind in sys.argv[1:]:
        start = time.perf_counter()
        b = buffer(kind)
        for r in range(ROWS):
            torch.sub(p, s, out=b[r])
        out.append(f"{kind} {1e3 * (time.perf_counter() - start):.0f} ms")
        del b
    print(", ".join(out))


if __name__ == "__main__":
    main()
