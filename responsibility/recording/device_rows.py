"""Snapshots and journal rows formed on an accelerator in a few batched kernels.

On a GPU a step's cost to the recorder is kernel launches and Python, not bytes: forming a row one parameter at a
time takes about ten launches per parameter (ResNet-18: ~600 per step, ~9 ms against a ~16 ms training step on an
H200). Here every tracked parameter's snapshot is a view into one flat buffer, laid out so that neuron units of one
width are adjacent: the snapshot is one multi-tensor copy, Δw one multi-tensor subtraction in place, and each width
is one (units, width) reduction per sign, whatever the number of parameters. The row is assembled on the device and
copied to the host row once.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

from responsibility.store.spec import ParamSpec

# Steps formed with plain launches before the snapshot and the row's kernels are captured in CUDA graphs.
EAGER_STEPS = 2


class DeviceRows:
    """Keeps the snapshots of float32 parameters that all live on one accelerator, and forms whole journal rows."""

    def __init__(
        self,
        tracked: Sequence[tuple[ParamSpec, torch.nn.Parameter, dict[str, slice]]],
        width: int,
        graphs: bool = True,
    ) -> None:
        device = tracked[0][1].device
        self._device = device
        self._params: list[torch.Tensor] = [param for _, param, _ in tracked]
        by_width: dict[int, list[int]] = {}
        weights: list[int] = []
        for i, (spec, _, _) in enumerate(tracked):
            if spec.granularity == "weight":
                weights.append(i)
            else:
                by_width.setdefault(spec.numel // spec.units, []).append(i)
        # Flat order: neuron parameters grouped by unit width, then the per-weight ones.
        order = [i for members in by_width.values() for i in members] + weights
        self._flat = torch.zeros(sum(spec.numel for spec, _, _ in tracked), dtype=torch.float32, device=device)
        start: dict[int, int] = {}
        offset = 0
        for i in order:
            start[i], offset = offset, offset + tracked[i][0].numel
        self.snapshots = [
            self._flat[start[i] : start[i] + spec.numel].view(spec.shape) for i, (spec, _, _) in enumerate(tracked)
        ]
        self._neuron_numel = sum(tracked[i][0].numel for members in by_width.values() for i in members)
        # (units, width) blocks of the neuron region, one per width.
        self._blocks: list[tuple[int, int, int]] = []  # (start in the flat buffer, units, width)
        for w, members in by_width.items():
            self._blocks.append((start[members[0]], sum(tracked[i][0].units for i in members), w))
        units_total = sum(u for _, u, _ in self._blocks)
        self._part = torch.empty(self._neuron_numel, dtype=torch.float32, device=device)
        # values: [ -Σ Δw>0 per unit | -Δw per weight | Σ |Δw<0| per unit ], scattered to row columns at the end.
        size = 2 * units_total + len(self._flat) - self._neuron_numel
        self._values = torch.empty(size, dtype=torch.float32, device=device)
        self._units = units_total

        def columns(entries: list[tuple[int, str]]) -> torch.Tensor:
            ranges = [torch.arange(tracked[i][2][key].start, tracked[i][2][key].stop) for i, key in entries]
            return torch.cat(ranges).to(device) if ranges else torch.zeros(0, dtype=torch.int64, device=device)

        neurons = [i for members in by_width.values() for i in members]
        self._signed_columns = columns([(i, "pos") for i in neurons] + [(i, "delta") for i in weights])
        self._neg_columns = columns([(i, "neg") for i in neurons])
        self.stage = torch.zeros(width, dtype=torch.float32, device=device)
        # On CUDA the snapshot and the row are then one graph launch each instead of ~20 kernel launches, which
        # cost the host ~1 ms per step (ResNet-18 on an H200). Graphs hold the parameters' addresses: if a
        # parameter's storage changes, the plain launches take over for good.
        self._graphs_on = graphs and device.type == "cuda"
        self._graphs: tuple[torch.cuda.CUDAGraph, torch.cuda.CUDAGraph] | None = None
        self._addresses: list[int] = []
        self._eager_steps = 0

    @staticmethod
    def applies(params: Sequence[torch.Tensor]) -> bool:
        """Whether rows of these parameters can be formed here: float32, all on one accelerator."""
        first = params[0].device if params else None
        return (
            first is not None
            and first.type != "cpu"
            and all(p.dtype == torch.float32 and p.device == first for p in params)
        )

    @torch.no_grad()
    def snapshot(self) -> None:
        """Copy every tracked parameter into its snapshot."""
        graphs = self._graphs_ready(capture=True)
        if graphs is None:
            self._copy()
        else:
            graphs[0].replay()

    @torch.no_grad()
    def form(self, row: torch.Tensor) -> None:
        """Write the step's row (Δw = parameter - snapshot, for every tracked parameter) into the host ``row``.

        The snapshots are used up: they hold -Δw afterwards, until the next :meth:`snapshot`.
        """
        graphs = self._graphs_ready(capture=False)
        if graphs is None:
            self._row_kernels()
            self._eager_steps += 1
        else:
            graphs[1].replay()
        # Stream order keeps the next step's writes to the stage behind this copy.
        row.copy_(self.stage, non_blocking=True)

    def _copy(self) -> None:
        torch._foreach_copy_(self.snapshots, self._params)

    def _row_kernels(self) -> None:
        # snapshot - parameter is exactly -(parameter - snapshot): float subtraction is symmetric in sign.
        torch._foreach_sub_(self.snapshots, self._params)
        neg_dw, values, u = self._flat[: self._neuron_numel], self._values, self._units
        if u:
            torch.clamp(neg_dw, max=0, out=self._part)  # -(Δw>0)
            self._unit_sums(values[:u])
            torch.clamp(neg_dw, min=0, out=self._part)  # |Δw<0|
            self._unit_sums(values[len(values) - u :])
        values[u : len(values) - u].copy_(self._flat[self._neuron_numel :])
        # 0 - x, not -x: a zero change stays +0.0, as the per-parameter path writes it.
        self.stage.index_copy_(0, self._signed_columns, torch.rsub(values[: len(values) - u], 0.0))
        self.stage.index_copy_(0, self._neg_columns, values[len(values) - u :])

    def _graphs_ready(self, capture: bool) -> tuple[torch.cuda.CUDAGraph, torch.cuda.CUDAGraph] | None:
        """The (snapshot, row) graphs if they apply now, captured at a snapshot after :data:`EAGER_STEPS` plain
        steps; None for plain launches."""
        if not self._graphs_on:
            return None
        if self._graphs is not None:
            if [p.data_ptr() for p in self._params] == self._addresses:
                return self._graphs
            self._graphs_on, self._graphs = False, None  # a parameter's storage changed
            return None
        if not capture or self._eager_steps < EAGER_STEPS:
            return None
        try:
            self._graphs = (_capture(self._copy, self._device), _capture(self._row_kernels, self._device))
        except RuntimeError as exc:  # an op that cannot be captured here: plain launches are as exact
            warnings.warn(f"responsibility: recording without CUDA graphs ({exc})", RuntimeWarning, stacklevel=4)
            self._graphs_on = False
            return None
        self._addresses = [p.data_ptr() for p in self._params]
        return self._graphs

    def _unit_sums(self, out: torch.Tensor) -> None:
        """Sum ``self._part`` over each unit's weights into ``out``, one reduction per unit width."""
        offset = 0
        for start, units, width in self._blocks:
            block = self._part[start : start + units * width].view(units, width)
            torch.sum(block, 1, out=out[offset : offset + units])
            offset += units


def _capture(kernels: Callable[[], None], device: torch.device) -> torch.cuda.CUDAGraph:
    """``kernels`` captured (not run) in a CUDA graph on a side stream; thread-local capture, so that the journal
    writer and data loader threads may use CUDA meanwhile."""
    graph = torch.cuda.CUDAGraph()
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        graph.capture_begin(capture_error_mode="thread_local")
        try:
            kernels()
        finally:
            graph.capture_end()
    torch.cuda.current_stream(device).wait_stream(stream)
    return graph
