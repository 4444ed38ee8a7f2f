"""The fold: the journal summed into stored R (one generation per parameter) and its top-k index.

Arrays of a fold generation (``g<G>``: the manifest generation that made it current)::

    fold/<p>/g<G>/pos, neg                            (example, unit) folded R_pos, R_neg (layout.r_dtype)
    fold/<p>/g<G>/top_<sign>_ids, top_<sign>_values   (rank, unit) per-column top-k, sign in layout.topk_signs

``fold/<p>`` carries the attribute ``current`` (the name of the current generation) for readers that do not parse
the manifest (``xarray.open_zarr(path, group=f"fold/{p}/{current}")``); the manifest stays the commit point.

A fold works one column block at a time: the block's R is summed (the one accumulation path), handed to a writer
thread that writes it in whole chunks while the next block is summed, and ranked for the top-k index on the way.
Each parameter is committed by its own manifest write, so an interrupted fold keeps the parameters it finished.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import zarr

from responsibility.kernels import FoldKernel, index_add_fold, topk_columns
from responsibility.progress import bar
from responsibility.store._accumulate import accumulate, block_width, tensor
from responsibility.store._journal import Journal, Membership
from responsibility.store._memory import zeros
from responsibility.store._running import RunningSums
from responsibility.store.layout import FLOAT16_MAX, ArraySpec, create_arrays
from responsibility.store.spec import ParamSpec

DEFAULT_FOLD_BUDGET = 1 << 30
# Conservative end-to-end rates of store.fold() on a 2-core machine (scripts/bench_fold.py, docs/benchmarks.md):
# bytes of R written (with its top-k index ranked) and cells summed per second. Faster machines fold faster.
R_BYTES_PER_SECOND = 150e6
CELLS_PER_SECOND = 0.5e9
# Widest top-k chunk: a query reading a few columns of the index reads (k, this) cells per chunk at most.
TOPK_CHUNK_UNITS = 1 << 16


@dataclass
class FoldReport:
    """What a call to :meth:`ResponsibilityStore.fold` did."""

    parameters: list[str]
    steps: int
    cells: int
    seconds: float
    r_bytes: int = 0  # bytes of R (both parts, as stored) written
    topk_seconds: float = 0.0  # of ``seconds``, spent ranking the top-k index

    @property
    def cells_per_second(self) -> float:
        return self.cells / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class FoldPlan:
    """What a fold of the given parameters would do: cells to add and bytes of R and top-k index to write."""

    parameters: list[str]
    cells: int
    r_bytes: int
    topk_bytes: int

    @property
    def estimated_seconds(self) -> float:
        """A conservative estimate of the fold's time (rates measured on a 2-core machine)."""
        return self.r_bytes / R_BYTES_PER_SECOND + self.cells / CELLS_PER_SECOND


def plan(journal: Journal, parameters: Sequence[str] | None) -> FoldPlan:
    state = journal.state
    names = list(parameters) if parameters is not None else state.spec.names
    todo = [state.spec.param(name) for name in names if state.folded_steps(name) < state.steps]
    counts = journal.members(0, state.steps).counts if todo else np.zeros(0, np.int64)
    n, k = state.num_examples, min(state.layout.topk, state.num_examples)
    itemsize = np.dtype(state.layout.r_dtype).itemsize
    cells = sum(int(counts[_base_steps(journal, p) :].sum()) * p.units for p in todo)
    return FoldPlan(
        parameters=[p.name for p in todo],
        cells=cells,
        r_bytes=sum(2 * n * p.units * itemsize for p in todo),
        topk_bytes=sum(len(state.layout.topk_signs) * k * p.units * 12 for p in todo),
    )


def fold(
    journal: Journal,
    parameters: Sequence[str] | None,
    budget_bytes: int,
    kernel: FoldKernel = index_add_fold,
    device: torch.device | None = None,
    sums: RunningSums | None = None,
) -> FoldReport:
    """Fold the committed journal into R and rebuild the top-k index (see :meth:`ResponsibilityStore.fold`);
    a parameter whose running ``sums`` cover exactly the steps to add is written from them."""
    state = journal.state
    state.require_writable()
    device = device or torch.device("cpu")
    names = list(parameters) if parameters is not None else state.spec.names
    t_start = time.perf_counter()
    todo = [state.spec.param(name) for name in names if state.folded_steps(name) < state.steps]
    remove_orphans(journal)
    report = FoldReport(parameters=names, steps=state.steps, cells=0, seconds=0.0)
    if todo:
        members = journal.members(0, state.steps)
        total = plan(journal, [p.name for p in todo]).r_bytes
        # Each commit bumps the generation by one: the i-th parameter's new fold is generation + 1 + i.
        shapes = [_block_shape(journal, p, budget_bytes) for p in todo]
        paths = [f"fold/{p.name}/g{state.generation + 1 + i}" for i, p in enumerate(todo)]
        outs = _create_generations(journal, todo, paths, [topk for _, topk in shapes])
        with _deferred_interrupt() as interrupted, _Writer() as writer, _core_for_writer(device):
            progress = bar(total=total, desc="fold", unit="B", unit_scale=True)
            try:
                for p, path, out, (width, _) in zip(todo, paths, outs, shapes, strict=True):
                    # Running sums start from nothing: they are R itself only for a parameter with no fold yet.
                    summed = (
                        sums.take(p.name, state.steps) if sums is not None and not _base_steps(journal, p) else None
                    )
                    _fold_parameter(
                        journal,
                        p,
                        out,
                        width,
                        members,
                        kernel,
                        device,
                        writer,
                        report,
                        interrupted,
                        progress,
                        budget_bytes,
                        summed,
                    )
                    _commit(journal, p, path)
            except BaseException:
                writer.wait(quietly=True)  # nothing may still write into a generation removed now
                remove_orphans(journal)  # the failed generation and those not begun leave no trace
                raise
            finally:
                progress.close()
    report.seconds = time.perf_counter() - t_start
    return report


def _base_steps(journal: Journal, p: ParamSpec) -> int:
    """Steps of the current fold a new fold of ``p`` adds to: lossy stored R is never a base for more sums."""
    return journal.state.folded_steps(p.name) if journal.state.exact_r else 0


def _block_shape(journal: Journal, p: ParamSpec, budget_bytes: int) -> tuple[int, int]:
    """Columns of ``p`` folded at once, and the top-k index's chunk width (a block writes whole top-k chunks)."""
    n = journal.state.num_examples
    # Per column: the block being summed and the one being written (two parts each); journal reading and the
    # kernels' scratch take the other half of the budget (see accumulate).
    align = journal.state.layout.r_chunk_units
    width = block_width(p.units, n * 4 * 2 * 2, budget_bytes // 2, align)
    topk_chunk = align * max(1, TOPK_CHUNK_UNITS // align)  # whole R chunks per top-k chunk
    if width > topk_chunk:
        width -= width % topk_chunk  # whole top-k chunks per block
    return width, min(width, topk_chunk)


def _fold_parameter(
    journal: Journal,
    p: ParamSpec,
    out: dict[str, zarr.Array],
    width: int,
    members: Membership,
    kernel: FoldKernel,
    device: torch.device,
    writer: _Writer,
    report: FoldReport,
    interrupted: Callable[[], bool],
    progress: Any,
    budget_bytes: int,
    summed: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> None:
    """Fold one parameter into the arrays ``out`` of its new generation, every write finished when it returns
    (:func:`fold` commits it); ``summed``: its R already summed over the steps to add (from a base of nothing: a
    fresh fold)."""
    state, arrays = journal.state, journal.arrays
    n, steps = state.num_examples, state.steps
    done = _base_steps(journal, p)
    old = state.fold_path(p.name)
    k = min(state.layout.topk, n)
    for c0 in range(0, p.units, width):
        if interrupted():
            raise KeyboardInterrupt(f"fold of {p.name!r} interrupted; parameters folded before it are committed")
        cols = slice(c0, min(p.units, c0 + width))
        if summed is not None:
            acc_pos, acc_neg = summed[0][:, cols], summed[1][:, cols]
        elif old is not None and done:
            acc_pos = tensor(arrays.read(arrays.fold(p.name, "pos"), slice(None), cols), device)
            acc_neg = tensor(arrays.read(arrays.fold(p.name, "neg"), slice(None), cols), device)
        else:
            acc_pos, acc_neg = zeros(n, cols.stop - c0, device), zeros(n, cols.stop - c0, device)
        if summed is None:
            accumulate(journal, p, cols, done, steps, acc_pos, acc_neg, budget_bytes // 2, kernel, members)
        host = _to_host(acc_pos, acc_neg)
        stored = [_to_stored(journal, p.name, a) for a in host]
        writer.submit(_write_block, out, cols, stored)
        # Ranked where R was folded (on a GPU many times faster than on the host) while the writer writes it.
        ranked = host if acc_pos.device == host[0].device else (acc_pos, acc_neg)
        t0 = time.perf_counter()
        top = {s: _host_topk(_parts(*ranked, s), k) for s in state.layout.topk_signs} if k else {}
        report.topk_seconds += time.perf_counter() - t0
        writer.submit(_write_topk, out, cols, top)
        report.cells += int(members.counts[done:].sum()) * (cols.stop - c0)
        report.r_bytes += sum(a.nbytes for a in stored)
        progress.update(sum(a.nbytes for a in stored))
    writer.wait()


def _commit(journal: Journal, p: ParamSpec, path: str) -> None:
    """Make ``path`` the current fold of ``p``: the manifest write is the commit point; then the pointer for other
    readers, and the old generation goes."""
    state = journal.state
    old = state.fold_path(p.name)
    state.write_manifest(folded={**state.manifest["folded"], p.name: {"steps": state.steps, "path": path}})
    state.group[f"fold/{p.name}"].attrs.update({"current": path.rsplit("/", 1)[1], "steps": state.steps})
    if old is not None:
        journal.arrays.delete(old)


def _to_host(pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Contiguous host copies of a block's two parts. From a GPU they go to page-locked memory, which torch's
    caching host allocator keeps for the next block and fold: on an H200 host two 62.5 MB blocks took 98 ms to
    pageable memory, 2.5 ms to cached page-locked memory (80 ms the first time, when it is allocated)."""
    if pos.device.type != "cuda":
        return pos.cpu().contiguous(), neg.cpu().contiguous()
    pinned = [torch.empty(b.shape, dtype=b.dtype, pin_memory=True).copy_(b, non_blocking=True) for b in (pos, neg)]
    torch.cuda.current_stream(pos.device).synchronize()  # the writer reads them next
    return pinned[0], pinned[1]


def _parts(pos: torch.Tensor, neg: torch.Tensor, sign: str) -> list[torch.Tensor]:
    return {"pos": [pos], "neg": [neg], "abs": [pos, neg]}[sign]


def _host_topk(parts: list[torch.Tensor], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids, values = topk_columns(parts, k)
    return ids.cpu(), values.cpu()


def _write_block(out: dict[str, zarr.Array], cols: slice, stored: list[np.ndarray]) -> None:
    out["pos"][:, cols], out["neg"][:, cols] = stored


def _write_topk(out: dict[str, zarr.Array], cols: slice, top: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    for s, (ids, vals) in top.items():
        out[f"top_{s}_ids"][:, cols] = ids.numpy()
        out[f"top_{s}_values"][:, cols] = vals.numpy()


def _to_stored(journal: Journal, name: str, acc: torch.Tensor) -> np.ndarray:
    if journal.state.exact_r:
        return acc.numpy()
    peak = float(acc.max()) if acc.numel() else 0.0
    if peak > FLOAT16_MAX:
        raise ValueError(
            f"{journal.state.path}: R of {name!r} reaches {peak:.4g}, beyond float16's range ({FLOAT16_MAX:g}); "
            "this store needs r_dtype='float32'"
        )
    return acc.numpy().astype(np.float16)


def _create_generations(
    journal: Journal, params: Sequence[ParamSpec], paths: Sequence[str], topk_chunks: Sequence[int]
) -> list[dict[str, zarr.Array]]:
    """The new fold generations of ``params`` (groups at ``paths``, with their arrays), made in one
    ``zarr.create_hierarchy`` call: one parameter at a time cost about 35 ms of metadata round trips each (2.2 s of
    a 62-parameter ResNet-18 fold). New: generations a killed fold left behind were removed when this fold began."""
    state = journal.state
    n, lay = state.num_examples, state.layout
    specs: dict[str, ArraySpec] = {}
    unshuffled: set[str] = set()
    for p, path, topk_chunk in zip(params, paths, topk_chunks, strict=True):
        chunks = (min(n, lay.r_chunk_examples), min(p.units, lay.r_chunk_units))
        for s in ("pos", "neg"):
            specs[f"{path}/{s}"] = ((n, p.units), lay.r_dtype, chunks, ("example", "unit"))
            if p.example_form is not None and lay.r_dtype == "float32":  # see Layout.compressors
                unshuffled.add(f"{path}/{s}")
        k = min(lay.topk, n)
        if k:
            # A fold block writes whole top-k chunks: one, or a whole number of them.
            tchunks = (k, min(p.units, topk_chunk))
            for s in lay.topk_signs:
                for kind, dtype in (("ids", "int64"), ("values", "float32")):
                    specs[f"{path}/top_{s}_{kind}"] = ((k, p.units), dtype, tchunks, ("rank", "unit"))
    made = create_arrays(state.group, specs, lay, unshuffled, groups={path: {"steps": state.steps} for path in paths})
    by_path: dict[str, dict[str, zarr.Array]] = {path: {} for path in paths}
    for name, arr in made.items():
        path, _, leaf = name.rpartition("/")
        by_path[path][leaf] = arr
    return [by_path[path] for path in paths]


def remove_orphans(journal: Journal) -> list[str]:
    """Delete fold generations the manifest does not reference (left by an interrupted or crashed fold)."""
    found = orphans(journal)
    for path in found:
        journal.arrays.delete(path)
    return found


def orphans(journal: Journal) -> list[str]:
    """Fold generations in the store that the manifest does not reference."""
    state = journal.state
    current = {entry["path"] for entry in state.manifest["folded"].values()}
    try:
        folds = state.group["fold"]
    except KeyError:
        return []
    found = []
    if not isinstance(folds, zarr.Group):
        return []
    for name, node in folds.groups():
        found += [f"fold/{name}/{gen}" for gen, _ in node.groups() if f"fold/{name}/{gen}" not in current]
    return sorted(found)


class _Writer:
    """One background thread that writes blocks in submission order; at most one block waits behind the running
    one, which bounds memory to two blocks."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="responsibility-fold-writer")
        self._pending: list[Future] = []

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        while len(self._pending) > 1:
            self._pending.pop(0).result()
        self._pending.append(self._executor.submit(fn, *args))

    def wait(self, quietly: bool = False) -> None:
        """Wait for every submitted write; raise the first failure unless ``quietly``. After a failure the writes
        not yet begun are cancelled and a running one is waited for: nothing writes once this returns or raises
        (the caller may then delete what they were writing into)."""
        pending, self._pending = self._pending, []
        failure: BaseException | None = None
        for future in pending:
            if failure is not None:
                future.cancel()
            if not future.cancelled() and (error := future.exception()) is not None:
                failure = failure or error
        if failure is not None and not quietly:
            raise failure

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.wait(quietly=True)
        self._executor.shutdown(wait=True)


@contextlib.contextmanager
def _core_for_writer(device: torch.device) -> Iterator[None]:
    """Leave one core to the writer thread's compression while the fold's CPU kernels run: torch's intra-op
    threads spin on a core they share with it (2 cores, paper CNN store: top-k 0.29 s against 0.48 s, the whole
    fold 1.63 s against 1.72 s, medians of 6 alternating runs)."""
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads < 2:
        yield
        return
    torch.set_num_threads(threads - 1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Within the block a first Ctrl-C only sets a flag the fold checks between blocks, so it stops at a clean
    point (in-flight writes finished, the unfinished generation removed); a second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    hits: list[int] = []

    def handler(signum: int, frame: object) -> None:
        hits.append(signum)
        if len(hits) > 1:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(hits)
    finally:
        signal.signal(signal.SIGINT, previous)
