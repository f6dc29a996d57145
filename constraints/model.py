"""The integer constraint model shared by every solver of rnnc.

A tiling problem is written once as a :class:`Model` and handed unchanged to the propagation
solver (:mod:`rnnc.constraints.search`), to OR-Tools CP-SAT (:mod:`rnnc.constraints.cpsat`) and
to brute-force enumeration (:mod:`rnnc.constraints.brute`).  That is what lets tests demand that
all three return *the same assignment*, not merely the same objective value.

The model is deliberately small, in the style of FlashRNN's ConstrINT:

* **decision variables** with explicit finite domains (tile sizes, warp counts, flags) and a
  value preference (``"min"`` or ``"max"``);
* **defined variables**, functions of earlier variables: ``product`` (x = a*b*...),
  ``quotient`` (x = a/b, exact, so b | a), ``define`` (x = linear expression) and ``maximum``
  (x = max(...)).  Every defined variable is determined once the decisions are, so brute force
  can evaluate them and search only ever branches on decisions;
* **constraints**: linear inequalities/equalities, divisibility ``d | x``, and named
  **resources** (a linear inequality ``usage <= capacity`` with a unit and a description, which
  is what infeasibility explanations talk about);
* a **lexicographic objective**: a tuple of linear expressions to minimise.

Ties are broken the same way everywhere: decisions in creation order, each by its preference.
Concretely, among optimal assignments the winner is the first in the order in which
``itertools.product`` enumerates the decisions' preference-sorted value lists.

All variables are non-negative integers except ``define``d ones, whose bounds may be negative.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Union

from rnnc.errors import RnncError

Operand = Union["IntVar", int]
Affine = Union["IntVar", "LinExpr", int]

DECISION, PRODUCT, QUOTIENT, LINEAR, MAXIMUM = "decision", "product", "quotient", "linear", "max"


class ModelError(RnncError):
    """A malformed model (a bug in a tiling problem, not a user error)."""


@dataclass(frozen=True)
class IntVar:
    """A variable of one model; arithmetic with ints and other variables builds :class:`LinExpr`."""

    index: int
    name: str

    def expr(self) -> LinExpr:
        return LinExpr(((self.index, 1),), 0)

    def __add__(self, other: Affine) -> LinExpr:
        return self.expr() + other

    __radd__ = __add__

    def __sub__(self, other: Affine) -> LinExpr:
        return self.expr() - other

    def __rsub__(self, other: Affine) -> LinExpr:
        return as_expr(other) - self.expr()

    def __mul__(self, coef: int) -> LinExpr:
        return self.expr() * coef

    __rmul__ = __mul__

    def __neg__(self) -> LinExpr:
        return self.expr() * -1


@dataclass(frozen=True)
class LinExpr:
    """sum(coef * var) + const with integer coefficients; immutable, terms merged and sorted."""

    terms: tuple[tuple[int, int], ...]
    const: int = 0

    @staticmethod
    def build(pairs: Iterable[tuple[int, int]], const: int = 0) -> LinExpr:
        merged: dict[int, int] = {}
        for index, coef in pairs:
            merged[index] = merged.get(index, 0) + coef
        return LinExpr(tuple(sorted((i, c) for i, c in merged.items() if c != 0)), const)

    def __add__(self, other: Affine) -> LinExpr:
        o = as_expr(other)
        return LinExpr.build(self.terms + o.terms, self.const + o.const)

    __radd__ = __add__

    def __sub__(self, other: Affine) -> LinExpr:
        return self + as_expr(other) * -1

    def __rsub__(self, other: Affine) -> LinExpr:
        return as_expr(other) - self

    def __mul__(self, coef: int) -> LinExpr:
        if not isinstance(coef, int):
            raise ModelError(f"a linear expression can only be scaled by an int, got {coef!r}")
        return LinExpr.build(((i, c * coef) for i, c in self.terms), self.const * coef)

    __rmul__ = __mul__

    def __neg__(self) -> LinExpr:
        return self * -1

    def value(self, values: Sequence[int]) -> int:
        return self.const + sum(c * values[i] for i, c in self.terms)


def as_expr(x: Affine) -> LinExpr:
    if isinstance(x, LinExpr):
        return x
    if isinstance(x, IntVar):
        return x.expr()
    if isinstance(x, int) and not isinstance(x, bool):
        return LinExpr((), x)
    raise ModelError(f"expected a variable, expression or int, got {x!r}")


@dataclass(frozen=True)
class VarInfo:
    """Everything a solver needs about one variable."""

    name: str
    kind: str
    lo: int
    hi: int
    values: tuple[int, ...] | None = None  # explicit domain (decisions)
    prefer: str = "min"  # decisions only: value order used for ties and search
    args: tuple = ()  # product/quotient/max: variable indices; linear: (LinExpr,)


@dataclass(frozen=True)
class Linear:
    """lo <= expr <= hi (either bound may be None)."""

    expr: LinExpr
    lo: int | None
    hi: int | None
    name: str = ""


@dataclass(frozen=True)
class Divides:
    """divisor | dividend, both variable indices (constants become fixed decisions)."""

    divisor: int
    dividend: int
    name: str = ""


@dataclass(frozen=True)
class Resource:
    """A named capacity: ``usage <= capacity`` in ``unit``; what explanations report.

    Resources of one ``group`` (shared memory per block and per SM, say) limit the same thing
    and are relaxed together when an explanation asks how much of one is needed.
    """

    name: str
    usage: LinExpr
    capacity: int
    unit: str
    what: str
    group: str = ""


@dataclass
class Model:
    """A tiling problem as integer variables, constraints and a lexicographic objective."""

    name: str = "model"
    vars: list[VarInfo] = field(default_factory=list)
    constraints: list[Linear | Divides] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    objective: tuple[LinExpr, ...] = ()
    empty: list[str] = field(default_factory=list)  # defined variables with no possible value
    _by_name: dict[str, int] = field(default_factory=dict, repr=False)
    _consts: dict[int, int] = field(default_factory=dict, repr=False)

    # ----------------------------------------------------------------- variables
    def _add(self, info: VarInfo) -> IntVar:
        if info.name in self._by_name:
            raise ModelError(f"model {self.name!r}: variable {info.name!r} defined twice")
        if info.lo > info.hi:
            if info.kind == DECISION:
                raise ModelError(f"model {self.name!r}: variable {info.name!r} has an empty domain")
            # a defined variable no input can produce (e.g. 96 / 64 exactly): the model is
            # infeasible, which is an answer, not a modelling error
            self.empty.append(info.name)
            info = VarInfo(info.name, info.kind, info.hi, info.hi, info.values, info.prefer, info.args)
        self._by_name[info.name] = len(self.vars)
        self.vars.append(info)
        return IntVar(len(self.vars) - 1, info.name)

    def decision(self, name: str, values: Iterable[int], prefer: str = "min") -> IntVar:
        """A branching variable over an explicit set of non-negative values."""
        vals = tuple(sorted({int(v) for v in values}))
        if not vals:
            raise ModelError(f"model {self.name!r}: decision {name!r} has no values")
        if vals[0] < 0:
            raise ModelError(f"model {self.name!r}: decision {name!r} has a negative value")
        if prefer not in ("min", "max"):
            raise ModelError(f"prefer must be 'min' or 'max', got {prefer!r}")
        return self._add(VarInfo(name, DECISION, vals[0], vals[-1], vals, prefer))

    def const(self, value: int) -> IntVar:
        """A fixed value as a variable (shared per value)."""
        if value not in self._consts:
            self._consts[value] = self.decision(f"const_{value}", [value]).index
        return IntVar(self._consts[value], self.vars[self._consts[value]].name)

    def _var(self, x: Operand) -> IntVar:
        return self.const(x) if isinstance(x, int) else x

    def _nonneg(self, x: IntVar, role: str) -> None:
        if self.vars[x.index].lo < 0:
            raise ModelError(f"model {self.name!r}: {role} {x.name!r} may be negative")

    def product(self, name: str, *factors: Operand) -> IntVar:
        """x = f1 * f2 * ... (non-negative factors), as a chain of binary products."""
        if len(factors) < 2:
            raise ModelError(f"product {name!r} needs at least two factors")
        fs = [self._var(f) for f in factors]
        for f in fs:
            self._nonneg(f, "product factor")
        acc = fs[0]
        for k, f in enumerate(fs[1:], start=1):
            a, b = self.vars[acc.index], self.vars[f.index]
            vname = name if k == len(fs) - 1 else f"{name}__p{k}"
            acc = self._add(VarInfo(vname, PRODUCT, a.lo * b.lo, a.hi * b.hi, args=(acc.index, f.index)))
        return acc

    def quotient(self, name: str, dividend: Operand, divisor: Operand) -> IntVar:
        """x = dividend / divisor exactly (so divisor | dividend); divisor >= 1."""
        a, b = self._var(dividend), self._var(divisor)
        self._nonneg(a, "dividend")
        if self.vars[b.index].lo < 1:
            raise ModelError(f"model {self.name!r}: divisor {b.name!r} may be zero")
        ia, ib = self.vars[a.index], self.vars[b.index]
        # exact division: x * b = a >= a.lo, so x >= ceil(a.lo / b.hi) (>= 1 whenever a >= 1)
        return self._add(VarInfo(name, QUOTIENT, -(-ia.lo // ib.hi), ia.hi // ib.lo, args=(a.index, b.index)))

    def define(self, name: str, expr: Affine) -> IntVar:
        """x = a linear expression of earlier variables (bounds may be negative)."""
        e = as_expr(expr)
        lo, hi = self.bounds(e)
        return self._add(VarInfo(name, LINEAR, lo, hi, args=(e,)))

    def maximum(self, name: str, *operands: Affine) -> IntVar:
        """x = max(operands); linear operands get their own defined variables."""
        idx = []
        for k, op in enumerate(operands):
            if isinstance(op, IntVar):
                idx.append(op.index)
            else:
                idx.append(self.define(f"{name}__m{k}", op).index)
        infos = [self.vars[i] for i in idx]
        return self._add(VarInfo(name, MAXIMUM, max(v.lo for v in infos), max(v.hi for v in infos), args=tuple(idx)))

    # --------------------------------------------------------------- constraints
    def add_le(self, lhs: Affine, rhs: Affine, name: str = "") -> None:
        e = as_expr(lhs) - as_expr(rhs)
        self.constraints.append(Linear(LinExpr(e.terms, 0), None, -e.const, name))

    def add_ge(self, lhs: Affine, rhs: Affine, name: str = "") -> None:
        self.add_le(rhs, lhs, name)

    def add_eq(self, lhs: Affine, rhs: Affine, name: str = "") -> None:
        e = as_expr(lhs) - as_expr(rhs)
        self.constraints.append(Linear(LinExpr(e.terms, 0), -e.const, -e.const, name))

    def add_divides(self, divisor: Operand, dividend: Operand, name: str = "") -> None:
        d, x = self._var(divisor), self._var(dividend)
        self._nonneg(x, "dividend")
        if self.vars[d.index].lo < 1:
            raise ModelError(f"model {self.name!r}: divisor {d.name!r} may be zero")
        self.constraints.append(Divides(d.index, x.index, name))

    def add_resource(self, name: str, usage: Affine, capacity: int, unit: str, what: str, group: str = "") -> None:
        """usage <= capacity, remembered by name so explanations can relax and report it."""
        u = as_expr(usage)
        self.resources.append(Resource(name, u, int(capacity), unit, what, group or name))
        self.add_le(u, int(capacity), name=f"resource:{name}")

    def minimize(self, *levels: Affine) -> None:
        """Lexicographic objective: minimise levels[0], then levels[1], ..."""
        self.objective = tuple(as_expr(level) for level in levels)

    # ------------------------------------------------------------------ queries
    def var(self, name: str) -> IntVar:
        return IntVar(self._by_name[name], name)

    def decisions(self) -> list[int]:
        return [i for i, v in enumerate(self.vars) if v.kind == DECISION]

    def bounds(self, e: LinExpr) -> tuple[int, int]:
        lo = hi = e.const
        for i, c in e.terms:
            v = self.vars[i]
            lo += c * v.lo if c > 0 else c * v.hi
            hi += c * v.hi if c > 0 else c * v.lo
        return lo, hi

    def without_resources(self, names: Iterable[str]) -> Model:
        """A copy with the named resources dropped (for explaining infeasibility)."""
        drop = set(names)
        m = Model(self.name, list(self.vars), [], [], self.objective, list(self.empty), dict(self._by_name),
                  dict(self._consts))
        m.constraints = [c for c in self.constraints if c.name not in {f"resource:{n}" for n in drop}]
        m.resources = [r for r in self.resources if r.name not in drop]
        return m

    def evaluate(self, decision_values: dict[int, int]) -> list[int] | None:
        """All variable values given the decisions, or None if some definition is undefined."""
        vals = [0] * len(self.vars)
        for i, v in enumerate(self.vars):
            if v.kind == DECISION:
                vals[i] = decision_values[i]
            elif v.kind == PRODUCT:
                vals[i] = vals[v.args[0]] * vals[v.args[1]]
            elif v.kind == QUOTIENT:
                a, b = vals[v.args[0]], vals[v.args[1]]
                if a % b:
                    return None
                vals[i] = a // b
            elif v.kind == LINEAR:
                vals[i] = v.args[0].value(vals)
            else:
                vals[i] = max(vals[j] for j in v.args)
        return vals

    def feasible(self, vals: Sequence[int]) -> bool:
        """Do complete values satisfy every constraint (definitions are checked by evaluate)?"""
        for c in self.constraints:
            if isinstance(c, Linear):
                x = c.expr.value(vals)
                if (c.lo is not None and x < c.lo) or (c.hi is not None and x > c.hi):
                    return False
            elif vals[c.dividend] % vals[c.divisor]:
                return False
        return True

    def objective_value(self, vals: Sequence[int]) -> tuple[int, ...]:
        return tuple(e.value(vals) for e in self.objective)


@dataclass(frozen=True)
class Solution:
    """An assignment of every variable, its objective tuple and how it was found."""

    values: dict[str, int]
    objective: tuple[int, ...]
    solver: str
    nodes: int = 0
    seconds: float = 0.0

    def __getitem__(self, name: str) -> int:
        return self.values[name]

    def decisions(self, model: Model) -> dict[str, int]:
        return {model.vars[i].name: self.values[model.vars[i].name] for i in model.decisions()}
