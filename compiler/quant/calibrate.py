"""Calibration: run a Program on sample inputs and record per-channel statistics of every
activation that feeds a ``linear`` or ``conv1d`` (the ops that become integer kernels).

This is an observing copy of the interpreter's loop, kept apart so the normal interpreter pays
nothing for it.  Inside ``rnn`` nodes the cell's step graph runs once per time step with each
(layer, direction)'s own weights, so the recurrent input ``h_{t-1}`` (and any state feeding a
projection) is observed at every step, per layer and direction: their weights differ, so do
their quantization parameters.  Sites are named ``node`` at top level and
``rnn_node/l{layer}.{fwd|rev}/node`` inside cells (``node`` = the op's first output).

``hessian=True`` also accumulates, per ``linear`` site, the input second-moment matrix
``H = sum_n x_n x_n^T`` (``[in, in]``, float64) that GPTQ's error-compensating rounding needs
(``gptq.py``).  It is opt-in: a dense matrix per site (and an extra GEMM per site per step) is
wasted work for round-to-nearest, which needs only the per-channel ranges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from rnnc.ir import Graph, Program
from rnnc.ir.ops import OPS
from rnnc.ir.rnn import rnn_layout

#: op -> axis of its first input that holds the channels a weight column multiplies
OBSERVED = {"linear": -1, "conv1d": 1}
_SAMPLE_CAP = 200_000  # |x| values kept per site for percentiles (a random subsample beyond this)


@dataclass
class ChannelStats:
    """Running per-channel statistics of one activation site."""

    absmax: torch.Tensor | None = None
    abssum: torch.Tensor | None = None
    count: int = 0
    sample: list[torch.Tensor] = field(default_factory=list)
    hessian: torch.Tensor | None = None  # sum of x x^T over every observed row (linear sites, opt-in)
    _kept: int = 0

    def update(self, x: torch.Tensor, axis: int, hessian: bool = False) -> None:
        rows = x.detach().movedim(axis, -1).reshape(-1, x.shape[axis]).to(torch.float64)
        if rows.shape[0] == 0:
            return
        if hessian:
            h = rows.T @ rows
            self.hessian = h if self.hessian is None else self.hessian + h
        flat = rows.abs()
        amax, asum = flat.amax(dim=0), flat.sum(dim=0)
        self.absmax = amax if self.absmax is None else torch.maximum(self.absmax, amax)
        self.abssum = asum if self.abssum is None else self.abssum + asum
        self.count += flat.shape[0]
        values = flat.reshape(-1).to(torch.float32)
        if values.numel() > _SAMPLE_CAP // 4:  # bounded memory: subsample big batches
            values = values[torch.randint(values.numel(), (_SAMPLE_CAP // 4,), generator=_GEN)]
        self.sample.append(values)
        self._kept += values.numel()
        if self._kept > _SAMPLE_CAP:
            merged = torch.cat(self.sample)
            self.sample = [merged[torch.randperm(merged.numel(), generator=_GEN)[:_SAMPLE_CAP // 2]]]
            self._kept = self.sample[0].numel()

    @property
    def mean_abs(self) -> torch.Tensor:
        assert self.abssum is not None
        return self.abssum / max(self.count, 1)

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile of |x| over the whole tensor (from the kept subsample)."""
        values = torch.cat(self.sample)
        return float(torch.quantile(values, p / 100.0)) if values.numel() else 0.0

    def outlier_ratio(self) -> torch.Tensor:
        """Per channel: max |x| over the median of all channels' max |x| (1 = typical)."""
        assert self.absmax is not None
        med = float(self.absmax.median())
        return self.absmax / (med if med > 0 else 1.0)


_GEN = torch.Generator().manual_seed(0)
Stats = dict[str, ChannelStats]


def _observe(stats: Stats, site: str, x: torch.Tensor, axis: int, hessian: bool = False) -> None:
    stats.setdefault(site, ChannelStats()).update(x, axis, hessian)


def observe_graph(graph: Graph, env: Mapping[str, Any], stats: Stats, prefix: str = "",
                  hessian: bool = False) -> tuple[Any, ...]:
    """``run_graph`` that records the inputs of observed ops under ``prefix + node`` (and, with
    ``hessian``, the input second moments of ``linear`` sites)."""
    values: dict[str, Any] = dict(env)
    for node in graph.nodes:
        op = OPS[node.op]
        args = [values[i] if i else None for i in node.inputs]
        while args and args[-1] is None and len(args) > op.min_inputs:
            args.pop()
        if node.op in OBSERVED:
            _observe(stats, prefix + node.outputs[0], args[0], OBSERVED[node.op], hessian and node.op == "linear")
        if node.op == "rnn":
            outs = _observe_rnn(node.attr_dict, args, stats, prefix + node.outputs[0], hessian)
        else:
            outs = op.evaluate(args, node.attr_dict)
        values.update(zip(node.outputs, outs, strict=True))
    return tuple(values[v] for _, v in graph.outputs)


def _observe_rnn(attrs: dict[str, Any], xs: list[Any], stats: Stats, site: str,
                 hessian: bool = False) -> tuple[Any, ...]:
    """The rnn op's time loop with each step observed; packed steps past a sample's length are
    left out of the statistics (they are padding, not data)."""
    cells, dirs, _ = rnn_layout(attrs)
    x = xs[0] if attrs["batch_first"] else xs[0].transpose(0, 1)
    lengths = xs[1] if len(xs) > 1 else None
    n_states = len(cells[0].states)
    inits = (list(xs[2:2 + n_states]) + [None] * n_states)[:n_states]
    weights = list(xs[2 + n_states:])
    batch, steps = x.shape[0], x.shape[1]
    finals: list[list[Any]] = [[] for _ in range(n_states)]
    layer_in, at = x, 0
    for k, cell in enumerate(cells):
        outs = []
        n_p = len(cell.param_names)
        for d in range(dirs):
            params = dict(zip(cell.param_names, weights[at:at + n_p], strict=True))
            at += n_p
            state = [inits[i][k * dirs + d] if inits[i] is not None else torch.zeros((batch, *s.shape))
                     for i, s in enumerate(cell.states)]
            ys: list[Any] = [None] * steps
            for t in (range(steps - 1, -1, -1) if d else range(steps)):
                live = None if lengths is None else lengths > t
                env = {"x": layer_in[:, t], **dict(zip(cell.state_names, state, strict=True)), **params}
                step_stats: Stats = {}
                res = observe_graph(cell.step, _rows(env, live, cell.step), step_stats, "", hessian)
                for name, st in step_stats.items():  # merge this step's stats into the site's
                    _merge(stats, f"{site}/l{k}.{'rev' if d else 'fwd'}/{name}", st)
                y, new = res[0], list(res[1:])
                if live is not None:
                    y, new = _unrows(y, live), [_unrows(n, live, o) for n, o in zip(new, state, strict=True)]
                ys[t], state = y, new
            outs.append(torch.stack(ys, dim=1))
            for i in range(n_states):
                finals[i].append(state[i])
        layer_in = torch.cat(outs, dim=-1) if dirs > 1 else outs[0]
    y = layer_in if attrs["batch_first"] else layer_in.transpose(0, 1)
    return (y, *(torch.stack(f, dim=0) for f in finals))


def _rows(env: dict[str, Any], live: torch.Tensor | None, step: Graph) -> dict[str, Any]:
    """Only the live samples' rows of the step inputs (params pass through)."""
    if live is None:
        return env
    inputs = set(step.input_names)
    return {k: (v[live] if k in inputs else v) for k, v in env.items()}


def _unrows(value: torch.Tensor, live: torch.Tensor, old: torch.Tensor | None = None) -> torch.Tensor:
    out = torch.zeros((live.shape[0], *value.shape[1:]), dtype=value.dtype) if old is None else old.clone()
    out[live] = value
    return out


def _merge(stats: Stats, site: str, new: ChannelStats) -> None:
    old = stats.get(site)
    if old is None:
        stats[site] = new
        return
    assert old.absmax is not None and new.absmax is not None and old.abssum is not None
    old.absmax = torch.maximum(old.absmax, new.absmax)
    old.abssum = old.abssum + (new.abssum if new.abssum is not None else 0)
    old.count += new.count
    if new.hessian is not None:
        old.hessian = new.hessian if old.hessian is None else old.hessian + new.hessian
    old.sample.extend(new.sample)
    old._kept += new._kept
    if old._kept > _SAMPLE_CAP:
        merged = torch.cat(old.sample)
        old.sample = [merged[torch.randperm(merged.numel(), generator=_GEN)[:_SAMPLE_CAP // 2]]]
        old._kept = old.sample[0].numel()


def calibrate(program: Program, batches: list[tuple[torch.Tensor, ...]], progress: bool = True,
              hessian: bool = False) -> Stats:
    """Per-site channel statistics over every calibration batch (validated by ``data.py``);
    ``hessian``: also the input second-moment matrices of ``linear`` sites (for ``gptq=True``)."""
    from tqdm import tqdm

    stats: Stats = {}
    g = program.graph
    with torch.no_grad():
        for batch in tqdm(batches, desc="calibrating", unit="batch", disable=not progress):
            env = dict(zip(g.input_names, batch, strict=True))
            env.update({p: program.weights[p] for p in g.param_names})
            observe_graph(g, env, stats, hessian=hessian)
    return stats
