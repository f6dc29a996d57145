"""The chunk pass accepts a chunk form only when the step graph proves it, names a cell by nothing
but its graph, and says why otherwise: a user cell built with the family's helpers gets the
chunkwise kernels (C, Triton, ONNX) like the built-in cells; claims the graph refutes are
declined with a reason, never a crash."""

from __future__ import annotations

import dataclasses
from typing import Any

import onnxruntime as ort
import torch

import rnnc
from rnnc.backends.cstyle.program import CompiledProgram
from rnnc.ir import Cell, GraphBuilder, StateSpec, rnn_program
from rnnc.ir.chunkform import chunk_attr
from rnnc.kernels.linattn import build_family_cell, ir_heads
from rnnc.passes import plan_layer
from rnnc.tolerances import assert_close

IN, NH, DK, DV = 5, 2, 3, 4


def _user_cell() -> tuple[Cell, dict[str, torch.Tensor]]:
    """A decayed linear attention nobody registered: sigmoid keys, a tanh value, a scalar
    decay per head from its own projection, y = o * sigmoid(W_o x)."""

    def project(b: Any, x: Any) -> tuple[Any, ...]:
        q = ir_heads(b, b.linear(x, b.param("wq", (NH * DK, IN))), NH)
        k = b.sigmoid(ir_heads(b, b.linear(x, b.param("wk", (NH * DK, IN))), NH))
        v = b.tanh(ir_heads(b, b.linear(x, b.param("wv", (NH * DV, IN))), NH))
        g = b.unsqueeze(b.logsigmoid(b.linear(x, b.param("wg", (NH, IN)))), axis=-1)
        return q, k, v, g, None

    def readout(b: Any, x: Any, o: Any) -> Any:
        return b.reshape(o, shape=(0, NH * DV)) * b.sigmoid(b.linear(x, b.param("wo", (NH * DV, IN))))

    cell = build_family_cell("my_decay", "gla", IN, NH * DV, (NH, DK, DV), "float32", project, readout, ())
    gen = torch.Generator().manual_seed(0)
    weights = {n: torch.randn(tuple(t.shape), generator=gen) * 0.5 for n, t in cell.step.params}
    return cell, weights


def test_a_user_cell_gets_the_chunk_kernels() -> None:
    cell, weights = _user_cell()
    plan = plan_layer(cell)
    assert plan.chunk is not None and plan.family == "chunk" and not plan.known
    prog = rnn_program([cell], [[weights]])
    x = torch.randn(2, 45, IN, generator=torch.Generator().manual_seed(1))
    want = prog.run(x)
    compiled = CompiledProgram(prog)
    assert next(iter(compiled.builds.values())).kernel.meta["path"] == "chunk"
    for g, w in zip(compiled(x), want, strict=True):
        assert_close(g, w, "float32", "c", "user cell, C chunkwise")
    model = rnnc.export_onnx(prog)
    assert "LinearAttention" in {n.op_type for n in model.graph.node}
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {sess.get_inputs()[0].name: x.numpy(),
             sess.get_inputs()[1].name: torch.zeros(1, 2, NH, DK, DV).numpy()}
    assert_close(torch.from_numpy(sess.run(None, feeds)[0]), want[0], "float32", "onnxruntime", "user cell, ort")


def _with_chunk(cell: Cell, text: str) -> Cell:
    return dataclasses.replace(cell, attrs=tuple((k, text if k == "chunk" else v) for k, v in cell.attrs))


def test_refuted_claims_are_declined_with_the_reason() -> None:
    cell, _ = _user_cell()
    text = dict(cell.attrs)["chunk"]
    names = dict(p.split("=") for p in text.split()[1:])
    cases = {
        "declares no chunkwise form": dataclasses.replace(cell, attrs=tuple(a for a in cell.attrs if a[0] != "chunk")),
        "lacks": _with_chunk(cell, text.replace(f"q={names['q']}", "q=nowhere")),
        "depend on the state": _with_chunk(cell, text.replace(f"v={names['v']}", f"v={names['o']}")),
        "one decay per head": _with_chunk(cell, text.replace("gla ", "delta ").replace(
            f"g={names['g']}", f"g={names['k']} beta={names['g']}")),
        "not the gla update": _with_chunk(cell, text.replace(f"q={names['q']}", f"q={names['k']}")),
    }
    for words, bad in cases.items():
        plan = plan_layer(bad)
        assert plan.chunk is None and words in plan.chunk_reason, (words, plan.chunk_reason)


def test_operands_that_do_not_fit_the_state_are_declined() -> None:
    """A claim whose value has the wrong width fails as a reason, not a shape error."""
    b = GraphBuilder("odd_step")
    x = b.input("x", ("B", IN))
    s = b.input("S", ("B", NH, DK, DV))
    k = ir_heads(b, b.linear(x, b.param("wk", (NH * 2, IN))), NH)  # 2 wide, the state has DK = 3
    v = ir_heads(b, b.linear(x, b.param("wv", (NH * DV, IN))), NH)
    q = ir_heads(b, b.linear(x, b.param("wq", (NH * DK, IN))), NH)
    s_new = s * 0.5
    o = b.sum(s_new * b.unsqueeze(q, axis=-1), axes=(-2,))
    step = b.build({"y": b.reshape(o, shape=(0, NH * DV)), "S": s_new})
    cell = Cell("odd", "linear", IN, NH * DV, NH * DV, (StateSpec("S", (NH, DK, DV), "float32"),), step,
                (chunk_attr("gla", "S", q, k, v, o),))
    plan = plan_layer(cell)
    assert plan.chunk is None and plan.chunk_reason


def test_mlstm_form_is_proved_and_wrong_mlstm_claims_are_declined() -> None:
    """mLSTM's three states: swapping n and m (their shapes), leaving the normaliser out or
    claiming the plain gla update (the states the form keeps) are declined by the structural
    checks; naming the forget gate as the input gate by the float64 step."""
    from rnnc.kernels import CELLS

    cell, _ = CELLS["mlstm"].load_module_class()(IN, 8, num_heads=2).rnnc_layer()
    plan = plan_layer(cell)
    assert plan.chunk is not None and plan.chunk.form == "mlstm" and plan.family == "chunk"
    assert plan.chunk.states == {"state": "C", "norm": "n", "stab": "m"}
    text = dict(cell.attrs)["chunk"]
    names = dict(p.split("=") for p in text.split()[1:])
    cases = {
        "normaliser n [NH, DK]": _with_chunk(cell, text.replace("norm=n stab=m", "norm=m stab=n")),
        "not the mlstm update": _with_chunk(cell, text.replace(f"i={names['i']}", f"i={names['g']}")),
        "needs exactly the states": _with_chunk(cell, text.replace(" norm=n", "")),
        "gla chunk form needs exactly": _with_chunk(cell, text.replace("mlstm ", "gla ")),
    }
    for words, bad in cases.items():
        got = plan_layer(bad)
        assert got.chunk is None and words in got.chunk_reason, (words, got.chunk_reason)
