"""Sizes named by their expressions (``rnnc.ir.symdims``), checked against Python's own integer
arithmetic at many symbol sizes: a name is only useful if it is the size it claims to be."""

from __future__ import annotations

import operator
import random

import pytest

from rnnc.ir import symdims

_PY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv, "%": operator.mod}
_SYMBOLS = ("B", "T", "S")


def _random_expr(rng: random.Random, depth: int) -> tuple[object, object]:
    """(a size expression as nested tuples, its IR dim) built the way models build sizes."""
    if depth == 0 or rng.random() < 0.3:
        if rng.random() < 0.6:
            s = rng.choice(_SYMBOLS)
            return s, s
        n = rng.randint(1, 9)
        return n, n
    op = rng.choice(("+", "*", "//", "%", "-"))
    a, da = _random_expr(rng, depth - 1)
    if op in ("//", "%"):
        if rng.random() < 0.3:  # a divisor made of sizes: T // (B * S), T % (2 * B)
            k = rng.randint(1, 3)
            div, ddiv = ("*", k, rng.choice(_SYMBOLS)), None
            ddiv = symdims.name("*", k, div[2])
            return (op, a, div), symdims.name(op, da, ddiv)
        n = rng.randint(1, 8)
        return (op, a, n), symdims.name(op, da, n)
    b, db = _random_expr(rng, depth - 1)
    return (op, a, b), symdims.name(op, da, db)


def _value(expr: object, sizes: dict[str, int]) -> int:
    if isinstance(expr, str):
        return sizes[expr]
    if isinstance(expr, int):
        return expr
    op, a, b = expr  # type: ignore[misc]
    return _PY[op](_value(a, sizes), _value(b, sizes))


def test_names_evaluate_to_the_sizes_they_were_computed_as() -> None:
    rng = random.Random(0)
    for _ in range(400):
        expr, dim = _random_expr(rng, 4)
        assert dim != "?"
        for _ in range(5):
            sizes = {s: rng.randint(1, 50) for s in _SYMBOLS}
            assert symdims.evaluate(dim, sizes) == _value(expr, sizes), (expr, dim, sizes)
        if isinstance(dim, str):  # canonical: parsing and writing again gives the same text
            assert symdims.render(symdims.parse(dim)) == dim


def test_a_compound_divisor_keeps_its_brackets() -> None:
    """``T % (2*B)`` printed as ``T%2*B`` would read back as ``(T % 2) * B``."""
    for op, div in (("%", "2*B"), ("//", "B*S")):
        dim = symdims.name(op, "T", div)
        for t, b, s in ((7, 2, 3), (37, 2, 9), (5, 3, 1)):
            want = t % (2 * b) if op == "%" else t // (b * s)
            assert symdims.evaluate(dim, {"T": t, "B": b, "S": s}) == want, dim
            assert symdims.evaluate(symdims.name("+", dim, 1), {"T": t, "B": b, "S": s}) == want + 1


def test_one_size_computed_two_ways_gets_one_name() -> None:
    n = symdims.name
    assert n("*", "B", "T") == n("*", "T", "B") == "B*T"
    assert n("+", n("+", "T", 12), -8) == n("+", "T", 4)
    assert n("%", n("+", "T", 12), 8) == n("%", n("+", "T", 4), 8)
    assert n("//", n("*", 2, n("+", "T", 4)), 2) == n("+", "T", 4)
    assert n("%", n("*", 8, "T"), 8) == 0


@pytest.mark.parametrize(("shape", "others", "want"), [
    (("2*B*K", 8, 16), ("B", "2*K", 8), 16),          # DPRNN: the channel count comes back
    (("B", "T", 32), ("T*B",), 32),
    (("B", 16, "X-4"), ("B", 16, 8), "((X-4)//8)"),     # chunks of a padded length
    (("B",), (1, 1), "B"),
    ((4, "?"), (2,), "?"),                              # unknown stays unknown
    (("B", "T"), ("S",), "?"),
])
def test_the_minus_one_of_a_reshape(shape: tuple, others: tuple, want: object) -> None:
    assert symdims.quotient(shape, others) == want


def test_quotients_hold_at_every_size() -> None:
    rng = random.Random(1)
    for _ in range(200):
        sizes = {s: rng.randint(1, 30) for s in _SYMBOLS}
        k = rng.randint(1, 4)
        shape = ["B", f"{k}*T", 6]
        others = [rng.choice(["B", 2, 3]), rng.choice(["T", 1, 2])]
        got = symdims.quotient(shape, others)
        if got == "?":
            continue
        numel = sizes["B"] * k * sizes["T"] * 6
        rest = 1
        for d in others:
            rest *= symdims.evaluate(d, sizes)
        if numel % rest == 0:
            assert symdims.evaluate(got, sizes) == numel // rest, (shape, others, got)


def test_slice_lengths_follow_python_slicing() -> None:
    rng = random.Random(2)
    rest = symdims.name("-", 8, symdims.name("%", symdims.name("+", "T", 4), 8))  # 1..8, DPRNN's pad
    even = symdims.name("-", "T", symdims.name("%", "T", 2))  # x[:, :t - t % 2]: a pyramid drops the odd frame
    cases = [(0, symdims.END, 1), (4, symdims.END, 1), (0, -4, 1), (-3, symdims.END, 1), (1, symdims.END, 2),
             (0, symdims.name("-", 0, rest), 1), (0, even, 1)]
    for start, stop, step in cases:
        dim = symdims.slice_length("T", start, stop, step)
        assert dim != "?", (start, stop, step)
        for _ in range(20):
            t = rng.randint(9, 60)
            sizes = {"T": t}
            lo = symdims.evaluate(start, sizes)
            hi = t if stop == symdims.END else symdims.evaluate(stop, sizes)
            assert symdims.evaluate(dim, sizes) == len(range(t)[lo:hi:step]), (start, stop, step, t)


def test_a_bound_of_unknown_sign_is_not_guessed() -> None:
    assert symdims.slice_length("X", 0, "T-4", 1) == "?"  # T-4 could be negative (T < 4): from the end


def test_bounds_hold_the_value() -> None:
    rng = random.Random(3)
    for _ in range(300):
        expr, dim = _random_expr(rng, 3)
        if not isinstance(dim, str):
            continue
        lo, hi = symdims.bounds(symdims.parse(dim))
        for _ in range(5):
            sizes = {s: rng.randint(1, 40) for s in _SYMBOLS}
            assert lo <= _value(expr, sizes) <= hi, (dim, sizes, lo, hi)


def test_unknown_and_malformed_names() -> None:
    assert symdims.parse("?") is None and symdims.name("+", "?", 1) == "?"
    assert symdims.parse("B T") is None and symdims.parse("(B") is None
    assert symdims.evaluate("T'5004", {"T": 3}) is None  # derived through an op: not an expression
    assert symdims.evaluate("B*T", {"B": 2}) is None
    assert symdims.symbols("((T+4)//8)*B") == {"B", "T"} and symdims.symbols("T'5004") == {"T"}


def test_max_and_min_of_sizes() -> None:
    """``max``/``min`` pick an operand only where the bounds decide it at every size; otherwise
    they are one canonical atom that reads back, evaluates and has an interval."""
    assert symdims.name("max", "T", "T+1") == "T+1" and symdims.name("min", "T", "T+1") == "T"
    assert symdims.name("max", "T", 0) == "T"  # a size is >= 1
    both = symdims.name("max", "T", "S")
    assert both == symdims.name("max", "S", "T") == "max(S,T)"
    assert symdims.name("-", symdims.name("+", both, 1), 1) == both
    assert symdims.evaluate(symdims.name("-", both, "T"), {"S": 9, "T": 5}) == 4
    assert symdims.evaluate(symdims.name("min", "T", "S//2"), {"S": 9, "T": 5}) == 4
    assert symdims.symbols(symdims.name("+", both, "B")) == {"B", "S", "T"}
    assert symdims.bounds(symdims.parse(symdims.name("min", "T", 3))) == (1, 3)
    assert symdims.bounds(symdims.parse(both))[0] == 1
