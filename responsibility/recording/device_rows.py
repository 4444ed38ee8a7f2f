"""Journal rows formed on an accelerator in a few batched kernels.

On a GPU a step's cost to the recorder is kernel launches, not bytes: forming a row one parameter at a time takes
about ten launches per parameter (ResNet-18: ~600 per step, ~9 ms against a ~16 ms training step on an H200).
Here Δw of every parameter is one multi-tensor subtraction; neuron units of one width are reduced together; the
row is assembled on the device and copied to the host row once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from responsibility.store.spec import ParamSpec


class DeviceRows:
    """Forms whole journal rows of float32 parameters that all live on one accelerator."""

    def __init__(self, tracked: Sequence[tuple[ParamSpec, torch.nn.Parameter, dict[str, slice]]], width: int) -> None:
        device = tracked[0][1].device
        self.stage = torch.zeros(width, dtype=torch.float32, device=device)
        by_width: dict[int, list[int]] = {}
        self._weights: list[tuple[int, slice]] = []
        for i, (spec, _, cols) in enumerate(tracked):
            if spec.granularity == "weight":
                self._weights.append((i, cols["delta"]))
            else:
                by_width.setdefault(spec.numel // spec.units, []).append(i)
        # Units of one width, several parameters' worth, reduced as one (units, width) block.
        self._groups = [(w, [(i, tracked[i][0].units) for i in idx]) for w, idx in by_width.items()]
        order = [i for _, members in self._groups for i, _ in members]

        def columns(key: str) -> torch.Tensor:
            ranges = [torch.arange(tracked[i][2][key].start, tracked[i][2][key].stop) for i in order]
            return torch.cat(ranges).to(device) if ranges else torch.zeros(0, dtype=torch.int64, device=device)

        self._pos, self._neg = columns("pos"), columns("neg")

    @staticmethod
    def applies(params: Sequence[torch.Tensor]) -> bool:
        """Whether rows of these parameters can be formed here: float32, all on one accelerator."""
        first = params[0].device if params else None
        return (
            first is not None
            and first.type != "cpu"
            and all(p.dtype == torch.float32 and p.device == first for p in params)
        )

    def form(self, params: Sequence[torch.Tensor], snapshots: Sequence[torch.Tensor], row: torch.Tensor) -> None:
        """Write the step's row (Δw = param - snapshot of every tracked parameter) into the host ``row``."""
        diffs = torch._foreach_sub(list(params), list(snapshots))
        pos, neg = [], []
        for width, members in self._groups:
            blocks = [diffs[i].view(units, width) for i, units in members]
            d = blocks[0] if len(blocks) == 1 else torch.cat(blocks)
            pos.append(d.clamp(min=0).sum(1))
            neg.append(d.clamp(max=0).sum(1))
        if pos:
            self.stage.index_copy_(0, self._pos, torch.cat(pos))
            self.stage.index_copy_(0, self._neg, torch.cat(neg).neg_())
        for i, cols in self._weights:
            self.stage[cols].copy_(diffs[i].view(-1))
        # Stream order keeps the next step's writes to the stage behind this copy.
        row.copy_(self.stage, non_blocking=True)
