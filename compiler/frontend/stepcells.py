"""User-written cells stepped in a Python loop: found by watching one eager run.

Why: ``for t in range(T): y, state = self.cell(x[:, t], state)`` is how custom cells (xLSTM's
sLSTM, LayerNorm-LSTMs, GRU variants) are written, without ``rnnc.frontend.Recurrent``.  Traced
through, the loop unrolls into T copies of the cell's ops and fixes T.  So ``trace`` first runs the
model once with forward hooks and lists the modules that behave as step cells: called at least
twice per forward as ``cell(x_t [B, I], state) -> (y_t [B, H], new_state)``, ``state`` a tensor or
a tuple of tensors ``[B, ...]`` that comes back with the same shapes, and holding no recurrent
layer of their own.  The fx tracer keeps those modules as leaves, the loop pass merges their
chained calls (``loops.py``), and each chain becomes one ``rnn`` node whose step is the cell's
own graph (``usercell.build_user_cell``) over a symbolic T.  A call that does not chain (a loop
of another shape) still converts: as that one step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class StepCell:
    """What one call of a step cell looked like: its input size and state shapes (per sample)."""

    input_size: int
    state_shapes: tuple[tuple[int, ...], ...]
    tuple_state: bool


def _states(s: Any) -> list[torch.Tensor] | None:
    items = list(s) if isinstance(s, (tuple, list)) else [s]
    return items if items and all(isinstance(t, torch.Tensor) and t.dim() >= 2 for t in items) else None


def _signature(args: tuple[Any, ...], out: Any) -> StepCell | None:
    if len(args) != 2 or not isinstance(args[0], torch.Tensor) or args[0].dim() != 2:
        return None
    states = _states(args[1])
    if states is None or not (isinstance(out, (tuple, list)) and len(out) == 2):
        return None
    y, new = out
    new_states = _states(new)
    batch = args[0].shape[0]
    if (not isinstance(y, torch.Tensor) or y.dim() != 2 or new_states is None or len(new_states) != len(states)
            or any(a.shape != b.shape or a.shape[0] != batch for a, b in zip(states, new_states, strict=True))):
        return None
    return StepCell(int(args[0].shape[1]), tuple(tuple(int(d) for d in s.shape[1:]) for s in states),
                    isinstance(args[1], (tuple, list)))


def find_step_cells(model: nn.Module, examples: list[torch.Tensor]) -> dict[int, StepCell]:
    """``id(module) -> StepCell`` for the modules that one eager run shows to be step cells."""
    from rnnc.frontend.fx_trace import is_rnnc_leaf

    calls: dict[int, list[StepCell | None]] = {}
    hooks = []
    for mod in model.modules():
        if mod is model or is_rnnc_leaf(mod) or any(
                isinstance(m, (nn.RNNBase, nn.RNNCellBase)) for m in mod.modules()):
            continue

        def hook(m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            calls.setdefault(id(m), []).append(_signature(args, out) if not kwargs else None)

        hooks.append(mod.register_forward_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            model(*examples)
    except Exception:  # noqa: BLE001 -- the caller has already run the model once; no cells then
        return {}
    finally:
        for h in hooks:
            h.remove()
    found: dict[int, StepCell] = {}
    for key, sigs in calls.items():
        if len(sigs) >= 2 and sigs[0] is not None and all(s == sigs[0] for s in sigs):
            found[key] = sigs[0]
    return found
