"""Which cells take the fused path: the gate structure of a step graph, found from the graph alone.

``analyse_gates`` recognises cells whose pre-activations are ``linear``s of ``x`` or of a state
with ``G * H`` outputs, combined gate-wise and split into ``H``-wide gates that only meet
elementwise (LSTM, GRU, Elman, minGRU, minLSTM and user cells of the same shape); the layer plan
(``rnnc.passes.plan``) records the result and :mod:`rnnc.lower.fused` lowers it.  Weight-only
``qlinear`` (``act="none"``, per-channel scales) counts as a gate linear; other ``qlinear`` forms
make the cell take the generic path.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnnc.ir.graph import Cell
from rnnc.lower.knobs import Knobs
from rnnc.lower.stepgraph import _BINARY, _UNARY


@dataclass(frozen=True)
class GateLinear:
    """One pre-activation GEMM: ``out = src @ weight.T (+ bias)`` with ``gates * H`` outputs."""

    out: str
    src: str  # "x" or a state name
    weight: str
    bias: str | None
    gates: int
    k: int
    #: per-output-channel scale of a weight-only ``qlinear`` (the weight then holds int8 codes);
    #: the GEMMs accumulate over widened codes and the epilogue applies it once per output
    scale: str | None = None


@dataclass(frozen=True)
class GatePlan:
    hidden: int
    gates: int  # the widest linear's G (sizes the tile)
    linears: tuple[GateLinear, ...]
    recurrent_states: tuple[str, ...]  # states a linear reads (double-buffered)


def analyse_gates(cell: Cell) -> GatePlan | None:
    """The gate structure of ``cell``, or None when the fused path does not apply."""
    g, h = cell.step, cell.hidden_size
    if cell.output_size != h or any(s.shape != (h,) for s in cell.states):
        return None
    params = dict(g.params)
    widths: dict[str, int] = {"x": 0}  # value -> number of H-wide gates (0: not gate-shaped)
    for s in cell.states:
        widths[s.name] = 1
    for p, t in params.items():
        if t.shape == (h,):
            widths[p] = 1
    linears: list[GateLinear] = []
    for n in g.nodes:
        if n.op in ("linear", "qlinear"):
            src, w = n.inputs[0], n.inputs[1]
            scale = None
            if n.op == "qlinear":
                # weight-only, per-channel only: integer activations and group-wise scales need a
                # different GEMM, and float outlier channels a second one (the generic path decides)
                ins = list(n.inputs) + [""] * (7 - len(n.inputs))
                scale = ins[2]
                st = params.get(scale)
                if n.attr("act") != "none" or any(ins[4:]) or st is None or len(st.shape) != 1:
                    return None
                bias = ins[3] or None
            else:
                bias = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
            wt = params.get(w)
            if wt is None or len(wt.shape) != 2 or wt.shape[0] % h or (src != "x" and src not in cell.state_names):
                return None
            if bias is not None and bias not in params:
                return None
            linears.append(GateLinear(n.outputs[0], src, w, bias, int(wt.shape[0]) // h, int(wt.shape[1]), scale))
            widths[n.outputs[0]] = int(wt.shape[0]) // h
        elif n.op == "const":
            widths[n.outputs[0]] = -1  # scalar: broadcasts to anything
        elif n.op == "split":
            gw = widths.get(n.inputs[0], 0)
            sizes = n.attr("sizes")
            if gw <= 0 or n.attr("axis") not in (-1, 1) or any(sz % h for sz in sizes):
                return None
            for o, sz in zip(n.outputs, sizes, strict=True):
                widths[o] = sz // h
        elif n.op in _UNARY or n.op in _BINARY or n.op in ("where", "clamp"):
            ws = {widths.get(i, 0) for i in n.inputs} - {-1}
            if 0 in ws or len(ws) != 1 or n.op in ("gt", "lt"):
                return None
            widths[n.outputs[0]] = ws.pop()
        else:
            return None
    outs = dict(g.outputs)
    if any(widths.get(v, 0) != 1 for v in outs.values()):
        return None
    if not any(lin.src == "x" for lin in linears) and not linears:
        return None
    rec = tuple(sorted({lin.src for lin in linears if lin.src != "x"}))
    return GatePlan(h, max(lin.gates for lin in linears), tuple(linears), rec)


def hosted(lin: GateLinear, kn: Knobs) -> bool:
    """Whether the host's GEMM computes this input projection (``Knobs.host_gemm``): float input
    linears only; int8 (scaled) ones stream their codes through the kernel's own GEMM."""
    return bool(kn.host_gemm) and lin.src == "x" and not lin.scale


def in_kernel_projections(plan: GatePlan, kn: Knobs) -> int:
    """Input projections the kernel computes itself, each with its own shared accumulator tile
    (what ``knobs.predict_smem`` counts as ``input_linears``)."""
    return sum(1 for lin in plan.linears if lin.src == "x" and not hosted(lin, kn))
