"""Shared helpers of the Triton backend tests: rnn Programs of the cell modules at a size."""

from __future__ import annotations

from typing import Any

import torch

from rnnc.ir import Program, rnn_program
from rnnc.kernels import CELLS

INPUT = 6
#: nonlinear cells: one fused kernel per layer; linear cells: chunked scans
FUSED = ("lstm", "gru", "elman", "slstm")
SCAN = ("mingru", "minlstm", "lru", "mamba", "mlstm")


def program(name: str, hidden: int, layers: int = 1, bidirectional: bool = False, with_states: bool = False,
            with_lengths: bool = False, dtype: torch.dtype = torch.float32
            ) -> tuple[Program, list[list[torch.nn.Module]]]:
    """An rnn Program of rnnc layer modules stored in ``dtype`` (and the fp32 modules with the same,
    rounded, weights, for the reference)."""
    dirs = 2 if bidirectional else 1
    mods = []
    width = INPUT
    for k in range(layers):
        row = []
        for d in range(dirs):
            torch.manual_seed(10 * k + d)
            extra = {"num_heads": 4} if name in ("slstm", "mlstm") else {}
            row.append(CELLS[name].load_module_class()(width, hidden, **extra))
        mods.append(row)
        width = dirs * (width if name in ("lru", "mamba") else hidden)  # lru/mamba: output size = input size
    built = [[m.to(dtype).rnnc_layer() for m in row] for row in mods]
    for row in mods:
        for m in row:
            m.float()
    prog = rnn_program([row[0][0] for row in built], [[w for _, w in row] for row in built],
                       bidirectional=bidirectional, with_states=with_states, with_lengths=with_lengths)
    return prog, mods


def states(cell: Any, lead: int, batch: int, seed: int = 1) -> list[torch.Tensor]:
    """Random initial states ``[lead, B, *shape]``."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn((lead, batch, *s.shape), generator=g) * 0.5 for s in cell.states]
