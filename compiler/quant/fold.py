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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from rnnc.ir import Graph, Node
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


def plan_folds(graph: Graph, weights: dict[str, Any], stats: Stats, cfg: QuantConfig,
               candidate: Any) -> Folds:
    """Which smoothed sites of ``graph`` (top level) fold into their producer, with the factors
    computed once from the original weights (a producer may itself be a smoothed site)."""
    folds = Folds()
    if cfg.outliers != "smooth" or not cfg.fold:
        return folds
    node_of = {o: n for n in graph.nodes for o in n.outputs}
    readers: dict[str, list[Node]] = {}
    for n in graph.nodes:
        for i in n.inputs:
            if i:
                readers.setdefault(i, []).append(n)
    outputs = {v for _, v in graph.outputs}
    uses = _param_readers(graph)
    params = set(graph.param_names)
    for node in graph.nodes:
        site = node.outputs[0]
        st = stats.get(site)
        if not candidate(node, site) or st is None or st.absmax is None:
            continue
        x = node.inputs[0]
        if len(readers.get(x, [])) != 1 or x in outputs:
            continue
        prod = _producer(node_of, readers, x)
        if prod is None or prod.outputs[0] in outputs:
            continue
        w_name = prod.inputs[1]
        b_name = prod.inputs[2] if len(prod.inputs) > 2 else ""
        if w_name not in params or uses.get(w_name) != 1 or \
                (b_name and (b_name not in params or uses.get(b_name) != 1)):
            continue
        w = weights[node.inputs[1]].detach().to(torch.float32)
        if weights[w_name].shape[0] != w.shape[1] or st.absmax.numel() != w.shape[1]:
            continue
        if any(s == site or p == prod.outputs[0] for s, (p, _) in folds.sites.items()):
            continue
        folds.sites[site] = (prod.outputs[0], smoothing_factors(st.absmax, w, cfg.alpha))
    for prod_out, s in folds.sites.values():  # then rescale the producers' output channels
        prod = node_of[prod_out]
        w_name = prod.inputs[1]
        src = folds.weights.get(w_name, weights[w_name])
        folds.weights[w_name] = src / s.view(-1, *([1] * (src.dim() - 1))).to(src.dtype)
        if len(prod.inputs) > 2 and prod.inputs[2]:
            b = prod.inputs[2]
            folds.weights[b] = folds.weights.get(b, weights[b]) / s.to(weights[b].dtype)
    return folds
