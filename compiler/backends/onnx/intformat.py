"""Make an int8 ONNX model exact on its target CPU: the integer-format pass over the ModelProto.

Why a pass over the finished ModelProto rather than a choice inside each renderer: integer
products come from five places (``MatMulIntegerToFloat``/``MatMulInteger`` for linears,
``ConvInteger``/``QLinearConv`` for convs, ``DynamicQuantizeLSTM`` for fused LSTM layers, inside
Scan bodies too), and the rule is one: on a CPU whose u8 x s8 dot product saturates pair sums in
int16 (``targets/int8dot.py``), a weight whose two largest same-signed codes times 255 exceed
int16 would give wrong results.  Such a weight is rewritten to the ``u8`` format (codes + 128,
zero point 128): onnxruntime then takes its u8 x u8 kernel, which widens to int16 and is exact on
every CPU, with the same numbers as the quantized IR.  Weights quantized for the target
(``rnnc.quantize(target=...)``: 7-bit codes where it saturates) pass unchanged and keep the
faster u8 x s8 kernel.  The pass reports what it did in the ``rnnc.int8`` metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from rnnc.backends.onnx.peephole import all_graphs, drop_unread_initializers
from rnnc.errors import UnsupportedError
from rnnc.targets import HardwareSpec
from rnnc.targets.int8dot import WEIGHT_QMAX, exact_on, int8_target

#: op type -> ((weight input, its zero-point input, reduction axis of the weight), ...)
INTEGER_WEIGHTS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "MatMulInteger": ((1, 3, 0),),
    "MatMulIntegerToFloat": ((1, 5, 0),),
    "DynamicQuantizeMatMul": ((1, 3, 0),),
    "QLinearMatMul": ((3, 5, 0),),
    "ConvInteger": ((1, 3, -1),),  # -1: every axis but the output channel
    "QLinearConv": ((3, 5, -1),),
    "DynamicQuantizeLSTM": ((1, 9, 1), (2, 11, 1)),
}


@dataclass
class Int8Report:
    """What the pass found: weights per format and the target it made them exact for."""

    target: str
    instruction: str
    semantics: str
    formats: dict[str, int] = field(default_factory=dict)
    converted: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"target": self.target, "instruction": self.instruction, "semantics": self.semantics,
                "formats": self.formats, "converted_to_u8": self.converted}


def _format_of(w: np.ndarray) -> str:
    if w.dtype == np.uint8:
        return "u8"
    return "s7" if int(np.abs(w.astype(np.int32)).max(initial=0)) <= WEIGHT_QMAX["s7"] else "s8"


def _flat(w: np.ndarray, axis: int) -> tuple[np.ndarray, int]:
    """The weight with its reduction on one axis (conv kernels: per output channel, all the rest)."""
    if axis == -1:
        return w.reshape(w.shape[0], -1), 1
    return w, axis


def make_exact(model: onnx.ModelProto, target: str | HardwareSpec | None = None) -> Int8Report:
    """Rewrite, in place, every int8 weight of ``model`` that the target's dot product would not
    add exactly; return the report (also written to the ``rnnc.int8`` metadata when there are
    integer products)."""
    inits: dict[str, tuple[onnx.GraphProto, onnx.TensorProto]] = {}
    uses: dict[str, list[tuple[onnx.NodeProto, int, int, int]]] = {}
    others: set[str] = set()
    graphs = list(all_graphs(model.graph))
    for graph in graphs:
        for t in graph.initializer:
            inits[t.name] = (graph, t)
    for graph in graphs:
        for node in graph.node:
            slots = INTEGER_WEIGHTS.get(node.op_type, ())
            taken = {w for w, _, _ in slots}
            for w, zp, axis in slots:
                if w < len(node.input) and node.input[w]:
                    uses.setdefault(node.input[w], []).append((node, w, zp, axis))
            others.update(n for i, n in enumerate(node.input) if i not in taken)
    if not uses:
        return Int8Report("", "", "")
    spec = int8_target(target)
    dot = spec.cpu.int8_dot
    report = Int8Report(spec.tag, dot.instruction, dot.semantics)
    convert, arrays = set(), {}
    for name, readers in uses.items():
        if name not in inits:
            raise UnsupportedError(f"the integer weight {name!r} of {readers[0][0].op_type} is computed in the graph, "
                                   f"so its exactness on {spec.tag} cannot be checked; this is an rnnc bug")
        w = arrays[name] = numpy_helper.to_array(inits[name][1])
        flat, axis = _flat(w, readers[0][3])
        if w.dtype == np.int8 and not exact_on(flat, dot.semantics, axis):
            convert.add(name)
    _same_type_per_node(uses, convert)
    for name, readers in uses.items():
        graph, tensor = inits[name]
        w = arrays[name]
        if name not in convert:
            fmt = _format_of(w)
            report.formats[fmt] = report.formats.get(fmt, 0) + 1
            continue
        u8 = (w.astype(np.int16) + 128).astype(np.uint8)
        new = f"{name}.u8"
        graph.initializer.append(numpy_helper.from_array(u8, new))
        for node, wi, zi, _ in readers:
            node.input[wi] = new
            while len(node.input) <= zi:
                node.input.append("")
            old = node.input[zi]
            shape = numpy_helper.to_array(inits[old][1]).shape if old in inits else ()
            zp = f"{new}.zp{len(graph.initializer)}"
            graph.initializer.append(numpy_helper.from_array(np.full(shape, 128, np.uint8), zp))
            node.input[zi] = zp
        if name not in others:
            graph.initializer.remove(tensor)
        report.formats["u8"] = report.formats.get("u8", 0) + 1
        report.converted.append(name)
    drop_unread_initializers(model.graph)  # the replaced zero points
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props},
                                        "rnnc.int8": json.dumps(report.as_json())})
    return report


def _same_type_per_node(uses: dict[str, list], convert: set[str]) -> None:
    """A node's weights share one type (DynamicQuantizeLSTM's W and R are both T2), so when one of
    them must become u8 the node's other int8 weights follow -- to a fixpoint, since a weight
    may be read by several nodes."""
    slots_of: dict[int, tuple[Any, list[str]]] = {}
    for name, readers in uses.items():
        for node, *_ in readers:
            slots_of.setdefault(id(node), (node, []))[1].append(name)
    changed = True
    while changed:
        changed = False
        for _, names in slots_of.values():
            if convert & set(names) and not set(names) <= convert:
                convert.update(names)
                changed = True
