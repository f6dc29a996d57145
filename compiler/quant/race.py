"""Timing quantization candidates in onnxruntime on this machine, as ``scheme="auto"`` does.

Why its own module: how a candidate is timed decides which plan ships, and timing at tens of
microseconds a call is easy to get wrong (a session's spinning thread pool steals the next
contender's cores; a single call after another session's reads cold caches).  ``race`` is the
one timing loop (the search's and ``benchmarks/quant_auto.py``'s); ``one_sample`` the held-out
input it times on; ``is_stepwise`` what an export's structure says about its speed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from rnnc.ir import Program


def batch_symbol(program: Program) -> str | None:
    """The Program's batch dim: axis 1 of its ``[L*D, B, H]`` state inputs when it has them, else
    ``B`` where an input has it (the tracer's name), else the first symbolic dim of input 0."""
    for _, ttype in program.graph.inputs[1:]:
        if ttype.rank == 3 and isinstance(ttype.shape[1], str):
            return ttype.shape[1]
    dims = [d for _, t in program.graph.inputs for d in t.shape if isinstance(d, str)]
    if "B" in dims:
        return "B"
    return next((d for d in program.graph.inputs[0][1].shape if isinstance(d, str)), None)


def samples(program: Program, batches: Sequence[tuple[Any, ...]]) -> int:
    """How many samples ``batches`` hold (their batch dims summed; a batch without one counts 1)."""
    symbol = batch_symbol(program)
    shape = program.graph.inputs[0][1].shape
    axis = shape.index(symbol) if symbol in shape else None
    return max(1, sum(int(b[0].shape[axis]) if axis is not None and hasattr(b[0], "shape") else 1 for b in batches))


def one_sample(program: Program, batch: tuple[Any, ...]) -> tuple[Any, ...]:
    """The first sample of ``batch``: each input narrowed to 1 along the axis that carries the
    Program's batch dim (:func:`batch_symbol`; time-major inputs and ``[L, B, H]`` states too)."""
    symbol = batch_symbol(program)
    out = []
    for (_, ttype), value in zip(program.graph.inputs, batch, strict=False):
        axis = ttype.shape.index(symbol) if symbol in ttype.shape else None
        out.append(value if axis is None or not hasattr(value, "narrow") else value.narrow(axis, 0, 1))
    return tuple(out)


def onnx_session(program: Program, batch: tuple[Any, ...], target: str) -> tuple[Any, dict[str, Any], bool]:
    """An onnxruntime session of ``program``'s export and its feeds for ``batch``, one sample
    (:func:`one_sample`): the states the export adds start at zeros, their batch dim 1; and whether
    the export runs a recurrence step by step (a Scan or Loop node: no fused layer kernel)."""
    import onnxruntime as ort

    model = export(program, target)
    opts = ort.SessionOptions()
    # one thread: every candidate's session is alive during the race, and each multi-threaded
    # session's pool keeps spinning after its call, stealing the next contender's cores (timings
    # of identical exports differed by 15 %); batch-1 edge inference runs on one core anyway
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for i, meta in enumerate(sess.get_inputs()):
        if i < len(batch):
            value = batch[i]
            feeds[meta.name] = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        else:
            feeds[meta.name] = np.zeros([d if isinstance(d, int) else 1 for d in meta.shape], np.float32)
    return sess, feeds, is_stepwise(model)


def export(program: Program, target: str) -> Any:
    from rnnc.backends.onnx.model import to_onnx
    from rnnc.backends.onnx.render import DEFAULT_OPSET

    return to_onnx(program, opset=DEFAULT_OPSET, target=target)


def is_stepwise(model: Any) -> bool:
    """The export runs a recurrence step by step (a Scan or Loop node): no fused layer kernel."""
    return any(n.op_type in ("Scan", "Loop") for n in model.graph.node)


#: each timing sample runs a contender back to back for about this long (seconds)
_SAMPLE_S = 2e-3


def race(runs: Sequence[tuple[Any, dict[str, Any]]], budget_s: float = 1.0) -> list[float]:
    """Best milliseconds per call of each session, timed round-robin (a noisy machine slows every
    contender of a round alike) until ``budget_s`` is spent (at least 5 rounds).

    Each sample is one untimed call, then enough back-to-back calls to last about ``_SAMPLE_S``,
    averaged: a deployed model runs call after call with its weights in cache, while a single call
    right after another session's reads cold caches and, at tens of microseconds, the timer's and
    the scheduler's jitter.  With one-thread sessions (:func:`onnx_session`) two identical exports
    time within 1 % of each other on Silero VAD (40 us a call); before, 15 % apart."""
    reps = []
    for sess, feeds in runs:
        t = time.perf_counter()
        sess.run(None, feeds)  # first call: allocations
        reps.append(max(1, min(100, int(_SAMPLE_S / max(time.perf_counter() - t, 1e-6)))))
    best = [float("inf")] * len(runs)
    spent, rounds = 0.0, 0
    while rounds < 5 or (spent < budget_s and rounds < 200):
        for k, (sess, feeds) in enumerate(runs):
            sess.run(None, feeds)  # warm: this session's weights back in cache
            t = time.perf_counter()
            for _ in range(reps[k]):
                sess.run(None, feeds)
            dt = time.perf_counter() - t
            best[k], spent = min(best[k], dt / reps[k]), spent + dt
        rounds += 1
    return [b * 1e3 for b in best]
