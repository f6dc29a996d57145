"""One rnn layer as ONNX's native ``LSTM`` / ``GRU`` / ``RNN`` op, when the cell *is* that op.

The cell is not trusted by its ``kind``: a user cell may be called "lstm" and differ.  Instead
:func:`native_kind` probes the cell's step graph with random inputs through the IR interpreter
and compares it with ONNX's own equations evaluated on the weights exactly as they will be
written (gates reordered: torch's LSTM i,f,g,o -> ONNX i,o,f,c; GRU r,z,n -> z,r,h with
``linear_before_reset=1``).  Only a cell that matches takes the native op; everything else
(LSTM with ``proj_size``, user cells, other dtypes) goes through Scan, so the native path can
never change a model's numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np

from rnnc.backends.onnx.emit import OnnxGraph, to_numpy
from rnnc.ir import Cell

#: cell kind -> (ONNX op, torch gate chunk for each ONNX gate slot)
_NATIVE: dict[str, tuple[str, tuple[int, ...]]] = {
    "lstm": ("LSTM", (0, 3, 1, 2)),  # ONNX i, o, f, c  <- torch i, f, g, o
    "gru": ("GRU", (1, 0, 2)),  # ONNX z, r, h     <- torch r, z, n
    "elman": ("RNN", (0,)),
}


def reorder_gates(kind: str, w: np.ndarray) -> np.ndarray:
    """Rows (gate blocks along axis 0) of a torch ``kind`` cell's tensor in ONNX's gate order."""
    return _reorder(w, _NATIVE[kind][1])


def _reorder(w: np.ndarray, order: Sequence[int]) -> np.ndarray:
    chunks = np.split(w, len(order), axis=0)
    return np.concatenate([chunks[i] for i in order], axis=0)


def _onnx_equations(kind: str, x, states, p: Mapping[str, np.ndarray], act: str):
    """ONNX's LSTM/GRU/RNN step (operator spec, default activations) on reordered weights."""
    import torch

    t = {k: torch.from_numpy(v) for k, v in p.items()}
    xw = x @ t["W"].T + t["Wb"]
    h = states[0]
    if kind == "lstm":
        i, o, f, c = (xw + h @ t["R"].T + t["Rb"]).chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * states[1] + torch.sigmoid(i) * torch.tanh(c)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        return h_new, (h_new, c_new)
    if kind == "gru":
        xz, xr, xh = xw.chunk(3, dim=-1)
        hz, hr, hh = (h @ t["R"].T + t["Rb"]).chunk(3, dim=-1)
        z, r = torch.sigmoid(xz + hz), torch.sigmoid(xr + hr)
        h_new = (1 - z) * torch.tanh(xh + r * hh) + z * h
        return h_new, (h_new,)
    h_new = getattr(torch, act)(xw + h @ t["R"].T + t["Rb"])
    return h_new, (h_new,)


def onnx_weights(cell: Cell, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """W, R, Wb, Rb of one direction in ONNX's gate order (biases zero when the cell has none)."""
    _, order = _NATIVE[cell.kind]
    out = {"W": _reorder(params["weight_ih"], order), "R": _reorder(params["weight_hh"], order)}
    for key, name in (("Wb", "bias_ih"), ("Rb", "bias_hh")):
        out[key] = _reorder(params[name], order) if name in params else np.zeros(out["W"].shape[0], np.float32)
    return out


def probe_tensors(cell: Cell, batch: int = 2, seed: int = 0) -> tuple[dict, object, list]:
    """Random params, ``x`` and states for probing ``cell``'s step graph against a kernel's equations
    (symbolic dims become ``batch``): ``(params, x, states)``."""
    import torch

    gen = torch.Generator().manual_seed(seed)

    def rand(shape: Sequence[int | str]) -> torch.Tensor:
        return torch.randn([batch if isinstance(d, str) else d for d in shape], generator=gen)

    params = {n: rand(t.shape) for n, t in cell.step.params}
    return params, rand(cell.step.inputs[0][1].shape), [rand(t.shape) for _, t in cell.step.inputs[1:]]


@functools.lru_cache(maxsize=64)
def native_kind(cell: Cell) -> str | None:
    """The ONNX op that computes ``cell`` exactly ("LSTM"/"GRU"/"RNN"), or None."""
    import torch

    from rnnc.ir.interp import run_graph

    if cell.kind not in _NATIVE or set(cell.param_names) - {"weight_ih", "weight_hh", "bias_ih", "bias_hh"}:
        return None
    if any(t.dtype != "float32" for _, t in (*cell.step.inputs, *cell.step.params)):
        return None  # onnxruntime's native recurrent kernels are float32
    act = cell.attr("nonlinearity", "tanh")
    if act not in ("tanh", "relu"):
        return None
    try:
        params, x, states = probe_tensors(cell)
        with torch.no_grad():
            got = run_graph(cell.step, {"x": x, **dict(zip(cell.state_names, states, strict=True)), **params})
            y, new = _onnx_equations(cell.kind, x, states,
                                     onnx_weights(cell, {k: v.numpy() for k, v in params.items()}), act)
    except Exception:  # any shape or arity mismatch means "not the native cell"
        return None
    want = (y, *new)
    ok = len(got) == len(want) and all(a.shape == b.shape and torch.allclose(a, b, atol=1e-5, rtol=1e-4)
                                       for a, b in zip(got, want, strict=False))
    return _NATIVE[cell.kind][0] if ok else None


_Q, _S = ".q", ".scale"


def dequantized(cell: Cell) -> Cell | None:
    """A weight-only int8 cell (every ``qlinear`` ``act="none"``, one scale per output channel, no
    kept channels) as the float cell it computes: each ``qlinear(x, <w>.q, <w>.scale, b)`` becomes
    ``linear(x, <w>, b)`` -- the IR's ``act="none"`` product is exactly ``x @ (q * scale).T``.
    Lets :func:`native_kind` judge it; the export then widens the int8 codes at load."""
    import dataclasses

    from rnnc.ir import Graph, Node
    from rnnc.ir.types import TensorType

    types = dict(cell.step.params)
    if not any(n.op == "qlinear" for n in cell.step.nodes):
        return None
    renamed: dict[str, str] = {}
    nodes = []
    for n in cell.step.nodes:
        if n.op != "qlinear":
            nodes.append(n)
            continue
        q, s = n.inputs[1], n.inputs[2]
        if n.attr("act") != "none" or len(n.inputs) > 4 or not q.endswith(_Q) or s != q[:-len(_Q)] + _S \
                or types[s].rank != 1:
            return None
        base = q[:-len(_Q)]
        renamed[q] = base
        nodes.append(Node("linear", (n.inputs[0], base, *n.inputs[3:]), n.outputs, n.types))
    used = {i for n in nodes for i in n.inputs}
    params = tuple((renamed[p], TensorType(t.shape, "float32")) if p in renamed else (p, t)
                   for p, t in cell.step.params if p in renamed or p in used)
    step = Graph(cell.step.name, cell.step.inputs, params, tuple(nodes), cell.step.outputs)
    return dataclasses.replace(cell, step=step)


def render_native_int8(g: OnnxGraph, op_type: str, cell: Cell, xt: str, inits: Sequence[str],
                       weights: Sequence[Mapping[str, str]], seq_lens: str | None,
                       hint: str) -> tuple[str, list[str]]:
    """:func:`render_native` for a weight-only int8 cell (:func:`dequantized`): ``W``/``R`` are stored
    as int8 codes in ONNX's gate order with per-row scales and widened in the prelude (folded to
    float once, when onnxruntime loads the model), so the file keeps int8 weights while the layer
    runs as the native kernel (onnxruntime has no quantized GRU)."""
    dirs = len(weights)
    order = _NATIVE[cell.kind][1]
    per = [{p: to_numpy(g.emitter.weights[n]) for p, n in w.items()} for w in weights]

    def widened(key: str, base: str) -> str:
        if base + _Q not in per[0]:  # left float (skip, min_weight): as render_native writes it
            return g.emitter.initializer(f"{hint}.{key}", np.stack([_reorder(d[base], order) for d in per]))
        codes = np.stack([_reorder(d[base + _Q], order) for d in per])
        scale = np.stack([_reorder(d[base + _S], order) for d in per])[..., None].astype(np.float32)
        return g.emitter.widened(g.emitter.initializer(f"{hint}.{key}_q", codes),
                                 g.emitter.initializer(f"{hint}.{key}_scale", scale), f"{hint}.{key}")

    w, r = widened("W", "weight_ih"), widened("R", "weight_hh")
    return native_node(g, op_type, [xt, w, r, bias_initializer(g, cell, per, hint), seq_lens, *inits],
                       native_attrs(op_type, cell, dirs), dirs, len(cell.states), hint)


def bias_initializer(g: OnnxGraph, cell: Cell, per: Sequence[Mapping[str, np.ndarray]], hint: str) -> str | None:
    """ONNX's ``B [D, 2 * gates * H]``: each direction's ``bias_ih`` then ``bias_hh`` in ONNX's gate
    order (zeros for a missing one); None when the cell has no bias at all."""
    if not any(p.startswith("bias") for p in cell.param_names):
        return None
    order = _NATIVE[cell.kind][1]
    rows = cell.hidden_size * len(order)  # gates x H
    return g.emitter.initializer(f"{hint}.B", np.stack([np.concatenate([
        _reorder(d[k], order) if k in d else np.zeros(rows, np.float32) for k in ("bias_ih", "bias_hh")])
        for d in per]).astype(np.float32))


def native_attrs(op_type: str, cell: Cell, dirs: int) -> dict:
    attrs: dict = {"hidden_size": cell.hidden_size, "direction": "bidirectional" if dirs == 2 else "forward"}
    if op_type == "GRU":
        attrs["linear_before_reset"] = 1
    if op_type == "RNN":
        attrs["activations"] = [cell.attr("nonlinearity", "tanh").capitalize()] * dirs
    return attrs


def render_native(g: OnnxGraph, op_type: str, cell: Cell, xt: str, inits: Sequence[str],
                  weights: Sequence[Mapping[str, str]], seq_lens: str | None, hint: str) -> tuple[str, list[str]]:
    """One layer (all directions) as one native op. ``xt`` is ``[T, B, I]``, ``inits`` are
    ``[D, B, H]``, ``weights[d]`` maps cell param names to initializer names.  Returns
    ``y [T, B, D*H]`` and the final states ``[D, B, H]`` in the cell's state order."""
    dirs = len(weights)
    per = [{p: to_numpy(g.emitter.weights[n]) for p, n in w.items()} for w in weights]
    per_dir = [onnx_weights(cell, d) for d in per]
    w = g.emitter.initializer(f"{hint}.W", np.stack([d["W"] for d in per_dir]))
    r = g.emitter.initializer(f"{hint}.R", np.stack([d["R"] for d in per_dir]))
    return native_node(g, op_type, [xt, w, r, bias_initializer(g, cell, per, hint), seq_lens, *inits],
                       native_attrs(op_type, cell, dirs), dirs, len(cell.states), hint)


def native_node(g: OnnxGraph, op_type: str, inputs: Sequence[str | None], attrs: dict, dirs: int, n_states: int,
                hint: str, domain: str = "") -> tuple[str, list[str]]:
    """One recurrent node (ONNX's or onnxruntime's quantized one) and its ``Y [T, D, B, H]``
    laid out as the next layer reads it: ``[T, B, D*H]``.  Returns it and the final states."""
    extra = {"domain": domain} if domain else {}
    outs = g.node(op_type, list(inputs), hint, n_out=1 + n_states, **attrs, **extra)
    y = outs[0]  # [T, D, B, H]
    if dirs == 1:
        y = g.op("Squeeze", y, g.const([1]), hint=f"{hint}.y")
    else:
        y = g.op("Reshape", g.op("Transpose", y, perm=[0, 2, 1, 3]), g.const([0, 0, -1]), hint=f"{hint}.y")
    return y, outs[1:]
