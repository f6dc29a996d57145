"""rnnc's own solver: ConstrINT-style domain propagation, then depth-first branch and bound.

Why a home-grown solver next to CP-SAT: it is pure Python (no 0.4 s OR-Tools import, nothing
to install on a Jetson), it is fast on the small, divisor-heavy models that tiling produces,
and it is the reference the CP-SAT backend is checked against (and vice versa).

How it works:

* **Domains**: decisions keep an explicit sorted tuple of values; defined variables keep
  bounds only.  A node's state is three lists (lower bounds, upper bounds, explicit values).
* **Propagation** runs propagators to a fixpoint: bounds reasoning for linear constraints,
  products, quotients and maxima; *divisor filtering* when a product or dividend is fixed
  (the ConstrINT idea: ``ht * hsplit == 768`` leaves only divisors of 768 in both domains);
  multiple filtering for ``d | x`` once ``d`` is fixed.
* **Search** branches on decisions in creation order, values in preference order.  The best
  objective found so far becomes an upper bound on the objective (a propagated constraint),
  so later subtrees are cut as soon as their bounds cannot beat it.  Because the order is
  fixed and only strictly better solutions replace the incumbent, the result is the
  lexicographically first optimal assignment: the same one CP-SAT and brute force return.
* **Leaves** are re-evaluated exactly with :meth:`Model.evaluate`, so propagation can only ever
  cost completeness (caught by the brute-force tests), never correctness.
"""

from __future__ import annotations

import time

from .model import DECISION, LINEAR, MAXIMUM, PRODUCT, QUOTIENT, Divides, Linear, Model, Solution

_MAX_RUNS_PER_NODE = 20000  # safety cap: stopping propagation early is always sound
_GAC_LIMIT = 4096  # |dom(d)| * |dom(x)| up to which divisibility is filtered pairwise


class _Fail(Exception):
    """Raised by a propagator when a domain becomes empty."""


def _set(state: tuple[list, list, list], i: int, lo: int, hi: int) -> bool:
    """Tighten variable i to [lo, hi]; returns whether anything changed, raises _Fail if empty."""
    L, H, D = state
    lo = max(lo, L[i])
    hi = min(hi, H[i])
    if lo == L[i] and hi == H[i]:
        return False
    if lo > hi:
        raise _Fail
    vals = D[i]
    if vals is not None:
        vals = tuple(v for v in vals if lo <= v <= hi)
        if not vals:
            raise _Fail
        D[i] = vals
        lo, hi = vals[0], vals[-1]
    L[i], H[i] = lo, hi
    return True


def _keep(state: tuple[list, list, list], i: int, vals: tuple[int, ...]) -> bool:
    """Replace the explicit values of i by the subset ``vals``."""
    L, H, D = state
    if len(vals) == len(D[i]):
        return False
    if not vals:
        raise _Fail
    D[i] = vals
    L[i], H[i] = vals[0], vals[-1]
    return True


def _cdiv(a: int, b: int) -> int:
    return -((-a) // b)


class _Linear:
    """lo <= sum(c_i x_i) <= hi by bounds reasoning."""

    __slots__ = ("terms", "lo", "hi", "vars")

    def __init__(self, terms: list[tuple[int, int]], lo: int | None, hi: int | None) -> None:
        self.terms, self.lo, self.hi = terms, lo, hi
        self.vars = [i for i, _ in terms]

    def run(self, st: tuple[list, list, list]) -> list[int]:
        L, H, _ = st
        terms = self.terms
        mins = [c * L[i] if c > 0 else c * H[i] for i, c in terms]
        maxs = [c * H[i] if c > 0 else c * L[i] for i, c in terms]
        smin, smax = sum(mins), sum(maxs)
        changed = []
        hi, lo = self.hi, self.lo
        if hi is not None and smax > hi:
            if smin > hi:
                raise _Fail
            for k, (i, c) in enumerate(terms):
                slack = hi - (smin - mins[k])
                if c > 0:
                    b = slack // c
                    if b < H[i] and _set(st, i, L[i], b):
                        changed.append(i)
                else:
                    b = _cdiv(slack, c)
                    if b > L[i] and _set(st, i, b, H[i]):
                        changed.append(i)
            if changed:  # recompute after tightening
                maxs = [c * H[i] if c > 0 else c * L[i] for i, c in terms]
                smax = sum(maxs)
                smin = sum(c * L[i] if c > 0 else c * H[i] for i, c in terms)
        if lo is not None and smin < lo:
            if smax < lo:
                raise _Fail
            for k, (i, c) in enumerate(terms):
                need = lo - (smax - maxs[k])
                if c > 0:
                    b = _cdiv(need, c)
                    if b > L[i] and _set(st, i, b, H[i]):
                        changed.append(i)
                else:
                    b = need // c
                    if b < H[i] and _set(st, i, L[i], b):
                        changed.append(i)
        return changed


class _Product:
    """x = a * b over non-negative integers, with divisor filtering once x is fixed."""

    __slots__ = ("x", "a", "b", "vars")

    def __init__(self, x: int, a: int, b: int) -> None:
        self.x, self.a, self.b = x, a, b
        self.vars = [x, a, b]

    def run(self, st: tuple[list, list, list]) -> list[int]:
        L, H, D = st
        x, a, b = self.x, self.a, self.b
        changed = []
        if _set(st, x, L[a] * L[b], H[a] * H[b]):
            changed.append(x)
        for f, g in ((a, b), (b, a)):
            lo, hi = L[f], H[f]
            if L[g] > 0:
                hi = min(hi, H[x] // L[g])
            if H[g] > 0:
                lo = max(lo, _cdiv(L[x], H[g]))
            elif L[x] > 0:
                raise _Fail
            if _set(st, f, lo, hi):
                changed.append(f)
        if L[x] == H[x] and L[x] > 0:
            xv = L[x]
            for f, g in ((a, b), (b, a)):
                vals = D[f]
                if vals is not None and len(vals) > 1:
                    gv = D[g]
                    if gv is not None:
                        keep = tuple(v for v in vals if v and xv % v == 0 and xv // v in gv)
                    else:
                        keep = tuple(v for v in vals if v and xv % v == 0 and L[g] <= xv // v <= H[g])
                    if _keep(st, f, keep):
                        changed.append(f)
        return changed


class _Max:
    """x = max(ys) by bounds."""

    __slots__ = ("x", "ys", "vars")

    def __init__(self, x: int, ys: tuple[int, ...]) -> None:
        self.x, self.ys = x, ys
        self.vars = [x, *ys]

    def run(self, st: tuple[list, list, list]) -> list[int]:
        L, H, _ = st
        x, ys = self.x, self.ys
        changed = []
        if _set(st, x, max(L[y] for y in ys), max(H[y] for y in ys)):
            changed.append(x)
        for y in ys:
            if _set(st, y, L[y], H[x]):
                changed.append(y)
        reach = [y for y in ys if H[y] >= L[x]]
        if len(reach) == 1 and _set(st, reach[0], L[x], H[reach[0]]):
            changed.append(reach[0])
        return changed


class _Divides:
    """d | x: multiples once d is fixed, divisors once x is fixed, pairwise support if small."""

    __slots__ = ("d", "x", "vars")

    def __init__(self, d: int, x: int) -> None:
        self.d, self.x = d, x
        self.vars = [d, x]

    def run(self, st: tuple[list, list, list]) -> list[int]:
        L, H, D = st
        d, x = self.d, self.x
        changed = []
        if L[d] == H[d]:
            dv = L[d]
            if D[x] is not None:
                if _keep(st, x, tuple(v for v in D[x] if v % dv == 0)):
                    changed.append(x)
            elif _set(st, x, _cdiv(L[x], dv) * dv, (H[x] // dv) * dv):
                changed.append(x)
        if L[x] == H[x] and L[x] > 0:
            xv = L[x]
            if D[d] is not None:
                if _keep(st, d, tuple(v for v in D[d] if xv % v == 0)):
                    changed.append(d)
            elif _set(st, d, L[d], xv):
                changed.append(d)
        elif D[d] is not None and D[x] is not None and len(D[d]) * len(D[x]) <= _GAC_LIMIT:
            xs, ds = D[x], D[d]
            if _keep(st, d, tuple(dv for dv in ds if any(v % dv == 0 for v in xs))):
                changed.append(d)
            ds = D[d]
            if _keep(st, x, tuple(v for v in xs if any(v % dv == 0 for dv in ds))):
                changed.append(x)
        return changed


class RnncSolver:
    """Compile a :class:`Model` once, then :meth:`solve` it (optionally only for feasibility)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        n = len(model.vars)
        props: list = []
        for i, v in enumerate(model.vars):
            if v.kind == PRODUCT:
                props.append(_Product(i, v.args[0], v.args[1]))
            elif v.kind == QUOTIENT:  # x = a / b  <=>  a = x * b
                props.append(_Product(v.args[0], i, v.args[1]))
            elif v.kind == LINEAR:
                e = v.args[0]
                props.append(_Linear([*e.terms, (i, -1)], -e.const, -e.const))
            elif v.kind == MAXIMUM:
                props.append(_Max(i, v.args))
        for c in model.constraints:
            if isinstance(c, Linear):
                props.append(_Linear(list(c.expr.terms), c.lo, c.hi))
            elif isinstance(c, Divides):
                props.append(_Divides(c.divisor, c.dividend))
        # objective levels become extra (defined) variables so the incumbent bound propagates
        self.obj_vars = []
        for e in model.objective:
            lo, hi = model.bounds(e)
            self.obj_vars.append(n + len(self.obj_vars))
            props.append(_Linear([*e.terms, (self.obj_vars[-1], -1)], -e.const, -e.const))
        self.n_all = n + len(self.obj_vars)
        self.props = props
        self.watch: list[list[int]] = [[] for _ in range(self.n_all)]
        for k, p in enumerate(props):
            for i in set(p.vars):
                self.watch[i].append(k)
        self.decisions = [i for i, v in enumerate(model.vars) if v.kind == DECISION]
        self.descending = {i: model.vars[i].prefer == "max" for i in self.decisions}

    def _root(self) -> tuple[list, list, list]:
        L = [v.lo for v in self.model.vars]
        H = [v.hi for v in self.model.vars]
        D = [v.values for v in self.model.vars]
        for e in self.model.objective:
            lo, hi = self.model.bounds(e)
            L.append(lo)
            H.append(hi)
            D.append(None)
        return L, H, D

    def _propagate(self, st: tuple[list, list, list], queue: list[int]) -> None:
        pending = set(queue)
        runs = 0
        props, watch = self.props, self.watch
        while queue:
            k = queue.pop()
            pending.discard(k)
            runs += 1
            if runs > _MAX_RUNS_PER_NODE:
                return
            for i in props[k].run(st):
                for k2 in watch[i]:
                    if k2 not in pending:
                        pending.add(k2)
                        queue.append(k2)

    def impose_better(self, s: tuple[list, list, list], obj: tuple[int, ...]) -> None:
        """Restrict node ``s`` to assignments lexicographically strictly better than ``obj``
        (raises ``_Fail`` when none can be); shared by :meth:`solve` and k-best ranking."""
        L, H, _ = s
        ov = self.obj_vars
        levels = len(ov)
        changed = []
        for k in range(levels):
            last = k == levels - 1
            cap = obj[k] - 1 if last else obj[k]
            if _set(s, ov[k], L[ov[k]], cap):
                changed.append(ov[k])
            if L[ov[k]] < obj[k] or H[ov[k]] > obj[k]:
                break  # this level can still be strictly better: later levels are free
        queue = [p for i in changed for p in self.watch[i]]
        if queue:
            self._propagate(s, queue)

    def solve(self, first_only: bool = False) -> Solution | None:
        """Optimal (or, with ``first_only``, any) solution, or None if infeasible."""
        t0 = time.perf_counter()
        model, levels = self.model, len(self.obj_vars)
        if model.empty:
            return None
        best_vals: list[int] | None = None
        best_obj: tuple[int, ...] | None = None
        nodes = 0
        st = self._root()
        try:
            self._propagate(st, list(range(len(self.props))))
        except _Fail:
            return None
        dec = self.decisions
        ndec = len(dec)

        def bound(s: tuple[list, list, list]) -> None:
            """Impose 'better than the incumbent' on the objective variables."""
            if best_obj is not None:
                self.impose_better(s, best_obj)

        def dfs(k: int, s: tuple[list, list, list]) -> bool:
            nonlocal best_vals, best_obj, nodes
            L, H, D = s
            while k < ndec and L[dec[k]] == H[dec[k]]:
                k += 1
            if k == ndec:
                vals = model.evaluate({i: L[i] for i in dec})
                if vals is None or not model.feasible(vals):
                    return False
                obj = model.objective_value(vals)
                if best_obj is None or obj < best_obj:
                    best_vals, best_obj = vals, obj
                return first_only
            i = dec[k]
            values = D[i][::-1] if self.descending[i] else D[i]
            for v in values:
                nodes += 1
                child = (L[:], H[:], D[:])
                try:
                    _set(child, i, v, v)
                    self._propagate(child, list(self.watch[i]))
                    bound(child)
                except _Fail:
                    continue
                if dfs(k + 1, child):
                    return True
            return False

        if levels == 0:
            first_only = True  # every solution ties: the first in search order is the answer
        dfs(0, st)
        if best_vals is None:
            return None
        names = [v.name for v in model.vars]
        return Solution(
            values=dict(zip(names, best_vals, strict=True)),
            objective=best_obj or (),
            solver="rnnc",
            nodes=nodes,
            seconds=time.perf_counter() - t0,
        )


def solve(model: Model, first_only: bool = False) -> Solution | None:
    """Solve ``model`` with the propagation + branch-and-bound solver."""
    return RnncSolver(model).solve(first_only=first_only)
