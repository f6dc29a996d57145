"""Folding SmoothQuant's activation division into the layer that produces the activation.

``smooth`` divides channel j of a site's input by ``s_j`` (and multiplies the weight's column j
by it).  Done literally that is one extra ``mul`` per call; but when the input is the output of
a float ``linear``/``conv1d`` (optionally through a ``relu``, which commutes with a positive
scale: ``relu(y) / s = relu(y / s)``), dividing that layer's output channels -- rows of its
weight and its bias -- computes the same values for free.  The producer's own quantization is
unaffected: its per-output-channel (and per-group) weight scales follow the rows, and its input
statistics do not change.

A fold is only made where nothing else can tell: the site is the only reader of its input (and
the relu the only reader of the producer's output), and the producer's weight and bias are read
by that producer alone.  Everything else keeps the run-time ``mul``.

Cell inputs fold too (:func:`plan_cell_folds`): an ``rnn`` whose input comes from such a producer
and whose first layer reads ``x`` through one projection only gets that projection's division
folded into the producer -- one factor for both directions (they read the same ``x``), computed
from their weights side by side.  Without it the division would be a ``mul`` at every step, and
a quantized LSTM could not run as the fused kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from rnnc.ir import Graph, Node
from rnnc.ir.rnn import rnn_layout, weight_slots
from rnnc.quant.calibrate import OBSERVED, Stats
from rnnc.quant.config import QuantConfig
from rnnc.quant.outliers import smoothing_factors


@dataclass
class Folds:
    """Sites whose division is folded (site -> (producer node output, ``s``)) and the rescaled weights."""

    sites: dict[str, tuple[str, torch.Tensor]] = field(default_factory=dict)
    weights: dict[str, torch.Tensor] = field(default_factory=dict)


def _param_readers(graph: Graph) -> dict[str, int]:
    count: dict[str, int] = {}
    for node in graph.nodes:
        for i in node.inputs:
            if i:
                count[i] = count.get(i, 0) + 1
    return count


def _producer(node_of: dict[str, Node], readers: dict[str, list[Node]], x: str) -> Node | None:
    """The linear/conv1d whose output (directly or through one relu) is ``x`` and nothing else's."""
    node = node_of.get(x)
    if node is not None and node.op == "relu":
        if len(readers.get(node.inputs[0], [])) != 1:
            return None
        node = node_of.get(node.inputs[0])
    if node is None or node.op not in OBSERVED or len(node.outputs) != 1:
        return None
    if node.op == "conv1d" and node.attr("groups") != 1:
        return None
    return node


def _graph_maps(graph: Graph) -> tuple[dict[str, Node], dict[str, list[Node]], set[str], dict[str, int]]:
    node_of = {o: n for n in graph.nodes for o in n.outputs}
    readers: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            if i:
                readers.setdefault(i, []).append(n)
    return node_of, readers, {v for _, v in graph.outputs}, _param_readers(graph)


def _foldable_producer(graph: Graph, maps: tuple, x: str) -> Node | None:
    """The producer of ``x`` a division can be folded into (see the module docstring), or None."""
    node_of, readers, outputs, uses = maps
    if len(readers.get(x, [])) != 1 or x in outputs:
        return None
    prod = _producer(node_of, readers, x)
    if prod is None or prod.outputs[0] in outputs:
        return None
    params = set(graph.param_names)
    w_name = prod.inputs[1]
    b_name = prod.inputs[2] if len(prod.inputs) > 2 else ""
    if w_name not in params or uses.get(w_name) != 1 or (b_name and (b_name not in params or uses.get(b_name) != 1)):
        return None
    return prod


def _rescale_producer(prod: Node, s: torch.Tensor, weights: dict[str, Any], out: dict[str, torch.Tensor]) -> None:
    """Divide ``prod``'s output channels (weight rows, bias) by ``s`` into ``out``."""
    w_name = prod.inputs[1]
    src = out.get(w_name, weights[w_name])
    out[w_name] = src / s.view(-1, *([1] * (src.dim() - 1))).to(src.dtype)
    if len(prod.inputs) > 2 and prod.inputs[2]:
        b = prod.inputs[2]
        out[b] = out.get(b, weights[b]) / s.to(weights[b].dtype)


def plan_cell_folds(graph: Graph, weights: dict[str, Any], stats: Stats, cfg: QuantConfig,
                    candidate: Any) -> tuple[dict[str, tuple[str, str, torch.Tensor]], dict[str, torch.Tensor]]:
    """Per rnn node (by its first output): (the first layer's input-projection site in the cell
    step, the producer it folds into, ``s``), and the producers' rescaled weights.  ``weights``
    holds every param of ``graph`` (cell weights included); ``candidate(name, site)`` says
    whether the projection (its weight's program name, the site's full name) is smoothed at all."""
    folds: dict[str, tuple[str, str, torch.Tensor]] = {}
    rescaled: dict[str, torch.Tensor] = {}
    if cfg.outliers != "smooth" or not cfg.fold:
        return folds, rescaled
    maps = _graph_maps(graph)
    for node in graph.nodes:
        if node.op != "rnn":
            continue
        prod = _foldable_producer(graph, maps, node.inputs[0])
        if prod is None:
            continue
        attrs = node.attr_dict
        cells, dirs, _ = rnn_layout(attrs)
        step = cells[0].step
        x = step.input_names[0]
        users = [n for n in step.nodes if x in n.inputs]
        if len(users) != 1 or users[0].op != "linear" or users[0].inputs[0] != x or x in users[0].inputs[1:]:
            continue
        site, w_param = users[0].outputs[0], users[0].inputs[1]
        head = 2 + len(cells[0].states)
        names = {d: node.inputs[head + i] for i, (k, d, p) in enumerate(weight_slots(attrs)) if k == 0 and p == w_param}
        sites = [f"{node.outputs[0]}/l0.{'rev' if d else 'fwd'}/{site}" for d in range(dirs)]
        st = [stats.get(s) for s in sites]
        if len(names) != dirs or any(t is None or t.absmax is None for t in st) or \
                not all(candidate(names[d], sites[d]) for d in range(dirs)):
            continue
        w = torch.cat([weights[names[d]].detach().to(torch.float32) for d in range(dirs)])
        absmax = torch.stack([t.absmax for t in st]).amax(0)
        if weights[prod.inputs[1]].shape[0] != w.shape[1] or absmax.numel() != w.shape[1]:
            continue
        s = smoothing_factors(absmax, w, cfg.alpha)
        folds[node.outputs[0]] = (site, prod.outputs[0], s)
        _rescale_producer(prod, s, weights, rescaled)
    return folds, rescaled


def plan_folds(graph: Graph, weights: dict[str, Any], stats: Stats, cfg: QuantConfig,
               candidate: Any) -> Folds:
    """Which smoothed sites of ``graph`` (top level) fold into their producer, with the factors
    computed once from the original weights (a producer may itself be a smoothed site)."""
    folds = Folds()
    if cfg.outliers != "smooth" or not cfg.fold:
        return folds
    maps = _graph_maps(graph)
    node_of = maps[0]
    for node in graph.nodes:
        site = node.outputs[0]
        st = stats.get(site)
        if not candidate(node, site) or st is None or st.absmax is None:
            continue
        prod = _foldable_producer(graph, maps, node.inputs[0])
        if prod is None:
            continue
        w = weights[node.inputs[1]].detach().to(torch.float32)
        if weights[prod.inputs[1]].shape[0] != w.shape[1] or st.absmax.numel() != w.shape[1]:
            continue
        if any(s == site or p == prod.outputs[0] for s, (p, _) in folds.sites.items()):
            continue
        folds.sites[site] = (prod.outputs[0], smoothing_factors(st.absmax, w, cfg.alpha))
    for prod_out, s in folds.sites.values():  # then rescale the producers' output channels
        _rescale_producer(node_of[prod_out], s, weights, folds.weights)
    return folds
