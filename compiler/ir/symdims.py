"""Symbolic dims computed from other symbolic dims: ``B*T``, ``T+4``, ``((T+4)//8)``.

Why: models compute sizes from their inputs' sizes -- DPRNN pads ``T`` to a multiple of its chunk
and views ``[B, N, T']`` as ``[B*K, 8, N]``; a hierarchical attention network views
``[B, S, W, E]`` as ``[B*S, W, E]``; a video model runs a CNN over ``[B*T, C, H, W]``.  When such a
size is only "unknown" (``?``), the next ``view(..., -1)`` cannot say its channel count and every
op after it that checks channels (a norm, a conv, a matmul) fails.  Naming the size by its
expression keeps what shape inference needs: the element count of ``[B*K, 8, N]`` divided by
``B*K*8`` is ``N``.

A dim is an ``int`` or a ``str``; this module reads a ``str`` dim as a polynomial with integer
coefficients over *atoms* -- a symbol (``B``, ``T``, ``T'5004``), or a floor division or modulo
that does not simplify (``((T+4)//8)``) -- and writes polynomials back in one canonical text, so
the same size computed twice, anywhere, gets the same name and stays "the same dim".  ``?`` (and
any name containing ``?``) is unknown and poisons every expression it enters.  Names are claims
about sizes for shape inference only: every op still computes its sizes at run time.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

#: sorted atoms of a monomial -> its coefficient; ``()`` is the constant term
Poly = dict[tuple[str, ...], int]
Dim = int | str

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_?][\w'?]*)|(//|[-+*%(),])|('\d+))")
_IDENT = re.compile(r"[A-Za-z_?][\w'?]*")
#: an identifier that is no call (``max`` in ``max(T,S)`` is none)
_NAME = re.compile(r"[A-Za-z_?][\w'?]*(?![\w'?]|\s*\()")


def const(n: int) -> Poly:
    return {(): n} if n else {}


def atom(name: str) -> Poly:
    return {(name,): 1}


def _clean(p: Poly) -> Poly:
    return {k: v for k, v in p.items() if v}


def add(a: Poly, b: Poly, sign: int = 1) -> Poly:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + sign * v
    return _clean(out)


def mul(a: Poly, b: Poly) -> Poly:
    out: Poly = {}
    for ka, va in a.items():
        for kb, vb in b.items():
            k = tuple(sorted(ka + kb))
            out[k] = out.get(k, 0) + va * vb
    return _clean(out)


def _constant(p: Poly) -> int | None:
    if not p:
        return 0
    return p[()] if set(p) == {()} else None


def _operand(p: Poly) -> str:
    """An operand of ``//`` or ``%`` in brackets unless it is one atom or a positive constant:
    ``T % (2*B)`` must not print as ``T%2*B``, which reads back as ``(T % 2) * B``."""
    text = str(render(p))
    ((k, v),) = p.items() if len(p) == 1 else ((None, 0),)
    plain = k is not None and ((len(k) == 1 and v == 1) or (not k and v > 0))
    return text if plain else f"({text})"


def _opaque(op: str, a: Poly, b: Poly) -> Poly:
    return atom(f"({_operand(a)}{op}{_operand(b)})")


def floordiv(a: Poly, b: Poly) -> Poly | None:
    """``a // b``: exact where every term divides (``(2*T+8)//2`` is ``T+4``), an atom otherwise."""
    c, ca = _constant(b), _constant(a)
    if c == 0:
        return None
    if c is not None and ca is not None:
        return const(ca // c)
    if c is not None and all(v % c == 0 for v in a.values()):
        return {k: v // c for k, v in a.items()}
    q = divide(a, b)
    return q if q is not None else _opaque("//", a, b)


def mod(a: Poly, b: Poly) -> Poly | None:
    c, ca = _constant(b), _constant(a)
    if c == 0:
        return None
    if c is not None and ca is not None:
        return const(ca % c)
    if c is not None:  # multiples of c drop out: (2*T+12) % 8 is (2*T+4) % 8, (2*T+5) % 2 is 1
        a = _clean({k: v % c for k, v in a.items()})
        if _constant(a) is not None:
            return const(_constant(a) % c)
    return {} if divide(a, b) is not None else _opaque("%", a, b)


def divide(a: Poly, b: Poly) -> Poly | None:
    """``a / b`` when ``b`` is one monomial dividing every term of ``a`` exactly, else ``None``."""
    if len(b) != 1:
        return None
    ((kb, vb),) = b.items()
    out: Poly = {}
    for ka, va in a.items():
        rest = list(ka)
        for x in kb:
            if x not in rest:
                return None
            rest.remove(x)
        if va % vb:
            return None
        out[tuple(rest)] = va // vb
    return out


def extreme(op: str, a: Poly, b: Poly) -> Poly:
    """``max(a, b)`` or ``min(a, b)`` (two audio streams padded to the longer, a skip connection
    cropped to the shorter): the operand that is larger (smaller) at every size where the bounds of
    ``a - b`` say so, else an atom ``max(a,b)`` with its operands in canonical order -- never the
    operand that happened to be larger at the example."""
    lo, hi = bounds(add(a, b, -1))
    if lo >= 0 or hi <= 0:
        return a if (lo >= 0) == (op == "max") else b
    x, y = sorted((str(render(a)), str(render(b))))
    return atom(f"{op}({x},{y})")


OPS = {"+": lambda a, b: add(a, b), "-": lambda a, b: add(a, b, -1), "*": mul, "//": floordiv, "%": mod,
       "max": lambda a, b: extreme("max", a, b), "min": lambda a, b: extreme("min", a, b)}
#: the ops written as functions, ``max(T,S)``
_CALLS = ("max", "min")


def apply(op: str, a: Poly | None, b: Poly | None) -> Poly | None:
    """``a op b`` for the size arithmetic ``+ - * // % max min``; ``None`` (unknown) in, ``None`` out."""
    if a is None or b is None:
        return None
    return OPS[op](a, b)


def _monomial_text(k: tuple[str, ...], v: int) -> str:
    if not k:
        return str(abs(v))
    return "*".join(([str(abs(v))] if abs(v) != 1 else []) + list(k))


def render(p: Poly) -> Dim:
    """The canonical text of ``p`` (an ``int`` when it is constant): terms of higher degree first,
    then by their atoms; the constant last."""
    c = _constant(p)
    if c is not None:
        return c
    terms = sorted(p.items(), key=lambda kv: (-len(kv[0]), kv[0]))
    out = ""
    for k, v in terms:
        text = _monomial_text(k, v)
        out += ("-" if v < 0 else ("+" if out else "")) + text
    return out


def parse(d: Dim) -> Poly | None:
    """A dim as a polynomial; ``None`` for ``?`` or text that is no size expression."""
    if isinstance(d, bool):
        return None
    if isinstance(d, int):
        return const(d)
    if "?" in d:
        return None
    tokens: list[str] = []
    pos = 0
    while pos < len(d):
        m = _TOKEN.match(d, pos)
        if not m or m.end() == pos:
            return None
        tokens.append(m.group(0).strip())
        pos = m.end()
    try:
        p, rest = _expr(tokens, 0)
    except (IndexError, ValueError):
        return None
    return p if rest == len(tokens) else None


def _expr(tokens: list[str], i: int) -> tuple[Poly | None, int]:
    p, i = _term(tokens, i)
    while i < len(tokens) and tokens[i] in "+-":
        op = tokens[i]
        q, i = _term(tokens, i + 1)
        p = apply(op, p, q)
    return p, i


def _term(tokens: list[str], i: int) -> tuple[Poly | None, int]:
    p, i = _factor(tokens, i)
    while i < len(tokens) and tokens[i] in ("*", "//", "%"):
        op = tokens[i]
        q, i = _factor(tokens, i + 1)
        p = apply(op, p, q)
    return p, i


def _factor(tokens: list[str], i: int) -> tuple[Poly | None, int]:
    tok = tokens[i]
    if tok == "-":
        p, i = _factor(tokens, i + 1)
        return apply("-", const(0), p), i
    if tok == "(":
        p, i = _expr(tokens, i + 1)
        if tokens[i] != ")":
            raise ValueError("unbalanced")
        i += 1
        if i < len(tokens) and tokens[i].startswith("'"):  # (B*T)'5004: a size derived from B*T
            return (None if p is None else atom(f"({render(p)}){tokens[i]}")), i + 1
        return p, i
    if tok.isdigit():
        return const(int(tok)), i + 1
    if tok in _CALLS and i + 1 < len(tokens) and tokens[i + 1] == "(":  # max(T,S)
        p, i = _expr(tokens, i + 2)
        if tokens[i] != ",":
            raise ValueError("max/min of one operand")
        q, i = _expr(tokens, i + 1)
        if tokens[i] != ")":
            raise ValueError("unbalanced")
        return apply(tok, p, q), i + 1
    if _IDENT.fullmatch(tok):
        return atom(tok), i + 1
    raise ValueError(tok)


def name(op: str, a: Dim, b: Dim) -> Dim:
    """The dim ``a op b`` (``"?"`` when either is unknown)."""
    p = apply(op, parse(a), parse(b))
    return "?" if p is None else render(p)


def product(dims: Iterable[Dim]) -> Poly | None:
    out: Poly | None = const(1)
    for d in dims:
        out = apply("*", out, parse(d))
    return out


def quotient(numerator: Iterable[Dim], denominator: Iterable[Dim]) -> Dim:
    """The ``-1`` of a reshape: the product of the input's dims over the output's other dims, exact
    (``[2*B*K, 8, 16]`` viewed as ``[B, 2*K, 8, -1]``: 16), else a floor-division atom when the
    denominator's atoms divide out and a constant is left over, else ``?``."""
    num, den = product(numerator), product(denominator)
    if num is None or den is None or not den:
        return "?"
    q = divide(num, den)
    if q is not None:
        return render(q)
    if len(den) != 1:
        return "?"
    ((atoms, c),) = den.items()
    atoms_only = divide(num, {atoms: 1})
    if atoms_only is None:
        return "?"
    g = math.gcd(c, *atoms_only.values())  # [B, 16, X-4] as [B, 16, 8, -1]: (X-4)//8, not (16*X-64)//128
    q = floordiv({k: v // g for k, v in atoms_only.items()}, const(c // g))
    return "?" if q is None else render(q)


#: "to the end" as a slice stop (printed as an int so the IR text round-trips)
END = 2**62


def _atom_range(a: str) -> tuple[float, float]:
    """An input symbol is >= 1, a size derived through an op (``T'5004``) >= 0; ``(p%c)`` lies in
    [0, c-1] and ``(p//c)`` in p's interval over c; anything else could be any integer."""
    if _IDENT.fullmatch(a):
        return (0 if "'" in a else 1), math.inf
    call = re.fullmatch(r"(max|min)\((.*)\)", a)
    operands = [parse(f"({x})") for x in _split_comma(call.group(2))] if call else []
    if len(operands) == 2 and None not in operands:
        (lo1, hi1), (lo2, hi2) = (bounds(x) for x in operands if x is not None)
        pick = max if call.group(1) == "max" else min
        return pick(lo1, lo2), pick(hi1, hi2)
    m = re.fullmatch(r"\((.*)(//|%)(\d+)\)", a)
    if not m:
        return (0, math.inf) if a.endswith(tuple("0123456789")) and "'" in a else (-math.inf, math.inf)
    c = int(m.group(3))
    if m.group(2) == "%":
        return 0, c - 1
    inner = parse(m.group(1))
    if inner is None:
        return -math.inf, math.inf
    return tuple(x if math.isinf(x) else x // c for x in bounds(inner))  # type: ignore[return-value]


def _split_comma(text: str) -> list[str]:
    """``text`` split at its commas outside brackets (``max(T,(S%2))``'s two operands)."""
    depth, parts, start = 0, [], 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def _times(x: tuple[float, float], y: tuple[float, float]) -> tuple[float, float]:
    ends = [0.0 if 0 in (a, b) else a * b for a in x for b in y]
    return min(ends), max(ends)


def _without_mods(p: Poly) -> Poly:
    """``p`` with every ``(q % c)`` written ``q - c * (q // c)`` (the same value), so that
    ``x - x % c`` becomes ``c * (x // c)``, whose interval is not below 0."""
    out: Poly = {}
    for k, v in p.items():
        term = const(v)
        for a in k:
            m = re.fullmatch(r"\((.*)%(\d+)\)", a)
            inner = parse(m.group(1)) if m else None
            quot = floordiv(inner, const(int(m.group(2)))) if inner is not None and m else None
            if m is None or inner is None or quot is None:
                term = mul(term, atom(a))
            else:
                term = mul(term, add(inner, mul(const(int(m.group(2))), quot), -1))
        out = add(out, term)
    return out


def bounds(p: Poly) -> tuple[float, float]:
    """An interval holding ``p`` for every size of its atoms: the tighter of the intervals of
    ``p`` and of ``p`` with its modulos written out (``x - x % 2`` is ``2 * (x // 2)``)."""
    lo, hi = _interval(p)
    if lo < 0 <= hi and any("%" in a for k in p for a in k):
        lo2, hi2 = _interval(_without_mods(p))
        lo, hi = max(lo, lo2), min(hi, hi2)
    return lo, hi


def _interval(p: Poly) -> tuple[float, float]:
    lo = hi = 0.0
    for k, v in p.items():
        r: tuple[float, float] = (v, v)
        for x in k:
            r = _times(r, _atom_range(x))
        lo, hi = lo + r[0], hi + r[1]
    return lo, hi


def slice_length(d: Dim, start: Dim, stop: Dim, step: int) -> Dim:
    """The length of ``x[start:stop:step]`` along a dim of size ``d``, bounds counted from the end
    when negative (``bounds`` says so: ``-(T%8)-1`` is), ``?`` when a bound's sign is unknown, assuming the bounds lie
    inside the dim -- a name for shape inference, which the op's run-time size does not read."""
    if isinstance(d, int) and isinstance(start, int) and isinstance(stop, int):
        return len(range(*slice(start, stop, step).indices(d)))
    n, lo, hi = parse(d), parse(start), parse(END if stop == END else stop)
    if isinstance(stop, int) and stop >= END:
        hi = n
    if lo is None or hi is None:
        return "?"
    ends = []
    for p in (lo, hi):  # a bound of unknown sign could count from either end
        low, high = bounds(p)
        if high < 0:
            p = apply("+", n, p)
        elif low < 0:
            return "?"
        ends.append(p)
    lo, hi = ends
    span = apply("-", hi, lo)
    if span is not None and step != 1:
        span = floordiv(add(span, const(step - 1)), const(step))
    return "?" if span is None else render(span)


def evaluate(d: Dim, sizes: Mapping[str, int]) -> int | None:
    """The size ``d`` names, given its symbols' sizes (``None`` when one is missing or ``d`` is
    ``?`` or derived through an op, ``T'5004``)."""
    if isinstance(d, int):
        return d
    p = parse(d)
    if p is None:
        return None
    if all(a in sizes for k in p for a in k):  # atoms known by name: ((T+4)//8) given as a size
        return sum(v * math.prod(sizes[a] for a in k) for k, v in p.items())
    out = []
    for m in _TOKEN.finditer(d):
        number, ident, op, suffix = m.groups()
        call = ident in _CALLS and d[m.end():].lstrip().startswith("(")
        if suffix or (ident and not call and ("'" in ident or ident not in sizes)):
            return None
        out.append(ident if call else str(sizes[ident]) if ident else (number or op))
    # digits, + - * // % ( ) , and max/min only
    return int(eval("".join(out), {"__builtins__": {}, "max": max, "min": min}))  # noqa: S307


def prefix_stop(d: Dim, n: int, size: int, near_end: int = 0) -> int:
    """The stop of the slice a loop of ``n`` steps over the first positions of a dim ``d`` (of
    ``size`` at the example) reads: ``-(size - n)`` when ``d`` less that many is a size of the
    inputs itself -- ``for t in range(T)`` over ``cat([go_frame, frames])`` (``T+1``) stops one
    short of the end at every length -- or when it is at most ``near_end`` short of a symbolic
    dim (``for t in range(T - 1)``, which runs no step at T = 1: the caller must allow for an
    empty prefix), else ``n``, a fixed count (``range(4)`` over ``T``: a prologue).  Why a guess
    is safe: both read exactly the traced steps at the example, and the trace checks the Program
    at other sizes."""
    short = size - n
    p = parse(d)
    if short <= 0 or p is None or not p:
        return n
    rest = add(p, const(-short))
    if short <= near_end and any(k != () for k in p):
        return -short
    return -short if rest and () not in rest and all(v > 0 for v in rest.values()) else n


def symbols(d: Dim) -> set[str]:
    """The input symbols a dim is computed from (``T'5004`` and ``((T+4)//8)`` both: ``{T}``)."""
    if not isinstance(d, str):
        return set()
    return {m.split("'")[0] for m in _NAME.findall(d) if "?" not in m}
