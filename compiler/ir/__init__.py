"""The rnnc IR: immutable graphs of ops, recurrent cells as step graphs, programs with weights."""

from rnnc.ir import ops_aten as _ops_aten  # noqa: F401  (registers aten)
from rnnc.ir import ops_dyn as _ops_dyn  # noqa: F401  (registers reshape_dyn/expand_dyn/full_dyn/arange)
from rnnc.ir import ops_quant as _ops_quant  # noqa: F401  (registers qlinear/qconv1d)
from rnnc.ir import ops_shape as _ops_shape  # noqa: F401  (registers shape/NN ops)
from rnnc.ir import rnn as _rnn  # noqa: F401  (registers the rnn op)
from rnnc.ir.builder import GraphBuilder, Value
from rnnc.ir.graph import Cell, Graph, Node, Program, StateSpec, Weights, cells_of
from rnnc.ir.layers import add_rnn, rnn_program, weight_name
from rnnc.ir.ops import OPS
from rnnc.ir.printer import cell_hash, layer_cells, layer_key, print_cell
from rnnc.ir.types import TensorType, dtype_of_torch, torch_dtype

__all__ = [
    "OPS", "Cell", "Graph", "GraphBuilder", "Node", "Program", "StateSpec", "TensorType", "Value",
    "Weights", "add_rnn", "cell_hash", "cells_of", "dtype_of_torch", "layer_cells", "layer_key", "print_cell",
    "rnn_program", "torch_dtype", "weight_name",
]
