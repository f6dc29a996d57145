"""ONNX renderings of the run-time-shaped ops (``rnnc.ir.ops_dyn``): each size entry becomes
a constant or ``Gather(Shape(ref), axis)``, concatenated into the shape input."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import helper

from rnnc.backends.onnx.emit import ONNX_DTYPES, OnnxGraph
from rnnc.backends.onnx.ops import Ins, Types, renders
from rnnc.ir import Node


def shape_of(g: OnnxGraph, entries: Any, refs: Ins, minus_one_as: int = -1) -> str:
    """An int64 [n] ONNX value holding the entries' sizes."""
    parts = [g.const([minus_one_as]) if e == -1 else _size(g, e, refs) for e in entries]
    if not parts:  # a scalar's shape
        return g.const(np.zeros(0, dtype=np.int64))
    return parts[0] if len(parts) == 1 else g.op("Concat", *parts, axis=0)


_ONNX_OPS = {"+": "Add", "-": "Sub", "*": "Mul", "//": "Div", "%": "Mod", "max": "Max", "min": "Min"}


def _size(g: OnnxGraph, e: Any, refs: Ins) -> str:
    """One entry as an int64 [1] value (sizes are >= 0, so ONNX's truncating Div is floor)."""
    if isinstance(e, int):
        return g.const([e])
    if e[0] == "value":
        return g.op("Reshape", g.op("Cast", refs[e[1]], to=ONNX_DTYPES["int64"]), g.const([1]))
    if isinstance(e[0], str):
        return g.op(_ONNX_OPS[e[0]], _size(g, e[1], refs), _size(g, e[2], refs))
    k, ax = e
    return g.op("Gather", g.op("Shape", refs[k]), g.const([ax]), axis=0)


@renders("reshape_dyn")
def _reshape_dyn(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    return g.node("Reshape", [ins[0], shape_of(g, node.attr("shape"), ins[1:])], node.outputs[0])


@renders("expand_dyn")
def _expand_dyn(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    # torch's -1 (keep the dim) is ONNX Expand's 1 (it broadcasts to the larger of the two)
    return g.node("Expand", [ins[0], shape_of(g, node.attr("shape"), ins[1:], minus_one_as=1)], node.outputs[0])


@renders("full_dyn")
def _full_dyn(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    value = helper.make_tensor("value", ONNX_DTYPES[node.attr("dtype")], [1], [node.attr("value")])
    return g.node("ConstantOfShape", [shape_of(g, node.attr("shape"), ins)], node.outputs[0], value=value)


@renders("arange")
def _arange(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    n = g.op("Squeeze", _size(g, node.attr("n"), ins), g.const([0]))
    r = g.op("Cast", g.op("Range", g.const(0), n, g.const(1)), to=ONNX_DTYPES["float64"])
    r = g.op("Add", g.op("Mul", r, g.const(float(node.attr("step")), "float64")),
             g.const(float(node.attr("start")), "float64"))
    return g.node("Cast", [r], node.outputs[0], to=ONNX_DTYPES[node.attr("dtype")])


@renders("slice_dyn")
def _slice_dyn(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    starts = shape_of(g, (node.attr("start"),), ins[1:])
    ends = shape_of(g, (node.attr("stop"),), ins[1:])
    return g.node("Slice", [ins[0], starts, ends, g.const([node.attr("axis")]), g.const([node.attr("step")])],
                  node.outputs[0])


@renders("trim_to_lengths")
def _trim(g: OnnxGraph, node: Node, ins: Ins, types: Types) -> list[str]:
    longest = g.op("Cast", g.op("ReduceMax", ins[1], keepdims=1), to=ONNX_DTYPES["int64"])
    return g.node("Slice", [ins[0], g.const([0]), longest, g.const([node.attr("axis")])], node.outputs[0])
