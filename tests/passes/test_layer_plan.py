"""The analysis pass layer: one LayerPlan per cell, and every backend's solver problem comes from it.

The expected classes and problem sizes below are read off each cell's definition (which value is
computed from what; Mamba's constructor takes D channels and N states per channel), not from
rnnc's code."""

from __future__ import annotations

import pathlib

import pytest

from rnnc.ir import Cell, GraphBuilder, StateSpec
from rnnc.kernels import CELLS
from rnnc.passes import PASSES, plan_layer
from rnnc.passes.plan import INPUT, STATE, WEIGHTS

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _by_op(plan, op):
    return [plan.stage(n) for n in plan.cell.step.nodes if n.op == op]


def test_lstm_input_projection_is_input_class_and_recurrent_product_is_state_class():
    plan = plan_layer(CELLS["lstm"].build_cell(8, 16))
    linears = [n for n in plan.cell.step.nodes if n.op == "linear"]
    by_src = {n.inputs[0]: plan.stage(n) for n in linears}
    assert by_src["x"] == INPUT
    assert STATE in by_src.values()
    assert plan.gates == 4 and plan.family == "fused" and plan.gate_plan is not None
    # the x projection may run for all steps at once; nothing state-dependent may
    assert {n.inputs[0] for n in plan.hoistable() if n.op == "linear"} == {"x"}


def test_weight_only_nodes_are_weights_class():
    """Mamba's A = -exp(A_log) reads a parameter only: once per call, not per step."""
    plan = plan_layer(CELLS["mamba"].build_cell(6, 4))
    assert WEIGHTS in _by_op(plan, "exp") or WEIGHTS in _by_op(plan, "neg")
    assert all(plan.depends[p] == WEIGHTS for p in plan.cell.param_names)


def test_batch_mixing_node_is_not_hoistable_and_nothing_after_it_is():
    b = GraphBuilder("mix_step")
    x = b.input("x", ("B", 4))
    h = b.input("h", ("B", 4))
    w = b.param("w", (4, 4))
    proj = b.linear(x, w)
    mixed = b.mean(proj, axes=(0,), keepdim=True)  # averages over samples
    after = b.tanh(mixed)  # row-wise itself, but fed by a batch-mixing value
    h_new = b.tanh(h * 0.5 + after + proj)
    cell = Cell("mix", "nonlinear", 4, 4, 4, (StateSpec("h", (4,)),), b.build({"y": h_new, "h": h_new}))
    plan = plan_layer(cell)
    assert [n.op for n in plan.hoistable()] == ["linear"]
    assert plan.stage(next(n for n in cell.step.nodes if n.op == "mean")) == INPUT  # state-free, still


def test_mamba_problem_is_sized_by_channels_with_n_states_each():
    d, n = 24, 8
    spec = plan_layer(CELLS["mamba"].build_cell(d, n)).problem(batch=2, seq_len=64)
    assert (spec.cell, spec.hidden, spec.state_size, spec.batch, spec.seq_len) == ("mamba", d, n, 2, 64)


def test_heads_reach_the_problem():
    spec = plan_layer(CELLS["slstm"].build_cell(16, 32, num_heads=4)).problem()
    assert spec.heads == 4 and spec.hidden == 32


def test_user_cell_problem_names_its_family_and_gates():
    b = GraphBuilder("two_gate_step")
    x = b.input("x", ("B", 4))
    h = b.input("h", ("B", 8))
    wx, wh = b.param("wx", (16, 4)), b.param("wh", (16, 8))
    z, r = b.split(b.linear(x, wx) + b.linear(h, wh), axis=-1, sizes=(8, 8))
    h_new = b.sigmoid(z) * b.tanh(r) + h * 0.5
    cell = Cell("user:TwoGate", "nonlinear", 4, 8, 8, (StateSpec("h", (8,)),), b.build({"y": h_new, "h": h_new}))
    spec = plan_layer(cell).problem(dtype="float16")
    assert (spec.cell, spec.family, spec.gates, spec.dtype) == ("custom", "fused", 2, "fp16")


def test_plan_is_computed_once_per_cell_and_passes_are_ordered():
    cell = CELLS["gru"].build_cell(4, 8)
    assert plan_layer(cell) is plan_layer(cell)
    names = [p.__name__ for p in PASSES]
    assert names.index("dependencies") < names.index("row_parallel")  # row_parallel reads its classes


@pytest.mark.parametrize("path", ["compiler/backends", "compiler/tune", "compiler/api.py"])
def test_no_other_cell_to_problem_adapter(path):
    """ProblemSpec is built from a Cell only by LayerPlan.problem (the CLI builds one from flags)."""
    files = [ROOT / path] if path.endswith(".py") else sorted((ROOT / path).rglob("*.py"))
    offenders = [str(f.relative_to(ROOT)) for f in files if "ProblemSpec(" in f.read_text()]
    assert offenders == []


def test_diagonal_scan_problem_is_sized_by_its_state_channels():
    """LRU maps D inputs to N complex states and back to D outputs: its scan runs over N."""
    d, n = 12, 20
    spec = plan_layer(CELLS["lru"].build_cell(d, n)).problem()
    assert (spec.cell, spec.hidden) == ("lru", n)
