"""exp, sigmoid and tanh as plain float arithmetic, so LLVM vectorises them.

TVM 0.27's llvm lowering turns ``exp`` into the ``llvm.exp`` intrinsic, which LLVM scalarises
into one ``expf`` libm call per vector lane: in an LSTM step that made the gate math slower than
the recurrent matmul.  This is the Cephes single-precision ``expf`` (range reduction by
``ln 2``, a degree-7 polynomial, ``2^n`` built in the exponent bits): within 2 ulp of libm on
the clamped range, far inside the ``("float32", "tvm")`` tolerance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tvm import tirx

_LOG2E = 1.44269504088896341
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4
_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
_MAX = 88.3762626647949


def _c(v: float) -> Any:
    return tirx.const(v, "float32")


def let(value: Any, body: Callable[[Any], Any], dtype: str) -> Any:
    """``body(v)`` with ``v`` bound to ``value`` once: TIR expressions are trees, so a value read
    twice by an inlined formula would otherwise be copied (and nested formulas blow up)."""
    if isinstance(value, (tirx.Var, tirx.FloatImm, tirx.IntImm)):
        return body(value)
    var = tirx.Var("v", dtype)
    return tirx.Let(var, value, body(var))


def fast_exp(x: Any, dtype: str = "float32") -> Any:
    """``exp(x)`` for float32 (other dtypes fall back to TVM's ``exp``)."""
    if dtype != "float32":
        return tirx.exp(x)

    def poly(xc: Any) -> Any:
        return let(tirx.floor(xc * _c(_LOG2E) + _c(0.5)), lambda n: let(
            xc - n * _c(_LN2_HI) - n * _c(_LN2_LO), lambda r: _scaled_poly(r, n), "float32"), "float32")

    return let(tirx.max(tirx.min(x, _c(_MAX)), _c(-_MAX)), poly, "float32")


def _scaled_poly(r: Any, n: Any) -> Any:
    p = _c(_POLY[0])
    for coef in _POLY[1:]:
        p = p * r + _c(coef)
    p = p * r * r + r + _c(1.0)
    return p * tirx.reinterpret("float32", tirx.shift_left(tirx.Cast("int32", n) + 127, 23))


def fast_sigmoid(x: Any, dtype: str = "float32") -> Any:
    """``1 / (1 + exp(-x))``."""
    return tirx.sigmoid(x) if dtype != "float32" else _c(1.0) / (_c(1.0) + fast_exp(-x))


def fast_tanh(x: Any, dtype: str = "float32") -> Any:
    """``1 - 2 / (exp(2x) + 1)``: exact limits ±1, absolute error ~1e-7 near 0."""
    return tirx.tanh(x) if dtype != "float32" else _c(1.0) - _c(2.0) / (fast_exp(x * _c(2.0)) + _c(1.0))
