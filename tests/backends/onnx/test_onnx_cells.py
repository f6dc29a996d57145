"""Every registered cell exported to ONNX and run in onnxruntime, against the IR interpreter and
the cell's own torch module: lengths other than the example's, batch 1 and 5, state carried
across calls, and the streaming step model."""

from __future__ import annotations

import functools

import pytest
import torch
from onnx_test_helpers import (
    PRESENT_CELLS,
    as_tuple,
    assert_all_close,
    layer_program,
    random_states,
    run_ort,
    session,
)

import rnnc


@functools.cache
def exported(name: str):
    module, program = layer_program(name)
    return module, program, session(rnnc.export_onnx(program))


def test_every_registered_cell_with_a_module_is_covered():
    # the parametrisation below is PRESENT_CELLS; this pins that the core cells are among them
    assert {"lstm", "gru", "elman"} <= set(PRESENT_CELLS)


@pytest.mark.parametrize("name", PRESENT_CELLS)
@pytest.mark.parametrize("batch, steps", [(1, 1), (5, 16), (1, 37), (5, 3)])
def test_cell_matches_interpreter_and_torch(name, batch, steps):
    module, program, sess = exported(name)
    x = torch.randn(batch, steps, 6, generator=torch.Generator().manual_seed(steps))
    states = random_states(program, batch)
    got = run_ort(sess, x, *states)
    assert_all_close(got, as_tuple(program.run(x, *states)), "onnxruntime", f"{name} B={batch} T={steps} vs interp")
    with torch.no_grad():
        y, finals = module(x, tuple(s[0] for s in states))
    assert_all_close(got, [y, *(f.unsqueeze(0) for f in finals)], "onnxruntime", f"{name} vs torch module")


@pytest.mark.parametrize("name", PRESENT_CELLS)
def test_state_round_trip(name):
    """Two calls with the state carried over give the same numbers as one call."""
    _, program, sess = exported(name)
    x = torch.randn(5, 20, 6, generator=torch.Generator().manual_seed(3))
    states = random_states(program, 5)
    full = run_ort(sess, x, *states)
    first = run_ort(sess, x[:, :7], *states)
    second = run_ort(sess, x[:, 7:], *first[1:])
    assert_all_close([torch.cat([first[0], second[0]], dim=1), *second[1:]], full, "onnxruntime",
                     f"{name} halves vs full")


@pytest.mark.parametrize("name", PRESENT_CELLS)
@pytest.mark.parametrize("chunk", [1, 4])
def test_streaming_model_equals_full_model(name, chunk):
    _, program, sess = exported(name)
    x = torch.randn(5, 12, 6, generator=torch.Generator().manual_seed(4))
    states = random_states(program, 5)
    step_model = rnnc.export_onnx(program, (x[:, :chunk], *states), streaming=True)
    recurrent = [n.op_type for n in step_model.graph.node if n.op_type in ("Scan", "LSTM", "GRU", "RNN")]
    if chunk == 1:  # a one-step Scan is inlined: no loop at all in the step model
        assert "Scan" not in recurrent
    dims = [d.dim_value or d.dim_param for d in step_model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1] == chunk and isinstance(dims[0], str), dims
    step_sess = session(step_model)
    carried, ys = states, []
    for t in range(0, 12, chunk):
        y, *carried = run_ort(step_sess, x[:, t:t + chunk], *carried)
        ys.append(y)
    assert_all_close([torch.cat(ys, dim=1), *carried], run_ort(sess, x, *states), "onnxruntime",
                     f"{name} streaming chunk={chunk} vs full")


@pytest.mark.parametrize("name", PRESENT_CELLS)
def test_cell_long_sequence(name):
    """T=1000 from one export (the length is not baked in)."""
    _, program, sess = exported(name)
    x = torch.randn(2, 1000, 6, generator=torch.Generator().manual_seed(5))
    states = random_states(program, 2)
    assert_all_close(run_ort(sess, x, *states), as_tuple(program.run(x, *states)), "onnxruntime",
                     f"{name} T=1000")
