"""A matrix-state layer as onnxruntime's ``com.microsoft.LinearAttention`` (chunk-form cells).

Why: GLA, RetNet, HGRN2, (Gated) DeltaNet and Mamba-2 have a verified chunk form
(``rnnc.passes.chunk``), and onnxruntime (1.31) runs exactly that recurrence as one op on the
CPU -- ``update_rule`` ``linear``/``gated`` (decay per head or per key channel) and
``delta``/``gated_delta`` -- faster than a ``Scan`` of the step graph (``benchmarks/chunkwise.py``).
The layer is written the way every chunk runner runs it (``rnnc.lower.chunkwise``): the state-free
pre-nodes on all ``T*B`` rows, the op, the post-nodes on all rows.  Packed lengths zero the
operands past each sequence's end (the state is then untouched) and the outputs there.

Exports for execution providers, streaming exports (fixed chunk), quantized cells,
``rnnc.export_onnx(..., linear_attention=False)`` (a runtime other than onnxruntime) and
``hoist=False`` (the Scan-body layout it asks for) keep the Scan.
"""

from __future__ import annotations

from collections.abc import Mapping

from rnnc.backends.onnx.emit import OnnxGraph
from rnnc.backends.onnx.render import render_nodes
from rnnc.ir import Cell, Graph

MS_DOMAIN = "com.microsoft"
_INT_MAX = 2**62


def usable(g: OnnxGraph, cell: Cell) -> bool:
    """Whether this export may write ``cell``'s layer as ``LinearAttention``."""
    from rnnc.passes import plan_layer

    e = g.emitter
    if not e.linear_attention or e.unroll or e.qdq is not None or e.hoist is False or e.dims:
        return False
    if cell.attr("xquant") is not None or any(n.op in ("qlinear", "qconv1d") for n in cell.step.nodes):
        return False
    form = plan_layer(cell).chunk
    # mLSTM's form needs its stabilisers (a running maximum) first: no ONNX operator computes
    # that, so its layers keep the Scan
    return cell.step.inputs[0][1].dtype == "float32" and form is not None and form.form in ("gla", "delta")


def _reverse_time(g: OnnxGraph, x: str) -> str:
    return g.op("Slice", x, g.const([-1]), g.const([-_INT_MAX]), g.const([0]), g.const([-1]))


def render_direction(g: OnnxGraph, cell: Cell, xt: str, init: str, mask: str | None, weights: Mapping[str, str],
                     reverse: bool, hint: str) -> tuple[str, str]:
    """One direction: ``xt [T, B, I]``, ``init [B, NH, DK, DV]`` -> (y ``[T, B, F]``, final state)."""
    from rnnc.passes import plan_layer

    cf = plan_layer(cell).chunk
    step = cell.step
    nh, dk, dv = (int(d) for d in cell.states[0].shape)
    types = step.value_types()
    features = step.inputs[0][1].shape[1:]
    shape_x = g.op("Shape", xt)
    tb = g.op("Slice", shape_x, g.const([0]), g.const([2]))  # [T, B]
    rows = g.op("ReduceProd", tb, keepdims=1)  # [T*B]
    if reverse:
        xt = _reverse_time(g, xt)
        mask = _reverse_time(g, mask) if mask else None
    x_rows = g.op("Reshape", xt, g.const([-1, *features]))
    produced = {n for node in cf.pre for n in node.outputs}
    needed = [v for _, v in cf.operands] + [i for node in cf.post for i in node.inputs
                                             if i in produced]
    pre = Graph(f"{step.name}_pre", step.inputs[:1], step.params, cf.pre,
                tuple((v, v) for v in dict.fromkeys(needed)))
    names = render_nodes(g.scoped(f"{hint}.pre/"), pre, {"x": x_rows, **weights})
    live = None
    if mask is not None:  # [T, B] -> rows [T*B, 1, 1]
        live = g.op("Reshape", g.op("Cast", mask, to=1), g.const([-1, 1, 1]))

    def operand(op: str, width: int | None) -> str | None:
        value = cf.value(op)
        if value is None:
            return None
        w = width if width is not None else int(types[value].shape[-1])
        full = g.op("Expand", names[value], g.op("Concat", rows, g.const([nh, w]), axis=0))  # [T*B, NH, w]
        if live is not None and op != "q":
            full = g.op("Mul", full, live)
        tm = g.op("Reshape", full, g.op("Concat", tb, g.const([nh * w]), axis=0))  # [T, B, NH*w]
        return g.op("Transpose", tm, perm=[1, 0, 2], hint=f"{hint}.{op}")  # [B, T, NH*w]

    q, k, v = operand("q", dk), operand("k", dk), operand("v", dv)
    g_in, beta = operand("g", None), operand("beta", 1)
    rule = {("gla", False): "linear", ("gla", True): "gated", ("delta", False): "delta",
            ("delta", True): "gated_delta"}[(cf.form, g_in is not None)]
    o, state = g.node("LinearAttention", [q, k, v, init, g_in, beta], f"{hint}.la", n_out=2, domain=MS_DOMAIN,
                      q_num_heads=nh, kv_num_heads=nh, update_rule=rule, scale=1.0)
    o_tm = g.op("Transpose", o, perm=[1, 0, 2])  # [T, B, NH*DV]
    o_rows = g.op("Reshape", o_tm, g.const([-1, nh, dv]))
    reads = [i for node in cf.post for i in node.inputs if i in names]
    post = Graph(f"{step.name}_post", ((cf.out, types[cf.out]), *((v, types[v]) for v in dict.fromkeys(reads))),
                 step.params, cf.post, (("y", step.outputs[0][1]),))
    env = {**weights, **{v: names[v] for v in names}, cf.out: o_rows}
    y_rows = render_nodes(g.scoped(f"{hint}.post/"), post, env)[step.outputs[0][1]]
    y = g.op("Reshape", y_rows, g.op("Concat", tb, g.const([-1]), axis=0))
    if mask is not None:
        y = g.op("Mul", y, g.op("Unsqueeze", g.op("Cast", mask, to=1), g.const([2])))
    if reverse:
        y = _reverse_time(g, y)
    return y, state


def render_layer(g: OnnxGraph, cell: Cell, xt: str, inits: list[str], weights: list[Mapping[str, str]],
                 mask: str | None, hint: str) -> tuple[str, list[str]]:
    """One layer, all directions (the contract of ``scan.render_scan``): ``inits [D, B, NH, DK,
    DV]`` -> (y ``[T, B, D*F]``, [final states ``[D, B, NH, DK, DV]``])."""
    ys, finals = [], []
    dirs = len(weights)
    for d in range(dirs):
        init = g.op("Squeeze", inits[0], g.const([0])) if dirs == 1 else g.op("Gather", inits[0], g.const(d), axis=0)
        y, state = render_direction(g, cell, xt, init, mask, weights[d], d == 1, f"{hint}.{'rev' if d else 'fwd'}")
        ys.append(y)
        finals.append(g.op("Unsqueeze", state, g.const([0])))
    y = ys[0] if dirs == 1 else g.op("Concat", *ys, axis=-1, hint=f"{hint}.y")
    return y, [finals[0] if dirs == 1 else g.op("Concat", *finals, axis=0)]
