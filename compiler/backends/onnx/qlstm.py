"""A one-step dynamically quantized LSTM layer as onnxruntime's fused ``DynamicQuantizeLSTM``.

Unrolled, an int8 LSTM step is ~14 ONNX nodes (two ``DynamicQuantizeLinear`` ->
``MatMulIntegerToFloat``, the gate math); at batch 1 (a streaming chunk) each node's fixed cost
dominates, so one int8 step took ~3x fp32's single ``LSTM`` node.  ``com.microsoft.
DynamicQuantizeLSTM`` is one node: int8 weights (per output channel), ``x`` and ``h`` quantized
to uint8 at run time exactly like ``DynamicQuantizeLinear``.  It quantizes ``x`` once over the
whole sequence ``[T, B, I]``, ``h`` at every step.  Two IR forms are that kernel:

* ``xquant="sequence"`` cells (the quantizer's default for LSTMs, ``sequence_scale="lstm"``): the rnn
  quantizes the layer input once per sequence and the cell's input projection is weight-only on
  those codes -- any length and both directions, but no lengths (``rnn.py`` says why);
* a per-step dynamic input projection (``sequence_scale="none"``) -- the same only when ``T == 1``, so
  the exporter uses it for a statically one-step layer (streaming exports) and keeps the Scan
  otherwise.

With batch > 1 and several intra-op threads onnxruntime splits the batch across threads and
quantizes each block's ``h`` with its own scale (tolerance row ``int8lstm``); at batch 1 or on one
thread it is the IR's arithmetic.

As with the native float ops (``native.py``), the cell is not trusted by its kind:
:func:`is_dq_lstm` runs the quantized step graph through the IR interpreter on random int8
weights and inputs and compares it with the kernel's equations, so only a cell that *is* that
kernel (``act="dynamic"``, 8-bit per-channel weights, no kept channels, smoothing or rotation)
takes it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np

from rnnc.backends.onnx.emit import OnnxGraph, to_numpy
from rnnc.backends.onnx.native import bias_initializer, native_attrs, native_node, probe_tensors, reorder_gates
from rnnc.ir import Cell

MS_DOMAIN = "com.microsoft"
_W, _R = ("weight_ih.q", "weight_ih.scale"), ("weight_hh.q", "weight_hh.scale")
_PARAMS = {*_W, *_R}
_BIASES = {"bias_ih", "bias_hh"}


def _dq_product(x, wq, ws):
    """The kernel's product: ``x`` to uint8 by ``DynamicQuantizeLinear``'s rule, integer GEMM, rescale."""

    from rnnc.ir.ops_quant import dynamic_quantize_u8

    xq, s, zp = dynamic_quantize_u8(x)
    return ((xq - zp).double() @ wq.double().T).float() * s * ws


@functools.lru_cache(maxsize=64)
def is_dq_lstm(cell: Cell) -> bool:
    """``cell`` computes exactly what one ``DynamicQuantizeLSTM`` step does (for a
    ``xquant="sequence"`` cell: on an input the rnn has already quantized)."""
    import torch

    from rnnc.ir.interp import run_graph

    names = set(cell.param_names)
    if cell.kind != "lstm" or not _PARAMS <= names or names - _PARAMS - _BIASES or len(cell.states) != 2:
        return False
    types = dict(cell.step.params)
    if any(types[n].dtype != "int8" for n in (_W[0], _R[0])) or any(types[n].rank != 1 for n in (_W[1], _R[1])):
        return False  # group-wise scales: the kernel has one scale per output channel
    if any(t.dtype != "float32" for _, t in cell.step.inputs):
        return False
    try:
        params, x, (h, c) = probe_tensors(cell, batch=3)
        gen = torch.Generator().manual_seed(1)
        for q, s in (_W, _R):  # int8 codes and positive scales where the random floats were
            params[q] = torch.randint(-127, 128, tuple(params[q].shape), generator=gen).to(torch.int8)
            params[s] = params[s].abs() * 0.01 + 1e-3
        with torch.no_grad():
            got = run_graph(cell.step, {"x": x, "h": h, "c": c, **params})
            if cell.attr("xquant") == "sequence":  # x arrives as codes: a float product on dequantized weights
                xw = x @ (params[_W[0]].float() * params[_W[1]][:, None]).T
            else:
                xw = _dq_product(x, params[_W[0]], params[_W[1]])
            gates = xw + _dq_product(h, params[_R[0]], params[_R[1]])
            for b in _BIASES & names:
                gates = gates + params[b]
            i, f, g, o = gates.chunk(4, dim=-1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
    except Exception:  # any shape or arity mismatch means "not this kernel"
        return False
    want = (h_new, h_new, c_new)
    return len(got) == 3 and all(a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-4)
                                 for a, b in zip(got, want, strict=True))


def render_dq_lstm(g: OnnxGraph, cell: Cell, xt: str, inits: Sequence[str], weights: Sequence[Mapping[str, str]],
                   seq_lens: str | None, hint: str) -> tuple[str, list[str]]:
    """One layer (all directions) as one ``DynamicQuantizeLSTM``; the same contract as
    ``native.render_native`` (``xt [T, B, I]`` in, ``y [T, B, D*H]`` and final ``h, c`` out)."""
    dirs = len(weights)
    per = [{p: to_numpy(g.emitter.weights[n]) for p, n in w.items()} for w in weights]

    def stacked(name: str, key: str, transpose: bool) -> str:
        arr = np.stack([reorder_gates("lstm", d[key]).T if transpose else reorder_gates("lstm", d[key])
                        for d in per])
        return g.emitter.initializer(f"{hint}.{name}", np.ascontiguousarray(arr))

    w, w_scale = stacked("W", _W[0], True), stacked("W_scale", _W[1], False)
    r, r_scale = stacked("R", _R[0], True), stacked("R_scale", _R[1], False)
    zero = g.emitter.initializer(f"{hint}.zero_point", np.zeros((dirs, 4 * cell.hidden_size), np.int8))
    b = bias_initializer(g, cell, per, hint)
    return native_node(g, "DynamicQuantizeLSTM", [xt, w, r, b, seq_lens, *inits, None, w_scale, zero, r_scale, zero],
                       native_attrs("LSTM", cell, dirs), dirs, 2, hint, domain=MS_DOMAIN)
