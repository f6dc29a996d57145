"""LSTM, GRU and Elman against their oracles torch.nn.LSTM / GRU / RNN.

Both the plain-torch references and the IR (interpreted) must reproduce torch, including
relu Elman, bias=False, LSTM projections, two layers, both directions and both batch layouts.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from rnnc.ir import rnn_program
from rnnc.kernels.elman.cell import build_cell as elman_cell
from rnnc.kernels.elman.module import ElmanLayer
from rnnc.kernels.elman.reference import reference as elman_ref
from rnnc.kernels.gru.cell import build_cell as gru_cell
from rnnc.kernels.gru.module import GRULayer
from rnnc.kernels.gru.reference import reference as gru_ref
from rnnc.kernels.lstm.cell import build_cell as lstm_cell
from rnnc.kernels.lstm.module import LSTMLayer
from rnnc.kernels.lstm.reference import reference as lstm_ref
from rnnc.tolerances import assert_close

INPUT = 5
PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


def layer_weights(rnn: nn.RNNBase, layer: int, direction: int) -> dict[str, torch.Tensor]:
    """``weight_ih_l{k}[_reverse]`` … of a torch RNN as cell param names."""
    suffix = f"_l{layer}" + ("_reverse" if direction else "")
    return {p: getattr(rnn, p + suffix).detach() for p in PARAMS if hasattr(rnn, p + suffix)}


def make(kind: str, hidden: int, *, bias: bool = True, proj_size: int = 0, nonlinearity: str = "tanh",
         num_layers: int = 1, bidirectional: bool = False, batch_first: bool = True) -> nn.RNNBase:
    torch.manual_seed(0)
    common = {"num_layers": num_layers, "bidirectional": bidirectional, "batch_first": batch_first, "bias": bias}
    if kind == "lstm":
        return nn.LSTM(INPUT, hidden, proj_size=proj_size, **common)
    if kind == "gru":
        return nn.GRU(INPUT, hidden, **common)
    return nn.RNN(INPUT, hidden, nonlinearity=nonlinearity, **common)


def cells_for(rnn: nn.RNNBase, kind: str, nonlinearity: str = "tanh") -> list:
    dirs = 2 if rnn.bidirectional else 1
    cells = []
    for k in range(rnn.num_layers):
        in_size = INPUT if k == 0 else dirs * (rnn.proj_size or rnn.hidden_size)
        if kind == "lstm":
            cells.append(lstm_cell(in_size, rnn.hidden_size, bias=rnn.bias, proj_size=rnn.proj_size))
        elif kind == "gru":
            cells.append(gru_cell(in_size, rnn.hidden_size, bias=rnn.bias))
        else:
            cells.append(elman_cell(in_size, rnn.hidden_size, bias=rnn.bias, nonlinearity=nonlinearity))
    return cells


def torch_states(kind: str, rnn: nn.RNNBase, batch: int, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    lay = rnn.num_layers * (2 if rnn.bidirectional else 1)
    h = torch.randn(lay, batch, rnn.proj_size or rnn.hidden_size, generator=g)
    if kind == "lstm":
        return h, torch.randn(lay, batch, rnn.hidden_size, generator=g)
    return (h,)


def run_torch(kind: str, rnn: nn.RNNBase, x: torch.Tensor, states: tuple[torch.Tensor, ...] | None):
    with torch.no_grad():
        if kind == "lstm":
            y, (h, c) = rnn(x, states)
            return y, (h, c)
        y, h = rnn(x, states[0] if states else None)
        return y, (h,)


VARIANTS = [("lstm", {}), ("lstm", {"bias": False}), ("lstm", {"proj_size": 3}), ("gru", {}),
            ("gru", {"bias": False}), ("elman", {}), ("elman", {"nonlinearity": "relu"}),
            ("elman", {"nonlinearity": "relu", "bias": False})]
REFS = {"lstm": lstm_ref, "gru": gru_ref, "elman": elman_ref}


def _vid(v: tuple[str, dict]) -> str:
    return v[0] + "".join(f"-{k}={val}" for k, val in v[1].items())


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("variant", VARIANTS, ids=[_vid(v) for v in VARIANTS])
@pytest.mark.parametrize(("batch", "steps", "hidden"), [(1, 1, 8), (3, 7, 33), (3, 64, 128), (1, 64, 8)])
@pytest.mark.parametrize("given", [False, True], ids=["zeros", "h0"])
def test_single_layer_matches_torch(variant, batch: int, steps: int, hidden: int, given: bool) -> None:
    kind, opts = variant
    rnn = make(kind, hidden, **opts)
    x = torch.randn(batch, steps, INPUT, generator=torch.Generator().manual_seed(2))
    states = torch_states(kind, rnn, batch) if given else None
    want_y, want_states = run_torch(kind, rnn, x, states)
    weights = layer_weights(rnn, 0, 0)
    # the plain-torch reference
    with torch.no_grad():
        ref_y, ref_states = REFS[kind](x, weights, tuple(s[0] for s in states) if states else None, **opts)
    assert_close(ref_y, want_y, "float32", "reference", f"{kind} reference y")
    for r, w in zip(ref_states, want_states, strict=True):
        assert_close(r, w[0], "float32", "reference", f"{kind} reference state")
    # the IR through the interpreter
    prog = rnn_program(cells_for(rnn, kind, opts.get("nonlinearity", "tanh")), [[weights]],
                       with_states=given)
    outs = prog.run(x, *states) if states else prog.run(x)
    outs = outs if isinstance(outs, tuple) else (outs,)
    assert_close(outs[0], want_y, "float32", "interp", f"{kind} IR y")
    for g, w in zip(outs[1:], want_states, strict=True):
        assert_close(g, w, "float32", "interp", f"{kind} IR state")


STACKS = [(kind, bf, proj, given) for kind, bf, proj, given in itertools.product(
    ("lstm", "gru", "elman"), (True, False), (0, 4), (False, True)) if kind == "lstm" or not proj]


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize(("kind", "batch_first", "proj_size", "given"), STACKS)
def test_two_layer_bidirectional_matches_torch(kind: str, batch_first: bool, proj_size: int, given: bool) -> None:
    rnn = make(kind, 9, num_layers=2, bidirectional=True, batch_first=batch_first,
               **({"proj_size": proj_size} if kind == "lstm" else {}))
    batch, steps = 3, 7
    x = torch.randn(batch, steps, INPUT, generator=torch.Generator().manual_seed(2))
    if not batch_first:
        x = x.transpose(0, 1).contiguous()
    states = torch_states(kind, rnn, batch) if given else None
    want_y, want_states = run_torch(kind, rnn, x, states)
    weights = [[layer_weights(rnn, k, d) for d in range(2)] for k in range(2)]
    prog = rnn_program(cells_for(rnn, kind), weights, bidirectional=True, batch_first=batch_first,
                       with_states=given)
    outs = prog.run(x, *states) if states else prog.run(x)
    assert_close(outs[0], want_y, "float32", "interp", f"{kind} 2-layer bidirectional y")
    for g, w in zip(outs[1:], want_states, strict=True):
        assert_close(g, w, "float32", "interp", f"{kind} 2-layer bidirectional state")


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize(("kind", "opts"), [("lstm", {"proj_size": 3}), ("lstm", {"bias": False}), ("gru", {}),
                                            ("elman", {"nonlinearity": "relu"})])
def test_layer_modules_load_torch_weights(kind: str, opts: dict) -> None:
    """The thin wrappers take nn.LSTM/GRU/RNN layer-0 weights by name and then agree with torch."""
    rnn = make(kind, 8, **opts)
    cls = {"lstm": LSTMLayer, "gru": GRULayer, "elman": ElmanLayer}[kind]
    layer = cls(INPUT, 8, **opts)
    layer.load_state_dict(layer_weights(rnn, 0, 0))
    x = torch.randn(3, 7, INPUT, generator=torch.Generator().manual_seed(5))
    want_y, want_states = run_torch(kind, rnn, x, None)
    with torch.no_grad():
        got_y, got_states = layer(x)
    assert_close(got_y, want_y, "float32", "reference", kind)
    for g, w in zip(got_states, want_states, strict=True):
        assert_close(g, w[0], "float32", "reference", kind)
