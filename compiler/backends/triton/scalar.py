"""Triton spellings of the IR's scalar ops: the render table, and so the op set the Triton
backend supports (``plan.LOOP_OPS`` is derived from it; a new IR op is one entry here)."""

from __future__ import annotations

from collections.abc import Callable

UNARY: dict[str, Callable[[str], str]] = {
    "neg": lambda a: f"(-{a})",
    "sigmoid": lambda a: f"tl.sigmoid({a})",
    # tanh through sigmoid: core tl has no tanh that both the interpreter and PTX accept
    "tanh": lambda a: f"(2.0 * tl.sigmoid(2.0 * {a}) - 1.0)",
    "exp": lambda a: f"tl.exp({a})",
    "log": lambda a: f"tl.log({a})",
    "softplus": lambda a: f"tl.where({a} > 20.0, {a}, tl.log(1.0 + tl.exp(tl.minimum({a}, 20.0))))",
    "relu": lambda a: f"tl.maximum({a}, 0.0)",
    "abs": lambda a: f"tl.abs({a})",
    "sqrt": lambda a: f"tl.sqrt({a})",
    "silu": lambda a: f"({a} * tl.sigmoid({a}))",
    "logsigmoid": lambda a: f"(tl.minimum({a}, 0.0) - tl.log(1.0 + tl.exp(-tl.abs({a}))))",
    "reciprocal": lambda a: f"(1.0 / {a})",
    "cos": lambda a: f"tl.cos({a})",
    "sin": lambda a: f"tl.sin({a})",
}
BINARY: dict[str, Callable[[str, str], str]] = {
    "add": lambda a, b: f"({a} + {b})",
    "sub": lambda a, b: f"({a} - {b})",
    "mul": lambda a, b: f"({a} * {b})",
    "div": lambda a, b: f"({a} / {b})",
    "max": lambda a, b: f"tl.maximum({a}, {b})",
    "min": lambda a, b: f"tl.minimum({a}, {b})",
    "gt": lambda a, b: f"({a} > {b})",
    "lt": lambda a, b: f"({a} < {b})",
}
