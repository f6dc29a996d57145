"""Accumulating ONNX graphs: unique names, nodes, shared constants and weight initializers.

One ``Emitter`` per export owns everything that must be unique or shared across the main graph
and every Scan body: value names (ONNX forbids a body from shadowing an outer name), the
initializers (bodies read weights and constants from the outer scope instead of copying them)
and the opset.  An ``OnnxGraph`` is one graph under construction (the main graph or a body).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rnnc.errors import UnsupportedError
from rnnc.ir import TensorType
from rnnc.ir.types import Dim

#: IR dtype name -> ONNX element type
ONNX_DTYPES: dict[str, int] = {
    "float32": TensorProto.FLOAT,
    "float16": TensorProto.FLOAT16,
    "bfloat16": TensorProto.BFLOAT16,
    "float64": TensorProto.DOUBLE,
    "int64": TensorProto.INT64,
    "int32": TensorProto.INT32,
    "int16": TensorProto.INT16,
    "int8": TensorProto.INT8,
    "uint8": TensorProto.UINT8,
    "bool": TensorProto.BOOL,
}
_SAFE = re.compile(r"[^A-Za-z0-9_./:-]")


def to_numpy(value: Any) -> np.ndarray:
    """A weight tensor (torch or numpy) as a contiguous numpy array, bfloat16 excluded."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            raise UnsupportedError("bfloat16 weights cannot be written to ONNX by rnnc yet; cast the model "
                                   "to float32 or float16 first")
        value = value.numpy()
    return np.array(value, order="C")


class Emitter:
    """Shared state of one export: opset, dim bindings, names, initializers, weights."""

    def __init__(self, opset: int, weights: Mapping[str, Any], dims: Mapping[str, int] | None = None,
                 hoist: bool | str = True, unroll: bool = False, qdq: tuple[str, str] | None = None,
                 linear_attention: bool = True) -> None:
        self.opset = opset
        # a provider without loops or recurrent ops (``mobile.py``): every layer is written as its
        # step graph repeated over the fixed chunk, in the ops the provider has
        self.unroll = unroll
        # quantized ops as QuantizeLinear/DequantizeLinear around float ops (what NNAPI, QNN and
        # XNNPACK place), not onnxruntime's integer kernels (``quant_ops``): the provider's
        # (activation, weight) storage types, "uint8" or "int8"
        self.qdq = qdq
        # Scan bodies: run the state-free part once over all steps (``hoist.py``); "all" also
        # hoists dynamically quantized projections (exact, per-step scales, rarely faster)
        self.hoist = hoist
        # matrix-state layers as onnxruntime's contrib LinearAttention instead of a Scan (``linattn.py``)
        self.linear_attention = linear_attention
        self.weights = weights  # IR param name -> tensor (the Program's weights)
        self.dims = dict(dims or {})  # symbolic dims fixed to sizes (streaming models)
        self.initializers: list[onnx.TensorProto] = []
        # nodes on initializers only, placed first in the main graph: onnxruntime folds them into
        # constants at load, which it does not do for nodes inside Scan bodies (``widened``)
        self.prelude: list[onnx.NodeProto] = []
        self._widened: dict[tuple[str, str], str] = {}
        # values derived from weights alone, by key: a step written out T times (``unroll``) reads
        # one copy of each transposed or dequantized weight, not T
        self._derived: dict[tuple, str] = {}
        # a sequence-quantized layer input (cell attr xquant): float value -> its uint8 codes,
        # scale and zero point, so a weight-only projection of it can run as an integer GEMM
        self.seq_codes: dict[str, tuple[str, str, str]] = {}
        self._names: set[str] = set()
        self._consts: dict[tuple[str, bytes, tuple[int, ...]], str] = {}

    def fresh(self, hint: str) -> str:
        """A name no other value of the model (main graph or body) uses."""
        base = _SAFE.sub("_", hint) or "v"
        name, k = base, 0
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def reserve(self, name: str) -> None:
        """Claim an exact name (graph inputs and outputs keep the Program's names)."""
        self._names.add(name)

    def taken(self, name: str) -> bool:
        return name in self._names

    def initializer(self, hint: str, array: np.ndarray) -> str:
        """Add ``array`` as an initializer of the main graph and return its name."""
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def derived(self, key: tuple, make: Any) -> str:
        """The value ``make()`` returns, made once per ``key`` (a weight's name and transform)."""
        if key not in self._derived:
            self._derived[key] = make()
        return self._derived[key]

    def const(self, values: Any, dtype: str = "int64") -> str:
        """A (deduplicated) constant initializer: shape vectors, axes, scalars."""
        arr = np.asarray(values, dtype=np.dtype(dtype))
        key = (str(arr.dtype), arr.tobytes(), arr.shape)
        if key not in self._consts:
            self._consts[key] = self.initializer(f"const_{dtype}", arr)
        return self._consts[key]

    def widened(self, codes: str, scale: str, hint: str) -> str:
        """``float(codes) * scale`` of two initializers, computed in the main graph's prelude (once
        per pair): a weight-only int8 weight stored as int8, folded to float when the model loads."""
        key = (codes, scale)
        if key not in self._widened:
            cast, out = self.fresh(f"{hint}.wide_cast"), self.fresh(f"{hint}.wide")
            self.prelude.append(helper.make_node("Cast", [codes], [cast], name=self.fresh(f"n_{cast}"),
                                                 to=TensorProto.FLOAT))
            self.prelude.append(helper.make_node("Mul", [cast, scale], [out], name=self.fresh(f"n_{out}")))
            self._widened[key] = out
        return self._widened[key]

    def reshaped_codes(self, g: OnnxGraph, src: str, dst: str, shape: str) -> None:
        """``dst`` is ``Reshape(src, shape)``: give it ``src``'s codes, reshaped alike."""
        if src in self.seq_codes:
            q, s, zp = self.seq_codes[src]
            self.seq_codes[dst] = (g.op("Reshape", q, shape, hint=f"{dst}.codes"), s, zp)

    def dim(self, d: Dim) -> Dim:
        """A dim with the streaming bindings applied."""
        return self.dims.get(d, d) if isinstance(d, str) else d


class OnnxGraph:
    """One ONNX graph under construction; ``scope`` prefixes its value names."""

    def __init__(self, emitter: Emitter, scope: str = "") -> None:
        self.emitter = emitter
        self.scope = scope
        self.nodes: list[onnx.NodeProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        # static int8 chains of the IR graph being rendered (``quant_ops``): IR value -> the
        # x_scale param of the conv reading it, and ONNX values holding uint8 codes -> their scale
        self.u8_links: dict[str, str] = {}
        self.u8_values: dict[str, str] = {}
        # set while a Scan's hoisted part renders (``scan._hoist``): the ONNX value ``[1]`` holding
        # T, the number of steps stacked along the rows of every value ([T*B, ...])
        self.hoist_steps: str | None = None

    def scoped(self, scope: str) -> OnnxGraph:
        """A view that appends to this graph's nodes but names its values under ``scope``."""
        view = OnnxGraph(self.emitter, scope)
        view.nodes = self.nodes
        return view

    @property
    def opset(self) -> int:
        return self.emitter.opset

    def name(self, hint: str) -> str:
        return self.emitter.fresh(f"{self.scope}{hint}")

    def node(self, op_type: str, inputs: Sequence[str | None], hint: str = "", n_out: int = 1,
             **attrs: Any) -> list[str]:
        """Append one node; ``None`` inputs become ONNX's empty name (an omitted optional), and
        trailing ones are dropped (tools such as onnxruntime's mobile checker count an empty
        input name as a value of unknown shape)."""
        inputs = list(inputs)
        while inputs and inputs[-1] is None:
            inputs.pop()
        outs = [self.name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, [i or "" for i in inputs], outs,
                                           name=self.emitter.fresh(f"n_{outs[0]}"), **attrs))
        return outs

    def op(self, op_type: str, *inputs: str | None, hint: str = "", **attrs: Any) -> str:
        """Single-output :meth:`node`."""
        return self.node(op_type, inputs, hint, 1, **attrs)[0]

    def const(self, values: Any, dtype: str = "int64") -> str:
        return self.emitter.const(values, dtype)

    def value_info(self, name: str, ttype: TensorType) -> onnx.ValueInfoProto:
        """Typed value info; symbolic dims become ``dim_param``s, derived ``?`` dims stay unnamed."""
        shape = [self.emitter.dim(d) for d in ttype.shape]
        return helper.make_tensor_value_info(name, ONNX_DTYPES[ttype.dtype],
                                             [None if d == "?" else d for d in shape])

    def add_input(self, name: str, ttype: TensorType) -> str:
        self.inputs.append(self.value_info(name, ttype))
        return name

    def add_output(self, name: str, ttype: TensorType) -> None:
        self.outputs.append(self.value_info(name, ttype))

    def make(self, name: str, initializers: Sequence[onnx.TensorProto] = ()) -> onnx.GraphProto:
        return helper.make_graph(self.nodes, name, self.inputs, self.outputs, initializer=list(initializers))
