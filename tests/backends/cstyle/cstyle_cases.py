"""Shared helpers for the C-style backend tests: modules of every cell at a size, with states."""

from __future__ import annotations

from typing import Any

import torch

from rnnc.kernels import CELLS

INPUT = 6


def hparams(name: str, hidden: int) -> dict[str, Any]:
    heads = next(h for h in (4, 2, 1) if hidden % h == 0)
    return {"slstm": {"num_heads": heads}, "mlstm": {"num_heads": heads},
            "lru": {"r_min": 0.5, "r_max": 0.99}}.get(name, {})


def module(name: str, hidden: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return CELLS[name].load_module_class()(INPUT, hidden, **hparams(name, hidden))


def states(cell: Any, batch: int, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in cell.states:
        t = torch.randn((batch, *s.shape), generator=g) * 0.5
        if cell.kind == "slstm" and s.name == "n":
            t = t.abs() + 0.5
        out.append(t)
    return tuple(out)
