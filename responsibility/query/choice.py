"""Which weights each input activates: eligible entries per parameter, the target restriction, the choice.

Selection, per input, among the eligible entries (weights, or units for neuron-granularity parameters) of the
selected layers:

- Activations are compared **raw** across layers (the paper's "maximally activated weight in the network"):
  no per-layer normalisation, so layers with large inputs or weights win more often. Pass ``layers=`` to
  restrict the choice to one layer, as the paper does for per-layer explanations.
- ``targets``: in the final layer (the last ``nn.Linear`` whose ``out_features`` equals the number of classes)
  only the row of the input's target class (weights, and that class's bias entry) is eligible: the predicted class
  (``None``), a given class, or one per input; ``"any"`` leaves every unit eligible. Other layers are never
  restricted.
- ``top_weights=T`` picks the T most activated eligible entries. ``outliers=z`` keeps only entries whose robust
  z-score within their parameter, ``(a - median) / (1.4826 · MAD)``, exceeds ``z`` (MAD = median absolute
  deviation of the eligible entries; when MAD is 0, as with mostly-zero ReLU inputs, ``1.2533 · mean absolute
  deviation`` is the scale; with both 0 nothing is an outlier). At most ``top_weights`` of them are kept
  (default :data:`~responsibility.query.options.MAX_OUTLIERS`), the most activated first; an input with no
  outlier falls back to its single most activated entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Candidates", "Chosen", "choose", "eligible", "final_layer", "robust_z"]

# One input's chosen entries: (parameter name, flat column of its R, activation), most activated first.
Chosen = list[tuple[str, int, float]]


@dataclass
class Candidates:
    """Eligible entries of one parameter for a batch: activations ``(B, n)`` and their flat R columns."""

    name: str
    act: torch.Tensor
    columns: torch.Tensor  # (B, n) int64 flat indices into the parameter's R columns


def final_layer(model: nn.Module, num_outputs: int) -> nn.Linear | None:
    """The last ``nn.Linear`` (in module order) with ``out_features == num_outputs``: the class-unit layer."""
    last = None
    for mod in model.modules():
        if isinstance(mod, nn.Linear) and mod.out_features == num_outputs:
            last = mod
    return last


def robust_z(a: torch.Tensor) -> torch.Tensor:
    """Row-wise robust z-scores of a ``(B, n)`` tensor; see the module docstring for the scale."""
    med = a.median(dim=1, keepdim=True).values
    dev = (a - med).abs()
    mad = dev.median(dim=1, keepdim=True).values * 1.4826
    mean_ad = dev.mean(dim=1, keepdim=True) * 1.2533
    scale = torch.where(mad > 0, mad, mean_ad)
    z = (a - med) / scale.clamp_min(torch.finfo(a.dtype).tiny)
    return torch.where(scale > 0, z, torch.zeros_like(z))


def eligible(
    name: str, act: torch.Tensor, module: nn.Module, final: nn.Linear | None, rows: torch.Tensor | None
) -> Candidates:
    """The eligible entries of one parameter: all of them, or only the target unit's in the final layer."""
    b = act.shape[0]
    a = act.reshape(b, -1)
    if final is not None and module is final and rows is not None:
        # Only the target class's unit is eligible: its row of weights, or its own bias/unit entry.
        per_unit = a.shape[1] // final.out_features
        cols = rows.unsqueeze(1) * per_unit + torch.arange(per_unit).unsqueeze(0)
        return Candidates(name, a.gather(1, cols).float(), cols)
    return Candidates(name, a.float(), torch.arange(a.shape[1]).unsqueeze(0).expand(b, -1))


def choose(cands: list[Candidates], cap: int, outliers: float | None) -> list[Chosen]:
    """Each input's most activated entries (at most ``cap``; with ``outliers``, only outliers or a fallback)."""
    b = cands[0].act.shape[0]
    acts_top, cols_top, layer_top = [], [], []
    for layer, cand in enumerate(cands):
        v, j = cand.act.topk(min(cap, cand.act.shape[1]), dim=1)
        if outliers is not None:
            z = robust_z(cand.act).gather(1, j)
            v = torch.where(z > outliers, v, torch.full_like(v, -1.0))
        acts_top.append(v)
        cols_top.append(cand.columns.gather(1, j))
        layer_top.append(torch.full_like(j, layer))
    allv, allc, alll = torch.cat(acts_top, 1), torch.cat(cols_top, 1), torch.cat(layer_top, 1)
    # Stable sort keeps store (layer) order among equal activations, so ties resolve the same way always.
    order = torch.sort(allv, dim=1, descending=True, stable=True).indices[:, :cap]
    v, c, li = allv.gather(1, order), allc.gather(1, order), alll.gather(1, order)
    if outliers is not None:
        # No outlier anywhere: fall back to the single most activated entry.
        none = (v[:, 0] < 0).nonzero().flatten().tolist()
        if none:
            fb_v, fb_c, fb_l = _best(cands, none)
            v[none, 0], c[none, 0], li[none, 0] = fb_v, fb_c, fb_l
    v_l, c_l, l_l = v.tolist(), c.tolist(), li.tolist()
    return [
        [(cands[lj].name, cj, vj) for vj, cj, lj in zip(v_l[i], c_l[i], l_l[i], strict=True) if vj >= 0]
        for i in range(b)
    ]


def _best(cands: list[Candidates], inputs: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(activation, column, layer) of the single most activated entry of each of ``inputs``."""
    vals = torch.stack([c.act[inputs].max(dim=1).values for c in cands], 1)
    cols = torch.stack([c.columns[inputs].gather(1, c.act[inputs].argmax(1, keepdim=True))[:, 0] for c in cands], 1)
    best = vals.argmax(dim=1)  # first maximum: earlier layer on ties, like the stable sort
    r = torch.arange(len(inputs))
    return vals[r, best], cols[r, best], best
