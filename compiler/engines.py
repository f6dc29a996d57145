"""Which engine runs a whole model fastest here: measured on the example inputs, not assumed.

Why: a model is more than its recurrent layers.  The kernel backends (C, TVM) run the recurrent
layers natively and every other op (convs, norms, an STFT, the head) through the IR
interpreter, one torch call at a time -- for a small streaming model such as Silero VAD that
per-op Python dispatch, not arithmetic, is the cost (673 us per chunk against 112 us for
onnxruntime on rnnc's own export).  So when a program has non-recurrent ops and no backend was
named, ``rnnc.compile`` also builds the whole-model engines -- ``native`` (the whole program,
layer kernels included, as one C function: ``rnnc.backends.cstyle.whole``, beside the C backend)
and ``onnx`` (onnxruntime on rnnc's export) -- times each candidate on the example inputs and
keeps the fastest; ``explain()`` shows the timings.  A program that is only recurrent layers
keeps the kernel backend (and its streaming step API).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

#: registered backends that run a whole model natively, measured against the kernel backends (the
#: ``native`` engine is built from the C backend's own runner: ``rnnc.api._native_runner``)
WHOLE_MODEL_ENGINES = ("onnx",)
#: seconds of timing per candidate (after two warm-up calls)
BUDGET_S = 0.25


def has_non_recurrent_ops(program: Any) -> bool:
    """Whether any top-level op is not an ``rnn`` node (what the interpreter would run)."""
    return any(n.op != "rnn" for n in program.graph.nodes)


def whole_model_may_win(program: Any) -> bool:
    """Whether onnxruntime on rnnc's export is worth timing against the kernel backend on a CPU:
    the model has ops outside its recurrent layers, or a matrix-state layer that the export
    writes as onnxruntime's own ``LinearAttention`` kernel (``rnnc.backends.onnx.linattn``)."""
    from rnnc.ir.printer import layer_cells
    from rnnc.passes import plan_layer

    return has_non_recurrent_ops(program) or any(plan_layer(c).chunk is not None for c in layer_cells(program).values())


def best_time(fn: Callable[..., Any], inputs: Sequence[Any], budget_s: float = BUDGET_S, max_reps: int = 200) -> float:
    """Best wall time of ``fn(*inputs)`` after two warm-up calls, within ``budget_s``."""
    import torch

    with torch.no_grad():
        fn(*inputs)
        fn(*inputs)
        best, spent, reps = float("inf"), 0.0, 0
        while reps < max_reps and (spent < budget_s or reps < 3):
            t0 = time.perf_counter()
            fn(*inputs)
            dt = time.perf_counter() - t0
            best, spent, reps = min(best, dt), spent + dt, reps + 1
    return best


def fastest(runners: dict[str, Any], inputs: Sequence[Any]) -> tuple[str, dict[str, float]]:
    """(name of the fastest runner, seconds per call of each) on ``inputs``.  A runner that raises
    on them times as infinite (``describe`` says it failed): an optional engine that cannot run a
    model must not take the compile down with it."""
    times: dict[str, float] = {}
    for name, run in runners.items():
        try:
            times[name] = best_time(run, inputs)
        except Exception:  # noqa: BLE001 -- any failure of an optional engine is "not this one"
            times[name] = float("inf")
    best = min(times, key=times.__getitem__)
    if times[best] == float("inf"):  # nothing runs on these inputs: the first runner says why
        next(iter(runners.values()))(*inputs)
    return best, times


def describe(times: dict[str, float], best: str) -> str:
    from rnnc.constraints.units import fmt_seconds

    ranked = sorted(times.items(), key=lambda kv: kv[1])
    return "measured on the example inputs: " + ", ".join(
        f"{n} {fmt_seconds(t) if t != float('inf') else 'failed'}" for n, t in ranked) + f" -> {best}"
