"""Loop-nest emitters: how one materialized value becomes TIR loops, per device kind.

The layer builder (``layer.py``) decides *what* is computed where; an emitter decides *how the
loops look*.  Both emit into the current TVMScript IR-builder frame:

* :class:`CpuEmitter` (llvm): the outer loop parallel when the nest has enough work for the
  Schedule's threads, the innermost axis split into vector-lane tiles and vectorised; ``linear``
  gets a register-blocked micro-kernel (``mr`` vectors of output features x ``nr`` rows of
  accumulators, the Schedule's ``cpu_fused_recurrence`` parameters), reading the weight
  transposed so output features are contiguous.
* :class:`CudaEmitter`: every nest is one kernel launch over its flattened iteration space
  (``threads`` per block from the Schedule), reductions run a serial loop per thread.  Inside
  the serial time loop this gives one launch per nest per step: the grid-wide barrier between
  steps is the kernel boundary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tvm import tirx
from tvm.tirx.script.builder import ir as T

from rnnc.backends.tvm.exprs import Dim, Index, static
from rnnc.backends.tvm.knobs import Knobs, linear_tile, tile

Store = Callable[[Index, Any], None]  # store(index, value): emits the buffer store(s)
#: CPU accumulators: TVM 0.27 turns "local" allocations into a TVMBackendAllocWorkspace call
#: per loop iteration on llvm, while a small static "global" one becomes a stack alloca that
#: LLVM keeps in registers
_CPU_SCRATCH = "global"


@dataclass(frozen=True)
class LinearNest:
    """``out[rows..., j] = bias[j] + sum_k inp(rows..., k) * weight(k, j)`` for j < J, k < K."""

    rows: tuple[Dim, ...]
    J: int
    K: int
    inp: Callable[[Index, Any], Any]  # (row index, k) -> expr
    weight: Callable[[Any, Any], Any]  # (k, j) -> expr
    bias: Callable[[Any], Any] | None
    dtype: str
    out: Callable[[Index], Any] | None = None  # reads back partial sums (enables K blocking)


def _work(shape: tuple[Dim, ...], batch_hint: int) -> int:
    """Static element count, symbolic dims counted as ``batch_hint`` (the Schedule's batch)."""
    return math.prod(static(d) if static(d) is not None else batch_hint for d in shape)


def _nest(shape: tuple[Dim, ...], body: Callable[[list[Any]], None], outer_parallel: bool, lanes: int) -> None:
    """Loops over ``shape`` around ``body(index)``: outer parallel, innermost vector tiles."""
    idx: list[Any] = []

    def level(d: int) -> None:
        if d == len(shape):
            body(idx)
            return
        extent = shape[d]
        n = static(extent)
        if d == len(shape) - 1 and n is not None and n >= lanes and n % lanes == 0 and lanes > 1 \
                and not (outer_parallel and d == 0):
            with T.serial(0, n // lanes) as jo, T.vectorized(0, lanes) as ji:
                idx.append(jo * lanes + ji)
                level(d + 1)
                idx.pop()
            return
        loop = T.parallel if outer_parallel and d == 0 else T.serial
        with loop(0, extent) as i:
            idx.append(i)
            level(d + 1)
            idx.pop()

    if not shape:
        body([])
    else:
        level(0)


def _invariant_let(expr: Any, lane: Any) -> bool:
    """Whether some ``Let`` binds a value that does not depend on the vector lane ``lane`` (GLA's
    per-key-channel decay, broadcast over the value channels): TVM 0.27's vectoriser rejects
    that form ("Let cannot bind the same var to two different values"), so such a nest is left to
    LLVM's own vectoriser instead of ``T.vectorized``."""
    from tvm.tirx.analysis import undefined_vars

    if type(expr).__name__ == "Let":
        if not any(v.same_as(lane) for v in undefined_vars(expr.value)):
            return True
        return _invariant_let(expr.value, lane) or _invariant_let(expr.body, lane)
    for field in ("a", "b", "value", "condition", "true_value", "false_value"):
        child = getattr(expr, field, None)
        if child is not None and not isinstance(child, (int, float, str)) and _invariant_let(child, lane):
            return True
    return any(_invariant_let(c, lane) for c in getattr(expr, "args", ()) or ())


class CpuEmitter:
    """CPU loops from :class:`Knobs` (see the module docstring)."""

    kind = "cpu"

    def __init__(self, knobs: Knobs, min_work: int | None = None) -> None:
        self.k = knobs
        self.min_work = knobs.parallel_min_work if min_work is None else min_work

    def for_stage(self, stage: str) -> CpuEmitter:
        """The emitter of a stage: nests inside the time loop need more work to go parallel."""
        return CpuEmitter(self.k, self.k.parallel_min_work_per_step if stage == "step" else None)

    def _parallel(self, work: int) -> bool:
        return self.k.threads > 1 and work >= self.min_work

    def elementwise(self, shape: tuple[Dim, ...], value: Callable[[Index], Any], store: Store) -> None:
        par = self._parallel(_work(shape, self.k.batch)) and len(shape) > 1
        index = tuple(tirx.Var(f"i{d}", "int32") for d in range(len(shape)))
        lanes = 1 if index and _invariant_let(value(index), index[-1]) else self.k.vector_lanes
        _nest(shape, lambda idx: store(tuple(idx), value(tuple(idx))), par, lanes)

    def reduction(self, shape: tuple[Dim, ...], extent: int, init: Callable[[Index], Any],
                  term: Callable[[Index, Any], Any], store: Store, dtype: str) -> None:
        """``out[idx] = init(idx) + sum_{r < extent} term(idx, r)``, one accumulator per element."""
        par = self._parallel(_work(shape, self.k.batch) * extent) and len(shape) > 0

        def body(idx: list[Any]) -> None:
            acc = T.alloc_buffer((1,), dtype, scope=_CPU_SCRATCH)
            T.buffer_store(acc, init(tuple(idx)), [0])
            with T.serial(0, extent) as r:
                T.buffer_store(acc, acc[0] + term(tuple(idx), r), [0])
            store(tuple(idx), acc[0])

        _nest(shape, body, par, 1)

    def linear(self, lin: LinearNest, store: Store) -> None:
        """The register-blocked matrix product: output-feature tiles of ``mr * lanes`` (parallel
        across threads), ``nr`` rows per accumulator block, K split into ``k_block`` panels
        (each ``k_block x tile`` slice of the weight stays in L1 while every row block uses
        it; partial sums go through the output buffer), the K loop innermost but one."""
        lanes = self.k.vector_lanes
        kb = tile(lin.K, self.k.k_block, 1) if lin.out is not None else lin.K
        jt = linear_tile(lin.J, self.k)
        par = self._parallel(_work(lin.rows, self.k.batch) * lin.J * lin.K) and lin.J // jt > 1
        nr = max(1, self.k.nr)
        zero = tirx.const(0.0, lin.dtype)
        vl = lanes if jt % lanes == 0 and lanes > 1 else 1

        def vec_tile(fn: Callable[[int, Any], None]) -> None:
            """``fn(jv, ji)`` over the ``jt`` features of a tile as ``jt / lanes`` separate vectors
            of ``lanes`` (feature ``jv * lanes + ji``): one long vector is legalised into spills."""
            for jv in range(jt // vl):
                with (T.vectorized if vl > 1 else T.serial)(0, vl) as ji:
                    fn(jv, ji)

        with (T.parallel if par else T.serial)(0, lin.J // jt) as jo:
            *outer, last = lin.rows

            def rows_block(prefix: list[Any], first: Any, count: int) -> None:
                # one small buffer per accumulator vector: LLVM promotes each to a register
                acc = [[T.alloc_buffer((vl,), lin.dtype, scope=_CPU_SCRATCH) for _ in range(jt // vl)]
                       for _ in range(count)]
                for r in range(count):
                    vec_tile(lambda jv, ji, r=r: T.buffer_store(
                        acc[r][jv], init((*prefix, first + r), jo * jt + jv * vl + ji), [ji]))
                with T.serial(0, kb) as kk:
                    k = ko * kb + kk if ko is not None else kk
                    for r in range(count):
                        a = lin.inp((*prefix, first + r), k)
                        vec_tile(lambda jv, ji, r=r, a=a, k=k: T.buffer_store(
                            acc[r][jv], acc[r][jv][ji] + a * lin.weight(k, jo * jt + jv * vl + ji), [ji]))
                for r in range(count):
                    vec_tile(lambda jv, ji, r=r: store((*prefix, first + r, jo * jt + jv * vl + ji), acc[r][jv][ji]))

            def init(row: Index, j: Any) -> Any:
                first_panel = lin.bias(j) if lin.bias else zero
                return first_panel if ko is None else tirx.Select(ko == 0, first_panel, lin.out((*row, j)))

            def over_rows(prefix: list[Any]) -> None:
                n = static(last)
                if n is not None and n <= nr:
                    rows_block(prefix, 0, n)
                    return
                if nr > 1:
                    with T.serial(0, tirx.floordiv(last, nr)) as rb:
                        rows_block(prefix, rb * nr, nr)
                    with T.serial(tirx.floordiv(last, nr) * nr, last) as rt:
                        rows_block(prefix, rt, 1)
                else:
                    with T.serial(0, last) as rt:
                        rows_block(prefix, rt, 1)

            if kb == lin.K:
                ko = None
                _outer_loops(outer, over_rows)
            else:
                with T.serial(0, lin.K // kb) as ko:
                    _outer_loops(outer, over_rows)


def _outer_loops(dims: list[Dim], inner: Callable[[list[Any]], None]) -> None:
    idx: list[Any] = []

    def level(d: int) -> None:
        if d == len(dims):
            inner(list(idx))
            return
        with T.serial(0, dims[d]) as i:
            idx.append(i)
            level(d + 1)
            idx.pop()

    level(0)


class CudaEmitter:
    """One kernel launch per nest over the flattened iteration space (module docstring)."""

    kind = "cuda"

    def __init__(self, knobs: Knobs) -> None:
        self.k = knobs

    def for_stage(self, stage: str) -> CudaEmitter:
        return self

    def _launch(self, shape: tuple[Dim, ...], body: Callable[[Index], None]) -> None:
        total: Any = 1
        for d in shape:
            total = total * d
        threads = self.k.threads_per_block
        bx, tx = T.env_thread("blockIdx.x"), T.env_thread("threadIdx.x")
        blocks = tirx.floordiv(total + threads - 1, threads) if static(total) is None else -(-static(total) // threads)
        with T.launch_thread(bx, blocks), T.launch_thread(tx, threads):
            flat = bx * threads + tx
            with T.If(flat < total), T.Then():
                idx, rem = [], flat
                for d in reversed(shape):
                    idx.append(tirx.floormod(rem, d))
                    rem = tirx.floordiv(rem, d)
                body(tuple(reversed(idx)))

    def elementwise(self, shape: tuple[Dim, ...], value: Callable[[Index], Any], store: Store) -> None:
        self._launch(shape, lambda idx: store(idx, value(idx)))

    def reduction(self, shape: tuple[Dim, ...], extent: int, init: Callable[[Index], Any],
                  term: Callable[[Index, Any], Any], store: Store, dtype: str) -> None:
        def body(idx: Index) -> None:
            acc = T.alloc_buffer((1,), dtype, scope="local")
            T.buffer_store(acc, init(idx), [0])
            with T.serial(0, extent) as r:
                T.buffer_store(acc, acc[0] + term(idx, r), [0])
            store(idx, acc[0])

        self._launch(shape, body)

    def linear(self, lin: LinearNest, store: Store) -> None:
        zero = tirx.const(0.0, lin.dtype)
        self.reduction((*lin.rows, lin.J), lin.K, lambda idx: lin.bias(idx[-1]) if lin.bias else zero,
                       lambda idx, k: lin.inp(idx[:-1], k) * lin.weight(k, idx[-1]), store, lin.dtype)
