"""Forward-mode differentiation of a cell's step graph in the IR: the graph of its Jacobian.

Why: parallel-in-time evaluation (``rnnc.lower.newton``) linearises the cell around a guess of
every state, so it needs ``J_t = ∂s_t/∂s_{t-1}`` at every step of every row.  Derived as an IR
graph -- not by differentiating the interpreter's torch calls -- the Jacobian is one more graph
like the step itself: printed, verified, run by the interpreter in one batched call over all
``T*B`` rows, and open to every backend's renderer; a user cell gets its Jacobian from the same
per-op rules as LSTM or GRU.

How: forward mode along all ``D = Σ|s|`` directions of the flattened state at once.  The tangent
of a value ``v [B, *rest]`` that depends on a state is a value ``[B, D, *rest]``: ``v``'s
derivative along each unit direction (axis 1 indexes the direction).  The state inputs are
seeded with slices of the identity; one rule per op maps its inputs' tangents to its outputs';
values that depend on no state (``x``'s projections, weight-only terms) have no tangent and cost
nothing.  Each rule is the textbook derivative written with IR ops; a primal factor meets a
tangent by gaining the direction axis (``unsqueeze(p, 1)`` when ``p`` has the batch axis, plain
right-aligned broadcasting when it is a weight-only value).  An op with no rule whose inputs carry
a tangent, or one that mixes the batch axis (a reduction, reshape or transpose over axis 0), is
refused by name: rows must stay independent for a Jacobian per row to exist.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rnnc.errors import UnsupportedError
from rnnc.ir.builder import GraphBuilder, Value
from rnnc.ir.graph import Cell, Graph, Node
from rnnc.ir.ops import _axis

#: the output of a Jacobian graph after the step's own outputs: ``[B, D, D]``, row i = ∂s_i/∂s
JACOBIAN = "jacobian"
SEED_PREFIX = "jvp_seed_"


class NoDerivative(UnsupportedError):
    """The step graph has an op the forward-mode pass cannot differentiate (named in the message)."""


@dataclass(frozen=True)
class JacobianGraph:
    """The step graph extended with its Jacobian: inputs and outputs of ``cell.step`` plus the
    output :data:`JACOBIAN`; its params are the step's plus one identity seed per state
    (:meth:`seeds` gives their values, which depend on the state shapes only)."""

    graph: Graph
    dim: int
    state_shapes: tuple[tuple[int, ...], ...]
    state_names: tuple[str, ...]

    def seeds(self, dtype: Any = None, device: Any = None) -> dict[str, Any]:
        """``jvp_seed_<state>``: ``[1, D, *shape]``, the identity's columns that state occupies."""
        import torch

        eye = torch.eye(self.dim, dtype=dtype or torch.float32, device=device)
        out, at = {}, 0
        for name, shape in zip(self.state_names, self.state_shapes, strict=True):
            n = math.prod(shape)
            out[SEED_PREFIX + name] = eye[:, at:at + n].reshape(1, self.dim, *shape).contiguous()
            at += n
        return out


def _flat_dim(cell: Cell) -> int:
    for st in cell.states:
        if not all(isinstance(d, int) for d in st.shape):
            raise NoDerivative(f"{cell.kind}: state {st.name} has symbolic shape {st.shape}; a Jacobian "
                               f"needs the state's size")
    return sum(math.prod(st.shape) for st in cell.states)


def jacobian_graph(cell: Cell) -> JacobianGraph:
    """Differentiate ``cell.step`` with respect to its states (forward mode, see the module doc).

    Raises :class:`NoDerivative` naming the op when a state flows through an op without a rule."""
    dim = _flat_dim(cell)
    step = cell.step
    b = GraphBuilder(f"{step.name}_jvp")
    fw = _Forward(b, dim, cell.kind, step.inputs[0][1].shape[0] if step.inputs[0][1].shape else None)
    for name, t in step.inputs:
        fw.primal[name] = b.input(name, t.shape, t.dtype)
        fw.batched.add(name)
    for name, t in step.params:
        fw.primal[name] = b.param(name, t.shape, t.dtype)
    for st in cell.states:
        p = fw.primal[st.name]
        seed = b.param(SEED_PREFIX + st.name, (1, dim, *p.shape[1:]), p.dtype)
        fw.tangent[st.name] = b.expand_dyn(seed, p, shape=([0, 0], *[-1] * p.type.rank))
    for node in step.nodes:
        fw.node(node)
    outs = [(n, fw.primal[v]) for n, v in step.outputs]
    columns = []
    for (_, v), st in zip(step.outputs[1:], cell.states, strict=True):
        n = math.prod(st.shape)
        t = fw.tangent.get(v) or fw.zeros(fw.primal[v])
        columns.append(b.reshape(fw.fit(t, fw.primal[v]), shape=(0, dim, n)))
    jt = columns[0] if len(columns) == 1 else b.concat(*columns, axis=2)  # [B, D_in, D_out]
    outs.append((JACOBIAN, b.transpose(jt, perm=(0, 2, 1))))
    return JacobianGraph(b.build(outs), dim, tuple(tuple(st.shape) for st in cell.states), cell.state_names)


class _Forward:
    """The forward-mode rewrite: primal values copied into the new graph, tangents beside them."""

    def __init__(self, b: GraphBuilder, dim: int, kind: str, batch: Any = None) -> None:
        self.b, self.dim, self.kind, self.batch = b, dim, kind, batch
        self.primal: dict[str, Value] = {}
        self.tangent: dict[str, Value | None] = {}
        self.batched: set[str] = set()  # new values with the batch axis first (inputs, what they reach)
        self._producers: list[Node] = []  # the new graph's nodes already classified
        self._seen: set[str] = set()

    # ------------------------------------------------------------------ helpers
    def refuse(self, node: Node, why: str) -> NoDerivative:
        return NoDerivative(f"{self.kind}: cannot differentiate {node.label} with respect to the state: {why}")

    def is_batched(self, v: Value) -> bool:
        """Whether ``v`` has the batch axis first.  With a symbolic batch (every traced cell) that
        is its first dim being the batch symbol: an ``x``-only value reduced or indexed over the
        batch (``mean(x, 0)``, ``x[0]``) has not, and broadcasts like a weight.  With a fixed
        batch size: computed from an input (values a rule builds are looked up through their
        producers in the new graph)."""
        if isinstance(self.batch, str):
            return bool(v.shape) and v.shape[0] == self.batch
        if v.name not in self._seen:
            for node in self.b.nodes[len(self._producers):]:
                self._producers.append(node)
                if any(i in self.batched for i in node.inputs if i):
                    self.batched.update(node.outputs)
                self._seen.update(node.outputs)
        return v.name in self.batched

    def lift(self, v: Value) -> Value:
        """A primal factor shaped to broadcast against tangents ``[B, D, ...]``."""
        return self.b.unsqueeze(v, axis=1) if self.is_batched(v) else v

    def scale(self, factor: Value, t: Value | None) -> Value | None:
        return None if t is None else self.lift(factor) * t

    @staticmethod
    def plus(a: Value | None, c: Value | None) -> Value | None:
        if a is None:
            return c
        return a if c is None else a + c

    def expected(self, primal: Value) -> tuple[Any, ...]:
        return (primal.shape[0], self.dim, *primal.shape[1:])

    def fit(self, t: Value, primal: Value) -> Value:
        """``t`` broadcast to the tangent shape of ``primal`` (a tangent from a smaller operand)."""
        want = self.expected(primal)
        if tuple(t.shape) == want:
            return t
        if t.type.rank != len(want):
            raise NoDerivative(f"{self.kind}: a tangent of shape {t.shape} cannot stand for a value of shape "
                               f"{primal.shape}")
        entries: list[Any] = []
        for i, (have, need) in enumerate(zip(t.shape, want, strict=True)):
            if have == need:
                entries.append(-1)
            elif isinstance(need, int):
                entries.append(need)
            else:
                entries.append([0, 0 if i == 0 else i - 1])
        return self.b.expand_dyn(t, primal, shape=tuple(entries))

    def zeros(self, primal: Value) -> Value:
        shape = [[0, 0], self.dim, *[d if isinstance(d, int) else [0, i + 1] for i, d in enumerate(primal.shape[1:])]]
        return self.b.full_dyn(primal, shape=tuple(shape), value=0.0, dtype=primal.dtype)

    def one(self, like: Value) -> Value:
        return self.b.const(1.0, like.dtype)

    def mask(self, cond: Value, like: Value) -> Value:
        return self.b.cast(cond, dtype=like.dtype)

    # ------------------------------------------------------------------ the pass
    def node(self, n: Node) -> None:
        ins = [self.primal[i] if i else None for i in n.inputs]
        outs = self.b.op(n.op, *ins, names=n.outputs, **n.attr_dict)
        outs = outs if isinstance(outs, tuple) else (outs,)
        self.primal.update(zip(n.outputs, outs, strict=True))
        ts = [self.tangent.get(i) if i else None for i in n.inputs]
        if all(t is None for t in ts):
            return
        rule = _RULES.get(n.op)
        if rule is None:
            raise self.refuse(n, f"op {n.op} has no derivative rule (rnnc.ir.jvp)")
        result = rule(self, n, ins, ts, list(outs))
        for old, new, t in zip(n.outputs, outs, result, strict=True):
            self.tangent[old] = None if t is None else self.fit(t, new)

    def axis(self, n: Node, axis: int, rank: int) -> int:
        """The tangent's axis for the primal's ``axis`` (one further: after the direction axis)."""
        ax = _axis(axis, rank)
        if ax == 0:
            raise self.refuse(n, "it acts on the batch axis, so rows would not stay independent")
        return ax + 1


Rule = Callable[[_Forward, Node, list[Any], list[Any], list[Value]], list[Value | None]]

#: d f(x)/dx from the input x and the output y, written with IR ops
_UNARY_D: dict[str, Callable[[GraphBuilder, Value, Value], Value]] = {
    "sigmoid": lambda b, x, y: y * (1.0 - y),
    "tanh": lambda b, x, y: 1.0 - y * y,
    "exp": lambda b, x, y: y,
    "log": lambda b, x, y: b.reciprocal(x),
    "softplus": lambda b, x, y: b.sigmoid(x),
    "relu": lambda b, x, y: b.cast(b.gt(x, b.const(0.0, x.dtype)), dtype=x.dtype),
    "abs": lambda b, x, y: (b.cast(b.gt(x, b.const(0.0, x.dtype)), dtype=x.dtype)
                            - b.cast(b.lt(x, b.const(0.0, x.dtype)), dtype=x.dtype)),
    "sqrt": lambda b, x, y: 0.5 / y,
    "silu": lambda b, x, y: (lambda s: s * (1.0 + x * (1.0 - s)))(b.sigmoid(x)),
    "logsigmoid": lambda b, x, y: b.sigmoid(-x),
    "reciprocal": lambda b, x, y: -(y * y),
    "cos": lambda b, x, y: -b.sin(x),
    "sin": lambda b, x, y: b.cos(x),
}


def _unary(op: str) -> Rule:
    def rule(f: _Forward, n: Node, ins: list[Any], ts: list[Any], outs: list[Value]) -> list[Value | None]:
        if op == "neg":
            return [-ts[0]]
        return [f.scale(_UNARY_D[op](f.b, ins[0], outs[0]), ts[0])]

    return rule


def _binary(f: _Forward, n: Node, ins: list[Any], ts: list[Any], outs: list[Value]) -> list[Value | None]:
    (a, c), (ta, tc), y, b = ins, ts, outs[0], f.b
    if n.op == "add":
        return [f.plus(ta, tc)]
    if n.op == "sub":
        return [f.plus(ta, None if tc is None else -tc)]
    if n.op == "mul":
        return [f.plus(f.scale(c, ta), f.scale(a, tc))]
    if n.op == "div":
        return [f.plus(None if ta is None else ta / f.lift(c), f.scale(-(y / c), tc))]
    if n.op in ("max", "min"):  # ties split the derivative evenly, as torch does
        wins, loses = (b.gt(a, c), b.lt(a, c)) if n.op == "max" else (b.lt(a, c), b.gt(a, c))
        keep_a = (f.one(a) + f.mask(wins, a) - f.mask(loses, a)) * 0.5
        return [f.plus(f.scale(keep_a, ta), f.scale(f.one(a) - keep_a, tc))]
    if n.op == "pow":
        return [f.plus(f.scale(c * b.pow(a, c - 1.0), ta), f.scale(y * b.log(a), tc))]
    return [None]  # comparisons: boolean, no tangent


def _cast(f: _Forward, n: Node, ins: list[Any], ts: list[Any], outs: list[Value]) -> list[Value | None]:
    dtype = outs[0].dtype
    return [f.b.cast(ts[0], dtype=dtype) if dtype.startswith(("float", "bfloat")) else None]


def _where(f: _Forward, n: Node, ins: list[Any], ts: list[Any], outs: list[Value]) -> list[Value | None]:
    zero = f.b.const(0.0, outs[0].dtype)
    return [f.b.where(f.lift(ins[0]), ts[1] if ts[1] is not None else zero, ts[2] if ts[2] is not None else zero)]


def _clamp(f: _Forward, n: Node, ins: list[Any], ts: list[Any], outs: list[Value]) -> list[Value | None]:
    x, b = ins[0], f.b
    inside: Value = f.one(x)
    if n.attr("min") is not None:  # torch's convention: the bounds themselves pass the gradient
        inside = inside * (f.one(x) - f.mask(b.lt(x, b.const(float(n.attr("min")), x.dtype)), x))
    if n.attr("max") is not None:
        inside = inside * (f.one(x) - f.mask(b.gt(x, b.const(float(n.attr("max")), x.dtype)), x))
    return [f.scale(inside, ts[0])]


def _weights_only(f: _Forward, n: Node, ts: list[Any], what: str) -> None:
    if any(t is not None for t in ts[1:]):
        raise f.refuse(n, f"its {what} depends on the state")


def _linear(f: _Forward, n: Node, ins: list[Any], ts: list[Any], outs: list[Value]) -> list[Value | None]:
    _weights_only(f, n, ts, "weight or bias")
    return [f.b.linear(ts[0], ins[1])]


def _matmul(f: _Forward, n: Node, ins: list[Any], ts: list[Any], outs: list[Value]) -> list[Value | None]:
    (a, c), (ta, tc) = ins, ts
    ba, bc = f.is_batched(a), f.is_batched(c)
    # per-sample ranks torch.matmul would not broadcast row by row are refused
    if (ba and a.type.rank < 2) or (bc and c.type.rank < 3) or (ba and bc and a.type.rank < 3):
        raise f.refuse(n, f"matmul of {a.type.text()} and {c.type.text()} mixes the batch axis")
    return [f.plus(None if ta is None else f.b.matmul(ta, f.lift(c)),
                   None if tc is None else f.b.matmul(f.lift(a), tc))]


def _reduce(f: _Forward, n: Node, ins: list[Any], ts: list[Any], outs: list[Value]) -> list[Value | None]:
    x, b = ins[0], f.b
    axes = n.attr("axes")
    axes = tuple(range(x.type.rank)) if axes is None else (axes,) if isinstance(axes, int) else tuple(axes)
    taxes = tuple(f.axis(n, a, x.type.rank) for a in axes)
    keep = bool(n.attr("keepdim", False))
    if n.op in ("sum", "mean"):
        return [b.op(n.op, ts[0], axes=taxes, keepdim=keep)]
    # amax: the derivative of the maximum, shared equally by tied entries
    top = b.amax(x, axes=axes, keepdim=True)
    hit = f.one(x) - f.mask(b.lt(x, top), x)
    share = hit / b.sum(hit, axes=axes, keepdim=True)
    return [b.sum(f.lift(share) * ts[0], axes=taxes, keepdim=keep)]


def _softmax(f: _Forward, n: Node, ins: list[Any], ts: list[Any], outs: list[Value]) -> list[Value | None]:
    s, t = f.lift(outs[0]), ts[0]
    ax = f.axis(n, n.attr("axis"), ins[0].type.rank)
    return [s * (t - f.b.sum(s * t, axes=(ax,), keepdim=True))]


def _layer_norm(f: _Forward, n: Node, ins: list[Any], ts: list[Any], outs: list[Value]) -> list[Value | None]:
    _weights_only(f, n, ts, "scale or shift")
    x, b, nd = ins[0], f.b, int(n.attr("ndim"))
    if nd >= x.type.rank:
        raise f.refuse(n, "it normalises over the batch axis")
    axes = tuple(range(-nd, 0))  # trailing axes: the same for the primal and its tangent
    xc = x - b.mean(x, axes=axes, keepdim=True)
    rstd = b.reciprocal(b.sqrt(b.mean(xc * xc, axes=axes, keepdim=True) + float(n.attr("eps"))))
    xh = f.lift(xc * rstd)
    tc = ts[0] - b.mean(ts[0], axes=axes, keepdim=True)
    t = (tc - xh * b.mean(xh * tc, axes=axes, keepdim=True)) * f.lift(rstd)
    return [t * ins[1] if len(ins) > 1 and ins[1] is not None else t]


def _reshape(f: _Forward, n: Node, ins: list[Any], ts: list[Any], outs: list[Value]) -> list[Value | None]:
    shape = tuple(n.attr("shape"))
    x, y = ins[0], outs[0]
    if shape[0] not in (0, -1) or (shape[0] == -1 and -1 in shape[1:]) or x.shape[0] != y.shape[0]:
        raise f.refuse(n, f"reshape to {list(shape)} does not keep the batch axis first")
    return [f.b.reshape(ts[0], shape=(0, f.dim, *shape[1:]))]


def _transpose(f: _Forward, n: Node, ins: list[Any], ts: list[Any], outs: list[Value]) -> list[Value | None]:
    perm = tuple(n.attr("perm"))
    if perm[0] != 0:
        raise f.refuse(n, "it moves the batch axis")
    return [f.b.transpose(ts[0], perm=(0, 1, *(p + 1 for p in perm[1:])))]


def _axis_op(f: _Forward, n: Node, ins: list[Any], ts: list[Any], outs: list[Value]) -> list[Value | None]:
    """Ops whose only tangent-relevant attribute is one axis: the same op one axis further."""
    rank = ins[0].type.rank + (1 if n.op == "unsqueeze" else 0)
    attrs = {**n.attr_dict, "axis": f.axis(n, n.attr("axis"), rank)}
    res = f.b.op(n.op, ts[0], **attrs)
    return list(res) if isinstance(res, tuple) else [res]


def _join(f: _Forward, n: Node, ins: list[Any], ts: list[Any], outs: list[Value]) -> list[Value | None]:
    rank = ins[0].type.rank + (1 if n.op == "stack" else 0)
    ax = f.axis(n, n.attr("axis"), rank)
    parts = [f.fit(t, x) if t is not None else f.zeros(x) for x, t in zip(ins, ts, strict=True)]
    return [f.b.op(n.op, *parts, axis=ax)]


def _pad(f: _Forward, n: Node, ins: list[Any], ts: list[Any], outs: list[Value]) -> list[Value | None]:
    if ins[0].type.rank < 2:
        raise f.refuse(n, "it pads the batch axis")
    value = 0.0 if n.attr("mode") == "constant" else n.attr("value")
    return [f.b.pad(ts[0], pads=n.attr("pads"), mode=n.attr("mode"), value=value)]


_RULES: dict[str, Rule] = {
    **{op: _unary(op) for op in (*_UNARY_D, "neg")},
    **dict.fromkeys(("add", "sub", "mul", "div", "max", "min", "pow", "gt", "lt"), _binary),
    "cast": _cast, "where": _where, "clamp": _clamp, "linear": _linear, "matmul": _matmul,
    "sum": _reduce, "mean": _reduce, "amax": _reduce, "softmax": _softmax, "layer_norm": _layer_norm,
    "reshape": _reshape, "transpose": _transpose, "concat": _join, "stack": _join, "pad": _pad,
    **dict.fromkeys(("unsqueeze", "squeeze", "split", "slice", "select", "flip"), _axis_op),
}
