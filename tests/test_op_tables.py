"""Op metadata is data: each backend's supported scalar ops are the keys of its render table.

The IR's scalar op table (``rnnc.ir.ops.UNARY_OPS`` / ``BINARY_OPS``) is the list every
backend covers; this test names, for an op added to the IR, exactly which tables still need a
spelling -- instead of eight files found by hand.  Known gaps are listed with their reason.
"""

from __future__ import annotations

import pytest

from rnnc.ir.ops import BINARY_OPS, UNARY_OPS

#: (backend, op) pairs a backend declines on purpose, and why
DECLINED = {
    ("triton", "gelu"): "not spelled in Triton yet: no registered cell's step uses it (the layer is declined)",
    ("triton", "pow"): "not spelled in Triton yet: no registered cell's step uses it (the layer is declined)",
}


def _tables() -> dict[str, set[str]]:
    from rnnc.backends.cstyle.render import _CALLS, _FLOAT_CALLS, _FLOAT_OPS
    from rnnc.backends.onnx.ops import RENDERERS
    from rnnc.backends.triton.scalar import BINARY as TRITON_BINARY
    from rnnc.backends.triton.scalar import UNARY as TRITON_UNARY

    # the C-style loop nest takes every IR scalar op (lower/stepgraph.py), so its renderer's
    # tables must spell every one
    tables = {"onnx": set(RENDERERS), "c-style": {*_CALLS, *_FLOAT_OPS, *_FLOAT_CALLS},
              "triton": {*TRITON_UNARY, *TRITON_BINARY}}
    try:
        from rnnc.backends.tvm.exprs import BINARY as TVM_BINARY
        from rnnc.backends.tvm.exprs import UNARY as TVM_UNARY
    except ImportError:  # the tvm extra is not installed: its table cannot be read
        pass
    else:
        tables["tvm"] = {*TVM_UNARY, *TVM_BINARY}
    return tables


@pytest.mark.parametrize("op", sorted(UNARY_OPS | BINARY_OPS))
def test_every_backend_table_spells_every_ir_scalar_op(op):
    missing = [name for name, table in _tables().items() if op not in table and (name, op) not in DECLINED]
    assert not missing, f"IR op {op!r} has no spelling in the render table of: {', '.join(missing)}"


def test_declined_ops_are_declined_with_a_reason_not_a_crash():
    """An op missing from Triton's table makes the layer unsupported (one sentence), not a KeyError
    at render time: the plan's op set comes from the same table."""
    import torch

    from rnnc.backends import get_backend
    from rnnc.ir import Cell, GraphBuilder, StateSpec, rnn_program

    b = GraphBuilder("gelu_step")
    x, h = b.input("x", ("B", 4)), b.input("h", ("B", 4))
    w = b.param("w", (4, 4))
    h_new = b.gelu(b.linear(x, w) + h)
    cell = Cell("gelu_cell", "nonlinear", 4, 4, 4, (StateSpec("h", (4,)),), b.build({"y": h_new, "h": h_new}))
    program = rnn_program([cell], [[{"w": torch.randn(4, 4)}]], name="g")
    ok, why = get_backend("triton").supports(program, "nvidia/h100-sxm")
    assert not ok and "gelu" in why
    for backend, op in DECLINED:
        assert op in UNARY_OPS | BINARY_OPS and op not in _tables()[backend]  # a stale entry is an error
