"""Running the model for a query: the call (``forward=``), the scores it explains (``output=``) and the targets.

A query explains ``(batch, classes)`` scores, one row per input. Models whose forward takes other arguments or
returns something else (a dict, a tuple, per-token logits) say how with ``forward=`` and ``output=``; anything that
is not one row of scores per input is refused with :class:`~responsibility.errors.ModelOutputError`, never guessed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from responsibility.errors import ModelOutputError
from responsibility.query.options import ForwardFn, OutputFn

__all__ = ["call_model", "scores_of", "target_rows"]


def call_model(model: nn.Module, batch: torch.Tensor, forward: ForwardFn | None = None) -> Any:
    """What the model returns for a batch: ``forward(model, batch)``, by default ``model(batch)``."""
    return forward(model, batch) if forward is not None else model(batch)


def scores_of(result: Any, inputs: int, output: OutputFn | None = None) -> torch.Tensor:
    """The ``(inputs, classes)`` scores in what the model returned for a batch of ``inputs``."""
    scores = output(result) if output is not None else result
    hint = "pass output=... to pick the (batch, classes) scores to explain (and forward=... if the model is not "
    hint += "called as model(inputs))"
    if not isinstance(scores, torch.Tensor):
        raise ModelOutputError(f"the model returned a {type(scores).__name__}, not a tensor of scores; {hint}")
    if scores.dim() != 2 or scores.shape[0] != inputs:
        raise ModelOutputError(
            f"the scores have shape {tuple(scores.shape)} for {inputs} inputs; a query explains one row of "
            f"class scores per input, (batch, classes); {hint}"
        )
    return scores


def target_rows(scores: torch.Tensor, targets: Any) -> torch.Tensor | None:
    """Each input's target class: the predicted one (``None``), a fixed one, one per input; ``"any"``: None."""
    if isinstance(targets, str):  # "any": the paper rule may choose any unit
        return None
    classes = scores.shape[1]
    if targets is None:
        return scores.detach().argmax(dim=1)
    rows = torch.as_tensor(targets, dtype=torch.int64)
    rows = rows.expand(len(scores)) if rows.dim() == 0 else rows
    if rows.shape != (len(scores),):
        raise ValueError(f"targets has {len(rows)} entries for {len(scores)} inputs: give one per input")
    if len(rows) and int(rows.max()) >= classes:
        raise ValueError(f"target class {int(rows.max())} outside [0, {classes})")
    return rows
