"""Parallel-in-time evaluation of any recurrent cell by Newton's method (DEER / ParaRNN), in torch.

Why: a nonlinear RNN (LSTM, GRU, Elman, sLSTM, user cells) is evaluated step by step because
``s_t = f(s_{t-1}, x_t)`` needs the previous state.  Read the whole sequence of states as the
root of ``r_t(s) = s_t - f(s_{t-1}, x_t) = 0`` for all t at once instead: linearising f around
the current guess ``s^k`` turns one Newton step into a *linear* recurrence

    s_t = A_t s_{t-1} + b_t,   A_t = ∂f/∂s (s^k_{t-1}, x_t),   b_t = f(s^k_{t-1}, x_t) - A_t s^k_{t-1}

which an associative scan solves in ``ceil(log2 T)`` parallel sweeps.  Every evaluation of f and
of its Jacobian is one batched call over all ``T*B`` rows (the step graph through the IR
interpreter and its Jacobian graph -- so user cells work like built-in ones).  After
k undamped iterations the first k steps are exact whatever the Jacobians (s_1 only needs s_0),
so at most T iterations give the sequential answer; Newton usually needs a handful.

The Jacobians come from the IR: ``rnnc.ir.jvp`` differentiates the cell's step graph forward
along every state direction, so one interpreter call over all rows yields ``f`` and ``∂f/∂s``
together, for user cells as for built-in ones.  A step graph with an op that pass has no rule
for falls back to ``torch.func`` (reverse mode over the interpreter), and ``explain()`` says so.

Methods: ``full`` (exact Newton: ``[D, D]`` Jacobians, matrix scan), ``diag`` (quasi-Newton:
their diagonals, an elementwise scan -- a cheaper scan, more iterations), ``block`` (the
Jacobian's diagonal blocks: each block holds ``block`` hidden units with all their states, e.g.
an LSTM unit's (h, c) pair, or one head of a cell whose heads do not mix -- sLSTM's, where the
Jacobian *is* block-diagonal and ``block`` is exact Newton at a fraction of the scan's cost).
This reference still computes the full Jacobian and keeps what the method uses.  ``damping``
< 1 takes only that fraction of each update (a damped Newton step, for cells whose Newton
iteration overshoots).  A sequence that has not converged after ``max_iter`` iterations, or
whose iterates stop being finite (long products of Jacobians that grow, e.g. sLSTM's
exponential gates under exact Newton), is finished sequentially with a warning: never a wrong
answer.

This is the reference the backends' parallel-in-time kernels are checked against; it runs on
whatever device the tensors are on.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rnnc.errors import UnsupportedError, UserInputError
from rnnc.ir.graph import Cell

METHODS = ("full", "diag", "block")


@dataclass(frozen=True)
class NewtonInfo:
    """What one direction's solve did: the method, iterations taken and the final residual
    ``max |s^{k} - f(s^{k}_{t-1}, x_t)|`` (0 when it fell back to the sequential loop)."""

    method: str
    iterations: int
    residual: float
    converged: bool
    jacobians: str = "ir"  # "ir" (rnnc.ir.jvp) or why torch.func differentiated instead


def tolerance(dtype: Any) -> float:
    """Stop when no state moved by more than this (scaled by the states' magnitude): a few ulps of
    the dtype, below what the tolerance table lets any backend differ by."""
    import torch

    return 64 * torch.finfo(dtype).eps


def _flatten(cell: Cell, states: Sequence[Any]) -> Any:
    import torch

    return torch.cat([s.reshape(s.shape[0], -1) for s in states], dim=-1)


def _unflatten(cell: Cell, flat: Any) -> list[Any]:
    out, at = [], 0
    for st in cell.states:
        n = math.prod(st.shape)
        out.append(flat[..., at:at + n].reshape(*flat.shape[:-1], *st.shape))
        at += n
    return out


def _step_fn(cell: Cell, params: Mapping[str, Any]) -> Any:
    """``f(s_flat [R, D], x [R, I]) -> (y [R, F], s_next_flat [R, D])`` through the interpreter."""
    from rnnc.ir.interp import run_graph

    names = cell.state_names

    def f(s: Any, x: Any) -> tuple[Any, Any]:
        env = {cell.step.input_names[0]: x, **dict(zip(names, _unflatten(cell, s), strict=True)), **params}
        outs = run_graph(cell.step, env)
        return outs[0], _flatten(cell, outs[1:])

    return f


def _linearised_step(cell: Cell, params: Mapping[str, Any], like: Any, f: Any) -> tuple[Any, str]:
    """``g(s_flat [R, D], x [R, I]) -> (s_next_flat [R, D], J [R, D, D])`` and where J comes from:
    the IR Jacobian graph (``rnnc.ir.jvp``), else ``torch.func`` over ``f`` (:func:`_step_fn`),
    with the reason."""
    from rnnc.ir.interp import run_graph
    from rnnc.ir.jvp import NoDerivative, jacobian_graph

    names = cell.state_names
    try:
        jg = jacobian_graph(cell)
    except NoDerivative as exc:
        from torch.func import jacrev, vmap

        jac = vmap(jacrev(lambda s, x: f(s[None], x[None])[1][0]))
        return (lambda s, x: (f(s, x)[1], jac(s, x))), f"torch.func ({exc})"
    env = {**params, **jg.seeds(like.dtype, like.device)}

    def g(s: Any, x: Any) -> tuple[Any, Any]:
        outs = run_graph(jg.graph, {**env, cell.step.input_names[0]: x,
                                    **dict(zip(names, _unflatten(cell, s), strict=True))})
        return _flatten(cell, outs[1:-1]), outs[-1]

    return g, "ir"


def block_layout(cell: Cell, block: int | None = None) -> tuple[Any, int]:
    """The permutation of the flattened state that puts each block's elements together, and the
    block's size: ``block`` hidden units (default: a head's, from the cell's ``num_heads``, else
    one) with every state of each unit.  The states must be vectors of one width."""
    import torch

    shapes = {tuple(st.shape) for st in cell.states}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise UnsupportedError(f"block-diagonal Jacobians group each hidden unit's states, so they need the "
                               f"states to be vectors of one width; {cell.kind} has "
                               f"{', '.join(str(tuple(st.shape)) for st in cell.states)}; use 'full' or 'diag'")
    (width,) = next(iter(shapes))
    heads = int(cell.attr("num_heads", 1) or 1)
    units = block or (width // heads if heads > 1 and width % heads == 0 else 1)
    if units < 1 or width % units:
        raise UserInputError(f"block={units} does not divide {cell.kind}'s {width} hidden units")
    n_states = len(cell.states)
    perm = [s * width + u for start in range(0, width, units) for u in range(start, start + units)
            for s in range(n_states)]
    return torch.tensor(perm), units * n_states


def _linearise(j: Any, prev: Any, method: str, perm: Any, inverse: Any, k: int) -> tuple[Any, Any]:
    """(the scan's coefficients, ``A prev`` in the state's own layout) for one method: ``a [R, D,
    D]`` (full), ``[R, D]`` (diag) or ``[R, D/k, k, k]`` (block, in the permuted layout;
    ``inverse`` undoes ``perm``)."""
    import torch

    if method == "full":
        return j, torch.einsum("rij,rj->ri", j, prev)
    if method == "diag":
        a = torch.diagonal(j, dim1=-2, dim2=-1)
        return a, a * prev
    rows, dim = prev.shape
    nb = dim // k
    jp = j[:, perm][:, :, perm].reshape(rows, nb, k, nb, k)
    a = torch.diagonal(jp, dim1=1, dim2=3).permute(0, 3, 1, 2)  # [R, nb, k, k]
    lin = torch.einsum("rnij,rnj->rni", a, prev[:, perm].reshape(rows, nb, k)).reshape(rows, dim)
    return a, lin[:, inverse]


def _scan(a: Any, b: Any, full: bool) -> Any:
    """All ``s_t`` of ``s_t = A_t s_{t-1} + b_t`` with ``s_0 = 0`` (b already holds ``A_1 s_0``):
    Hillis-Steele over the associative ``(A2, b2) ∘ (A1, b1) = (A2 A1, A2 b1 + b2)``; time is
    dim 0, ``a [T, B, D, D]`` (full) or ``[T, B, D]`` (diag), ``b [T, B, D]``."""
    import torch

    steps, shift = a.shape[0], 1
    while shift < steps:
        a_cur, b_prev = a[shift:], b[:-shift]
        if full:
            nb = torch.einsum("tbij,tbj->tbi", a_cur, b_prev) + b[shift:]
            na = a_cur @ a[:-shift]
        else:
            nb = a_cur * b_prev + b[shift:]
            na = a_cur * a[:-shift]
        b = torch.cat([b[:shift], nb])
        a = torch.cat([a[:shift], na])
        shift *= 2
    return b


def solve(cell: Cell, params: Mapping[str, Any], x_tm: Any, init: Sequence[Any], method: str = "full",
          max_iter: int | None = None, damping: float = 1.0, tol: float | None = None, scan: Any = None,
          block: int | None = None) -> tuple[Any, list[Any], NewtonInfo]:
    """``x_tm [T, B, I]``, initial states ``[B, *shape]`` -> (y ``[T, B, F]``, final states, info).
    ``scan(a, b, full) -> s``: the linear-recurrence solver of each step (default: the torch
    Hillis-Steele scan; ``rnnc.backends.cstyle.newton_scan.CScan`` runs it in C over threads);
    ``block``: hidden units per block of the ``block`` method (:func:`block_layout`)."""
    import torch

    if method not in METHODS:
        raise UserInputError(f"unknown Newton method {method!r}; use one of {', '.join(METHODS)}")
    if not 0.0 < damping <= 1.0:
        raise UserInputError(f"damping must lie in (0, 1], got {damping}")
    steps, batch = int(x_tm.shape[0]), int(x_tm.shape[1])
    f = _step_fn(cell, params)
    s0 = _flatten(cell, init).to(x_tm.dtype)
    if steps == 0:
        return x_tm.new_zeros(0, batch, cell.output_size), _unflatten(cell, s0), NewtonInfo(method, 0, 0.0, True)
    dim = s0.shape[-1]
    xs = x_tm.reshape(steps * batch, -1)
    max_iter = steps if max_iter is None else max(1, min(max_iter, steps))
    tol = tolerance(x_tm.dtype) if tol is None else tol

    step, source = _linearised_step(cell, params, x_tm, f)
    perm, k = block_layout(cell, block) if method == "block" else (None, 0)
    inverse = None if perm is None else torch.argsort(perm)  # once, not per iteration
    s = s0.expand(steps, batch, dim).clone()  # initial guess: the initial state held
    iterations, residual = 0, float("inf")
    with torch.no_grad():
        while iterations < max_iter:
            iterations += 1
            prev = torch.cat([s0[None], s[:-1]]).reshape(steps * batch, dim)
            fs, j = step(prev, xs)  # [T*B, D], [T*B, D, D]
            a, lin = _linearise(j, prev, method, perm, inverse, k)
            b = (fs - lin).reshape(steps, batch, dim)
            b[0] = fs.reshape(steps, batch, dim)[0]  # s_0 is known: the first step is exact
            if method == "block":  # each (batch row, block) is a small full scan
                bp = b.reshape(steps * batch, dim)[:, perm].reshape(steps, batch * (dim // k), k)
                new = (scan or _scan)(a.reshape(steps, -1, k, k), bp, True).reshape(steps * batch, dim)
                new = new[:, inverse].reshape(steps, batch, dim)
            else:
                new = (scan or _scan)(a.reshape(steps, batch, *a.shape[1:]), b, method == "full")
            update = new - s
            if not bool(torch.isfinite(update).all()):  # the products of Jacobians overflowed: diverged
                break
            s = s + damping * update
            scale = 1.0 + float(s.abs().max())
            if float(update.abs().max()) <= tol * scale:
                break
        prev = torch.cat([s0[None], s[:-1]]).reshape(steps * batch, dim)
        y, fs = f(prev, xs)
        residual = float((fs.reshape(steps, batch, dim) - s).abs().max())
        # the residual decides (an exact answer reached in the last allowed iteration counts; nan: no)
        converged = residual <= 16 * tol * (1.0 + float(s.abs().max()))
        if not converged:
            warnings.warn(f"rnnc: Newton ({method}) on {cell.kind} did not converge in {iterations} iterations "
                          f"(residual {residual:.2e}); the sequence was finished step by step", stacklevel=3)
            return _sequential(cell, f, x_tm, s0, method, iterations, source)
    return (y.reshape(steps, batch, -1), _unflatten(cell, s[-1]),
            NewtonInfo(method, iterations, residual, True, source))


def _sequential(cell: Cell, f: Any, x_tm: Any, s0: Any, method: str, iterations: int, source: str = "ir"
                ) -> tuple[Any, list[Any], NewtonInfo]:
    """The fallback: the plain step loop (the answer every parallel method must reproduce)."""
    import torch

    s, ys = s0, []
    for t in range(int(x_tm.shape[0])):
        y, s = f(s, x_tm[t])
        ys.append(y)
    return torch.stack(ys), _unflatten(cell, s), NewtonInfo(method, iterations, 0.0, False, source)


class NewtonProgram:
    """A Program whose ``rnn`` nodes run parallel-in-time by Newton (:func:`solve`), every other
    op through the interpreter.  ``methods``: layer key -> one of :data:`METHODS`; ``scan``: the
    linear-recurrence solver (None: torch; see :func:`solve`); ``info`` holds the
    last call's :class:`NewtonInfo` per layer and direction (``"<layer key>#<node>.<layer>[.rev]"``:
    stacked layers with equal keys stay apart) for ``explain()``."""

    def __init__(self, program: Any, methods: Mapping[str, str], damping: float = 1.0,
                 max_iter: int | None = None, scan: Any = None, target: Any = None) -> None:
        self.program, self.methods = program, dict(methods)
        self.damping, self.max_iter, self.scan, self.target = damping, max_iter, scan, target
        self.info: dict[str, NewtonInfo] = {}
        self._shapes: dict[str, tuple[Cell, int, int]] = {}  # info key -> (cell, T, B) of the last call

    def __call__(self, *inputs: Any) -> Any:
        import torch

        from rnnc.ir.interp import run_graph

        g = self.program.graph
        env = {**dict(zip(g.input_names, inputs, strict=True)), **self.program.weights}
        with torch.no_grad():
            res = run_graph(g, env, rnn=self._rnn)
        return res[0] if len(res) == 1 else res

    def _rnn(self, node: Any, args: list[Any]) -> tuple[Any, ...]:
        from rnnc.ir.printer import layer_key
        from rnnc.ir.rnn import OPS, direction_params, rnn_layout, run_stack

        attrs = node.attr_dict
        cells, dirs, _ = rnn_layout(attrs)
        if args[1] is not None:  # packed sequences: padded steps hold the state (the step loop's meaning)
            for k, cell in enumerate(cells):
                self.info[f"{layer_key(cell)}#{node.outputs[0]}.{k}"] = NewtonInfo("sequential (packed lengths)",
                                                                                    0, 0.0, True)
            return OPS["rnn"].evaluate(args, attrs)
        x_tm = args[0].transpose(0, 1) if attrs["batch_first"] else args[0]
        n_states = len(cells[0].states)
        per_direction = direction_params(attrs, args[2 + n_states:])

        def direction(k: int, d: int, cell: Cell, layer_in: Any, out: Any, off: int, states: list[Any]) -> None:
            key = layer_key(cell)
            xs = layer_in.flip(0) if d == 1 else layer_in
            y, finals, info = solve(cell, per_direction[k * dirs + d], xs, [s.clone() for s in states],
                                    self.methods.get(key, "full"), self.max_iter, self.damping, scan=self.scan)
            where = f"{key}#{node.outputs[0]}.{k}{'.rev' if d else ''}"
            self.info[where] = info
            self._shapes[where] = (cell, int(xs.shape[0]), int(xs.shape[1]))
            out[:, :, off:off + cell.output_size] = y.flip(0) if d == 1 else y
            for view, final in zip(states, finals, strict=True):
                view.copy_(final)

        y, finals = run_stack(cells, dirs, x_tm, args[2:2 + n_states], direction,
                              batch_first_out=attrs["batch_first"])
        return (y.transpose(0, 1) if attrs["batch_first"] else y, *finals)

    def explain_lines(self) -> list[str]:
        """Per layer and direction: method, iterations, residual, and -- with a ``target`` -- the
        cost model's verdict for that target at the call's T, B and iterations."""
        lines = []
        for key, i in self.info.items():
            lines.append(f"  layer {key.split('#')[0]} ({key.split('#')[1]}): Newton {i.method}, {i.iterations} "
                         f"iterations, residual {i.residual:.1e}, Jacobians "
                         + ("derived in the IR" if i.jacobians == "ir" else f"by {i.jacobians}")
                         + ("" if i.converged else " (did not converge: finished step by step)"))
            if self.target is not None and key in self._shapes and i.converged and i.method in METHODS:
                lines.append(f"    on {self.target.tag}: {self._estimate(key, i)}")
        return lines

    def _estimate(self, key: str, info: NewtonInfo) -> str:
        from rnnc.constraints.newton import estimate_newton
        from rnnc.errors import RnncError
        from rnnc.passes import plan_layer

        cell, steps, batch = self._shapes[key]
        try:
            spec = plan_layer(cell).problem(batch, "float32", seq_len=max(1, steps))
            units = block_layout(cell)[1] // len(cell.states) if info.method == "block" else 1
            dim = sum(math.prod(st.shape) for st in cell.states)
            return estimate_newton(spec, self.target, max(1, info.iterations), info.method, units, dim).line()
        except RnncError as exc:  # a cell the model does not cover (linear cells, odd states): say so
            return f"no cost-model estimate ({str(exc).splitlines()[0]})"


def _blocks_differ(cell: Cell) -> bool:
    """Whether the ``block`` method is its own method for ``cell`` (not ``diag`` in disguise)."""
    try:
        return block_layout(cell)[1] > 1
    except (UnsupportedError, UserInputError):
        return False


def pick_methods(program: Any, inputs: Sequence[Any] | None, scan: Any = None) -> tuple[dict[str, str], list[str]]:
    """Per layer, one of :data:`METHODS`: measured on ``inputs`` when given -- the whole program runs
    with each method on every layer (after one warm-up run), and each layer takes the method whose
    run was faster among those that converged on that layer -- else ``full`` (Newton's few
    iterations).  Returns the methods and one line per layer saying why."""
    import time

    from rnnc.ir.printer import layer_cells

    cells = layer_cells(program)
    keys = list(cells)
    if inputs is None:
        return dict.fromkeys(keys, "full"), ["Newton full (no example inputs to measure the methods on)"]
    timed: dict[str, dict[str, float]] = {k: {} for k in keys}
    for method in METHODS:
        # block where it means something (states of one width, blocks of more than one element)
        uses = {key: method != "block" or _blocks_differ(cells[key]) for key in keys}
        if not any(uses.values()):
            continue
        runner = NewtonProgram(program, {key: method if uses[key] else "full" for key in keys}, scan=scan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == METHODS[0]:
                runner(*inputs)  # warm-up: the first call pays for torch.func's and the ops' set-up
            t0 = time.perf_counter()
            runner(*inputs)
            spent = time.perf_counter() - t0
        for key in keys:
            info = [i for k, i in runner.info.items() if k.split("#")[0] == key]
            if uses[key] and info and all(i.converged for i in info):
                timed[key][method] = spent
    methods, notes = {}, []
    for key, times in timed.items():
        methods[key] = min(times, key=times.__getitem__) if times else "full"
        shown = ", ".join(f"{m} {t * 1e3:.1f} ms" for m, t in times.items()) or "none converged"
        notes.append(f"{key}: Newton {methods[key]} (measured on the example inputs: {shown})")
    return methods, notes
