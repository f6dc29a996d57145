"""Shared cases for the kernel tests: how to build each registered cell's module at a size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from rnnc.ir import Program, rnn_program
from rnnc.kernels import CELLS

INPUT_SIZE = 6
LINEAR_CELLS = tuple(name for name, info in CELLS.items() if info.recurrence == "linear")


def heads_for(hidden: int) -> int:
    """A head count that divides ``hidden`` (and is > 1 where possible, to exercise heads)."""
    return next(h for h in (4, 3, 2, 1) if hidden % h == 0)


#: cell name -> hyperparameters of its module for a hidden size
HPARAMS: dict[str, Callable[[int], dict[str, Any]]] = {
    "lstm": lambda h: {},
    "gru": lambda h: {},
    "elman": lambda h: {},
    "slstm": lambda h: {"num_heads": heads_for(h)},
    "mlstm": lambda h: {"num_heads": heads_for(h)},
    "mingru": lambda h: {},
    "minlstm": lambda h: {},
    "lru": lambda h: {"r_min": 0.5, "r_max": 0.99},
    "mamba": lambda h: {},
    "gla": lambda h: {"num_heads": heads_for(h)},
    "retnet": lambda h: {"num_heads": heads_for(h)},
    "hgrn2": lambda h: {"num_heads": heads_for(h)},
    "deltanet": lambda h: {"num_heads": heads_for(h)},
    "mamba2": lambda h: {"num_heads": heads_for(h), "state_size": 5},
}


def make_module(name: str, hidden: int, seed: int = 0, **overrides: Any) -> torch.nn.Module:
    """The registered module of ``name`` with its own (seeded) initialisation."""
    torch.manual_seed(seed)
    cls = CELLS[name].load_module_class()
    return cls(INPUT_SIZE, hidden, **{**HPARAMS[name](hidden), **overrides})


def random_states(module: torch.nn.Module, batch: int, seed: int = 1) -> tuple[torch.Tensor, ...]:
    """Initial states ``[B, *state.shape]`` for the module's cell; positive where the maths wants it
    (the sLSTM normaliser n), moderate everywhere."""
    cell, _ = module.rnnc_layer()
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in cell.states:
        t = torch.randn((batch, *s.shape), generator=g, dtype=getattr(torch, s.dtype)) * 0.5
        if cell.kind == "slstm" and s.name == "n":
            t = t.abs() + 0.5
        out.append(t)
    return tuple(out)


def ir_program(module: torch.nn.Module, with_states: bool) -> Program:
    """A one-layer Program around the module's cell, built through the ``rnnc_layer`` protocol."""
    cell, weights = module.rnnc_layer()
    return rnn_program([cell], [[weights]], with_states=with_states)


def run_ir(module: torch.nn.Module, x: torch.Tensor, state: tuple[torch.Tensor, ...] | None
           ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Interpret the Program; states come back without the leading layer axis."""
    prog = ir_program(module, state is not None)
    outs = prog.run(x, *(s.unsqueeze(0) for s in state)) if state is not None else prog.run(x)
    outs = outs if isinstance(outs, tuple) else (outs,)
    return outs[0], tuple(s[0] for s in outs[1:])
