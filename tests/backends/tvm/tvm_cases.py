"""Shared helpers of the TVM backend tests: cell modules at a size, compiled programs, states."""

from __future__ import annotations

from typing import Any

import torch

from rnnc.ir import Program, rnn_program
from rnnc.kernels import CELLS

INPUT = 6
_COMPILED: dict[str, Any] = {}


def hparams(name: str, hidden: int) -> dict[str, Any]:
    """Multi-head cells get several heads (the head structure is what the renderer must get right)."""
    heads = next(h for h in (4, 2, 1) if hidden % h == 0)
    return {"slstm": {"num_heads": heads}, "mlstm": {"num_heads": heads}}.get(name, {})


def layer(name: str, input_size: int, hidden: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return CELLS[name].load_module_class()(input_size, hidden, **hparams(name, hidden))


def program(name: str, hidden: int, layers: int = 1, bidirectional: bool = False, with_states: bool = False,
            with_lengths: bool = False) -> tuple[Program, list[list[torch.nn.Module]]]:
    """An rnn Program of rnnc layer modules (and the modules, for the reference)."""
    dirs = 2 if bidirectional else 1
    mods = [[layer(name, INPUT if k == 0 else dirs * hidden, hidden, 10 * k + d) for d in range(dirs)]
            for k in range(layers)]
    built = [[m.rnnc_layer() for m in row] for row in mods]
    prog = rnn_program([row[0][0] for row in built], [[w for _, w in row] for row in built],
                       bidirectional=bidirectional, with_states=with_states, with_lengths=with_lengths)
    return prog, mods


def compiled(prog: Program) -> Any:
    """The TVM build of ``prog``, once per structure (batch and steps are symbolic in it)."""
    from rnnc.backends.tvm import compile_program

    key = prog.hash()
    if key not in _COMPILED:
        _COMPILED[key] = compile_program(prog)
    return _COMPILED[key]


def states(cell: Any, lead: int, batch: int, seed: int = 1) -> list[torch.Tensor]:
    """Initial states ``[lead, B, *shape]``; sLSTM's normaliser n stays positive."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in cell.states:
        t = torch.randn((lead, batch, *s.shape), generator=g) * 0.5
        if cell.kind == "slstm" and s.name == "n":
            t = t.abs() + 0.5
        out.append(t)
    return out
