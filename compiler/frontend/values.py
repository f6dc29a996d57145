"""What the frontend's converters pass around while they turn a torch graph into IR.

Every tensor is a ``TV``: the IR ``Value`` *and* the tensor it holds for the example inputs
(its "shadow").  The shadow is computed by the IR op's own torch semantics, so shape questions a
model asks while running (``x.size(1)``, ``len(state)``, ``if x.dim() == 2``) get concrete
answers while the IR keeps batch and time symbolic.  Sizes read from symbolic dims are ``SymInt``
(an ``int`` that remembers which input dim it came from), so ``x.view(x.size(0), -1)`` keeps
working for every batch size.  fx and TorchScript both convert through ``Ctx`` and one table of
op handlers, so an op is translated once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rnnc.errors import IRVerificationError, UnsupportedError
from rnnc.ir import GraphBuilder, Value, symdims
from rnnc.ir.ops import OPS
from rnnc.ir.ops_dyn import SIZE_OPS
from rnnc.ir.types import Dim, dtype_of_torch


class SymInt(int):
    """A concrete size that stands for a symbolic dim (``sym``) of the IR.

    ``source``: the tensor and axis it was read from (``x.size(1)``); ``expr``: how a size
    computed from others was computed (``(op, a, b)`` with ``op`` one of ``+ - * // %`` and
    operands ``SymInt``s or ints).  With either, ops can read the size at run time
    (``Ctx.shape_entries``); a derived size has the symbol ``DERIVED``."""

    sym: str
    source: tuple[TV, int] | None
    expr: tuple[Any, ...] | None
    #: the one-element integer tensor a size read from data holds (``lengths.max().item()``)
    data: TV | None

    def __new__(cls, value: int, sym: str, source: tuple[TV, int] | None = None,
                expr: tuple[Any, ...] | None = None, data: TV | None = None) -> SymInt:
        obj = super().__new__(cls, value)
        obj.sym = sym
        obj.source = source
        obj.expr = expr
        obj.data = data
        return obj

    def __repr__(self) -> str:
        return f"SymInt({int(self)}, {self.sym!r})"

    def is_dim(self, tv: TV, axis: int) -> bool:
        """Whether this size is ``tv``'s dim ``axis`` at run time: the same named symbol, or read
        from that very dim (two ``?`` dims are not the same size)."""
        d = tv.shape[axis]
        if isinstance(d, str) and "?" not in d and self.dim == d:
            return True
        return self.source is not None and self.source[0] is tv and self.source[1] % tv.rank == axis % tv.rank

    @property
    def dim(self) -> Dim:
        """This size as an IR dim: its symbol, or its expression's canonical name
        (``rnnc.ir.symdims``: ``b * t`` is ``B*T``), ``?`` when it cannot be said."""
        if self.sym != DERIVED:
            return self.sym
        if self.expr is None:
            return "?"
        op, a, b = self.expr
        return symdims.name(op, a.dim if isinstance(a, SymInt) else int(a), b.dim if isinstance(b, SymInt) else int(b))

    # arithmetic on a symbolic size stays symbolic (``t // 2``, ``b * t``): derived, with its
    # expression, so no op bakes the example's value in
    def _op(self, op: str, a: Any, b: Any) -> Any:
        if not isinstance(b, int) or not isinstance(a, int) or isinstance(a, bool) or isinstance(b, bool):
            return SIZE_OPS[op](int(a) if isinstance(a, SymInt) else a, int(b) if isinstance(b, SymInt) else b)
        value = SIZE_OPS[op](int(a), int(b))
        return SymInt(value, DERIVED, expr=(op, a, b))


#: dunder -> (op, reflected): ``t * 2`` and ``2 * t`` both build ("*", ...)
#: torch's legacy typed tensor classes and their dtypes: constructors (``torch.LongTensor(n)``,
#: ``fx_patches._legacy``) and dtypes (``x.type(torch.FloatTensor)``, ``x.type('torch.LongTensor')``)
LEGACY_TENSORS = {"FloatTensor": torch.float32, "DoubleTensor": torch.float64, "HalfTensor": torch.float16,
                  "BFloat16Tensor": torch.bfloat16, "LongTensor": torch.int64, "IntTensor": torch.int32,
                  "ShortTensor": torch.int16, "CharTensor": torch.int8, "ByteTensor": torch.uint8,
                  "BoolTensor": torch.bool}


def legacy_dtype(a: Any) -> torch.dtype | None:
    """The dtype a legacy tensor class stands for, as a class (``torch.FloatTensor``, also CUDA's
    and the trace's stand-in, ``fx_patches._legacy``) or its name (``'torch.cuda.LongTensor'``,
    which ``Tensor.type`` takes); None for anything else.  The IR has no devices: a CUDA type is
    its dtype."""
    if isinstance(a, str):
        return LEGACY_TENSORS.get(a.removeprefix("torch.").removeprefix("cuda.")) if a.startswith("torch.") else None
    if not isinstance(a, type):  # (a traced value answers any attribute: not asked)
        return None
    legacy = getattr(a, "builtin", a)
    dtype = getattr(legacy, "dtype", None) if isinstance(legacy, type) else None
    return dtype if isinstance(dtype, torch.dtype) and legacy.__name__ in LEGACY_TENSORS else None


SIZE_DUNDERS = {"__add__": ("+", False), "__radd__": ("+", True), "__sub__": ("-", False),
                "__rsub__": ("-", True), "__mul__": ("*", False), "__rmul__": ("*", True),
                "__floordiv__": ("//", False), "__rfloordiv__": ("//", True), "__mod__": ("%", False),
                "__rmod__": ("%", True)}
for _name, (_sym_op, _reflected) in SIZE_DUNDERS.items():
    setattr(SymInt, _name, (lambda op, r: lambda self, o: self._op(op, o, self) if r else self._op(op, self, o))(
        _sym_op, _reflected))
SymInt.__neg__ = lambda self: self._op("-", 0, self)  # type: ignore[method-assign]


class SymRatio(float):
    """``(W + 1) / 2`` of sizes: the float Python gives at the example, remembering its operands,
    so that a tensor scaled by it (DRAW's ``x * ((W + 1) / 2)``) reads the sizes at run time
    (``Ctx.lift``); used anywhere else it is the example's float."""

    num: Any
    den: Any

    def __new__(cls, num: Any, den: Any) -> SymRatio:
        obj = super().__new__(cls, int(num) / int(den))
        obj.num, obj.den = num, den
        return obj


def size_op(op: str, a: Any, b: Any) -> Any:
    """``a op b`` on sizes, symbolic where either is (``max(T, S)``: Python's ``max`` of two
    ``SymInt``s would return whichever was larger at the example)."""
    for s in (a, b):
        if isinstance(s, SymInt):
            return s._op(op, a, b)
    return SIZE_OPS[op](a, b)


#: the symbol of a size computed from symbolic ones (never an IR dim, so never "the same dim")
DERIVED = "?derived"


@dataclass
class TV:
    """A traced tensor: IR value + example value. ``zeros`` marks a value known to be all zero
    (an initial state the model built with ``torch.zeros``): rnn nodes take it as "no state"."""

    value: Value | None
    ex: torch.Tensor
    zeros: bool = False
    shape_override: tuple[Dim, ...] | None = None
    #: the sizes an all-zero tensor was made with (``SymInt``s where symbolic): what
    #: materializing it at run time needs
    sizes: tuple[Any, ...] | None = None

    @property
    def shape(self) -> tuple[Dim, ...]:
        if self.value is not None:
            return self.value.shape
        assert self.shape_override is not None
        return self.shape_override

    @property
    def rank(self) -> int:
        return len(self.shape)

    def size(self, dim: int) -> int:
        """Concrete size, tagged with its symbol when the IR dim is symbolic."""
        d = self.shape[dim]
        n = int(self.ex.shape[dim])
        return SymInt(n, d, (self, dim)) if isinstance(d, str) else n


@dataclass
class Packed:
    """``pack_padded_sequence(x, lengths)``: rnn nodes read it as x plus a ``lengths`` input."""

    data: TV
    lengths: TV
    batch_first: bool


@dataclass
class Ctx:
    """Builds one IR graph: emits ops (with their shadows), holds weights, names what fails."""

    builder: GraphBuilder
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    where: str = ""  # qualified name of the module being converted, for error messages
    #: the user's source line of the call being converted (``file.py:42``), for error messages
    source: str = ""
    #: the first, all-dims-symbolic conversion that finds the batch and time dims (``api.py``):
    #: a call that fixes a dim then only means that dim is not batch or time
    probing: bool = False
    #: id of a leaf tensor made a param -> (its param, the tensor: held so the id stays its own)
    _by_id: dict[int, tuple[Value, torch.Tensor]] = field(default_factory=dict)
    _counter: int = 0
    #: value name -> the time reads it depends on: ``select``/``slice(k, k + 1)`` of a symbolic
    #: dim, as (name of the source, axis) -> (the source, lowest and highest index read)
    _reads_of: dict[str, dict[tuple[str, int], tuple[TV, int, int]]] = field(default_factory=dict)
    #: give stacks of per-step values their loop's symbolic length back (``retime``); how often
    retime_loops: bool = True
    retimed: int = 0
    #: concat output name -> (its items, its axis): a cat of a cat on the same axis is one cat
    #: (``outputs = torch.cat((outputs, h[:, None]), 1)`` in a loop collects like a stack)
    concat_items: dict[str, tuple[list[TV], int]] = field(default_factory=dict)
    #: value name -> the user's source line that made it (``model.py:42``): messages about the
    #: Program (a loop left unrolled, a size the trace fixed) point at the model's code
    lines: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ errors
    def unsupported(self, op: str, supported: str = "") -> UnsupportedError:
        if self.where.startswith("@"):  # a source location (TorchScript), not a module name
            where = self.where[1:]
        else:
            where = f"module {self.where!r}" if self.where else "the model's top level"
        if self.source:
            where += f" at {self.source}"
        tail = f"; supported: {supported}" if supported else ""
        return UnsupportedError(f"rnnc cannot convert {op} in {where}{tail}")

    # ------------------------------------------------------------------ building
    def emit(self, op: str, *inputs: TV | None, names: Sequence[str] | None = None, **attrs: Any) -> Any:
        """Add one IR node and compute its shadow with the op's own torch semantics.  A plain
        tensor among the inputs -- one the model computed from constants alone, at the example's
        sizes (``torch.arange(5.0)[:, None]`` fed to a layer) -- is a constant."""
        inputs = tuple(self.lift(t) if isinstance(t, torch.Tensor) else t for t in inputs)
        vals = [self.materialize(t) if t is not None else None for t in inputs]
        try:
            out = self.builder.op(op, *vals, names=names, **attrs)
        except IRVerificationError as exc:
            raise self.unsupported(f"{op} ({exc})") from None
        args = [t.ex if t is not None else None for t in inputs]
        while args and args[-1] is None and len(args) > OPS[op].min_inputs:
            args.pop()
        with torch.no_grad():
            ex = OPS[op].evaluate(args, dict(self.builder._nodes[-1].attrs))
        outs = out if isinstance(out, tuple) else (out,)
        if self.source:
            self.lines.update((v.name, self.source) for v in outs)
        tvs = tuple(TV(v, e) for v, e in zip(outs, ex, strict=True))
        self._track_reads(op, inputs, outs, dict(self.builder._nodes[-1].attrs))
        return tvs if isinstance(out, tuple) else tvs[0]

    def _track_reads(self, op: str, inputs: Sequence[TV | None], outs: Sequence[Value], attrs: dict[str, Any]) -> None:
        reads: dict[tuple[str, int], tuple[TV, int, int]] = {}

        def add(key: tuple[str, int], src: TV, lo: int, hi: int) -> None:
            if key in reads:
                _, lo0, hi0 = reads[key]
                lo, hi = min(lo, lo0), max(hi, hi0)
            reads[key] = (src, lo, hi)

        for t in inputs:
            if t is not None and t.value is not None:
                for key, (src, lo, hi) in self._reads_of.get(t.value.name, {}).items():
                    add(key, src, lo, hi)
        src = inputs[0] if inputs else None
        if op in ("select", "slice") and src is not None and src.value is not None:
            ax = attrs["axis"] % src.rank
            k = attrs["index"] if op == "select" else attrs["start"]
            one = k >= 0 and (op == "select" or (attrs["step"] == 1 and attrs["stop"] == k + 1))
            if one and isinstance(src.shape[ax], str):
                add((src.value.name, ax), src, k, k)
        if reads:
            for v in outs:
                self._reads_of[v.name] = reads

    def retime(self, out: TV, items: Sequence[TV], axis: int) -> TV:
        """``out``, the stack (or concatenation of size-1 slices) of one value per step of a loop
        over a symbolic dim unrolled at the example's length, with that dim symbolic again: a
        ``reshape_dyn`` that reads its size from the loop's source.  Later sizes stay symbolic;
        the loop is rolled back over T (``scan.py``) -- if it is not, the Program fails the trace
        check at another length."""
        if not self.retime_loops or len(items) < 3 or any(t.value is None for t in items):
            return out
        # the per-step values, or all but a first one the loop started from (xLSTM's
        # ``states_all[:, 0] = init`` before ``states_all[:, t + 1] = states``): T + 1 of them
        for lead in (0, 1):
            steps = items[lead:]
            n = len(steps)
            ends = [self._reads_of.get(t.value.name, {}) for t in (steps[0], steps[n // 2], steps[-1])]
            for key, (src, *_r) in ends[0].items():
                if n < 3 or int(src.ex.shape[key[1]]) != n or not all(key in e for e in ends):
                    continue
                # item k of a loop over the steps of src reads step k, and steps on one side of it
                # only (a forward loop reads 0..k, a backward one k..n-1); a value read by every
                # step (the encoder state a decoder loop starts from) does not count
                spans = [e[key][1:] for e in ends]
                if all(lo <= k <= hi and (lo == k or hi == k) for (lo, hi), k in zip(spans, (0, n // 2, n - 1),
                                                                                      strict=True)):
                    if lead and key in self._reads_of.get(items[0].value.name, {}):
                        continue  # (the first value is a step's too: not a start value)
                    self.retimed += 1
                    length: Any = [1, key[1]] if not lead else ["+", [1, key[1]], lead]
                    entries = [length if d == axis else [0, d] for d in range(out.rank)]
                    return self.emit("reshape_dyn", out, out, src, shape=entries)
        return out

    def const(self, value: float | int | bool, like: TV | str = "float32") -> TV:
        dtype = like if isinstance(like, str) else dtype_of_torch(like.ex.dtype)
        return self.emit("const", value=value, dtype=dtype)

    def param(self, tensor: torch.Tensor, name: str) -> TV:
        """A weight or constant tensor as an IR param (shared tensors become one param)."""
        key = id(tensor) if tensor.is_leaf else None  # a module called every step: one param
        held = tensor
        tensor = tensor.detach()
        if key is not None and key in self._by_id:
            v = self._by_id[key][0]
            return TV(v, self.weights[v.name])
        base = name.replace("/", ".") or "const"
        cand, i = base, 0
        while cand in self.weights or cand in self.builder._names:
            i += 1
            cand = f"{base}_{i}"
        v = self.builder.param(cand, tuple(tensor.shape), dtype_of_torch(tensor.dtype))
        self.weights[cand] = tensor
        if self.source:
            self.lines[cand] = self.source
        if key is not None:
            self._by_id[key] = (v, held)
        return TV(v, tensor)

    def materialize(self, t: TV) -> Value:
        """The IR value of ``t``; an all-zero tensor without a node becomes ``x * 0`` of a
        source it knows, or a constant when its shape is concrete."""
        if t.value is not None:
            return t.value
        if all(isinstance(d, int) for d in t.shape):
            t.value = self.param(torch.zeros_like(t.ex), "zeros").value
            return t.value
        if t.sizes is not None:
            made = self.shape_entries(t.sizes)
            if made is not None and -1 not in made[0]:
                entries, refs = made
                t.value = self.emit("full_dyn", *refs, shape=entries, value=0.0 if t.ex.dtype.is_floating_point else 0,
                                    dtype=dtype_of_torch(t.ex.dtype)).value
                return t.value
        raise self.unsupported(f"an all-zero tensor of symbolic shape {list(t.shape)} used outside an rnn "
                               "initial state", "torch.zeros as an initial state of nn.LSTM/GRU/RNN and cells")

    def shape_entries(self, sizes: Sequence[Any]) -> tuple[tuple[Any, ...], list[TV]] | None:
        """Sizes as ``ops_dyn`` shape entries: constants, ``[k, axis]`` for a size read from
        reference ``k``, ``[op, a, b]`` for a size computed from such, ``-1`` for one size known
        only as derived.  ``None`` when two sizes cannot be said."""
        refs: list[TV] = []

        def ref(tv: TV) -> int:
            k = next((i for i, r in enumerate(refs) if r is tv), None)
            if k is None:
                refs.append(tv)
                k = len(refs) - 1
            return k

        def entry(d: Any) -> Any:
            if not isinstance(d, SymInt):
                return int(d)
            if d.source is not None and d.source[0].value is not None:
                tv, ax = d.source
                return (ref(tv), ax)
            if d.data is not None:
                return ("value", ref(d.data))
            if d.expr is not None:
                op, a, b = d.expr
                ea, eb = entry(a), entry(b)
                return None if ea is None or eb is None else (op, ea, eb)
            return None

        entries: list[Any] = []
        derived = 0
        for d in sizes:
            e = entry(d)
            if e is None:
                e, derived = -1, derived + 1
            entries.append(e)
        if derived > 1:
            return None
        return tuple(entries), refs

    def _size_value(self, d: SymInt) -> TV | None:
        """A size as an int64 scalar computed at run time: a dim read as the count of a ones
        vector along it, sums, differences and products of sizes as those ops (so ``T - 3`` may
        be negative, and ``H * T`` allocates nothing of that size); ``//`` and ``%`` of sizes
        (never negative) as the count of a vector that long.  None when it cannot be read."""
        if d.data is not None:
            return self.emit("cast", self.emit("reshape", d.data, shape=()), dtype="int64")
        read = d.source is not None and d.source[0].value is not None
        elementwise = {"+": "add", "-": "sub", "*": "mul", "max": "max", "min": "min"}
        if not read and d.expr is not None and d.expr[0] in elementwise:
            op, a, b = d.expr
            va = self._size_value(a) if isinstance(a, SymInt) else self.const(int(a), "int64")
            vb = self._size_value(b) if isinstance(b, SymInt) else self.const(int(b), "int64")
            if va is None or vb is None:
                return None
            return self.emit(elementwise[op], va, vb)
        made = self.shape_entries([d])
        if made is None or made[0][0] == -1:
            return None
        (entry,), refs = made
        return self.emit("sum", self.emit("full_dyn", *refs, shape=(entry,), value=1, dtype="int64"),
                         axes=(0,), keepdim=False)

    def lift(self, x: Any, like: TV | None = None) -> TV:
        """A python scalar or a constant tensor as a TV (scalars adopt ``like``'s dtype)."""
        if isinstance(x, TV):
            return x
        if not isinstance(like, TV):  # ``torch.where(m, 1.0, 0.0)``: no tensor to follow
            like = None
        if isinstance(x, torch.Tensor):
            if x.dim() == 0:
                return self.const(x.item(), dtype_of_torch(x.dtype))
            return self.param(x, "const")
        if isinstance(x, SymRatio):  # ``x * ((w + 1) / 2)``: both sizes read at run time, divided
            parts = [self.lift(v, None) if isinstance(v, SymInt) else self.const(int(v), "int64")
                     for v in (x.num, x.den)]
            want = dtype_of_torch(like.ex.dtype) if like is not None and like.ex.dtype.is_floating_point else "float32"
            return self.emit("div", *(self.emit("cast", v, dtype=want) for v in parts))
        if isinstance(x, SymInt):  # ``out.sum(1) / out.size(1)``: the size at run time, not the example's
            n = self._size_value(x)
            if n is not None:
                want = dtype_of_torch(like.ex.dtype) if like is not None and like.ex.dtype != torch.bool else "int64"
                return n if want == "int64" else self.emit("cast", n, dtype=want)
        if isinstance(x, (bool, int, float)):
            # torch's promotion: a scalar takes the tensor's dtype within its kind; a float scalar
            # with an integer tensor makes float32 (``arange(t) * 0.5``), an int one with a bool
            # tensor int64 -- the other side is then cast (``handlers._promote``)
            dtype = "float32" if isinstance(x, float) else ("bool" if isinstance(x, bool) else "int64")
            if like is not None and (like.ex.dtype.is_floating_point or
                                     (not isinstance(x, float) and like.ex.dtype != torch.bool) or
                                     (isinstance(x, bool) and like.ex.dtype == torch.bool)):
                dtype = dtype_of_torch(like.ex.dtype)
            if dtype.startswith(("float", "bfloat")):
                x = float(x)
            return self.const(x, dtype)
        raise self.unsupported(f"a value of type {type(x).__name__} where a tensor is expected")


def one_integer(t: Any) -> bool:
    """Whether ``t`` is a one-element integer tensor: what ``.item()``, ``int()`` or ``max()`` of a
    vector turn into a size read from data (a bool or a float would be a Python value instead)."""
    return isinstance(t, torch.Tensor) and t.numel() == 1 and not (
        t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool)


def axis(dim: int, rank: int) -> int:
    """Normalise a possibly negative axis."""
    return dim % rank if rank else 0
