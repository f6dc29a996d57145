"""The IR's forward-mode Jacobian pass (``rnnc.ir.jvp``) against torch autograd.

The reference differentiates with torch's reverse-mode autograd -- through ``torch.nn``'s own
cells for LSTM/GRU/Elman, through the interpreter's torch calls for every other cell -- so it
shares nothing with the pass's per-op rules.  float64 throughout: the errors are rounding only.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings

import pytest
import torch

from rnnc.errors import UnsupportedError
from rnnc.ir.builder import GraphBuilder
from rnnc.ir.graph import Cell, Program, StateSpec, Weights
from rnnc.ir.interp import run_graph
from rnnc.ir.jvp import JACOBIAN, NoDerivative, jacobian_graph
from rnnc.ir.rnn import direction_params, rnn_layout

F64 = torch.float64
ROWS = 3


def _cell_of(model: torch.nn.Module, x: torch.Tensor) -> tuple[Cell, dict[str, torch.Tensor]]:
    from rnnc.frontend.api import trace

    program = trace(model, (x,))
    node = program.rnn_nodes()[0]
    cell = rnn_layout(node.attr_dict)[0][0]
    names = direction_params(node.attr_dict, node.inputs[2 + len(cell.states):])[0]
    return cell, {k: program.weights[v].to(F64) for k, v in names.items()}


def _ir_jacobian(cell: Cell, params: dict, x: torch.Tensor, states: list[torch.Tensor]) -> tuple:
    jg = jacobian_graph(cell)
    env = {cell.step.input_names[0]: x, **dict(zip(cell.state_names, states, strict=True)), **params,
           **jg.seeds(F64)}
    outs = run_graph(jg.graph, env)
    assert jg.graph.output_names[-1] == JACOBIAN
    return outs[:-1], outs[-1]


def _autograd_jacobian(step, states: list[torch.Tensor]) -> torch.Tensor:
    """``J[r] = ∂ flat(step(states)[r]) / ∂ flat(states[r])`` by reverse mode, row by row."""
    sizes = [s[0].numel() for s in states]
    rows = []
    for r in range(states[0].shape[0]):
        def f(flat: torch.Tensor, r: int = r) -> torch.Tensor:
            parts = torch.split(flat, sizes)
            one = [p.reshape(1, *s.shape[1:]) for p, s in zip(parts, states, strict=True)]
            return torch.cat([o.reshape(-1) for o in step(one, r)])

        flat = torch.cat([s[r].reshape(-1) for s in states])
        rows.append(torch.autograd.functional.jacobian(f, flat))
    return torch.stack(rows)


def _interp_step(cell: Cell, params: dict, x: torch.Tensor):
    def step(states: list[torch.Tensor], r: int) -> list[torch.Tensor]:
        env = {cell.step.input_names[0]: x[r:r + 1], **dict(zip(cell.state_names, states, strict=True)), **params}
        return list(run_graph(cell.step, env)[1:])

    return step


def _random_states(cell: Cell) -> list[torch.Tensor]:
    return [torch.randn(ROWS, *st.shape, dtype=F64) for st in cell.states]


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_torch_cells_against_autograd_through_torch_nn(kind: str) -> None:
    """The built-in layers' Jacobians equal autograd through torch.nn's own cell of the same weights."""
    torch.manual_seed(0)
    layer = getattr(torch.nn, kind)(5, 7)
    cell, params = _cell_of(layer, torch.randn(4, 2, 5))
    ref_cell = getattr(torch.nn, f"{kind}Cell")(5, 7).to(F64)
    ref_cell.load_state_dict({k.removesuffix("_l0"): v.to(F64) for k, v in layer.state_dict().items()})
    x = torch.randn(ROWS, 5, dtype=F64)
    states = _random_states(cell)

    def step(st: list[torch.Tensor], r: int) -> list[torch.Tensor]:
        out = ref_cell(x[r:r + 1], tuple(st) if kind == "LSTM" else st[0])
        return list(out) if kind == "LSTM" else [out]

    outs, jac = _ir_jacobian(cell, params, x, states)
    assert torch.allclose(jac, _autograd_jacobian(step, states), atol=1e-12, rtol=0)
    # the Jacobian graph's primal outputs are the step's own: torch.nn's next state, row by row
    rows = [step([s[r:r + 1] for s in states], r)[0] for r in range(ROWS)]
    assert torch.allclose(outs[1], torch.cat(rows), atol=1e-12)


def _rnnc_cells() -> list[str]:
    import rnnc.kernels as kernels

    return sorted(m.name for m in pkgutil.iter_modules(kernels.__path__) if m.ispkg)


@pytest.mark.parametrize("name", _rnnc_cells())
def test_every_rnnc_cell_against_autograd(name: str) -> None:
    """Every shipped cell (multi-state, matrix-state, exponential gating, complex eigenvalues)."""
    mod = importlib.import_module(f"rnnc.kernels.{name}.module")
    layers = [c for c in vars(mod).values()
              if isinstance(c, type) and issubclass(c, torch.nn.Module) and c.__module__ == mod.__name__]
    assert layers, name
    torch.manual_seed(1)
    cell, params = _cell_of(layers[0](6, 8), torch.randn(2, 3, 6))
    x = torch.randn(ROWS, cell.input_size, dtype=F64)
    states = _random_states(cell)
    _, jac = _ir_jacobian(cell, params, x, states)
    ref = _autograd_jacobian(_interp_step(cell, params, x), states)
    assert jac.shape == ref.shape
    assert torch.allclose(jac, ref, atol=1e-11 * (1 + float(ref.abs().max())), rtol=0), name


def _user_cell(body, hidden: int = 6, inputs: int = 4, kind: str = "probe") -> tuple[Cell, dict]:
    """A one-state user cell ``h' = body(b, x, h, w)``, with weight ``w [hidden, hidden]``."""
    b = GraphBuilder(kind)
    x = b.input("x", ("B", inputs))
    h = b.input("h", ("B", hidden))
    w = b.param("w", (hidden, hidden))
    u = b.param("u", (hidden, inputs))
    new = body(b, b.linear(x, u), h, w)
    step = b.build([("y", new), ("h", new)])
    cell = Cell(kind, "nonlinear", inputs, hidden, hidden, (StateSpec("h", (hidden,)),), step)
    torch.manual_seed(2)
    params = {n: torch.randn(*t.shape, dtype=F64) for n, t in step.params}
    params["w"] = params["w"] / 2
    return cell, params


def _c(b: GraphBuilder, v: float):
    return b.const(v, "float32")


def _max_min(b, p, h, w):
    return b.max(b.linear(h, w), p) + b.min(h, p * 0.5)


def _pow_div_log(b, p, h, w):
    return (b.pow(b.sigmoid(h) + 0.5, b.sigmoid(p) + 1.0) / (b.exp(h * 0.1) + 1.0)
            + b.log(b.sigmoid(b.linear(h, w))))


def _where_clamp(b, p, h, w):
    return b.where(b.gt(p, _c(b, 0.0)), b.clamp(h, min=-0.5, max=0.7), b.tanh(h))


def _unary_zoo(b, p, h, w):
    return (b.relu(h) + b.abs(h) + b.sqrt(b.softplus(h)) + b.silu(h) + b.logsigmoid(h)
            + b.reciprocal(b.exp(h) + 1.0) + b.cos(h) * b.sin(p) - h)


def _softmax_layer_norm(b, p, h, w):
    scale = b.param("g", (6,))
    return b.softmax(b.linear(h, w), axis=-1) * 3.0 + b.layer_norm(h + p, scale, eps=1e-5, ndim=1)


def _amax_mean(b, p, h, w):
    grid = b.reshape(h, shape=(0, 2, 3))
    top = b.amax(b.reshape(h * p, shape=(0, 2, 3)), axes=(-1,), keepdim=True)
    return b.reshape(grid * top - b.mean(grid, axes=(1,), keepdim=True), shape=(0, 6))


def _shapes(b, p, h, w):
    col = b.flip(b.transpose(b.unsqueeze(h, axis=1), perm=(0, 2, 1)), axis=1)  # [B, 6, 1] reversed
    swapped = b.concat(*reversed(b.split(b.squeeze(col, axis=-1), axis=1, sizes=(2, 4))), axis=1)
    stacked = b.stack(b.slice(h, axis=1, start=0, stop=3, step=1),
                      b.select(b.reshape(p, shape=(0, 2, 3)), axis=1, index=1), axis=1)
    padded = b.pad(b.slice(h, axis=-1, start=1, stop=6, step=1), pads=(1, 0), mode="replicate", value=0.0)
    return swapped + b.reshape(stacked, shape=(0, 6)) + padded


def _matmuls(b, p, h, w):
    grid = b.reshape(h, shape=(0, 2, 3))
    gram = b.matmul(grid, b.transpose(b.reshape(b.tanh(h), shape=(0, 2, 3)), perm=(0, 2, 1)))  # both batched
    return b.concat(b.reshape(gram, shape=(0, 4)), b.slice(b.matmul(h, w), axis=1, start=0, stop=2, step=1), axis=1)


def _casts(b, p, h, w):
    return b.cast(b.cast(h, dtype="float64"), dtype="float32") * p


#: each op with a derivative rule, inside a cell (float32 graphs evaluated on float64 tensors)
BODIES = {f.__name__[1:]: f for f in (_max_min, _pow_div_log, _where_clamp, _unary_zoo, _softmax_layer_norm,
                                      _amax_mean, _shapes, _matmuls, _casts)}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_each_rule_against_autograd(name: str) -> None:
    cell, params = _user_cell(BODIES[name])
    x = torch.randn(ROWS, cell.input_size, dtype=F64)
    states = _random_states(cell)
    _, jac = _ir_jacobian(cell, params, x, states)
    ref = _autograd_jacobian(_interp_step(cell, params, x), states)
    # autograd rounds the cotangent through a float32 cast; the forward rule carries it exactly
    tol = 1e-6 if name == "casts" else 1e-11
    assert torch.allclose(jac, ref, atol=tol, rtol=0), float((jac - ref).abs().max())
    assert float(ref.abs().max()) > 0.1  # the state really reaches the output through the op


def test_ops_on_x_alone_need_no_rule() -> None:
    """gelu has no rule; applied to the input only, it costs the pass nothing."""
    cell, params = _user_cell(lambda b, p, h, w: b.tanh(b.linear(h, w) + b.gelu(p)))
    x = torch.randn(ROWS, cell.input_size, dtype=F64)
    states = _random_states(cell)
    _, jac = _ir_jacobian(cell, params, x, states)
    assert torch.allclose(jac, _autograd_jacobian(_interp_step(cell, params, x), states), atol=1e-12)


def _gelu_on_state(b, p, h, w):
    return b.gelu(h) + p


def _batch_mean(b, p, h, w):
    return h - b.mean(h, axes=(0,), keepdim=True) + p


def _batch_transpose(b, p, h, w):
    there = b.transpose(b.reshape(h, shape=(0, 2, 3)), perm=(1, 0, 2))
    return b.reshape(b.transpose(there, perm=(1, 0, 2)), shape=(0, 6)) + p


def _batch_reshape(b, p, h, w):
    return b.reshape(b.reshape(h, shape=(-1,)), shape=(-1, 6)) + p


@pytest.mark.parametrize(("body", "says"), [(_gelu_on_state, "op gelu has no derivative rule"),
                                            (_batch_mean, "batch axis"), (_batch_transpose, "moves the batch axis"),
                                            (_batch_reshape, "does not keep the batch axis")])
def test_refusals_name_the_op(body, says) -> None:
    cell, _ = _user_cell(body)
    with pytest.raises(NoDerivative, match=says) as err:
        jacobian_graph(cell)
    assert isinstance(err.value, UnsupportedError) and "probe" in str(err.value)


def test_state_dependent_weight_is_refused() -> None:
    cell, _ = _user_cell(lambda b, p, h, w: b.linear(p, h))  # [B, 6] as the weight: h' = p @ h.T
    with pytest.raises(NoDerivative, match="weight or bias depends on the state"):
        jacobian_graph(cell)


def test_graph_verifies_and_round_trips_as_text() -> None:
    cell, params = _cell_of(torch.nn.LSTM(5, 7), torch.randn(4, 2, 5))
    jg = jacobian_graph(cell)
    weights = Weights({**{k: v.float() for k, v in params.items()}, **jg.seeds()})
    program = Program(jg.graph, weights).verify()
    again = Program.parse(program.text(), weights)
    assert again == program
    assert jg.graph.outputs[-1][0] == JACOBIAN and jg.dim == 14


def test_newton_falls_back_to_torch_func_and_says_why() -> None:
    """A state through gelu: Newton still matches the sequential loop, Jacobians by torch.func."""
    from rnnc.lower.newton import _sequential, _step_fn, solve

    cell, params = _user_cell(lambda b, p, h, w: b.gelu(b.linear(h, w)) * 0.5 + b.tanh(p))
    params = {k: v.float() for k, v in params.items()}
    x = torch.randn(16, 2, cell.input_size)
    init = [torch.zeros(2, 6)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, _, info = solve(cell, params, x, init, "full")
    ref = _sequential(cell, _step_fn(cell, params), x, torch.zeros(2, 6), "full", 0)[0]
    assert info.converged and info.jacobians.startswith("torch.func") and "gelu" in info.jacobians
    assert torch.allclose(y, ref, atol=1e-5)
    smooth, params = _user_cell(lambda b, p, h, w: b.tanh(b.linear(h, w) + p))
    assert solve(smooth, {k: v.float() for k, v in params.items()}, x, init)[2].jacobians == "ir"


@pytest.mark.parametrize("over_batch", ["mean", "select"])
def test_x_only_values_without_the_batch_axis_broadcast_like_weights(over_batch: str) -> None:
    """``h' = tanh(W h * f(x))`` with ``f`` reducing or indexing x over the batch: rows mix in x
    only, the Jacobian per row is still defined (and must not broadcast along the directions)."""
    def body(b, p, h, w):
        mixed = b.mean(p, axes=(0,), keepdim=False) if over_batch == "mean" else b.select(p, axis=0, index=0)
        return b.tanh(b.linear(h, w) * mixed)

    cell, params = _user_cell(body)
    x = torch.randn(ROWS, cell.input_size, dtype=F64)
    states = _random_states(cell)
    _, jac = _ir_jacobian(cell, params, x, states)

    def step(st: list[torch.Tensor], r: int) -> list[torch.Tensor]:  # the whole batch of x, row r's state
        env = {"x": x, "h": st[0].expand(ROWS, -1), **params}
        return [run_graph(cell.step, env)[1][r:r + 1]]

    assert torch.allclose(jac, _autograd_jacobian(step, states), atol=1e-12)


def test_kinks_follow_torch() -> None:
    """At clamp's bounds and at max/min ties the derivative is torch's (bounds pass it, ties split it)."""
    def body(b, p, h, w):
        return b.clamp(h, min=-0.5, max=0.75) + b.max(h, b.relu(h)) + b.min(h * 2.0, h + h) + p

    cell, params = _user_cell(body)
    x = torch.randn(ROWS, cell.input_size, dtype=F64)
    states = [torch.tensor([[-0.5, 0.75, 0.25, -1.0, 2.0, 0.0]] * ROWS, dtype=F64)]
    _, jac = _ir_jacobian(cell, params, x, states)
    assert torch.allclose(jac, _autograd_jacobian(_interp_step(cell, params, x), states), atol=1e-12)
