"""The loop-nest IR shared by the C-style backends (C and CUDA render the same tree).

It is deliberately tiny, in the spirit of tinygrad's linearised UOps but as a tree: integer and
float expressions, loops whose ``kind`` says how a dialect maps them onto hardware, stores,
scalar lets, guarded blocks and barriers.  Everything a dialect has to decide is carried by the
node (``Loop.kind``, ``Barrier.scope``, ``Buffer.space``), so renderers never look at cells,
schedules or op names of the step graph: they translate nodes one by one.

Loop kinds:

* ``serial``   - a plain loop in both dialects.
* ``unroll``   - a loop of constant trip count the compiler should unroll (register tiles).
* ``parallel`` - work split across cores (C: ``omp for`` inside the kernel's parallel region)
  or across thread blocks (CUDA: grid-stride over ``blockIdx.x``).
* ``vector``   - innermost data-parallel loop (C: ``omp simd``; CUDA: block-stride over
  ``threadIdx.x``).
* ``warps``    - the warps of a block (extent = threads / 32; C: a serial loop; CUDA: runs
  once, the index is ``threadIdx.x / 32``).
* ``lanes``    - the 32 lanes of a warp (C: a serial loop; CUDA: runs once, the index is
  ``threadIdx.x % 32``).  Float accumulators named in ``Loop.reduce`` (bound before the loop)
  hold per-lane partial sums inside it and their sum over all lanes after it (CUDA: a warp
  shuffle butterfly; C: the serial loop already summed them).

Buffer space ``register``: per-thread arrays (a GPU's register-resident weights) indexed as
``[thread, slot]`` where ``thread = warp * 32 + lane`` of the enclosing ``warps``/``lanes``
loops; C emulates a block's threads in one core and keeps the whole array, CUDA gives each
thread its own row (the thread part of the index renders as 0, slots must be constants).

Barrier scopes: ``block`` (threads of one CUDA block; nothing on a CPU core) and ``grid``
(every worker: ``omp barrier`` / cooperative-groups ``grid.sync()``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

LoopKind = Literal["serial", "unroll", "parallel", "vector", "warps", "lanes"]
Space = Literal["arg", "work", "local", "register"]


# --------------------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Var:
    """An integer variable: a loop index or a scalar kernel argument (``B``, ``T``, ...)."""

    name: str


@dataclass(frozen=True)
class Const:
    """A literal; ``is_float`` picks the float literal form in the dialects."""

    value: float | int
    is_float: bool = False


@dataclass(frozen=True)
class Load:
    """``buf[index]``; float buffers are widened to the compute type when loaded."""

    buf: str
    index: Expr


@dataclass(frozen=True)
class Bin:
    """Binary op: ``+ - * / %`` on ints, ``add sub mul div max min pow gt lt`` on floats."""

    op: str
    a: Expr
    b: Expr


@dataclass(frozen=True)
class Call:
    """A unary float function of the IR op set (``sigmoid``, ``tanh``, ``exp``, ...)."""

    fn: str
    arg: Expr


@dataclass(frozen=True)
class Select:
    """``cond ? a : b``."""

    cond: Expr
    a: Expr
    b: Expr


@dataclass(frozen=True)
class Ref:
    """A scalar float temporary defined by a :class:`Let`."""

    name: str


Expr = Var | Const | Load | Bin | Call | Select | Ref


def fconst(v: float) -> Const:
    """A float literal."""
    return Const(v, True)


def as_expr(x: Expr | int) -> Expr:
    return Const(x) if isinstance(x, int) else x


def add(a: Expr | int, b: Expr | int) -> Expr:
    """Integer ``a + b``, folding zeros (keeps the rendered index math readable)."""
    a, b = as_expr(a), as_expr(b)
    if isinstance(a, Const) and a.value == 0:
        return b
    if isinstance(b, Const) and b.value == 0:
        return a
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(int(a.value) + int(b.value))
    return Bin("+", a, b)


def mul(a: Expr | int, b: Expr | int) -> Expr:
    """Integer ``a * b``, folding ones and zeros."""
    a, b = as_expr(a), as_expr(b)
    for x, y in ((a, b), (b, a)):
        if isinstance(x, Const) and x.value == 1:
            return y
        if isinstance(x, Const) and x.value == 0:
            return Const(0)
    if isinstance(a, Const) and isinstance(b, Const):
        return Const(int(a.value) * int(b.value))
    return Bin("*", a, b)


def linear_index(terms: list[tuple[Expr | int, int | Expr]], offset: Expr | int = 0) -> Expr:
    """``offset + sum(index * stride)``."""
    out = as_expr(offset)
    for idx, stride in terms:
        out = add(out, mul(idx, stride))
    return out


# --------------------------------------------------------------------------- statements
@dataclass(frozen=True)
class Loop:
    var: str
    extent: Expr
    body: tuple[Stmt, ...]
    kind: LoopKind = "serial"
    #: ``lanes`` loops: float accumulators summed over the lanes (see the module docstring)
    reduce: tuple[str, ...] = ()


@dataclass(frozen=True)
class Store:
    """``buf[index] = value`` (or ``+=`` when ``accumulate``)."""

    buf: str
    index: Expr
    value: Expr
    accumulate: bool = False


@dataclass(frozen=True)
class Let:
    """A scalar temporary: float (fused gate math keeps gates in registers; read with
    :class:`Ref`) or, with ``is_int``, an index (read with :class:`Var`).  A float ``Let`` of a
    name already bound in the same scope reassigns it (scalar accumulators)."""

    name: str
    value: Expr
    is_int: bool = False


@dataclass(frozen=True)
class If:
    cond: Expr
    body: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...] = ()


@dataclass(frozen=True)
class Barrier:
    scope: Literal["block", "grid"]


def has_grid_barrier(stmts: tuple[Stmt, ...]) -> bool:
    """Whether a grid-wide barrier occurs anywhere in ``stmts``: a CUDA kernel with one must be
    launched cooperatively (all blocks co-resident); one without may take any grid."""
    for st in stmts:
        if isinstance(st, Barrier) and st.scope == "grid":
            return True
        if isinstance(st, (Loop, If)) and (has_grid_barrier(st.body) or has_grid_barrier(getattr(st, "orelse", ()))):
            return True
    return False


@dataclass(frozen=True)
class Alloc:
    """Declares a ``local`` buffer: per core (C stack) or per block (CUDA shared memory)."""

    buf: str


@dataclass(frozen=True)
class Comment:
    text: str


@dataclass(frozen=True)
class MicroGemm:
    """``acc[m*gj + q] = sum_k a_buf[a_offs[m] + k] * w_buf[w_off + k*gj + q]`` for ``m < rows``,
    ``q < gj``: a register-tile GEMM the C dialect renders as one micro-kernel per shape, with
    explicit vector accumulators per ISA (``rnnc.backends.cstyle.ukernels``).  Why a node of its
    own: written as loops, gcc reloads every weight vector once per row (or spills the tile when
    the loads are hoisted), so the loop form reaches half the FMA rate the tile allows."""

    acc: str
    rows: int
    gj: int
    kdim: int
    a_buf: str
    a_offs: tuple[Expr, ...]
    w_buf: str
    w_off: Expr
    #: element type of the weight panel: ``"float"`` or ``"int8"`` (qlinear codes, widened in registers)
    wtype: str = "float"
    #: accumulator sets over interleaved ``k`` (``kdim % parts == 0``); > 1 for one-row tiles
    parts: int = 1

    def __post_init__(self) -> None:
        # the kernel steps k by ``parts`` (halved per ISA branch): any other value reads past K
        if self.parts not in (1, 2, 4) or self.kdim % self.parts:
            raise ValueError(f"MicroGemm parts={self.parts} must be 1, 2 or 4 and divide K={self.kdim}")
        if self.wtype not in ("float", "int8"):
            raise ValueError(f"MicroGemm weight type {self.wtype!r}: 'float' or 'int8'")


@dataclass(frozen=True)
class Invoke:
    """Call another built kernel: entries ``3*slot .. 3*slot+2`` of the pointer buffer ``calls``
    hold its entry point, its scalar array and its buffer array.  Why: a whole-model program
    (``rnnc.lower.program``) runs its recurrent layers' kernels -- built, tuned and packed on their
    own -- between its other ops without returning to Python."""

    calls: str
    slot: int


Stmt = Loop | Store | Let | If | Barrier | Alloc | Comment | MicroGemm | Invoke


# --------------------------------------------------------------------------- kernels
@dataclass(frozen=True)
class Buffer:
    """A named array.  ``size`` is in elements and may use the kernel's scalar args.

    ``space``: ``arg`` (passed by the caller: inputs, outputs, states, packed weights),
    ``work`` (global scratch the runtime allocates), ``local`` (per worker, see :class:`Alloc`).
    ``dtype`` is ``"param"`` for weights (the storage dtype the kernel is built for), ``"float"``
    for compute-precision scratch, ``"int64"`` for lengths and indices, ``"ptr"`` for the
    addresses an :class:`Invoke` reads, and ``"int8"`` for the integer codes
    of quantized weights (``qlinear``): they keep their own element type whatever the kernel's
    storage dtype is, because a quarter of the bytes per weight is the point of quantizing, and
    are widened to float where they are loaded.
    """

    name: str
    size: Expr
    space: Space = "arg"
    dtype: str = "float"
    writable: bool = False
    doc: str = ""
    #: also written by a kernel this one calls (``Invoke``): never declared ``restrict``
    shared: bool = False


@dataclass(frozen=True)
class Pack:
    """How the runtime lays out one packed weight: ``src.reshape(shape).permute(perm)``.

    Weight layouts are part of the lowering (tiles want each worker's rows contiguous), but the
    data transformation is described, not coded, so every runtime applies it the same way.
    """

    buf: str
    src: str
    shape: tuple[int, ...]
    perm: tuple[int, ...]


@dataclass(frozen=True)
class Kernel:
    """One recurrent layer as a loop nest.  ``scalars`` are int arguments (``B``, ``T``, ...)."""

    name: str
    scalars: tuple[str, ...]
    buffers: tuple[Buffer, ...]
    body: tuple[Stmt, ...]
    packs: tuple[Pack, ...] = ()
    meta: dict = field(default_factory=dict, compare=False)

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)

    @property
    def args(self) -> tuple[Buffer, ...]:
        return tuple(b for b in self.buffers if b.space == "arg")

    @property
    def work(self) -> tuple[Buffer, ...]:
        return tuple(b for b in self.buffers if b.space == "work")

    @property
    def locals(self) -> tuple[Buffer, ...]:
        return tuple(b for b in self.buffers if b.space == "local")

    @property
    def registers(self) -> tuple[Buffer, ...]:
        return tuple(b for b in self.buffers if b.space == "register")


def eval_int(e: Expr, env: dict[str, int]) -> int:
    """Evaluate an integer expression (buffer sizes) with the scalar arguments bound."""
    if isinstance(e, Const):
        return int(e.value)
    if isinstance(e, Var):
        return env[e.name]
    if isinstance(e, Bin):
        a, b = eval_int(e.a, env), eval_int(e.b, env)
        return {"+": a + b, "-": a - b, "*": a * b, "/": a // max(b, 1), "%": a % max(b, 1)}[e.op]
    raise TypeError(f"not an integer expression: {e!r}")
