"""Walking IR graphs into ONNX graphs, and ``supports``: what the exporter can and cannot render.

``render_nodes`` is the one loop that turns IR nodes into ONNX nodes; the top-level graph and
every Scan body (a cell's step graph) go through it, so an op rendered once works in both.
"""

from __future__ import annotations

from collections.abc import Mapping

from rnnc.backends.onnx.emit import OnnxGraph
from rnnc.backends.onnx.ops import MIN_OPSET, RENDERERS
from rnnc.errors import UnsupportedError
from rnnc.ir import Graph, Program

#: the opsets this exporter writes: Split/Squeeze/Unsqueeze take tensor inputs from 13, and
#: 14 is the oldest opset edge runtimes still commonly pin
MIN_EXPORT_OPSET = 14
DEFAULT_OPSET = 18


def render_nodes(g: OnnxGraph, graph: Graph, env: Mapping[str, str]) -> dict[str, str]:
    """Render ``graph``'s nodes into ``g``; ``env`` names the ONNX value of each input and param.

    Returns the full IR value -> ONNX value mapping (inputs, params and every node output).
    """
    from rnnc.backends.onnx.quant_ops import chain_links

    names = dict(env)
    types = graph.value_types()
    saved = g.u8_links, g.u8_values  # a hoisted part renders into its parent graph: restore after
    g.u8_links, g.u8_values = ({} if g.emitter.qdq else chain_links(graph)), {}  # QDQ: no integer chains
    try:
        _render_loop(g, graph, names, types)
    finally:
        g.u8_links, g.u8_values = saved
    return names


def _render_loop(g: OnnxGraph, graph: Graph, names: dict[str, str], types: Mapping) -> None:
    for node in graph.nodes:
        renderer = RENDERERS.get(node.op)
        if renderer is None:  # supports() rejects this earlier; kept as a guard for direct callers
            raise UnsupportedError(f"the ONNX exporter cannot render op {node.op!r} (node {node.label})")
        ins = [names[i] if i else None for i in node.inputs]
        outs = renderer(g, node, ins, [types[i] if i else None for i in node.inputs])
        if len(outs) != len(node.outputs):
            raise AssertionError(f"ONNX renderer of {node.op} gave {len(outs)} outputs for {node.label}")
        names.update(zip(node.outputs, outs, strict=True))


def unsupported(program: Program, opset: int) -> str:
    """Why ``program`` cannot be exported at ``opset`` ("" when it can)."""
    for graph, node in program.graph.walk():
        at = program.lines.get(node.outputs[0]) if graph is program.graph and node.outputs else None
        where = f"in graph {graph.name}" if graph is not program.graph else f"at {at}" if at else "at top level"
        if node.op not in RENDERERS:
            return (f"op {node.op!r} ({node.label} {where}) has no ONNX rendering; supported ops: "
                    f"{', '.join(sorted(RENDERERS))}")
        if node.op == "aten":
            from rnnc.backends.onnx.ops_aten import unsupported_aten

            why = unsupported_aten(node)
            if why:
                return f"{why} ({where}); it runs in rnnc's interpreter and compiled modules, not in ONNX"
        need = MIN_OPSET.get(node.op, MIN_EXPORT_OPSET)
        if opset < need:
            return f"op {node.op!r} ({node.label}) needs ONNX opset >= {need}, asked for {opset}"
    return half_storage(program, "the ONNX export writes fp32 graphs")


def half_storage(program: Program, what: str) -> str:
    """Why a backend that runs fp32 only cannot take a model cast to fp16/bf16 ("" when it can)."""
    from rnnc.ir.printer import layer_storage
    from rnnc.ir.rnn import HALF_DTYPES

    half = sorted({d for d in layer_storage(program).values() if d in HALF_DTYPES})
    if half:
        return (f"{what}; this model stores {' and '.join(half)} weights: pass model.float() (rnnc's "
                f"int8/int4 quantization makes a small model for the edge), or compile it with the cuda, "
                f"triton or c backend")
    return ""
