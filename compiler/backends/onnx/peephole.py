"""Exact clean-ups of the rendered main graph: nodes a one-step streaming call would pay for nothing.

At batch 1 a Silero-sized model is bound by per-node overhead (~1 µs each in onnxruntime), not
arithmetic, and onnxruntime runs every node it is given (it does not drop nodes whose outputs
nobody reads).  Each pass here is exact (bit-identical outputs) and only looks at the main graph:

- ``requantize_codes``: ``DequantizeLinear(q, s, z)`` -> shape ops -> ``QuantizeLinear(., s, z)``
  with the very same scale and zero-point values is the identity on the codes; the shape ops
  then move onto the uint8 codes and both conversions go (a static conv chain's tail feeding an
  rnn cell's static input projection through Squeeze/Unsqueeze/Reshape/Transpose).
- ``collapse_reshapes``: ``Reshape(Squeeze/Unsqueeze/Reshape(v), shape)`` is ``Reshape(v, shape)``
  when ``shape`` is a constant with no 0 entry (0 would copy a dim of the intermediate): all of
  them keep the row-major element order.
- ``merge_duplicates``: a node repeating an earlier one (op, inputs, attributes) reads its outputs.
- ``drop_dead``: nodes none of whose outputs is read (by a node, a body or the graph outputs),
  e.g. the final-state Unsqueezes of an inlined cell step whose readers were folded away.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import onnx
from onnx import helper

#: ops that only change the shape, never the values or their row-major order
SHAPE_OPS = frozenset({"Squeeze", "Unsqueeze", "Reshape", "Flatten"})
#: ops that only move values (a per-tensor dequantize commutes with them): codes may take their place
MOVES = SHAPE_OPS | {"Transpose"}


def value_reads(nodes: Sequence[onnx.NodeProto]) -> Counter[str]:
    """How often each value name is read by ``nodes`` or by any of their bodies."""
    names: Counter[str] = Counter()
    for node in nodes:
        names.update(i for i in node.input if i)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                names.update(value_reads(attr.g.node))
    return names


def _shape_reads(nodes: Sequence[onnx.NodeProto], value: str) -> int:
    return sum(1 for n in nodes if n.op_type == "Shape" and n.input[0] == value)


def _rename_reads(nodes: Sequence[onnx.NodeProto], old: str, new: str) -> None:
    for reader in nodes:
        for i, name in enumerate(reader.input):
            if name == old:
                reader.input[i] = new


def _same_value(a: str, b: str, consts: Mapping[str, np.ndarray]) -> bool:
    """Two inputs provably hold the same tensor: one name, or equal constants of one dtype."""
    if a == b:
        return True
    if a not in consts or b not in consts:
        return False
    x, y = consts[a], consts[b]
    return x.dtype == y.dtype and x.shape == y.shape and bool(np.array_equal(x, y))


def requantize_codes(nodes: list[onnx.NodeProto], outputs: set[str], consts: Mapping[str, np.ndarray]) -> int:
    """Fold ``DequantizeLinear -> shape ops -> QuantizeLinear`` at one scale (see the module
    docstring); returns how many pairs were folded.  Every intermediate must have exactly one
    reader besides ``Shape`` ops (they see the same shape on the codes) and not be a graph output,
    so no float value anyone else reads disappears."""
    folded = 0
    for dq in [n for n in nodes if n.op_type == "DequantizeLinear"]:
        reads = value_reads(nodes)
        if len(dq.input) != 3 or any(a.name == "axis" for a in dq.attribute):
            continue  # per-tensor, explicit zero point only
        path, value = [], dq.output[0]
        # a Shape may read the float values too: the codes moved in their place have the same shape
        while reads[value] - _shape_reads(nodes, value) == 1 and value not in outputs:
            reader = next(n for n in nodes if value in n.input and n.op_type != "Shape")
            if reader.op_type in MOVES and reader.input[0] == value:
                path.append(reader)
                value = reader.output[0]
                continue
            if (reader.op_type == "QuantizeLinear" and len(reader.input) == 3 and not reader.attribute
                    and _same_value(reader.input[1], dq.input[1], consts)
                    and not _same_value(reader.input[2], dq.input[2], consts)):
                folded += _recenter(nodes, dq, path, reader, outputs, consts, reads)
            elif (reader.op_type == "QuantizeLinear" and len(reader.input) == 3 and not reader.attribute
                    and _same_value(reader.input[1], dq.input[1], consts)
                    and _same_value(reader.input[2], dq.input[2], consts)):
                codes, out = dq.input[0], reader.output[0]
                if out in outputs and not path:
                    break  # the graph output would need a node of its own (an Identity): nothing gained
                nodes.remove(dq)
                nodes.remove(reader)
                if path:
                    path[0].input[0] = codes
                    if out in outputs:
                        path[-1].output[0] = out
                    else:
                        _rename_reads(nodes, out, path[-1].output[0])
                else:
                    _rename_reads(nodes, out, codes)
                folded += 1
            break
    return folded


def _u8_scalar(name: str, consts: Mapping[str, np.ndarray]) -> int | None:
    value = consts.get(name)
    return int(value) if value is not None and value.dtype == np.uint8 and value.size == 1 else None


def _recenter(nodes: list[onnx.NodeProto], dq: onnx.NodeProto, path: list[onnx.NodeProto], q: onnx.NodeProto,
              outputs: set[str], consts: Mapping[str, np.ndarray], reads: Counter[str]) -> int:
    """``DequantizeLinear(c, s, z0)`` -> shape ops -> ``QuantizeLinear(., s, z1)`` read only as the
    A operand of an integer matmul with ``a_zero_point = z1``: the matmul sees
    ``clamp(c - z0 + z1, 0, 255) - z1``, which is ``Clip(c, lo, hi) - z0`` with ``lo = max(0, z0 - z1)``,
    ``hi = min(255, 255 + z0 - z1)``.  So the codes go straight in, clipped on uint8 when the range
    needs it, and the matmul reads ``z0``: one node (or none) instead of two, exactly.  (Silero:
    the conv chain's ReLU codes, zero point 0, meet the LSTM projection's symmetric codes, 128.)"""
    z0, z1 = _u8_scalar(dq.input[2], consts), _u8_scalar(q.input[2], consts)
    out = q.output[0]
    if z0 is None or z1 is None or out in outputs or reads[out] != 1:
        return 0
    mm = next(n for n in nodes if out in n.input)
    if (mm.op_type not in ("MatMulIntegerToFloat", "MatMulInteger") or mm.input[0] != out or len(mm.input) < 3
            or _u8_scalar(mm.input[4 if mm.op_type == "MatMulIntegerToFloat" else 2], consts) != z1):
        return 0
    codes = dq.input[0]
    nodes.remove(dq)
    at = nodes.index(q)
    nodes.remove(q)
    if path:
        path[0].input[0] = codes
        codes = path[-1].output[0]
    lo, hi = max(0, z0 - z1), min(255, 255 + z0 - z1)
    if (lo, hi) != (0, 255):
        bounds = [_const_name(consts, np.uint8(lo), "clip_lo"), _const_name(consts, np.uint8(hi), "clip_hi")]
        nodes.insert(at, onnx.helper.make_node("Clip", [codes, *bounds], [out], name=f"n_{out}.clip"))
    else:
        _rename_reads(nodes, out, codes)
    mm.input[4 if mm.op_type == "MatMulIntegerToFloat" else 2] = dq.input[2]
    return 1


def _const_name(consts: Mapping[str, np.ndarray], value: np.ndarray, hint: str) -> str:
    """A scalar constant's name; new ones are collected in ``consts`` (``clean`` adds them)."""
    for name, arr in consts.items():
        if arr.dtype == value.dtype and arr.shape == () and arr == value:
            return name
    name = hint
    while name in consts:
        name += "_"
    assert isinstance(consts, dict)
    consts[name] = np.asarray(value)
    return name


def collapse_reshapes(nodes: list[onnx.NodeProto], outputs: set[str], consts: Mapping[str, np.ndarray]) -> int:
    """Skip shape ops that only feed a constant-target ``Reshape`` (see the module docstring);
    returns how many were bypassed (``drop_dead`` removes them)."""
    producers = {o: n for n in nodes for o in n.output}
    bypassed = 0
    for node in nodes:
        if node.op_type != "Reshape" or len(node.input) != 2 or node.input[1] not in consts:
            continue
        if any(a.name == "allowzero" and a.i for a in node.attribute) or (consts[node.input[1]] == 0).any():
            continue
        src = producers.get(node.input[0])
        while src is not None and src.op_type in SHAPE_OPS and src.output[0] not in outputs:
            node.input[0] = src.input[0]
            bypassed += 1
            src = producers.get(node.input[0])
    return bypassed


def merge_duplicates(nodes: list[onnx.NodeProto], outputs: set[str]) -> int:
    """Nodes with one op, the same inputs and the same attributes compute the same values (ONNX ops
    are deterministic, the random ones excepted): later copies go, their readers read the first.
    An inlined cell step unsqueezes its final states once as the layer's state outputs and once
    more where the model concatenates them."""
    seen: dict[bytes, onnx.NodeProto] = {}
    merged = 0
    for node in list(nodes):
        if node.op_type.startswith("Random") or any(a.type == onnx.AttributeProto.GRAPH for a in node.attribute):
            continue
        key = onnx.NodeProto(op_type=node.op_type, domain=node.domain, input=node.input,
                             attribute=node.attribute).SerializeToString(deterministic=True)
        first = seen.setdefault(key, node)
        if first is node or any(o in outputs for o in node.output):
            continue
        nodes.remove(node)
        for old, new in zip(node.output, first.output, strict=True):
            if old:
                _rename_reads(nodes, old, new)
        merged += 1
    return merged


def drop_dead(nodes: list[onnx.NodeProto], outputs: set[str]) -> int:
    """Remove nodes none of whose outputs is read or a graph output, until none is left."""
    dropped = 0
    while True:
        reads = value_reads(nodes)
        dead = [n for n in nodes if not any(o and (reads[o] or o in outputs) for o in n.output)]
        if not dead:
            return dropped
        for node in dead:
            nodes.remove(node)
        dropped += len(dead)


def clean(nodes: list[onnx.NodeProto], outputs: set[str],
          initializers: Sequence[onnx.TensorProto]) -> list[onnx.TensorProto]:
    """All passes, in the order that lets each one see the previous one's result; returns the
    constants the passes added (initializers the caller must add to the graph)."""
    consts = {t.name: onnx.numpy_helper.to_array(t) for t in initializers}
    known = set(consts)
    requantize_codes(nodes, outputs, consts)
    collapse_reshapes(nodes, outputs, consts)
    merge_duplicates(nodes, outputs)
    drop_dead(nodes, outputs)
    return [onnx.numpy_helper.from_array(v, n) for n, v in consts.items() if n not in known]


def all_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every body graph under it (Scan, Loop, If), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from all_graphs(attr.g)
            for sub in attr.graphs:
                yield from all_graphs(sub)


def drop_unread_initializers(graph: onnx.GraphProto) -> int:
    """Remove constants that no node of ``graph`` or its bodies reads (folds and format rewrites
    orphan them; onnxruntime warns about each at load); returns how many went."""
    graphs = list(all_graphs(graph))
    read = set(value_reads(graph.node)) | {o.name for g in graphs for o in g.output}
    dropped = 0
    for g in graphs:
        for t in [t for t in g.initializer if t.name not in read]:
            g.initializer.remove(t)
            dropped += 1
    return dropped


#: float32 constants smaller than this stay as they are: a Cast node costs more than it saves
HALF_MIN_ELEMENTS = 256


def store_half_exact(graph: onnx.GraphProto) -> int:
    """Store each large float32 constant of the main graph whose every value is exactly a float16
    as float16, widened back by a ``Cast`` at the top of the graph; returns how many.

    Why: quantization's ``fp16`` level rounds a weight to float16 values (what a float16 kernel
    would see) while the graph computes in float32; storing those values in float32 would keep
    the file at full size.  The rewrite is lossless by construction (only exact values qualify),
    and onnxruntime folds the ``Cast`` of a constant when the session loads, so the layer runs its
    float32 kernel with the same weights.  Trained float32 weights are practically never all
    float16-exact by chance; constant tensors that are (all zeros, masks) shrink too, harmlessly."""
    consumers = set(value_reads(graph.node))
    taken = {t.name for t in graph.initializer} | {o for n in graph.node for o in n.output} | \
        {i.name for i in graph.input}
    casts, count = [], 0
    for t in graph.initializer:
        if t.data_type != onnx.TensorProto.FLOAT or t.name not in consumers:
            continue
        a = onnx.numpy_helper.to_array(t)
        if a.size < HALF_MIN_ELEMENTS:
            continue
        half = a.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), a, equal_nan=True):
            continue
        name, stored = t.name, f"{t.name}.f16"
        while stored in taken:
            stored += "_"
        taken.add(stored)
        t.CopyFrom(onnx.numpy_helper.from_array(half, stored))
        casts.append(helper.make_node("Cast", [stored], [name], name=f"widen_{name}", to=onnx.TensorProto.FLOAT))
        count += 1
    if casts:
        nodes = [*casts, *graph.node]
        del graph.node[:]
        graph.node.extend(nodes)
    return count
