"""Hoisting the state-free part of a cell's step out of the Scan loop.

Everything in a step that depends on ``x`` but not on the state (the input projections
``W_ih x``, and for minGRU/minLSTM/Mamba most of the gates) can run for all time steps at
once: the step's ops are batch-parallel, so evaluating them on ``[T*B, ...]`` instead of
``[B, ...]`` computes every step in one call (one big GEMM instead of T small ones).  The
loop body then keeps only the state-dependent remainder and scans over the precomputed values.

Only ops that provably never mix the batch axis are hoisted (the layer plan's row-wise nodes,
``rnnc.passes``: elementwise ops whose other operands do not reach into axis 0, ``linear`` on
``x``, and axis/shape ops that leave axis 0 alone); anything else stays in the loop, so hoisting
never changes a result.  Quantized
projections (``qlinear``) are hoisted too: weight-only, static and MatMulNBits forms are
row-wise already; the ``dynamic`` form quantizes x per tensor *per step*, which the renderer
keeps in the hoisted form by computing one scale and zero point per step (``[T, B, I]``
reduced over its last two axes) instead of one for the whole sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

from rnnc.ir import Cell, Graph, Node
from rnnc.passes import plan_layer


@dataclass(frozen=True)
class Split:
    """A step graph cut in two: ``hoisted`` runs on all steps at once, ``body`` per step and
    reads the ``frontier`` values (computed by ``hoisted``) as scanned inputs."""

    hoisted: Graph
    body: Graph
    frontier: tuple[str, ...]


def _sink_splits(hoisted: list[Node], body: list[Node]) -> None:
    """Move a hoisted ``split`` whose parts only the loop reads back into the loop: its one input
    is then scanned instead of its k parts (a GRU's gates: 1 scanned input, not 3), which saves
    k-1 per-step slices and the copies the hoisted split and reshapes would make."""
    moved = True
    while moved:
        moved = False
        read_hoisted = {i for n in hoisted for i in n.inputs}
        for node in reversed(hoisted):
            if node.op == "split" and not set(node.outputs) & read_hoisted:
                hoisted.remove(node)
                body.insert(0, node)  # its input is a scanned (frontier) value: available first
                moved = True
                break


def split_step(cell: Cell, dynamic: bool = True) -> Split | None:
    """Cut ``cell``'s step; ``None`` when nothing worth hoisting depends on ``x`` alone.

    What may be hoisted is the layer plan's (``LayerPlan.hoistable``: row-wise nodes fed by ``x``
    and parameters only); constants are copied into both halves.
    ``dynamic=False`` keeps dynamically quantized projections in the loop: there onnxruntime fuses
    each into one ``DynamicQuantizeMatMul``, while the exact hoisted form (per-step scales) costs
    about ten elementwise passes over ``[T, B, ...]``, which outweighs the saved calls unless the
    batch is small (measured in ``benchmarks/quant_eval.py``)."""
    step = cell.step
    types = step.value_types()
    lifted = {id(n) for n in plan_layer(cell).hoistable(per_step_quant=dynamic)}
    hoisted = [n for n in step.nodes if n.op == "const" or id(n) in lifted]
    body = [n for n in step.nodes if id(n) not in lifted]
    _sink_splits(hoisted, body)
    if not any(n.op != "const" for n in hoisted):
        return None
    used_later = {i for n in body for i in n.inputs} | {v for _, v in step.outputs}
    frontier = tuple(v for n in hoisted if n.op != "const" for v in n.outputs if v in used_later)
    if any(not all(isinstance(d, int) for d in types[v].shape[1:]) for v in frontier):
        return None  # a scanned input needs its per-sample shape to be reshaped to [T, B, ...]
    state_inputs = step.inputs[1:]
    body_inputs = (*state_inputs, *((v, types[v]) for v in frontier))
    keep_x = "x" in used_later
    if keep_x:
        body_inputs = (step.inputs[0], *body_inputs)
    return Split(
        hoisted=Graph(f"{step.name}_hoisted", step.inputs[:1], step.params, tuple(hoisted),
                      tuple((v, v) for v in frontier)),
        body=Graph(f"{step.name}_body", body_inputs, step.params, tuple(body), step.outputs),
        frontier=frontier,
    )
