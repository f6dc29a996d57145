"""Recurrent layers -> ``rnn`` nodes: nn.LSTM/GRU/RNN, their cells, rnnc layers, user cells.

Every recurrent thing becomes the IR's one ``rnn`` op, so backends see one shape of problem.
A single call of a cell (``nn.LSTMCell(x_t, (h, c))``) is an ``rnn`` over one time step; the
loop pass (``loops.py``) later merges a chain of such steps into one node over a symbolic T.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from rnnc.frontend.values import TV, Ctx, Packed, SymInt
from rnnc.ir import Cell, weight_name
from rnnc.kernels.elman.cell import build_cell as elman_cell
from rnnc.kernels.gru.cell import build_cell as gru_cell
from rnnc.kernels.lstm.cell import build_cell as lstm_cell


def emit_rnn(ctx: Ctx, x: TV, cells: Sequence[Cell], weights: Sequence[Sequence[dict[str, torch.Tensor]]], *,
             prefix: str, bidirectional: bool = False, batch_first: bool = True, lengths: TV | None = None,
             init: Sequence[TV | None] | None = None) -> tuple[TV, list[TV]]:
    """One ``rnn`` node. All-zero initial states (``torch.zeros``) are passed as "no state"."""
    dirs = 2 if bidirectional else 1
    params: list[TV] = []
    for k, cell in enumerate(cells):
        for d in range(dirs):
            for p in cell.param_names:
                params.append(ctx.param(weights[k][d][p], weight_name(prefix, k, d, p)))
    states = [None if s is None or s.zeros else s for s in (init or [None] * len(cells[0].states))]
    outs = ctx.emit("rnn", x, lengths, *states, *params, cells=tuple(cells), num_layers=len(cells),
                    bidirectional=bidirectional, batch_first=batch_first)
    outs = outs if isinstance(outs, tuple) else (outs,)
    return outs[0], list(outs[1:])


def _torch_rnn_cells(mod: nn.RNNBase) -> tuple[list[Cell], list[list[dict[str, torch.Tensor]]]]:
    dirs = 2 if mod.bidirectional else 1
    out = mod.proj_size or mod.hidden_size
    cells, weights = [], []
    for k in range(mod.num_layers):
        size_in = mod.input_size if k == 0 else out * dirs
        if mod.mode == "LSTM":
            cell = lstm_cell(size_in, mod.hidden_size, bias=mod.bias, proj_size=mod.proj_size)
        elif mod.mode == "GRU":
            cell = gru_cell(size_in, mod.hidden_size, bias=mod.bias)
        else:
            cell = elman_cell(size_in, mod.hidden_size, bias=mod.bias,
                              nonlinearity="relu" if mod.mode == "RNN_RELU" else "tanh")
        cells.append(cell)
        weights.append([{p: getattr(mod, f"{p}_l{k}{'_reverse' if d else ''}") for p in cell.param_names}
                        for d in range(dirs)])
    return cells, weights


def convert_torch_rnn(ctx: Ctx, mod: nn.RNNBase, qual: str, x: Any, hx: Any = None) -> Any:
    """nn.LSTM / nn.GRU / nn.RNN with every option; returns what torch returns."""
    cells, weights = _torch_rnn_cells(mod)
    lengths = None
    packed = isinstance(x, Packed)
    batch_first = mod.batch_first
    if packed:  # a packed sequence carries its own layout; the module's batch_first does not apply
        lengths, batch_first, x = x.lengths, x.batch_first, x.data
    is_lstm = mod.mode == "LSTM"
    init = list(hx) if is_lstm and hx is not None else ([hx] if hx is not None else None)
    unbatched = not packed and x.rank == 2
    if unbatched:
        x = ctx.emit("unsqueeze", x, axis=0 if batch_first else 1)
        init = [ctx.emit("unsqueeze", s, axis=1) if s is not None and not s.zeros else None
                for s in init] if init else None
    y, finals = emit_rnn(ctx, x, cells, weights, prefix=f"{qual}.", bidirectional=mod.bidirectional,
                         batch_first=batch_first, lengths=lengths, init=init)
    if unbatched:
        y = ctx.emit("squeeze", y, axis=0 if batch_first else 1)
        finals = [ctx.emit("squeeze", s, axis=1) for s in finals]
    out: Any = Packed(y, lengths, batch_first) if packed else y
    return (out, tuple(finals)) if is_lstm else (out, finals[0])


def cell_of(mod: nn.RNNCellBase) -> tuple[Cell, dict[str, torch.Tensor]]:
    """The IR cell of a torch LSTMCell/GRUCell/RNNCell and its weights (same names)."""
    if isinstance(mod, nn.LSTMCell):
        cell = lstm_cell(mod.input_size, mod.hidden_size, bias=mod.bias)
    elif isinstance(mod, nn.GRUCell):
        cell = gru_cell(mod.input_size, mod.hidden_size, bias=mod.bias)
    else:
        cell = elman_cell(mod.input_size, mod.hidden_size, bias=mod.bias, nonlinearity=mod.nonlinearity)
    return cell, {p: getattr(mod, p) for p in cell.param_names}


def convert_torch_cell(ctx: Ctx, mod: nn.RNNCellBase, qual: str, x: TV, hx: Any = None) -> Any:
    """One step of LSTMCell/GRUCell/RNNCell as an rnn over T=1 (merged by the loop pass)."""
    cell, weights = cell_of(mod)
    states = list(hx) if isinstance(hx, (tuple, list)) else ([hx] if hx is not None else [None] * len(cell.states))
    return step_cell(ctx, cell, weights, qual, x, states, single=not isinstance(mod, nn.LSTMCell))


def step_cell(ctx: Ctx, cell: Cell, weights: dict[str, torch.Tensor], qual: str, x: TV,
              states: Sequence[TV | None], *, single: bool) -> Any:
    """Run ``cell`` for one step on ``x [B, I]`` and states ``[B, ...]`` (or unbatched)."""
    unbatched = x.rank == 1
    if unbatched:
        x = ctx.emit("unsqueeze", x, axis=0)
        states = [ctx.emit("unsqueeze", s, axis=0) if s is not None and not s.zeros else None for s in states]
    x3 = ctx.emit("unsqueeze", x, axis=1)
    init = [ctx.emit("unsqueeze", s, axis=0) if s is not None and not s.zeros else None for s in states]
    _, finals = emit_rnn(ctx, x3, [cell], [[weights]], prefix=f"{qual}.", init=init)
    outs = [ctx.emit("select", f, axis=0, index=0) for f in finals]
    if unbatched:
        outs = [ctx.emit("squeeze", o, axis=0) for o in outs]
    return outs[0] if single else tuple(outs)


def convert_rnnc_layer(ctx: Ctx, mod: nn.Module, qual: str, x: TV, state: Any = None) -> Any:
    """An rnnc layer (a module with ``rnnc_layer() -> (Cell, weights)``): ``[B, T, I]`` in,
    ``(y, states)`` out with states ``[B, *shape]``."""
    cell, weights = mod.rnnc_layer()
    states = list(state) if isinstance(state, (tuple, list)) else ([state] if state is not None else None)
    init = [ctx.emit("unsqueeze", s, axis=0) if s is not None and not s.zeros else None
            for s in states] if states else None
    y, finals = emit_rnn(ctx, x, [cell], [[weights]], prefix=f"{qual}.", init=init)
    return y, tuple(ctx.emit("select", f, axis=0, index=0) for f in finals)


def pack_padded(ctx: Ctx, x: TV, lengths: Any, batch_first: bool = False, enforce_sorted: bool = True) -> Packed:
    """``pack_padded_sequence``: the rnn gets a ``lengths`` input; sorting is not needed."""
    if not isinstance(lengths, TV):
        raise ctx.unsupported("pack_padded_sequence with python lengths",
                              "lengths passed to the model as an int64 tensor")
    if lengths.ex.dtype != torch.int64:
        lengths = ctx.emit("cast", lengths, dtype="int64")
    return Packed(x, lengths, batch_first)


def pad_packed(ctx: Ctx, seq: Packed, batch_first: bool = False, padding_value: float = 0.0,
               total_length: Any = None) -> tuple[TV, TV]:
    """``pad_packed_sequence``: padded with zeros to ``max(lengths)`` like torch (``trim_to_lengths``;
    a batch whose longest sequence fills the input keeps T), or to ``total_length``."""
    if padding_value != 0.0:
        raise ctx.unsupported(f"pad_packed_sequence(padding_value={padding_value})", "padding_value=0")
    y = seq.data
    if batch_first != seq.batch_first:
        y = ctx.emit("transpose", y, perm=(1, 0, 2))
    t_axis = 1 if batch_first else 0
    if total_length is None:
        y = ctx.emit("trim_to_lengths", y, seq.lengths, axis=t_axis)
    elif not (isinstance(total_length, SymInt) and total_length.is_dim(y, t_axis)) and total_length != y.ex.shape[
            t_axis]:
        raise ctx.unsupported(f"pad_packed_sequence(total_length={int(total_length)}) longer than the input",
                              "total_length equal to the padded input's length")
    return y, seq.lengths
