"""Render one Triton kernel per cell from its :class:`~rnnc.backends.triton.plan.LoopPlan`.

The kernel runs a whole layer (all ``T`` steps) in one launch: one program per batch tile owns
every hidden unit, so the step-to-step dependency never leaves the program and no grid sync is
needed.  Before the loop it loads the recurrent weights as ``[piece, piece]`` tiles and keeps
them resident (registers, spilling to shared memory at the compiler's discretion); in the loop
it reads the hoisted input projection of step ``t``, evaluates the loop nodes tile by tile and
writes ``y[t]``.  Every loop value is a list of ``[BB, SP]`` tiles (``SP`` = ``piece`` rounded
up to a power of two, padded lanes masked); the op table below is the only place that knows
what an IR op means in Triton, following ``rnnc.ir.ops`` (torch semantics).

Recurrent products are ``sum(h[:, None, :] * W[None, :, :], axis=2)`` in fp32: exact enough
for the fp32 tolerance and legal for any batch tile.  For fp16/bf16 storage with a batch tile and
a tile width of at least 16 (what ``tl.dot`` needs) the kernel is rendered with ``dot=True`` (fp16 only,
see :func:`use_dot`):
weight tiles stay resident in the storage dtype and the product is ``tl.dot`` (tensor cores on
a GPU) with fp32 accumulation; everything else computes in fp32 and is stored in the storage dtype.
"""

from __future__ import annotations

import math
import re

from rnnc.backends.triton.plan import LoopPlan
from rnnc.backends.triton.scalar import BINARY as _BINARY
from rnnc.backends.triton.scalar import UNARY as _UNARY

KERNEL_NAME = "rnnc_layer"
#: IR dtype -> Triton dtype of the storage (pointers, resident dot operands)
TL_DTYPES = {"float32": "tl.float32", "float16": "tl.float16", "bfloat16": "tl.bfloat16"}


def ident(name: str) -> str:
    """A Python identifier for an IR value name."""
    return "v_" + re.sub(r"\W", "_", name)


def pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


class _Emitter:
    """Builds the kernel body; ``tiles`` maps an IR value to its tile expressions."""

    def __init__(self, plan: LoopPlan, dot: bool = False, kp: int = 0) -> None:
        self.plan = plan
        self.dot = dot
        self.kp = kp or k_piece(plan)
        self.store = TL_DTYPES[plan.store_dtype]
        self.lines: list[str] = []
        self.tiles: dict[str, list[str]] = {}
        self.types = plan.cell.step.value_types()

    def emit(self, line: str, depth: int = 1) -> None:
        self.lines.append("    " * depth + line)

    def n_tiles(self, name: str) -> int:
        return self.plan.widths[name] // self.plan.piece

    def feature_offsets(self, k: int) -> str:
        """Feature columns of tile ``k`` (shifted to this program's head on a head-parallel grid)."""
        return f"({k * self.plan.piece}{' + hoff' if self.plan.split[0] > 1 else ''} + cols)"

    # ----------------------------------------------------------------- loads
    def load_rows(self, name: str, row_expr: str, depth: int, ptr: str = "") -> None:
        """Tiles of a [rows, F] tensor (states, stepped inputs), as fp32 (``None``: another program's)."""
        width, tiles = self.plan.widths[name], []
        for k in range(self.n_tiles(name)):
            if not self.plan.active(name, k):
                tiles.append(None)
                continue
            var = f"{ident(name)}_{k}"
            self.emit(f"{var} = tl.load({ptr or ident(name) + '_ptr'} + ({row_expr})[:, None] * {width} + "
                      f"{self.feature_offsets(k)}[None, :], mask=m2, other=0.0).to(tl.float32)", depth)
            tiles.append(var)
        self.tiles[name] = tiles

    def load_invariant(self, name: str) -> None:
        """A [F] vector as [1, SP] tiles, or a [N, K] weight as [SP, SP] tiles ``W_j_k``."""
        shape = self.types[name].shape
        p = self.plan.piece
        if len(shape) == 1:
            tiles = []
            for k in range(self.n_tiles(name)):
                if not self.plan.active(name, k):
                    tiles.append(None)
                    continue
                var = f"{ident(name)}_{k}"
                self.emit(f"{var} = tl.load({ident(name)}_ptr + {self.feature_offsets(k)}, mask=cmask, "
                          "other=0.0).to(tl.float32)[None, :]")
                tiles.append(var)
            self.tiles[name] = tiles
            return
        n_out, n_in = shape[0] // p, shape[1] // p
        hoff = " + hoff" if self.plan.heads > 1 else ""
        if self.plan.blocks > 1:  # this program's rows x every KP-wide column chunk (the whole input)
            dtype = self.store if self.dot else "tl.float32"
            for j in range(n_out):
                if self.row_owned(j):
                    for kk in range(shape[1] // self.kp):
                        self.emit(f"{ident(name)}_{j}_{kk} = tl.load({ident(name)}_ptr + ({j * p} + hoff + wrows)"
                                  f"[:, None] * {shape[1]} + ({kk * self.kp} + kcols)[None, :], mask=wkmask, "
                                  f"other=0.0).to({dtype})")
            self.tiles[name] = []
            return
        for j in range(n_out):
            for k in range(n_in):
                if self.plan.zero_tile(name, j, k) or not self.plan.active(name, k):
                    continue
                dtype = self.store if self.dot else "tl.float32"
                self.emit(f"{ident(name)}_{j}_{k} = tl.load({ident(name)}_ptr + ({j * p}{hoff} + wrows)[:, None] * "
                          f"{shape[1]} + {self.feature_offsets(k)}[None, :], mask=wmask, other=0.0).to({dtype})")
        self.tiles[name] = []  # read through weight_tile()

    # ------------------------------------------------------------------- ops
    def operand(self, name: str, k: int) -> str:
        tiles = self.tiles[name]
        return tiles[0] if len(tiles) == 1 and self.types[name].rank == 0 else tiles[k]

    def node(self, node) -> None:  # noqa: ANN001 - rnnc.ir.graph.Node
        op, a = node.op, node.attr_dict
        ins = [i for i in node.inputs]
        out = node.outputs
        if op == "const":
            self.tiles[out[0]] = [repr(float(a["value"]))]
            return
        if op == "split":
            tiles, at = self.tiles[ins[0]], 0
            for name, size in zip(out, a["sizes"], strict=True):
                self.tiles[name] = tiles[at:at + size // self.plan.piece]
                at += size // self.plan.piece
            return
        if op == "concat":
            self.tiles[out[0]] = [t for i in ins for t in self.tiles[i]]
            return
        if op == "cast":
            self.tiles[out[0]] = self.tiles[ins[0]]
            return
        if op == "linear":
            self.linear(out[0], ins)
            return
        n = self.n_tiles(out[0]) if out[0] in self.plan.widths else 1
        tiles: list[str | None] = []
        for k in range(n):
            if not self.plan.active(out[0], k):
                tiles.append(None)
                continue
            if op in _UNARY:
                expr = _UNARY[op](self.operand(ins[0], k))
            elif op in _BINARY:
                expr = _BINARY[op](self.operand(ins[0], k), self.operand(ins[1], k))
            elif op == "where":
                expr = f"tl.where({', '.join(self.operand(i, k) for i in ins)})"
            else:  # clamp
                expr = self.operand(ins[0], k)
                if a.get("min") is not None:
                    expr = f"tl.maximum({expr}, {float(a['min'])!r})"
                if a.get("max") is not None:
                    expr = f"tl.minimum({expr}, {float(a['max'])!r})"
            var = f"{ident(out[0])}_{k}"
            self.emit(f"{var} = {expr}", 2)
            tiles.append(var)
        self.tiles[out[0]] = tiles

    def row_owned(self, j: int) -> bool:
        """Whether weight row tile ``j`` is this program's (multi-block: program 0's, shifted by ``hoff``)."""
        parts, units = self.plan.split
        return parts == 1 or ((j * self.plan.piece) % (parts * units)) // units == 0

    def linear(self, out: str, ins: list[str]) -> None:
        """``out_j = sum_k x_k @ W_jk^T (+ b_j)`` with the resident weight tiles (multi-block: ``x``
        is the whole state read back from global memory, in ``KP``-wide chunks ``xf_..``)."""
        x, w = ins[0], ins[1]
        bias = ins[2] if len(ins) > 2 and ins[2] else None
        tiles: list[str | None] = []
        for j in range(self.n_tiles(out)):
            if not self.plan.active(out, j):
                tiles.append(None)
                continue
            if self.plan.blocks > 1:
                xs = [(kk, f"xf_{ident(x)}_{kk}") for kk in range(self.plan.widths[x] // self.kp)]
            else:
                xs = [(k, tile) for k, tile in enumerate(self.tiles[x])
                      if tile is not None and not self.plan.zero_tile(w, j, k)]
            if self.dot:
                terms = [f"tl.dot({xt}.to({self.store}), tl.trans({ident(w)}_{j}_{k}))" for k, xt in xs]
            else:
                terms = [f"tl.sum({xt}[:, None, :] * {ident(w)}_{j}_{k}[None, :, :], axis=2)" for k, xt in xs]
            if bias:
                terms.append(self.tiles[bias][j])
            var = f"{ident(out)}_{j}"
            self.emit(f"{var} = " + " + ".join(terms), 2)
            tiles.append(var)
        self.tiles[out] = tiles

    def store_rows(self, ptr: str, name: str, row_expr: str, depth: int, width: int) -> None:
        for k, tile in enumerate(self.tiles[name]):
            if tile is None:
                continue
            self.emit(f"tl.store({ptr} + ({row_expr})[:, None] * {width} + {self.feature_offsets(k)}[None, :], "
                      f"{tile}, mask=m2)", depth)


#: registers per thread one broadcast recurrent product ``[BB, SP, KP]`` may take on a multi-block
#: grid: with KP fixed at 128, LSTM H=768 at batch tile 16 (SP 8, 8 warps) needed 64 per thread for
#: one product alone.  Bounding it is necessary, not sufficient: that layer still spills at B=16
#: (ptxas, sm_90; docs/backends/triton.md)
PRODUCT_REGISTERS = 16


def k_piece(plan: LoopPlan, batch_tile: int = 1, warps: int = 4) -> int:
    """Column chunk of the recurrent products on a multi-block grid: the whole state is each
    product's input there, so it is cut into power-of-two chunks of at most 128 (few, wide tiles
    keep the rendered kernel short for H = 1024), halved (down to 16) while one broadcast product
    of ``batch_tile`` rows would take more than :data:`PRODUCT_REGISTERS` registers per thread of
    ``warps`` warps; ``piece`` otherwise."""
    if plan.blocks <= 1:
        return plan.piece
    kp = math.gcd(plan.cell.hidden_size, 128)
    while kp > 16 and kp % 2 == 0 and batch_tile * pow2(plan.piece) * kp > PRODUCT_REGISTERS * 32 * warps:
        kp //= 2
    return kp


def use_dot(plan: LoopPlan, batch_tile: int) -> bool:
    """Whether the recurrent products can be ``tl.dot``: fp16 storage, and every operand at least 16 wide.

    Not for bf16: Triton 3.9's interpreter computes ``tl.dot`` on bf16 operands from their raw
    bits (wrong by orders of magnitude), so a bf16 dot kernel could not be checked without a
    GPU; bf16 layers keep fp32 weight tiles and the fp32 product instead."""
    half = plan.store_dtype == "float16"
    return half and batch_tile >= 16 and pow2(plan.piece) >= 16 and plan.piece == pow2(plan.piece)


def render_kernel(plan: LoopPlan, dot: bool = False, kp: int = 0) -> str:
    """Triton source of the fused layer kernel for ``plan`` (a module with one ``@triton.jit``);
    ``dot``: recurrent products as ``tl.dot`` on storage-dtype weight tiles (see :func:`use_dot`).

    On a multi-block plan (``plan.blocks > 1``, :func:`rnnc.backends.triton.plan.split_hidden`)
    the same body is rendered with the exchange around it, and one source serves both launch
    modes: ``GRID_SYNC=True`` runs steps ``I0 .. I0+NSTEPS`` in one persistent launch with a
    grid-wide barrier after each (all programs must be co-resident); ``GRID_SYNC=False`` is
    launched once per step (``NSTEPS=1``), the barrier being the launch boundary -- what runs
    under ``TRITON_INTERPRET=1``, which runs programs one after another, and the fallback when
    co-residency is not guaranteed.  States then live in fp32 buffers ``st_*`` (read at launch
    start, written at its end) and each exchanged state also in a double buffer ``hx_* [2, B, F]``
    (step ``i`` reads slot ``i % 2`` whole and writes its own columns of slot ``(i + 1) % 2``)."""
    cell = plan.cell
    step = cell.step
    states = step.input_names[1:]
    outs = dict(step.outputs)
    y_width = cell.output_size
    multi = plan.blocks > 1
    e = _Emitter(plan, dot, kp)
    if multi:
        args = [*(f"{ident(n)}_ptr" for n in (*plan.stepped, *plan.invariant)),
                *(f"st_{ident(s)}_ptr" for s in states), "y_ptr", *(f"hx_{ident(s)}_ptr" for s in plan.exchange),
                "sync_ptr", "len_ptr", "B", "T", "I0", "NSTEPS", "BB: tl.constexpr", "SP: tl.constexpr",
                "KP: tl.constexpr", "REVERSE: tl.constexpr", "HAS_LEN: tl.constexpr", "GRID_SYNC: tl.constexpr"]
    else:
        args = [*(f"{ident(n)}_ptr" for n in (*plan.stepped, *plan.invariant, *states)),
                "y_ptr", *(f"out_{ident(s)}_ptr" for s in states), "len_ptr", "B", "T",
                "BB: tl.constexpr", "SP: tl.constexpr", "REVERSE: tl.constexpr", "HAS_LEN: tl.constexpr"]
    e.emit("pid = tl.program_id(0)")
    if plan.heads > 1:  # head-parallel grid: this program owns head program_id(1) of every feature group
        e.emit(f"hoff = tl.program_id(1) * {plan.head_dim}")
    if multi:  # multi-block grid: this program owns units hoff .. hoff + block_units of every group
        e.emit(f"hoff = tl.program_id(1) * {plan.block_units}")
        e.emit("kcols = tl.arange(0, KP)")
    e.emit("rows = pid * BB + tl.arange(0, BB)")
    e.emit("cols = tl.arange(0, SP)")
    e.emit("wrows = tl.arange(0, SP)")
    e.emit("rmask = rows < B")
    e.emit(f"cmask = cols < {plan.piece}")
    e.emit("m2 = rmask[:, None] & cmask[None, :]")
    e.emit("wmask = cmask[:, None] & cmask[None, :]")
    if multi:
        e.emit("wkmask = cmask[:, None] & (kcols < KP)[None, :]")
    e.emit("# resident parameters (recurrent weight tiles, biases)")
    for name in plan.invariant:
        e.load_invariant(name)
    e.emit("# initial states")
    for s in states:
        e.load_rows(s, "rows", 1, f"st_{ident(s)}_ptr" if multi else "")
    e.emit("lens = tl.load(len_ptr + rows, mask=rmask, other=0) if HAS_LEN else rows")
    if multi:
        e.emit("nprog = tl.num_programs(0) * tl.num_programs(1)")
        e.emit("for ii in range(0, NSTEPS):")
        e.emit("i = I0 + ii", 2)
        e.emit("slot = i % 2", 2)
        for s in plan.exchange:  # the whole previous state, bypassing L1 (other SMs wrote it)
            width = plan.widths[s]
            for kk in range(width // e.kp):
                e.emit(f"xf_{ident(s)}_{kk} = tl.load(hx_{ident(s)}_ptr + (slot * B + rows)[:, None] * {width} + "
                       f"({kk * e.kp} + kcols)[None, :], mask=rmask[:, None], other=0.0, cache_modifier='.cg')", 2)
    else:
        e.emit("for i in range(0, T):")
    e.emit("t = (T - 1 - i) if REVERSE else i", 2)
    for name in plan.stepped:
        e.load_rows(name, "t * B + rows", 2)
    for node in plan.loop_nodes:
        e.node(node)
    e.emit("if HAS_LEN:", 2)
    e.emit("live = (t < lens)[:, None]", 3)
    new_states = {s: outs[s] for s in states}
    y_name = outs[step.output_names[0]]

    def live(name: str) -> list[str]:
        return [t for t in e.tiles[name] if t is not None]

    for s in states:
        e.emit(f"{ident(s)}_next = " + ", ".join(
            f"tl.where(live, {new}, {old})" for new, old in zip(live(new_states[s]), live(s), strict=True))
            + ",", 3)
    e.emit("y_tiles = " + ", ".join(f"tl.where(live, {t}, 0.0)" for t in live(y_name)) + ",", 3)
    e.emit("else:", 2)
    for s in states:
        e.emit(f"{ident(s)}_next = " + ", ".join(live(new_states[s])) + ",", 3)
    e.emit("y_tiles = " + ", ".join(live(y_name)) + ",", 3)
    at = iter(range(len(e.tiles[y_name])))
    e.tiles["__y"] = [None if t is None else f"y_tiles[{next(at)}]" for t in e.tiles[y_name]]
    e.store_rows("y_ptr", "__y", "t * B + rows", 2, y_width)
    for s in states:
        e.emit(", ".join(live(s)) + f", = {ident(s)}_next", 2)
    if multi:
        for s in plan.exchange:  # this program's columns of the new state, for every program's next step
            e.store_rows(f"hx_{ident(s)}_ptr", s, "(1 - slot) * B + rows", 2, plan.widths[s])
        e.emit("if GRID_SYNC:  # grid-wide barrier: a monotonic arrival counter, release/acquire ordered", 2)
        e.emit("tl.debug_barrier()", 3)
        e.emit("tl.atomic_add(sync_ptr, 1, sem='release')", 3)
        # the read is an atomic add of 0: ``tl.atomic_load`` is newer than the Triton some GPU
        # images ship (3.6 has none), and an acquire RMW orders the same way on every version
        e.emit("arrived = tl.atomic_add(sync_ptr, 0, sem='acquire')", 3)
        e.emit("while arrived < (ii + 1) * nprog:", 3)
        e.emit("arrived = tl.atomic_add(sync_ptr, 0, sem='acquire')", 4)
        e.emit("tl.debug_barrier()", 3)
    for s in states:
        e.store_rows(f"st_{ident(s)}_ptr" if multi else f"out_{ident(s)}_ptr", s, "rows", 1, plan.widths[s])
    kind = "multi-block (grid-synchronised)" if multi else "fused"
    header = [
        f'"""{kind.capitalize()} {cell.kind} layer kernel rendered by rnnc from the cell\'s IR step graph."""',
        "import triton",
        "import triton.language as tl",
        "",
        "",
        "@triton.jit",
        f"def {KERNEL_NAME}({', '.join(args)}):",
    ]
    return "\n".join(header + e.lines) + "\n"


def kernel_args(plan: LoopPlan) -> list[str]:
    """The IR value names bound to the kernel's leading pointer arguments, in order (multi-block:
    the states' fp32 buffers come next, see :func:`render_kernel`)."""
    if plan.blocks > 1:
        return [*plan.stepped, *plan.invariant]
    return [*plan.stepped, *plan.invariant, *plan.cell.step.input_names[1:]]
