"""Rewrite an exported model into the ops an execution provider takes (``targets/providers``).

The exporter writes the forms onnxruntime's CPU provider runs fastest; a phone's accelerator
provider lacks some of them.  Each rule here replaces one node by an equivalent group of nodes
the provider *does* list, and only where the provider lacks the original form:

* ``Gather`` with a constant index (a state picked out of ``[2, B, H]``) -> ``Slice`` (and
  ``Squeeze`` for a scalar index);
* ``Pad`` with constant pads -> ``Concat`` with constant blocks (constant mode) or with
  reversed ``Slice``\\ s of the edges (reflect mode);
* 1-D ``Conv`` where only 2-D convs run (NNAPI) -> ``Unsqueeze``, a 2-D ``Conv`` over a unit
  height, ``Squeeze``;
* ``Softplus`` (sLSTM's gates; not in NNAPI) -> ``relu(x) + log(1 + exp(-|x|))``.

The first three are exact (the same numbers); the Softplus form agrees up to float rounding.
Shapes come from ONNX shape inference on the fixed-shape model; a node whose shape is unknown
is left alone, and whatever the provider still lacks is named by the coverage report (``mobile.py``), never hidden.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from rnnc.backends.onnx.peephole import value_reads
from rnnc.targets.providers import Provider

_INT64_MIN = int(np.iinfo(np.int64).min)


class _Rewriter:
    """The graph being rewritten: fresh names, constants, static shapes of its values."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
        self.shapes: dict[str, tuple[int, ...]] = {}
        for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
            dims = vi.type.tensor_type.shape.dim
            if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
                self.shapes[vi.name] = tuple(d.dim_value for d in dims)
        self.types = {vi.name: vi.type.tensor_type.elem_type
                      for vi in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)}
        self.inits = {t.name: t for t in self.graph.initializer}
        for name, t in self.inits.items():
            self.shapes[name] = tuple(t.dims)
        self.names = {*self.inits, *(o for n in self.graph.node for o in n.output),
                      *(i.name for i in self.graph.input)}
        self.new: list[onnx.NodeProto] = []

    def elem_type(self, name: str) -> int:
        """The ONNX element type of a value (0 when unknown)."""
        return self.inits[name].data_type if name in self.inits else self.types.get(name, 0)

    def fresh(self, hint: str) -> str:
        name, k = hint, 0
        while name in self.names:
            k += 1
            name = f"{hint}_{k}"
        self.names.add(name)
        return name

    def const(self, hint: str, array: np.ndarray) -> str:
        name = self.fresh(hint)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(array), name))
        self.inits[name] = self.graph.initializer[-1]
        return name

    def value(self, name: str) -> np.ndarray | None:
        """The constant behind ``name`` (an initializer), or None."""
        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None

    def emit(self, op: str, inputs: list[str], hint: str, output: str | None = None, **attrs) -> str:
        out = output or self.fresh(hint)
        self.new.append(helper.make_node(op, inputs, [out], name=self.fresh(f"n_{out}"), **attrs))
        return out


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _gather(r: _Rewriter, node: onnx.NodeProto, p: Provider) -> bool:
    if p.supports("Gather") or not p.supports("Slice"):
        return False
    idx = r.value(node.input[1])
    rank = len(r.shapes.get(node.input[0], ()))
    if idx is None or not rank or idx.ndim > 1 or idx.size == 0:
        return False
    axis = _attr(node, "axis", 0) % rank
    size = r.shapes[node.input[0]][axis]
    flat = [int(i) % size for i in idx.reshape(-1)]
    if flat != list(range(flat[0], flat[0] + len(flat))):
        return False  # not a contiguous run: no single Slice
    args = [node.input[0], r.const("gather_start", np.array([flat[0]])),
            r.const("gather_end", np.array([flat[-1] + 1])), r.const("gather_axis", np.array([axis]))]
    if idx.ndim == 1:
        r.emit("Slice", args, "", output=node.output[0])
    else:
        part = r.emit("Slice", args, f"{node.output[0]}_slice")
        r.emit("Squeeze", [part, r.const("gather_axis", np.array([axis]))], "", output=node.output[0])
    return True


def _pad(r: _Rewriter, node: onnx.NodeProto, p: Provider) -> bool:
    mode = _attr(node, "mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if p.supports("Pad") and mode in p.pad_modes:
        return False
    shape = r.shapes.get(node.input[0])
    pads = r.value(node.input[1])
    if shape is None or pads is None or mode not in ("constant", "reflect") or (pads < 0).any():
        return False
    axes = r.value(node.input[3]) if len(node.input) > 3 and node.input[3] else np.arange(len(shape))
    if axes is None:
        return False
    value = r.value(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.float32)
    if value is None:
        return False
    x, cur = node.input[0], list(shape)
    n = len(axes)
    for k, axis in enumerate(int(a) % len(shape) for a in axes):
        lo, hi = int(pads[k]), int(pads[k + n])
        if not lo and not hi:
            continue
        parts = []
        if mode == "reflect" and (lo >= cur[axis] or hi >= cur[axis]):
            return False  # wider than the tensor: not a plain reflection
        for width, at_start in ((lo, True), (hi, False)):
            if not width:
                parts.append(None)
            elif mode == "constant":
                block = list(cur)
                block[axis] = width
                parts.append(r.const("pad_block", np.full(block, value, dtype=value.dtype)))
            else:  # reflect: the edge's neighbours in reverse order, one Slice with step -1
                start, end = (width, 0) if at_start else (cur[axis] - 2, cur[axis] - 2 - width)
                end = end if end >= 0 else _INT64_MIN  # a negative end counts from the back: "before 0" is min int
                parts.append(r.emit("Slice", [x, r.const("pad_s", np.array([start])), r.const("pad_e", np.array([end])),
                                              r.const("pad_a", np.array([axis])), r.const("pad_step", np.array([-1]))],
                                    f"{node.output[0]}_edge"))
        last = k == n - 1 or not any(pads[j] or pads[j + n] for j in range(k + 1, n))
        x = r.emit("Concat", [v for v in (parts[0], x, parts[1]) if v], f"{node.output[0]}_ax{axis}",
                   output=node.output[0] if last else None, axis=axis)
        cur[axis] += lo + hi
        if last:
            return True
    r.emit("Identity", [x], "", output=node.output[0])
    return True


def _conv1d(r: _Rewriter, node: onnx.NodeProto, p: Provider) -> bool:
    shape = r.shapes.get(node.input[0])
    if shape is None or len(shape) != 3 or 1 in p.conv_spatial_dims or 2 not in p.conv_spatial_dims:
        return False
    w_name = node.input[1]
    w_src = w_name
    producer = next((n for n in r.graph.node if w_name in n.output), None)
    if producer is not None and producer.op_type == "DequantizeLinear" and producer.input[0] in r.inits:
        w_src = producer.input[0]  # QDQ: reshape the stored int8 weight; the DQ keeps axis 0
    w = r.value(w_src)
    if w is None or w.ndim != 3:
        return False
    w4 = r.const(f"{w_src}_2d", w.reshape(w.shape[0], w.shape[1], 1, w.shape[2]))
    if w_src != w_name:
        w4 = r.emit("DequantizeLinear", [w4, *producer.input[1:]], f"{w_name}_2d",
                    **{a.name: helper.get_attribute_value(a) for a in producer.attribute})
    axis2 = r.const("conv_h_axis", np.array([2]))
    x4 = r.emit("Unsqueeze", [node.input[0], axis2], f"{node.output[0]}_x2d")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    pads = attrs.pop("pads", [0, 0])
    attrs.update(kernel_shape=[1, int(w.shape[2])], strides=[1, *attrs.get("strides", [1])],
                 dilations=[1, *attrs.get("dilations", [1])], pads=[0, int(pads[0]), 0, int(pads[1])])
    y4 = r.emit("Conv", [x4, w4, *node.input[2:]], f"{node.output[0]}_2d", **attrs)
    r.emit("Squeeze", [y4, axis2], "", output=node.output[0])
    return True


def _softplus(r: _Rewriter, node: onnx.NodeProto, p: Provider) -> bool:
    """``softplus(x) = relu(x) + log(1 + exp(-|x|))``: the overflow-free form (no ``exp(x)`` of a
    large ``x``); equal to onnxruntime's Softplus up to float rounding, not bit for bit."""
    if p.supports("Softplus") or not all(p.supports(o) for o in ("Relu", "Abs", "Neg", "Exp", "Add", "Log")):
        return False
    x, out = node.input[0], node.output[0]
    dtype = {1: np.float32, 10: np.float16}.get(r.elem_type(x))
    if dtype is None:
        return False
    tail = r.emit("Exp", [r.emit("Neg", [r.emit("Abs", [x], f"{out}_abs")], f"{out}_nabs")], f"{out}_exp")
    log = r.emit("Log", [r.emit("Add", [tail, r.const("one", np.array(1, dtype))], f"{out}_1p")], f"{out}_log")
    r.emit("Add", [r.emit("Relu", [x], f"{out}_relu"), log], "", output=out)
    return True


_RULES: dict[str, Callable[[_Rewriter, onnx.NodeProto, Provider], bool]] = {
    "Gather": _gather, "Pad": _pad, "Conv": _conv1d, "Softplus": _softplus,
}


def legalize(model: onnx.ModelProto, provider: Provider) -> list[str]:
    """Apply the rules in place; returns what was rewritten (``"Pad -> Concat"``, ...) for the report."""
    r = _Rewriter(model)
    done: list[str] = []
    for node in model.graph.node:
        rule = _RULES.get(node.op_type) if not node.domain else None
        start = len(r.new)
        if rule is not None and rule(r, node, provider):
            done.append(f"{node.op_type} -> {'+'.join(n.op_type for n in r.new[start:])}")
        else:
            del r.new[start:]
            r.new.append(node)
    del model.graph.node[:]
    model.graph.node.extend(_live(r.new, {o.name for o in model.graph.output}))
    return done


def _live(nodes: list[onnx.NodeProto], outputs: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` without those nothing reads any more (a weight's old ``DequantizeLinear`` after
    its conv took a 2-D copy), so their initializers go too."""
    keep = list(nodes)
    while True:
        read = set(value_reads(keep)) | outputs  # a Scan body's reads of outer values count too
        alive = [n for n in keep if any(o in read for o in n.output)]
        if len(alive) == len(keep):
            return keep
        keep = alive
