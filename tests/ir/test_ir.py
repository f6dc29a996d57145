"""IR: construction, verification messages, printer/parser round trip, structural hash, interpreter."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from rnnc.errors import IRVerificationError, UserInputError
from rnnc.ir import Graph, GraphBuilder, Node, Program, TensorType, Weights, rnn_program
from rnnc.ir.parser import IRParseError
from rnnc.kernels.gru.cell import build_cell as gru_cell
from rnnc.kernels.lstm.cell import build_cell as lstm_cell
from rnnc.tolerances import assert_close


def _lstm_program(bidirectional: bool = True, layers: int = 2) -> tuple[Program, torch.nn.LSTM]:
    torch.manual_seed(0)
    m = torch.nn.LSTM(5, 7, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    dirs = 2 if bidirectional else 1
    cells = [lstm_cell(5 if k == 0 else 7 * dirs, 7) for k in range(layers)]
    w = [[{p: getattr(m, f"{p}_l{k}{'_reverse' if d else ''}").detach() for p in cells[k].param_names}
          for d in range(dirs)] for k in range(layers)]
    return rnn_program(cells, w, bidirectional=bidirectional, with_states=True), m


def _mixed_program() -> Program:
    """A non-recurrent graph touching many ops, with concrete shapes."""
    torch.manual_seed(1)
    b = GraphBuilder("mixed")
    x = b.input("x", (2, 3, 16))
    cw = b.param("conv_w", (4, 3, 3))
    lw = b.param("lin_w", (5, 4))
    y = b.conv1d(b.pad(x, pads=(1, 1), mode="reflect", value=0.0), cw, stride=2, padding=0, dilation=1, groups=1)
    y = b.relu(y)
    y = b.transpose(y, perm=(0, 2, 1))
    y = b.linear(y, lw)
    y = b.layer_norm(y, eps=1e-5, ndim=1)
    a, c = b.split(y, axis=-1, sizes=(2, 3))
    z = b.concat(b.sigmoid(a) * 2.0, b.tanh(c), axis=-1)
    z = b.slice(z, axis=1, start=1, stop=2**62, step=2)
    z = b.mean(b.softplus(z), axes=(1,), keepdim=False)
    z = b.reshape(b.unsqueeze(z, axis=0), shape=(0, -1))
    g = b.build({"out": z, "both": b.stack(a, a, axis=0)})
    return Program(g, Weights({"conv_w": torch.randn(4, 3, 3), "lin_w": torch.randn(5, 4)})).verify()


def _run_eager(x: torch.Tensor, p: Program) -> tuple[torch.Tensor, torch.Tensor]:
    w = p.weights
    y = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (1, 1), mode="reflect"), w["conv_w"], stride=2)
    y = torch.relu(y).permute(0, 2, 1) @ w["lin_w"].T
    y = torch.nn.functional.layer_norm(y, (5,), eps=1e-5)
    a, c = y[..., :2], y[..., 2:]
    z = torch.cat([torch.sigmoid(a) * 2.0, torch.tanh(c)], -1)[:, 1::2]
    z = torch.nn.functional.softplus(z).mean(1).unsqueeze(0).reshape(1, -1)
    return z, torch.stack([a, a])


def test_interpreter_matches_eager_torch_on_mixed_ops():
    p = _mixed_program()
    x = torch.randn(2, 3, 16)
    out, both = p.run(x)
    ref_out, ref_both = _run_eager(x, p)
    assert_close(out, ref_out)
    assert_close(both, ref_both)
    # recorded (inferred) types agree with the shapes torch actually produces
    types = p.graph.value_types()
    assert tuple(out.shape) == types[dict(p.graph.outputs)["out"]].shape
    assert tuple(both.shape) == types[dict(p.graph.outputs)["both"]].shape


def test_lstm_program_matches_torch_with_states():
    p, m = _lstm_program()
    x, h0, c0 = torch.randn(3, 6, 5), torch.randn(4, 3, 7), torch.randn(4, 3, 7)
    y, hn, cn = p.run(x, h0, c0)
    with torch.no_grad():
        ry, (rh, rc) = m(x, (h0, c0))
    assert_close(y, ry)
    assert_close(hn, rh)
    assert_close(cn, rc)


@pytest.mark.parametrize("make", [lambda: _lstm_program()[0], _mixed_program])
def test_printer_parser_round_trip(make):
    p = make()
    text = p.text()
    q = Program.parse(text, p.weights)
    assert q == p
    assert q.text() == text
    assert q.hash() == p.hash()
    q.verify()


def test_hash_is_structural():
    p, _ = _lstm_program()
    changed = Program(p.graph, Weights({k: v + 1 for k, v in p.weights.items()}))
    assert changed.hash() == p.hash(), "weight values must not change the tuning key"
    q, _ = _lstm_program(bidirectional=False)
    assert q.hash() != p.hash()
    gru = rnn_program([gru_cell(5, 7)], [[{n: torch.zeros(t.shape) for n, t in gru_cell(5, 7).step.params}]])
    assert gru.hash() != rnn_program([lstm_cell(5, 7)], [[{n: torch.zeros(t.shape) for n, t in
                                                           lstm_cell(5, 7).step.params}]]).hash()


def test_hash_stable_across_processes():
    p, _ = _lstm_program()
    code = ("import sys; sys.path.insert(0, 'tests/ir'); import test_ir; "
            "print(test_ir._lstm_program()[0].hash())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert out.stdout.strip() == p.hash()


def test_ir_is_immutable():
    p, _ = _lstm_program()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.graph.nodes[0].op = "add"  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.weights["x"] = torch.zeros(1)  # type: ignore[index]


def _graph_with(nodes: tuple[Node, ...], outputs=(("y", "y"),)) -> Program:
    g = Graph("g", (("x", TensorType((2, 3))),), (), nodes, outputs)
    return Program(g)


@pytest.mark.parametrize("nodes, outputs, message", [
    ((Node("frobnicate", ("x",), ("y",), (TensorType((2, 3)),)),), (("y", "y"),), "unknown op 'frobnicate'"),
    ((Node("relu", ("z",), ("y",), (TensorType((2, 3)),)),), (("y", "y"),), "uses %z before it is defined"),
    ((Node("relu", ("x",), ("y",), (TensorType((2, 4)),)),), (("y", "y"),), "declares %y: f32[2,4]"),
    ((Node("add", ("x",), ("y",), (TensorType((2, 3)),)),), (("y", "y"),), "has 1 inputs"),
    ((Node("relu", ("x",), ("y",), (TensorType((2, 3)),)),), (("y", "nope"),), "undefined %nope"),
    ((Node("softmax", ("x",), ("y",), (TensorType((2, 3)),)),), (("y", "y"),), "missing attributes ['axis']"),
])
def test_verify_names_the_node(nodes, outputs, message):
    with pytest.raises(IRVerificationError, match=message.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(")):
        _graph_with(nodes, outputs).verify()


def test_verify_checks_weights_and_cells():
    p, _ = _lstm_program(bidirectional=False, layers=1)
    missing = dict(p.weights)
    name = next(iter(missing))
    del missing[name]
    with pytest.raises(IRVerificationError, match=f"no weight tensor for param %{name}"):
        Program(p.graph, Weights(missing)).verify()
    bad = dict(p.weights)
    bad[name] = torch.zeros(3, 3)
    with pytest.raises(IRVerificationError, match=f"weight %{name} is float32\\[3, 3\\]"):
        Program(p.graph, Weights(bad)).verify()
    with pytest.raises(IRVerificationError, match="layer 1 cell lstm takes 16 inputs, gets 7"):
        rnn_program([lstm_cell(5, 7), lstm_cell(16, 7)],
                    [[{n: torch.zeros(t.shape) for n, t in c.step.params}] for c in
                     (lstm_cell(5, 7), lstm_cell(16, 7))], bidirectional=False)


def test_builder_reports_shape_errors_with_types():
    b = GraphBuilder("bad")
    x = b.input("x", ("B", 4))
    w = b.param("w", (3, 5))
    with pytest.raises(IRVerificationError, match=r"linear\(f32\[B,4\], f32\[3,5\]\)"):
        b.linear(x, w)


@pytest.mark.parametrize("text, message", [
    ("hello", "first line must be"),
    ("rnnc-ir v1\nprogram p\n  input %x: f32[2,\n", "line 3"),
    ("rnnc-ir v1\nprogram p\n  input %x: q9[2]\nend\n", "cannot parse tensor type"),
    ("rnnc-ir v1\nprogram p\n  input %x: f32[2]\n", "has no 'end'"),
    ("rnnc-ir v1\ngraph g\nend\n", "does not follow a cell line"),
    ("rnnc-ir v1\n", "no 'program' block"),
])
def test_parser_errors_are_clear(text, message):
    with pytest.raises(IRParseError, match=message):
        Program.parse(text)


def test_interpreter_input_errors():
    p, _ = _lstm_program(bidirectional=False, layers=1)
    with pytest.raises(UserInputError, match="takes 3 inputs"):
        p.run(torch.zeros(1, 2, 5))
    with pytest.raises(UserInputError, match=r"input x has shape \(1, 2, 6\)"):
        p.run(torch.zeros(1, 2, 6), torch.zeros(1, 1, 7), torch.zeros(1, 1, 7))


def test_symbolic_time_runs_any_length():
    p, m = _lstm_program(bidirectional=False, layers=1)
    for t in (1, 13):
        x = torch.randn(2, t, 5)
        h0 = torch.zeros(1, 2, 7)
        with torch.no_grad():
            ref = m(x)[0]
        assert_close(p.run(x, h0, h0)[0], ref)
