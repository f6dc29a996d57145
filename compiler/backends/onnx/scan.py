"""One rnn layer as ONNX ``Scan`` whose body is the cell's IR step graph.

Every cell without a native ONNX op (sLSTM, mLSTM, minGRU, minLSTM, LRU, Mamba S6, LSTM with a
projection, user cells) goes through here, rendered by the same op renderers as the top-level
graph.  Bodies read the weights from the outer scope (no copies).  Packed ``lengths`` become a
per-step ``[B]`` mask scanned alongside ``x``: a masked step keeps the old state and outputs
zeros, which is the IR's packed-sequence meaning in both directions (the reverse direction
then effectively starts at each sample's last valid step).  When the chunk has exactly one step
(a streaming model with T=1) the body is inlined and no loop is written at all; otherwise the
state-free part of the step is hoisted out of the loop (``hoist.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rnnc.backends.onnx.emit import OnnxGraph
from rnnc.backends.onnx.hoist import Split, split_step
from rnnc.backends.onnx.render import render_nodes
from rnnc.errors import UnsupportedError
from rnnc.ir import Cell, Graph, TensorType


def _step(g: OnnxGraph, cell: Cell, step: Graph, env: Mapping[str, str], states: Sequence[str],
          mask: str | None) -> tuple[str, list[str]]:
    """Render ``step`` (the cell's step graph, or its in-loop part) into ``g``: returns y and the
    new states (masked).  ``env`` names the ONNX value of every step input and param."""
    names = render_nodes(g, step, env)
    outs = [names[v] for _, v in step.outputs]
    y, new = outs[0], outs[1:]
    if mask is None:
        return y, new
    types = cell.step.value_types()
    masked = []
    for s, old, value in zip(cell.states, states, new, strict=True):
        m = mask if len(s.shape) == 0 else g.op("Unsqueeze", mask, g.const(list(range(1, 1 + len(s.shape)))))
        masked.append(g.op("Where", m, value, old, hint=f"{s.name}_next"))
    y_type = types[cell.step.outputs[0][1]]
    m_y = mask if y_type.rank == 1 else g.op("Unsqueeze", mask, g.const(list(range(1, y_type.rank))))
    y = g.op("Where", m_y, y, g.const(0.0, y_type.dtype), hint="y_step")
    return y, masked


def _hoist(g: OnnxGraph, cut: Split, xt: str, weights: Mapping[str, str], fixed_steps: int | None = None) -> list[str]:
    """Run the state-free part on all steps at once; returns each frontier value as ``[T, B, ...]``.
    ``fixed_steps``: the chunk length when it is fixed (unrolled), so no shape is computed at run time."""
    types = cut.body.value_types()
    features = cut.hoisted.inputs[0][1].shape[1:]
    flat = g.const([-1, *features])
    x_flat = g.op("Reshape", xt, flat)  # [T*B, I]: every step is one more sample
    g.emitter.reshaped_codes(g, xt, x_flat, flat)
    steps = g.const([fixed_steps]) if fixed_steps else g.op("Slice", g.op("Shape", xt), g.const([0]), g.const([1]))
    saved, g.hoist_steps = g.hoist_steps, steps  # per-step dynamic quantization needs T (quant_ops)
    try:
        names = render_nodes(g, cut.hoisted, {"x": x_flat, **weights})
    finally:
        g.hoist_steps = saved
    if fixed_steps:
        return [g.op("Reshape", names[v], g.const([fixed_steps, -1, *types[v].shape[1:]]), hint=f"{v}_all")
                for v in cut.frontier]
    # [T, B, ...] with B read from x, not inferred: a -1 cannot be inferred from zero steps
    batch = g.op("Slice", g.op("Shape", xt), g.const([1]), g.const([2]))
    return [g.op("Reshape", names[v], g.op("Concat", steps, batch, g.const(list(types[v].shape[1:])), axis=0),
                 hint=f"{v}_all") for v in cut.frontier]


def _per_step(g: OnnxGraph, value: str, steps: int, hint: str) -> list[str]:
    """``[T, B, ...]`` as T values ``[B, ...]`` (one Split along time, each part squeezed)."""
    parts = [value] if steps == 1 else g.node("Split", [value, g.const([1] * steps)], hint, n_out=steps, axis=0)
    return [g.op("Squeeze", p, g.const([0]), hint=f"{hint}_{t}") for t, p in enumerate(parts)]


def _unrolled(g: OnnxGraph, cell: Cell, xt: str, inits: Sequence[str], mask: str | None,
              weights: Mapping[str, str], reverse: bool, steps: int, hint: str) -> tuple[str, list[str]]:
    """One direction written out step by step over a fixed chunk of ``steps``: the state-free
    part once for the whole chunk (as in a Scan), then the cell's in-loop part ``steps`` times,
    each step reading the previous one's states.  For providers with neither loops nor recurrent
    ops (NNAPI, CoreML, QNN): every node is a plain MatMul/Gemm, Sigmoid, Tanh, Mul, Add, ..."""
    cut = split_step(cell, dynamic=g.emitter.hoist == "all") if g.emitter.hoist else None
    step = cut.body if cut else cell.step
    seqs: dict[str, list[str]] = {}
    if cut:
        for v, whole in zip(cut.frontier, _hoist(g, cut, xt, weights, fixed_steps=steps), strict=True):
            seqs[v] = _per_step(g, whole, steps, f"{hint}.{v}")
    if "x" in step.input_names:
        seqs["x"] = _per_step(g, xt, steps, f"{hint}.x")
    masks = _per_step(g, mask, steps, f"{hint}.mask") if mask else None
    states, ys = list(inits), [""] * steps
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        env = {**dict(zip(cell.state_names, states, strict=True)), **{v: seqs[v][t] for v in seqs}, **weights}
        ys[t], states = _step(g.scoped(f"{hint}.t{t}/"), cell, step, env, states, masks[t] if masks else None)
    lifted = [g.op("Unsqueeze", y, g.const([0])) for y in ys]
    return (lifted[0] if steps == 1 else g.op("Concat", *lifted, axis=0, hint=f"{hint}.y")), states


def _direction(g: OnnxGraph, cell: Cell, xt: str, inits: Sequence[str], mask: str | None,
               weights: Mapping[str, str], reverse: bool, steps: object,
               hint: str) -> tuple[str, list[str], dict[str, str]]:
    """One direction: ``xt [T, B, I]``, ``inits [B, *state]`` -> ``y [T, B, out]``, the finals
    ``[B, *state]``, and the values already given a leading unit axis (reusable for the finals).
    ``steps`` is the chunk length (an int when fixed): one step is inlined, and with
    ``emitter.unroll`` a fixed chunk is written out step by step instead of as a Scan."""
    inline = steps == 1
    if g.emitter.unroll and not inline:
        if not isinstance(steps, int):
            raise UnsupportedError(f"writing layer {hint} out step by step needs a fixed chunk length; export "
                                   "with fixed shapes (the example input's time length)")
        y, finals = _unrolled(g, cell, xt, inits, mask, weights, reverse, steps, hint)
        return y, finals, {}
    if inline:
        flat = g.const([-1, *dict(cell.step.inputs)["x"].shape[1:]])
        x1 = g.op("Reshape", xt, flat)  # [1, B, I] -> [B, I]
        g.emitter.reshaped_codes(g, xt, x1, flat)
        m1 = g.op("Squeeze", mask, g.const([0])) if mask else None
        env = {"x": x1, **dict(zip(cell.state_names, inits, strict=True)), **weights}
        y, finals = _step(g.scoped(f"{hint}/"), cell, cell.step, env, inits, m1)
        y_tm = g.op("Unsqueeze", y, g.const([0]), hint=f"{hint}.y")
        return y_tm, finals, {y: y_tm}
    cut = split_step(cell, dynamic=g.emitter.hoist == "all") if g.emitter.hoist else None
    step = cut.body if cut else cell.step
    scanned = _hoist(g, cut, xt, weights) if cut else []
    keep_x = "x" in step.input_names
    body = OnnxGraph(g.emitter, scope=f"{hint}/")
    step_types = dict(step.inputs)
    state_in = [body.add_input(body.name(f"{s}_in"), step_types[s]) for s in cell.state_names]
    seq_names = (["x"] if keep_x else []) + list(cut.frontier if cut else ())
    seq_in = [body.add_input(body.name(f"{v}_t"), step_types[v]) for v in seq_names]
    m_in = body.add_input(body.name("mask_t"), TensorType(("B",), "bool")) if mask else None
    env = {**dict(zip(cell.state_names, state_in, strict=True)), **dict(zip(seq_names, seq_in, strict=True)),
           **weights}
    y, new = _step(body, cell, step, env, state_in, m_in)
    out_types = cell.step.value_types()
    used: set[str] = set(state_in) | set(seq_in)
    for (name, value), onnx_name in zip(cell.step.outputs[1:], new, strict=True):
        if onnx_name in used:  # a body output must be a fresh value of the body
            onnx_name = body.op("Identity", onnx_name, hint=f"{name}_out")
        used.add(onnx_name)
        body.add_output(onnx_name, out_types[value])
    if y in used:
        y = body.op("Identity", y, hint="y_out")
    body.add_output(y, out_types[cell.step.outputs[0][1]])
    seqs = [*([xt] if keep_x else []), *scanned, *([mask] if mask else [])]
    outs = g.node("Scan", [*inits, *seqs], hint, n_out=len(new) + 1, body=body.make(f"{hint}_body"),
                  num_scan_inputs=len(seqs), scan_input_directions=[int(reverse)] * len(seqs),
                  scan_output_directions=[int(reverse)])
    return outs[-1], outs[:-1], {}


def render_scan(g: OnnxGraph, cell: Cell, xt: str, inits: Sequence[str], weights: Sequence[Mapping[str, str]],
                mask: str | None, steps: object, hint: str) -> tuple[str, list[str]]:
    """One layer (all directions). ``inits`` are ``[D, B, *state]``; returns ``y [T, B, D*out]``
    and the final states ``[D, B, *state]`` in the cell's state order."""
    dirs = len(weights)
    ys: list[str] = []
    finals: list[list[str]] = [[] for _ in cell.states]
    for d in range(dirs):
        # Squeeze aliases its input in onnxruntime, Gather copies: it matters per streaming step
        per_dir = [g.op("Squeeze", s, g.const([0])) if dirs == 1 else g.op("Gather", s, g.const(d), axis=0)
                   for s in inits]
        y, fin, lifted = _direction(g, cell, xt, per_dir, mask, weights[d], reverse=d == 1, steps=steps,
                                    hint=f"{hint}.{'rev' if d else 'fwd'}")
        ys.append(y)
        for i, f in enumerate(fin):
            if f not in lifted:
                lifted[f] = g.op("Unsqueeze", f, g.const([0]))
            finals[i].append(lifted[f])
    y = ys[0] if dirs == 1 else g.op("Concat", *ys, axis=-1, hint=f"{hint}.y")
    return y, [f[0] if dirs == 1 else g.op("Concat", *f, axis=0) for f in finals]
