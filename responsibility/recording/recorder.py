"""The training-time half: snapshot tracked weights before an optimizer step, journal Δw after it.

Framework-free: a plain PyTorch loop calls :meth:`Recorder.snapshot` before ``optimizer.step()`` and
:meth:`Recorder.record_step` after it; the Lightning callback is a thin adapter over exactly that.

Per step the hot path does O(tracked weights) work, whatever the batch or dataset size: one subtraction into a
preallocated row of a step buffer. Full buffers (``layout.chunk_steps`` rows, so whole Zarr chunks) go to a
background writer while the next buffer fills; at most two buffers exist, which bounds memory. When R is small,
the writer also adds each written block to running sums of R, so the fold at the end need not read the journal.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from responsibility.errors import ExampleIdError, ParameterChangedError, ResponsibilityError, StoreWriteError
from responsibility.recording.derived import derived_scale, gradient_sum
from responsibility.recording.device_rows import DeviceRows
from responsibility.recording.ids import as_ids, check_ids
from responsibility.store import ResponsibilityStore, RunningSums
from responsibility.store.spec import ParamSpec

FLAG_NONFINITE = 1


def _torch_on_this_thread_only() -> None:
    """The writer thread's initializer: its torch work (the running sums, the bfloat16 journal's rounding) runs on
    this thread alone. Training keeps every core busy; a second OpenMP team here oversubscribes them, and training's
    parallel regions then wait at their barriers for a descheduled thread (callback defaults, 3 epochs on 2 cores:
    2.26x with the team, 2.03x without; docs/benchmarks.md, "A fold per process, the every-weight journal's waits
    and longer fits").

    ``torch.set_num_threads`` sets this thread's OpenMP and MKL thread counts, and also the process default that
    threads starting later take at their first torch call. A short-lived thread puts that default back, so no other
    thread changes.
    """
    default = torch.get_num_threads()  # the first call here: this thread takes the process default now
    if default == 1:
        return
    torch.set_num_threads(1)
    restore = threading.Thread(target=torch.set_num_threads, args=(default,), name="responsibility-threads")
    restore.start()
    restore.join()


class _Buffer:
    """``chunk_steps`` journal rows plus the ids and step records (ids_end, global_step, epoch, flags)."""

    def __init__(self, rows: int, width: int, example_width: int, pin: bool, params: int) -> None:
        self.pin = pin
        self._shape = (rows, width)
        self._data: torch.Tensor | None = None
        # journal_delta="derived": each step's scale per parameter (inf: its Δw in the row counts); else None.
        self.scales = torch.full((rows, params), float("inf"), pin_memory=pin) if params else None
        self.steps = np.zeros((rows, 4), dtype=np.int64)
        self.ids: list[np.ndarray] = []
        # Per-example attribution: every id's values, (ids so far, example_width); grown, never shrunk.
        self.examples = torch.zeros(0, example_width, dtype=torch.float32)
        self.num_examples = 0
        self.base = 0  # step of row 0
        self.ids_base = 0  # flat id position of row 0's first id
        self.n = 0

    @property
    def data(self) -> torch.Tensor:
        """The journal rows, allocated at first use and not cleared: every row is written whole before it is
        read. (A short run never touches its second buffer; pinned memory is slow to allocate and zero.)"""
        if self._data is None:
            self._data = torch.empty(self._shape, dtype=torch.float32, pin_memory=self.pin)
        return self._data

    def reset(self, base: int, ids_base: int) -> None:
        self.base, self.ids_base, self.n = base, ids_base, 0
        self.ids = []
        self.num_examples = 0

    def put_examples(self, values: torch.Tensor) -> None:
        """Append one step's per-example values (copied without blocking from a device)."""
        lo, hi = self.num_examples, self.num_examples + len(values)
        if hi > len(self.examples):
            pin = self.pin and values.is_cuda
            if pin and lo:
                torch.cuda.current_stream().synchronize()  # earlier async copies must land before moving them
            grown = torch.empty(max(hi, 2 * len(self.examples)), self.examples.shape[1], pin_memory=pin)
            grown[:lo] = self.examples[:lo]
            self.examples = grown
        self.examples[lo:hi].copy_(values.detach(), non_blocking=True)
        self.num_examples = hi


class Recorder:
    """Journals the weight changes of the tracked parameters into a :class:`ResponsibilityStore`.

    The journal continues at the store's committed step count (after a rollback, where the resumed checkpoint
    left off); the partly written chunk row before that point is reloaded, so every write stays a whole-chunk
    write.
    """

    def __init__(
        self,
        store: ResponsibilityStore,
        tracked: Sequence[tuple[ParamSpec, torch.nn.Parameter]],
        *,
        background: bool = True,
        sums: RunningSums | None = None,
    ) -> None:
        if [s.name for s, _ in tracked] != store.parameters:
            raise ValueError("tracked parameters must be the store's parameters, in the store's order")
        self.store = store
        self.sums = sums  # R summed from every block written (store.running_sums()), for the fold at the end
        columns = store.spec.journal_columns()
        self._tracked = [(spec, param, columns[spec.name]) for spec, param in tracked]
        # Neuron reductions reuse scratch space: fresh multi-MB temporaries per step cost page faults.
        self._scratch: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        pin = torch.cuda.is_available() and any(p.is_cuda for _, p in tracked)
        rows = store.layout.chunk_steps
        width, ex_width = store.spec.journal_width, store.spec.example_width
        derived = store.layout.journal_delta == "derived"
        # Parameters whose steps the recorder checks for a scale to journal instead of Δw: those recorded per
        # example at weight granularity (per-unit parameters come checked, with their shares).
        self._derivable = {id(param) for spec, param in tracked if derived and spec.example_form in ("outer", "dense")}
        # Where each derivable parameter's values sit in a row of the step's per-example values (all its kinds).
        example_columns = store.spec.example_columns()
        self._example_span = {
            spec.name: slice(min(sl.start for sl in kinds), max(sl.stop for sl in kinds))
            for spec, param in tracked
            if id(param) in self._derivable
            for kinds in [example_columns[spec.name].values()]
        }
        self._derived_space: dict[tuple[int, torch.device], torch.Tensor] = {}
        params = len(tracked) if derived else 0
        self._buffers = [_Buffer(rows, width, ex_width, pin, params), _Buffer(rows, width, ex_width, pin, params)]
        self._buf = self._buffers[0]
        self._snapshots: dict[int, torch.Tensor] = {}
        self._snapped: set[int] = set()
        self._neuron = {id(param) for spec, param in tracked if spec.granularity == "neuron"}
        self._param_keys = {id(param) for _, param in tracked}
        self._shapes = [torch.Size(spec.shape) for spec, _ in tracked]
        self._changed: set[int] = set()  # parameters whose Δw of this step is in their scratch space
        # Rows formed on the accelerator in a few kernels (decided at the first snapshot).
        self._device_rows: DeviceRows | None = None
        self._device_rows_decided = False
        self._pending: Future | None = None
        self._executor = (
            ThreadPoolExecutor(1, thread_name_prefix="responsibility-writer", initializer=_torch_on_this_thread_only)
            if background
            else None
        )
        self.nonfinite_steps: list[int] = []
        self._reported_nonfinite = 0
        self.steps = store.steps
        self.num_ids = store.num_ids
        self._buf.reset(self.steps, self.num_ids)
        self._preload()
        self._submitted = self.steps  # steps handed to the writer (the preloaded ones are committed)

    # ------------------------------------------------------------------ hot path
    def snapshot(self, params: Iterable[torch.nn.Parameter] | None = None) -> None:
        """Copy the current value of tracked parameters (all, or those in ``params``) before a step.

        A parameter already snapshotted since the last :meth:`record_step` keeps its first snapshot, so calling
        this again (closures, several optimizers) is harmless.
        """
        wanted = None if params is None else {id(p) for p in params}
        with torch.no_grad():
            device_rows = self._rows_on_device()
            if device_rows is not None and not self._snapped and (wanted is None or self._param_keys <= wanted):
                # Every parameter at once (the usual case): one multi-tensor copy, no per-parameter Python.
                self._check_shapes()
                device_rows.snapshot()
                self._snapped.update(self._param_keys)
                return
            snaps: list[torch.Tensor] = []
            sources: list[torch.Tensor] = []
            for spec, param, _ in self._tracked:
                key = id(param)
                if key in self._snapped or (wanted is not None and key not in wanted):
                    continue
                _check_shape(spec, param)
                snap = self._snapshots.get(key)
                if snap is None or snap.shape != param.shape or snap.device != param.device:
                    snap = self._snapshots[key] = torch.empty_like(param, memory_format=torch.contiguous_format)
                    self._device_rows = None  # a parameter moved: its snapshot is no longer the flat buffer's
                snaps.append(snap)
                sources.append(param.detach())
                self._snapped.add(key)
            if snaps:
                torch._foreach_copy_(snaps, sources)  # one multi-tensor kernel on a GPU, not one per parameter

    def weight_change(self, param: torch.nn.Parameter) -> torch.Tensor:
        """Δw of a tracked parameter since its snapshot, in float32 on its device (zero without a snapshot).

        Neuron-granularity parameters get it in the recorder's scratch space, valid until the next
        :meth:`record_step`, which journals the same tensor instead of subtracting again.
        """
        snap = self._snapshots.get(id(param))
        if id(param) not in self._snapped or snap is None:
            return torch.zeros(param.shape, dtype=torch.float32, device=param.device)
        if id(param) not in self._neuron:
            return param.detach().float() - snap.float()
        diff = self._scratch_for(param)[0]
        if id(param) not in self._changed:
            torch.sub(param.detach().float(), snap.float(), out=diff)
            self._changed.add(id(param))
        return diff

    def record_step(
        self,
        ids: np.ndarray | torch.Tensor | Sequence[int],
        global_step: int = -1,
        epoch: int = -1,
        examples: torch.Tensor | None = None,
        grad_sums: Mapping[str, torch.Tensor] | None = None,
        scales: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """Journal one optimizer step: Δw of every snapshotted parameter, and the step's example ids.

        A store that records per-example attribution also needs ``examples``: the step's per-example values,
        ``(len(ids), example_width)`` in id order (:meth:`RecordingSession.record_step
        <responsibility.recording.session.RecordingSession.record_step>` forms them). A derived journal
        (``journal_delta="derived"``) checks each per-example weight's Δw against the sum of the examples'
        gradients, ``grad_sums`` by name where already at hand (autograd's weight gradient for exactly these
        examples), else formed from ``examples``; per-unit parameters come checked, with their ``scales`` by name
        (:meth:`PerExample.journal_values <responsibility.recording.attribution.PerExample.journal_values>`).
        """
        ids = as_ids(ids)
        check_ids(ids, self.store.num_examples)
        width = self.store.spec.example_width
        if width and (examples is None or tuple(examples.shape) != (len(ids), width)):
            got = None if examples is None else tuple(examples.shape)
            raise ExampleIdError(
                f"per-example values of shape {got} for a step of {len(ids)} ids (expected ({len(ids)}, {width})): "
                "every id needs its per-example gradient values"
            )
        if not width and examples is not None:
            raise ValueError("this store records uniform attribution: record_step takes no per-example values")
        buf = self._buf
        row = buf.data[buf.n]
        with torch.no_grad():
            device_rows = self._rows_on_device()
            if device_rows is not None and len(self._snapped) == len(self._tracked) and not self._changed:
                # Per-example attribution formed Δw in scratch space (_changed); the per-parameter path uses it.
                self._check_shapes()
                device_rows.form(row)
            else:
                for j, (spec, param, cols) in enumerate(self._tracked):
                    delta = self._write_delta(spec, param, cols, row)
                    if buf.scales is None:
                        continue
                    given = None if scales is None else scales.get(spec.name)
                    if given is not None:
                        buf.scales[buf.n, j].copy_(given, non_blocking=True)
                    elif delta is not None and examples is not None and id(param) in self._derivable:
                        grad_sum = (grad_sums or {}).get(spec.name)
                        if grad_sum is None:
                            grad_sum = self._gradient_sum(spec, examples)
                        scale = derived_scale(delta, grad_sum, param, self._check_scratch(delta))
                        buf.scales[buf.n, j].copy_(scale, non_blocking=True)
                    else:
                        buf.scales[buf.n, j] = float("inf")
        buf.steps[buf.n] = (0, global_step, epoch, 0)
        buf.ids.append(ids)
        if examples is not None:
            buf.put_examples(examples)
        buf.n += 1
        self.steps += 1
        self.num_ids += len(ids)
        self._snapped.clear()
        self._changed.clear()
        if buf.n == len(buf.steps):
            self._submit(buf)
            # _submit waited for the other buffer's write, so it is free to refill while this one is written.
            self._buf = self._buffers[1] if buf is self._buffers[0] else self._buffers[0]
            self._buf.reset(self.steps, self.num_ids)

    def _rows_on_device(self) -> DeviceRows | None:
        """The batched device path (decided at the first snapshot, once the weights are placed); it owns the
        snapshots from then on."""
        if not self._device_rows_decided:
            self._device_rows_decided = True
            # A derived journal checks each derivable parameter's Δw on its own (the per-parameter path).
            if not self._derivable and DeviceRows.applies([param for _, param, _ in self._tracked]):
                self._device_rows = DeviceRows(self._tracked, self.store.spec.journal_width)
                for (_, param, _), snap in zip(self._tracked, self._device_rows.snapshots, strict=True):
                    self._snapshots[id(param)] = snap
        return self._device_rows

    def _check_shapes(self) -> None:
        if [param.shape for _, param, _ in self._tracked] != self._shapes:
            for spec, param, _ in self._tracked:
                _check_shape(spec, param)

    def _write_delta(
        self, spec: ParamSpec, param: torch.nn.Parameter, cols: dict[str, slice], row: torch.Tensor
    ) -> torch.Tensor | None:
        """Put the parameter's journal values of this step into ``row``; at weight granularity, return its Δw
        (flat, on the weights' device; None without a snapshot)."""
        p = param.detach()
        snap = self._snapshots.get(id(param))
        if id(param) not in self._snapped or snap is None:
            for sl in cols.values():
                row[sl].zero_()
            return None
        _check_shape(spec, p)
        if spec.granularity == "weight":
            out = row[cols["delta"]]
            if p.dtype == torch.float32 and not p.is_cuda:
                torch.sub(p.reshape(-1), snap.reshape(-1), out=out)
                return out
            # float64 weights: subtract before rounding, so small changes keep their digits. Low-precision or
            # device weights: the difference is taken in float32 on the weights' device; the copy to the (pinned)
            # host row overlaps training until the writer needs it.
            diff = (p - snap if p.dtype == torch.float64 else p.float() - snap.float()).reshape(-1)
            out.copy_(diff, non_blocking=True)
            return diff
        diff, part = self._scratch_for(param)
        if id(param) not in self._changed:  # weight_change() did not form it this step
            torch.sub(p.float(), snap.float(), out=diff)
        d = diff.view(spec.units, -1)
        torch.clamp(d, min=0, out=part)
        row[cols["pos"]].copy_(part.sum(1), non_blocking=True)
        torch.clamp(d, max=0, out=part)
        row[cols["neg"]].copy_(part.sum(1).neg_(), non_blocking=True)
        return None

    def _check_scratch(self, delta: torch.Tensor) -> torch.Tensor:
        """Float32 space for the derived check of a Δw like ``delta``, one per size and device."""
        key = (delta.numel(), delta.device)
        space = self._derived_space.get(key)
        if space is None:
            space = self._derived_space[key] = torch.empty(delta.numel(), dtype=torch.float32, device=delta.device)
        return space

    def _gradient_sum(self, spec: ParamSpec, examples: torch.Tensor) -> torch.Tensor:
        """Σ_j g_j of a per-example parameter, from its columns of the step's journaled values."""
        return gradient_sum(examples[:, self._example_span[spec.name]], str(spec.example_form), spec.shape)

    def _scratch_for(self, param: torch.nn.Parameter) -> tuple[torch.Tensor, torch.Tensor]:
        scratch = self._scratch.get(id(param))
        if scratch is None or scratch[0].shape != param.shape or scratch[0].device != param.device:
            diff = torch.empty(param.shape, dtype=torch.float32, device=param.device)
            scratch = self._scratch[id(param)] = (
                diff,
                torch.empty_like(diff.view(diff.shape[0] if diff.dim() else 1, -1)),
            )
        return scratch

    # ------------------------------------------------------------------ writing
    def _preload(self) -> None:
        """Reload the committed rows of a partly written chunk row (resume mid-chunk)."""
        chunk = self.store.layout.chunk_steps
        base = self.steps - self.steps % chunk
        if base == self.steps:
            return
        rows, ids, steps = self.store.journal_rows(base, self.steps)
        buf = self._buf
        buf.reset(base, self.num_ids - len(ids))
        n = self.steps - base
        scales = self.store.journal_scales(base, self.steps)
        if scales is not None and buf.scales is not None:
            buf.scales[:n] = torch.from_numpy(scales)
            rows = np.nan_to_num(rows, nan=0.0)  # a derived step's Δw cells (NaN): never read, and not non-finite
        buf.data[:n] = torch.from_numpy(rows)
        buf.steps[:n] = steps
        buf.ids = list(np.split(ids, steps[:-1, 0] - buf.ids_base))
        if self.store.spec.example_width:
            buf.put_examples(torch.from_numpy(self.store.journal_examples(base, self.steps)))
        buf.n = n

    def _submit(self, buf: _Buffer) -> None:
        self._wait()
        n = buf.n
        ids = np.concatenate(buf.ids[:n]) if n else np.zeros(0, np.int64)
        buf.steps[:n, 0] = buf.ids_base + np.cumsum([len(a) for a in buf.ids[:n]], dtype=np.int64)
        copied = None
        if buf.pin:
            copied = torch.cuda.Event()
            copied.record()
        # Taken now: after a flush that does not wait, this thread keeps filling the buffer's later rows (and may
        # move its per-example values to a larger tensor) while the writer writes the first n.
        examples = buf.examples[: buf.num_examples] if self.store.spec.example_width else None
        job = (buf, n, ids, examples, copied)
        self._submitted = buf.base + n
        if self._executor is None:
            self._write(*job)
        else:
            self._pending = self._executor.submit(self._write, *job)

    def _write(
        self,
        buf: _Buffer,
        n: int,
        ids: np.ndarray,
        examples: torch.Tensor | None,
        copied: torch.cuda.Event | None,
    ) -> None:
        try:
            if copied is not None:
                copied.synchronize()  # only the writer thread waits for the device's copies
            self._write_unguarded(buf, n, ids, None if examples is None else examples.numpy())
        except ResponsibilityError:
            raise
        except Exception as exc:  # full disk, read-only location, lost connection...
            raise StoreWriteError(
                f"writing journal steps {buf.base}..{buf.base + n} to {self.store.path} failed: {exc!r}; "
                f"the store keeps its last commit ({self.store.steps} steps)"
            ) from exc

    def _write_unguarded(self, buf: _Buffer, n: int, ids: np.ndarray, examples: np.ndarray | None) -> None:
        data = buf.data[:n].numpy()
        bad = ~np.isfinite(data).all(axis=1)
        step_of_id = np.repeat(np.arange(n), [len(a) for a in buf.ids[:n]])
        if examples is not None:
            bad[step_of_id[~np.isfinite(examples).all(axis=1)]] = True
        if bad.any():
            # Policy: a step whose Δw (or an example's gradient) is NaN/Inf adds nothing: its journal values are
            # zeroed and the step is flagged in journal/steps.
            data[bad] = 0.0
            if examples is not None:
                examples[bad[step_of_id]] = 0.0
            buf.steps[:n][bad, 3] |= FLAG_NONFINITE
            # A chunk row flushed early is written again when it fills: list its steps once.
            last = self.nonfinite_steps[-1] if self.nonfinite_steps else -1
            self.nonfinite_steps.extend(step for i in np.flatnonzero(bad) if (step := int(buf.base + i)) > last)
        steps = buf.steps[:n]
        scales = None if buf.scales is None else buf.scales[:n].numpy()
        self.store.write_journal(buf.base, data, ids, buf.ids_base, steps, examples, scales)
        self.store.commit(buf.base + n, int(steps[-1, 0]) if n else buf.ids_base)
        if self.sums is not None:  # in this thread: summing overlaps training as the writes do
            try:
                self.sums.add(buf.base, data, ids, buf.ids_base, steps, examples, scales)
            except Exception as exc:  # the journal is committed; only the shortcut for the fold is lost
                self.sums = None
                warnings.warn(
                    f"responsibility: summing R while recording failed ({exc!r}); a fold reads the journal instead",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()
        if len(self.nonfinite_steps) > self._reported_nonfinite:
            new = self.nonfinite_steps[self._reported_nonfinite :]
            self._reported_nonfinite = len(self.nonfinite_steps)
            warnings.warn(
                f"responsibility: non-finite weight change at journal step(s) {new[:10]}; those steps add "
                "nothing to R and are flagged in journal/steps",
                RuntimeWarning,
                stacklevel=3,
            )

    def flush(self, wait: bool = True) -> None:
        """Write and commit every recorded step; returns when the store holds them or, without ``wait``, once they
        are being written (the next flush that waits, or :meth:`close`, raises what went wrong)."""
        if self._buf.n and self._submitted < self.steps:
            self._submit(self._buf)
        if wait:
            self._wait()

    def abort(self) -> None:
        """Stop the writer thread without writing more (after a storage failure)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._pending = None

    def close(self) -> None:
        """Flush and stop the writer thread."""
        try:
            self.flush()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None


def _check_shape(spec: ParamSpec, param: torch.Tensor) -> None:
    if tuple(param.shape) != spec.shape:
        raise ParameterChangedError(
            f"parameter {spec.name!r} changed shape during training ({spec.shape} -> {tuple(param.shape)}); "
            "its recorded responsibility would no longer line up with its weights"
        )
