"""The quantizing rewrite: a new Program whose ``linear``/``conv1d`` nodes (top level and inside
every cell's step graph) are ``qlinear``/``qconv1d`` with int8/int4 weights.

The Program stays immutable: top-level nodes are rebuilt in order, ``rnn`` nodes get new cells
(their step graphs rewritten, new per-direction params) and new weight inputs; weights that no
node reads any more are dropped.  Value names of the original graph are kept, so a site's name
in the report is the name of the value in ``Program.text()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from rnnc.ir import Cell, Graph, Node, Program, TensorType, Weights
from rnnc.ir.graph import freeze_attrs
from rnnc.ir.rnn import rnn_layout
from rnnc.ir.types import dtype_of_torch
from rnnc.quant.calibrate import OBSERVED, Stats
from rnnc.quant.config import QuantConfig, QuantReport, named
from rnnc.quant.fold import Folds, plan_cell_folds, plan_folds
from rnnc.quant.plan import KEEP_IDX, KEEP_W, ROT, SCALE, SMOOTH, XSCALE, Q, SitePlan, plan_site

_QOP = {"linear": "qlinear", "conv1d": "qconv1d"}


def _ttype(t: torch.Tensor) -> TensorType:
    return TensorType(tuple(t.shape), dtype_of_torch(t.dtype))


def _candidate(node: Node, params: set[str], cfg: QuantConfig, site: str) -> bool:
    """A weight-carrying op whose weight (and bias) are params, not excluded by ``skip``."""
    if node.op not in OBSERVED or len(node.inputs) < 2 or node.inputs[1] not in params:
        return False
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    if bias and bias not in params:
        return False
    if node.types[0].dtype != "float32":
        return False
    return node.inputs[1] not in cfg.skip and site not in cfg.skip


def _emit(node: Node, plan: SitePlan, pnames: dict[str, str], x_type: TensorType) -> list[Node]:
    """Nodes replacing ``node``: optional smoothing/rotation, then the quantized op."""
    out = node.outputs[0]
    nodes: list[Node] = []
    x = node.inputs[0]
    if plan.smooth and not plan.folded:
        nodes.append(Node("mul", (x, pnames[SMOOTH]), (f"{out}.smoothed",), (x_type,)))
        x = f"{out}.smoothed"
    if plan.rotate:
        nodes.append(Node("matmul", (x, pnames[ROT]), (f"{out}.rotated",), (x_type,)))
        x = f"{out}.rotated"
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    ins = [x, pnames[Q], pnames[SCALE], bias, pnames.get(XSCALE, ""), pnames.get(KEEP_IDX, ""),
           pnames.get(KEEP_W, "")]
    while ins[-1] == "":
        ins.pop()
    attrs = {**node.attr_dict, "act": plan.act}
    if plan.act == "static" and plan.reports[0].clip_scale is not None and not plan.clipped:
        attrs["xrange"] = "max"  # x_scale covers the calibrated max: the ONNX int8 chains may read it
    if node.op == "linear":
        attrs["bits"] = plan.reports[0].bits
    nodes.append(Node(_QOP[node.op], tuple(ins), node.outputs, node.types, freeze_attrs(attrs)))
    return nodes


def _fresh(base: str, taken: set[str]) -> str:
    name, k = base, 1
    while name in taken:
        name, k = f"{base}.{k}", k + 1
    taken.add(name)
    return name


def _rewrite_graph(graph: Graph, weights: list[dict[str, Any]], stats: Stats, cfg: QuantConfig,
                   report: QuantReport, prefixes: list[str], param_names: list[dict[str, str]] | None,
                   folds: Folds | None = None) -> tuple[Graph, list[dict[str, Any]]]:
    """Rewrite one graph for each weight binding (``weights[d]``: param name -> tensor).

    Returns the new graph and, per binding, its new params' tensors.  ``param_names[d]`` maps the
    graph's params to program-level names (for the report); ``None`` at top level.
    """
    params = set(graph.param_names)
    states = set(graph.input_names[1:]) if param_names is not None else set()  # a cell step: x, *states
    types = graph.value_types()
    taken = set(types)
    nodes: list[Node] = []
    new_params: list[tuple[str, TensorType]] = []
    new_tensors: list[dict[str, Any]] = [{} for _ in weights]
    replaced: set[str] = set()
    for node in graph.nodes:
        site = node.outputs[0]
        if not _candidate(node, params, cfg, site) or weights[0][node.inputs[1]].numel() < cfg.min_weight:
            nodes.append(node)
            continue
        w_name = node.inputs[1]
        sites = [p + site for p in prefixes]
        names = [(m or {}).get(w_name, w_name) for m in (param_names or [None] * len(weights))]
        if {*names, *sites} & set(cfg.skip):  # program-level names of cell weights / prefixed cell sites
            nodes.append(node)
            continue
        fold = folds.sites.get(site) if folds is not None else None
        plan = plan_site(node.op, [w[w_name] for w in weights], [stats.get(s) for s in sites], cfg, sites, names,
                         recurrent=node.inputs[0] in states, smooth=[fold[1]] * len(weights) if fold else None)
        if fold:  # plan_folds chose only sites that smooth, and already rescaled their producers
            assert plan.smooth, f"{site}: folded smoothing without a smoothed plan"
            plan.folded = True
            for t, r in zip(plan.tensors, plan.reports, strict=True):
                r.q_bytes -= 4 * t.pop(SMOOTH).numel()  # no run-time divisor is stored
                r.note = (r.note + f" smoothing folded into {fold[0]}").strip()
        report.sites.extend(plan.reports)
        base = w_name if w_name not in replaced else f"{w_name}.{site}"
        replaced.add(w_name)
        pnames = {}
        for key, t in plan.tensors[0].items():
            shared = next((n for n, v in new_tensors[0].items() if v is t and all(
                new_tensors[d][n] is plan.tensors[d][key] for d in range(len(weights)))), None)
            if shared is not None:  # the same tensor (a cached Hadamard matrix): one param
                pnames[key] = shared
                continue
            pnames[key] = _fresh(f"{base}.{key}", taken)
            new_params.append((pnames[key], _ttype(t)))
            for d, tensors in enumerate(plan.tensors):
                new_tensors[d][pnames[key]] = tensors[key]
        nodes.extend(_emit(node, plan, pnames, types[node.inputs[0]]))
    used = {i for n in nodes for i in n.inputs}
    kept_params = tuple((n, t) for n, t in graph.params if n in used or n not in replaced)
    new_graph = Graph(graph.name, graph.inputs, (*kept_params, *new_params), tuple(nodes), graph.outputs)
    for d, w in enumerate(weights):
        new_tensors[d].update({n: w[n] for n, _ in kept_params})
    return new_graph, new_tensors


def _sequence_input(step: Graph, per_dir: list[dict[str, Any]]) -> tuple[Graph, list[str]] | None:
    """``step`` with its input projections weight-only, when every use of the cell input ``x`` is a
    plain dynamic int8 ``qlinear``: the rnn then quantizes each layer's whole input sequence once
    (cell attr ``xquant="sequence"``) and the projections read those codes.  That is what
    onnxruntime's fused ``DynamicQuantizeLSTM`` does (an LSTM exports as that one kernel), and in
    a Scan it lets the projection run as one integer GEMM over all steps before the loop.
    Returns the new step and the projections' output names, or None."""
    x = step.input_names[0]
    uses = [n for n in step.nodes if x in n.inputs]
    if not uses:
        return None
    for q in uses:
        if q.op != "qlinear" or q.inputs[0] != x or x in q.inputs[1:] or q.attr("act") != "dynamic" \
                or q.attr("bits", 8) not in (7, 8) or len(q.inputs) > 4 \
                or any(d[q.inputs[2]].dim() != 1 for d in per_dir):
            return None  # static, kept channels, smoothing/rotation in front, int4 or group-wise, or x used raw
    plain = {id(q): dataclasses.replace(q, attrs=freeze_attrs({**q.attr_dict, "act": "none"})) for q in uses}
    return (dataclasses.replace(step, nodes=tuple(plain.get(id(n), n) for n in step.nodes)),
            [q.outputs[0] for q in uses])


def _same_tensor(a: Any, b: Any) -> bool:
    return a is b or (a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b)))


def _rewrite_rnn(node: Node, program_weights: Weights, stats: Stats, cfg: QuantConfig,
                 report: QuantReport, input_fold: tuple[str, str, torch.Tensor] | None = None,
                 taken: Mapping[str, Any] | None = None) -> tuple[Node, dict[str, Any]]:
    """New cells and weight inputs for one ``rnn`` node; returns it and its new weights.
    ``input_fold``: (first layer's input-projection site, producer, ``s``) from ``plan_cell_folds``;
    ``taken``: tensors earlier nodes already named (two nodes stepping one cell module -- a loop's
    peeled first step, a shared decoder cell -- see different activations, so their kept channels
    and scales may differ: a name another node gave a different tensor is made this node's own)."""
    attrs = node.attr_dict
    cells, dirs, _ = rnn_layout(attrs)
    n_states = len(cells[0].states)
    head, slots = list(node.inputs[:2 + n_states]), list(node.inputs[2 + n_states:])
    new_cells: list[Cell] = []
    inputs: list[str] = []
    tensors: dict[str, Any] = {}
    at = 0
    for k, cell in enumerate(cells):
        n_p = len(cell.param_names)
        bind = [dict(zip(cell.param_names, slots[at + d * n_p: at + (d + 1) * n_p], strict=True)) for d in range(dirs)]
        at += dirs * n_p
        ws = [{p: program_weights[n] for p, n in b.items()} for b in bind]
        tags = [f"l{k}.{'rev' if d else 'fwd'}" for d in range(dirs)]
        first_site = len(report.sites)
        folds = Folds(sites={input_fold[0]: input_fold[1:]}) if input_fold and k == 0 else None
        step, per_dir = _rewrite_graph(cell.step, ws, stats, cfg, report,
                                       [f"{node.outputs[0]}/{t}/" for t in tags], bind, folds)
        cell_attrs = {**dict(cell.attrs), "quant": cfg.label}
        wanted = cfg.sequence_scale == "all" or (cfg.sequence_scale == "lstm" and cell.kind == "lstm")
        seq = _sequence_input(step, per_dir) if wanted else None
        if seq is not None:
            step, cell_attrs["xquant"] = seq[0], "sequence"
            for r in report.sites[first_site:]:
                if any(r.site.endswith(f"/{proj}") for proj in seq[1]):
                    r.note = (r.note + " one input scale per sequence").strip()
        new_cell = dataclasses.replace(cell, step=step, attrs=freeze_attrs(cell_attrs))
        new_cells.append(new_cell if step is not cell.step else cell)
        for d in range(dirs):
            for p in step.param_names:
                base, _, suffix = p.rpartition(".")
                name = bind[d].get(p) or (f"{bind[d][base]}.{suffix}" if base in bind[d] else
                                          f"{node.outputs[0]}.{tags[d]}.{p}")
                same = next((n for n, v in tensors.items() if v is per_dir[d][p]), None)
                if same is not None and p.endswith(f".{ROT}"):  # one Hadamard matrix per width
                    name = same
                elif taken and name in taken and not _same_tensor(taken[name], per_dir[d][p]):
                    name = f"{node.outputs[0]}.{tags[d]}.{p}"
                inputs.append(name)
                tensors[name] = per_dir[d][p]
    new_attrs = {**attrs, "cells": tuple(new_cells)}
    return dataclasses.replace(node, inputs=(*head, *inputs), attrs=freeze_attrs(new_attrs)), tensors


def quantize_program(program: Program, stats: Stats, cfg: QuantConfig) -> tuple[Program, QuantReport]:
    """The quantized Program (verified) and the per-site report."""
    cfg.check()
    report = QuantReport(cfg)
    g = program.graph
    weights = {n: program.weights[n] for n in g.param_names}

    float_acts = (*cfg.weight_only, *cfg.int4_weights)  # sites whose activations stay float: nothing to fold

    def cell_candidate(name: str, site: str) -> bool:
        return not {name, site} & set(cfg.skip) and not named(float_acts, [name, site]) and \
            weights[name].numel() >= cfg.min_weight

    input_folds, rescaled = plan_cell_folds(g, weights, stats, cfg, cell_candidate)
    weights.update(rescaled)
    rnn_weights: dict[str, Any] = {}
    top_nodes: list[Node] = []
    for node in g.nodes:
        if node.op == "rnn":
            new, tensors = _rewrite_rnn(node, program.weights, stats, cfg, report, input_folds.get(node.outputs[0]),
                                        rnn_weights)
            rnn_weights.update(tensors)
            top_nodes.append(new)
        else:
            top_nodes.append(node)
    staged = Graph(g.name, g.inputs, g.params, tuple(top_nodes), g.outputs)
    params = set(staged.param_names)
    folds = plan_folds(staged, weights, stats, cfg, lambda n, site: _candidate(n, params, cfg, site) and
                       weights[n.inputs[1]].numel() >= cfg.min_weight and
                       not named(float_acts, [n.inputs[1], site]))
    weights.update(folds.weights)
    new_graph, per = _rewrite_graph(staged, [weights], stats, cfg, report, [""], None, folds)
    types = dict(new_graph.params)
    types.update({n: _ttype(t) for n, t in rnn_weights.items()})
    all_weights = {**per[0], **rnn_weights}
    order = [*(n for n, _ in new_graph.params), *rnn_weights]
    used = {i for n in new_graph.nodes for i in n.inputs}
    kept = tuple(dict.fromkeys((n, types[n]) for n in order if n in used))
    final = Graph(g.name, g.inputs, kept, new_graph.nodes, g.outputs)
    out = Program(final, Weights({n: all_weights[n] for n, _ in kept}), source=program.source)
    return out.verify(), report
