"""Shape handlers: sizes, reshape/view, permute, indexing, cat/stack/split, zeros.

Sizes of symbolic dims come back as ``SymInt`` so that a reshape which passes them on maps to
ONNX-style ``0`` (copy the dim) instead of baking the example's batch size into the Program.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from rnnc.frontend.handlers import HANDLERS, handles, is_tensor, reads
from rnnc.frontend.values import TV, Ctx, SymInt, axis, legacy_dtype, one_integer
from rnnc.ir import symdims
from rnnc.ir.symdims import END as _END
from rnnc.ir.types import dtype_of_torch

#: TorchScript passes dtypes as ScalarType codes
_SCALAR_TYPES = {3: torch.int32, 4: torch.int64, 5: torch.float16, 6: torch.float32, 7: torch.float64,
                 11: torch.bool, 15: torch.bfloat16}


def torch_dtype_arg(a: Any) -> torch.dtype | None:
    """A dtype as torch takes it in ``to``/``type``: a dtype, a TorchScript code, a legacy tensor
    type or its name (``x.type('torch.LongTensor')``)."""
    if isinstance(a, torch.dtype):
        return a
    if (legacy := legacy_dtype(a)) is not None:
        return legacy
    if isinstance(a, int) and not isinstance(a, bool) and a in _SCALAR_TYPES:
        return _SCALAR_TYPES[a]
    return None


def _dims(args: tuple[Any, ...]) -> list[Any]:
    """``f(x, 2, 3)`` and ``f(x, (2, 3))`` both give ``[2, 3]``; TorchScript's ``aten::zeros(size,
    dtype, layout, device, pin_memory)`` passes the size list followed by positional options."""
    if args and isinstance(args[0], (list, tuple, torch.Size)):
        return list(args[0])
    return list(args)


@handles("size")
def size(ctx: Ctx, x: TV, dim: int | None = None) -> Any:
    if dim is None:
        return tuple(x.size(i) for i in range(x.rank))
    return x.size(axis(dim, x.rank))


@handles("item")
def _item(ctx: Ctx, x: TV) -> Any:
    """``lengths.max().item()`` (NVIDIA's ``get_mask_from_lengths``): an integer read from data,
    kept as a size read at run time -- ``arange(max_len) < lengths[:, None]`` then follows the
    data.  (The tracer refuses branching or looping on it, ``fx_trace._refuse_data``.)"""
    if not one_integer(x.ex):
        raise ctx.unsupported(f".item() of a {str(x.ex.dtype).removeprefix('torch.')} tensor (tensor data as a Python "
                              "value, which a Program would keep as the example's: `if mask.any().item()`)",
                              "an integer .item() used as a size")
    return SymInt(int(x.ex.reshape(-1)[0]), "?", data=x)


@handles("dim")
def _dim(ctx: Ctx, x: TV) -> int:
    return x.rank


@handles("len")
def _len(ctx: Ctx, x: Any) -> int:
    return x.size(0) if is_tensor(x) else len(x)


@handles("numel")
def _numel(ctx: Ctx, x: TV) -> int:
    return int(x.ex.numel())


@handles("getattr")
def _getattr(ctx: Ctx, x: Any, name: str) -> Any:
    if is_tensor(x):
        if name == "shape":
            return size(ctx, x)
        if name == "ndim":
            return x.rank
        if name == "dtype":
            return x.ex.dtype
        if name == "device":
            return x.ex.device
        if name == "T" and x.rank == 2:
            return ctx.emit("transpose", x, perm=(1, 0))
        raise ctx.unsupported(f"tensor attribute .{name}", "shape, ndim, dtype, device, T")
    return getattr(x, name)


def _constant_minus_one(x: TV, want: list[Any]) -> list[Any]:
    """``view(t * b, -1)`` of ``[T, B, 32]``: the -1 is the constant 32; saying so keeps the
    channel count known to the ops after it (a -1 left to run time would be ``?``).  Only where a
    size is computed (``t * b``): a -1 among copied dims and constants stays, shape inference
    names it, and it still holds when the dim it stands for turns symbolic later -- the stack of
    an unrolled loop that ``scan.py`` rolls (``stack(outs).view(b, -1, 20)``)."""
    if [d for d in want if not isinstance(d, SymInt) and d == -1] != [-1]:
        return want
    if all(i < x.rank and d.is_dim(x, i) for i, d in enumerate(want) if isinstance(d, SymInt)):
        return want
    rest = [d.dim if isinstance(d, SymInt) else int(d) for d in want if isinstance(d, SymInt) or d != -1]
    n = symdims.quotient(x.shape, rest)
    if not isinstance(n, int):
        n = _other_dims(x, [d for d in want if isinstance(d, SymInt) or d != -1])
    if not isinstance(n, int):
        return want
    return [n if (not isinstance(d, SymInt) and d == -1) else d for d in want]


def _own_dims(x: TV, d: Any) -> tuple[list[int], int] | None:
    """``d`` as a product of ``x``'s own dims (read with ``x.size(k)``) and a constant: (their
    axes, the constant); None when it is anything else."""
    if not isinstance(d, SymInt):
        return ([], int(d)) if isinstance(d, int) else None
    if d.source is not None and d.source[0] is x:
        return [d.source[1] % x.rank], 1
    if d.expr is not None and d.expr[0] == "*":
        a, b = _own_dims(x, d.expr[1]), _own_dims(x, d.expr[2])
        if a is not None and b is not None:
            return a[0] + b[0], a[1] * b[1]
    return None


def _other_dims(x: TV, sizes: list[Any]) -> int | None:
    """The -1 of ``y.view(t * n, -1)`` with ``t, n = y.size(0), y.size(1)``: the product of the
    dims of ``y`` not read, where they are constants -- also when the read ones have no name (a
    length from ``pad_packed_sequence``, ``?``), which shape inference cannot divide out."""
    axes: list[int] = []
    const = 1
    for d in sizes:
        own = _own_dims(x, d)
        if own is None:
            return None
        axes += own[0]
        const *= own[1]
    others = [x.shape[i] for i in range(x.rank) if i not in axes]
    if len(set(axes)) != len(axes) or not all(isinstance(o, int) for o in others) or not const:
        return None
    total = math.prod(others)
    return total // const if total % const == 0 else None


@handles("reshape", "view")
def reshape(ctx: Ctx, x: TV, *shape: Any) -> TV:
    want = _constant_minus_one(x, _dims(shape))
    out: list[int] = []
    for i, d in enumerate(want):
        if isinstance(d, SymInt):
            if i < x.rank and d.is_dim(x, i):
                out.append(0)  # ONNX: copy the input dim
            elif -1 not in want and -1 not in out:
                out.append(-1)
            else:  # several symbolic dims move: sizes read at run time from where they came from
                made = ctx.shape_entries(want)
                if made is None:
                    raise ctx.unsupported(f"reshape of {list(x.shape)} to {want} (two sizes computed from "
                                          "symbolic dims)", "reshapes whose sizes are read from tensors")
                return ctx.emit("reshape_dyn", x, *made[1], shape=made[0])
        else:
            d = int(d)
            if i < x.rank and x.shape[i] == d and d != 0:
                out.append(d)
            elif d == 0:
                raise ctx.unsupported("reshape to a zero-sized dim")
            else:
                out.append(d)
    return ctx.emit("reshape", x, shape=tuple(out))


@handles("flatten")
def _flatten(ctx: Ctx, x: TV, start_dim: int = 0, end_dim: int = -1) -> TV:
    s, e = axis(start_dim, x.rank), axis(end_dim, x.rank)
    if s == e:
        return x
    shape = [x.size(i) for i in range(s)] + [-1] + [x.size(i) for i in range(e + 1, x.rank)]
    return reshape(ctx, x, *shape)


@handles("permute")
def permute(ctx: Ctx, x: TV, *dims: Any) -> TV:
    perm = tuple(axis(int(d), x.rank) for d in _dims(dims))
    return ctx.emit("transpose", x, perm=perm)


@handles("transpose", "swapaxes")
def transpose(ctx: Ctx, x: TV, a: int, b: int) -> TV:
    perm = list(range(x.rank))
    a, b = axis(a, x.rank), axis(b, x.rank)
    perm[a], perm[b] = perm[b], perm[a]
    return ctx.emit("transpose", x, perm=tuple(perm))


@handles("t")
def _t(ctx: Ctx, x: TV) -> TV:
    return transpose(ctx, x, 0, 1) if x.rank == 2 else x


@handles("unsqueeze")
def unsqueeze(ctx: Ctx, x: TV, dim: int) -> TV:
    return ctx.emit("unsqueeze", x, axis=axis(dim, x.rank + 1))


@handles("squeeze")
def squeeze(ctx: Ctx, x: TV, dim: Any = None) -> TV:
    dims = [i for i in range(x.rank) if x.ex.shape[i] == 1] if dim is None else (
        [dim] if isinstance(dim, int) else list(dim))
    kept = [d for i, d in enumerate(x.shape) if isinstance(d, str) and x.ex.shape[i] != 1
            and symdims.bounds(symdims.parse(d) or {(): 1})[0] <= 1]  # (``B*T+B`` is never 1)
    if dim is None and kept and not ctx.probing:  # ``h_n.squeeze()`` (Sentence-VAE): at a batch of one
        warnings.warn(f"rnnc.trace: squeeze() without a dim at {ctx.source or 'the model'} keeps {', '.join(kept)}, "
                      "which torch also drops where it is 1 at run time (a batch of one): the Program keeps the "
                      "rank it was traced with; squeeze(0) says which dim", stacklevel=2)
    for d in sorted((axis(d, x.rank) for d in dims), reverse=True):
        # a symbolic dim that is 1 in the example is squeezed like torch does at run time
        if x.ex.shape[d] == 1:
            x = ctx.emit("squeeze", x, axis=d)
    return x


@handles("select")
def select(ctx: Ctx, x: TV, dim: int, index: int) -> TV:
    return ctx.emit("select", x, axis=axis(dim, x.rank), index=int(index))


@handles("slice")
def slice_(ctx: Ctx, x: TV, dim: int = 0, start: Any = None, end: Any = None, step: int = 1) -> TV:
    """aten::slice; full slices are dropped (no node).  A bound read from a symbolic size is a
    ``slice_dyn`` (``x[:, :t]`` after a padded conv); the dim's own size is "to the end"."""
    ax = axis(dim, x.rank)
    if isinstance(end, SymInt) and end.is_dim(x, ax) and not isinstance(start, SymInt):
        end = None
    if isinstance(start, SymInt) or isinstance(end, SymInt):
        made = ctx.shape_entries([0 if start is None else start, _END if end is None else end])
        if made is None or -1 in made[0]:
            raise ctx.unsupported(f"a slice of dim {ax} of {list(x.shape)} whose bound is computed from "
                                  "symbolic sizes", "bounds that are constants or sizes read from tensors")
        (lo, hi), refs = made
        return ctx.emit("slice_dyn", x, *refs, axis=ax, start=lo, stop=hi, step=int(step))
    start = 0 if start is None else int(start)
    stop = _END if end is None or end >= _END or (end >= 2**62) else int(end)
    if start == 0 and stop == _END and step == 1:
        return x
    n = x.shape[ax]
    if isinstance(n, int) and start == 0 and stop >= n and step == 1:
        return x
    return ctx.emit("slice", x, axis=ax, start=start, stop=stop, step=int(step))


@handles("narrow")
def _narrow(ctx: Ctx, x: TV, dim: int, start: int, length: int) -> TV:
    return slice_(ctx, x, dim, start, int(start) + int(length))


@handles("getitem")
def getitem(ctx: Ctx, x: Any, idx: Any) -> Any:
    if not is_tensor(x):
        return x[idx]
    items = list(idx) if isinstance(idx, tuple) else [idx]
    if any(isinstance(i, (TV, list, torch.Tensor)) for i in items):
        return NotImplemented  # advanced indexing: captured through torch.export
    n_real = sum(1 for i in items if i is not None and i is not Ellipsis)
    if Ellipsis in items:
        at = items.index(Ellipsis)
        items[at:at + 1] = [slice(None)] * (x.rank - n_real)
    ax = 0
    for it in items:
        if it is None:
            x = ctx.emit("unsqueeze", x, axis=ax)
            ax += 1
        elif isinstance(it, slice):
            step = 1 if it.step is None else int(it.step)
            if step <= 0:
                raise ctx.unsupported(f"slice step {step}", "positive slice steps (use flip)")
            x = slice_(ctx, x, ax, it.start, it.stop, step)
            ax += 1
        else:
            x = select(ctx, x, ax, int(it))
    return x


@handles("flip")
def _flip(ctx: Ctx, x: TV, *dims: Any) -> TV:
    for d in _dims(dims):
        x = ctx.emit("flip", x, axis=axis(int(d), x.rank))
    return x


@handles("cat", "concat", "concatenate")
def cat(ctx: Ctx, xs: Any, dim: int = 0, axis_: Any = None) -> TV:
    xs = [x for x in xs if not (is_tensor(x) and x.rank == 1 and x.ex.numel() == 0)]
    if len(xs) == 1:
        return xs[0]
    ax = axis(dim, xs[0].rank)
    flat: list[TV] = []
    for x in xs:  # cat is associative: a cat of an earlier cat on this axis takes its items
        inner = ctx.concat_items.get(x.value.name) if is_tensor(x) and x.value is not None else None
        flat.extend(inner[0] if inner is not None and inner[1] == ax else [x])
    out = ctx.emit("concat", *flat, axis=ax)
    ctx.concat_items[out.value.name] = (flat, ax)
    return ctx.retime(out, flat, ax) if all(x.shape[ax] == 1 for x in flat) else out


@handles("stack")
def stack(ctx: Ctx, xs: Any, dim: int = 0) -> TV:
    ax = axis(dim, xs[0].rank + 1)
    return ctx.retime(ctx.emit("stack", *xs, axis=ax), xs, ax)


@handles("unfold")
@reads("kernel_size", "dilation", "padding", "stride")
def _im2col(ctx: Ctx, x: TV, *args: Any, **kwargs: Any) -> Any:
    """``F.unfold(x, (k, W))`` whose kernel spans the whole last dim (FullSubNet's sub-bands: ``k``
    neighbouring frequencies over every frame, ``W`` the symbolic length): the ``k`` row windows
    stacked, ``[N, C*k*W, H-k+1]`` -- what torch's im2col gives for one column position.  Other
    unfolds (``Tensor.unfold(dim, size, step)``, kernels narrower than the input) take the exact
    path."""
    if "dimension" in kwargs or len(args) > 1 or x.rank != 4:
        return NotImplemented
    kernel = kwargs.get("kernel_size", args[0] if args else None)
    rest = {k: kwargs.get(k, d) for k, d in (("dilation", 1), ("padding", 0), ("stride", 1))}
    if not isinstance(kernel, (tuple, list)) or len(kernel) != 2 or any(v not in (1, 0, (1, 1), (0, 0), [1, 1], [0, 0])
                                                                       for v in rest.values()):
        return NotImplemented
    kh, kw = kernel
    whole = (isinstance(kw, SymInt) and kw.is_dim(x, 3)) or (not isinstance(kw, SymInt) and kw == x.shape[3])
    if not whole or isinstance(kh, SymInt) or not 0 < int(kh) <= int(x.ex.shape[2]):
        return NotImplemented
    k = int(kh)  # window i: rows i .. i + H - k, the last ones counted from the end (H may be symbolic)
    windows = [slice_(ctx, x, 2, i, i - k + 1 if i < k - 1 else None) for i in range(k)]
    out = ctx.emit("transpose", ctx.emit("stack", *windows, axis=2), perm=(0, 1, 2, 4, 3))  # [N, C, k, W, L]
    return reshape(ctx, out, x.size(0), -1, out.size(4))


@handles("split")
def split(ctx: Ctx, x: TV, size: Any = None, dim: int = 0, split_size: Any = None,
          split_size_or_sections: Any = None) -> tuple[TV, ...]:
    """A symbolic dim split into steps of 1 (``for h in x.split(1)``) gives one slice per step of
    the example; the loop over them is rolled back over T (``scan.py``) or the trace check fails.
    Split into chunks (``for c in x.split(16, 1): y, h = gru(c, h)``, streaming-style), it gives
    the example's chunks, the last one to the end: a recurrent layer run chunk after chunk is
    then merged back into one over the whole length (``chunks.py``), or the trace check fails."""
    size = next(s for s in (size, split_size, split_size_or_sections) if s is not None)
    ax = axis(dim, x.rank)
    n = x.shape[ax]
    if isinstance(size, SymInt) and not isinstance(n, int):  # ``x.split(x.size(1) // 2, 1)``
        count = -(-int(x.ex.shape[ax]) // int(size))
        return tuple(slice_(ctx, x, ax, size * k if k else 0, size * (k + 1) if k < count - 1 else None)
                     for k in range(count))
    if isinstance(size, int):
        if not isinstance(n, int):
            if size == 1 and ctx.probing:
                raise ctx.unsupported(f"split of symbolic dim {n}", "splits of fixed-size dims, or into steps")
            n_ex = int(x.ex.shape[ax])
            last = (n_ex - 1) // size * size  # a step read is k:k + 1 even at the end (``scan.read``)
            return tuple(ctx.emit("slice", x, axis=ax, start=k, stop=_END if k == last and size > 1 else k + size,
                                  step=1) for k in range(0, n_ex, size))
        sizes = [min(size, n - s) for s in range(0, n, size)]
    else:
        sizes = [int(s) for s in size]
    if len(sizes) == 1:
        return (x,)
    return tuple(ctx.emit("split", x, axis=ax, sizes=tuple(sizes)))


HANDLERS["split_with_sizes"] = split


@handles("chunk")
def chunk(ctx: Ctx, x: TV, chunks: int, dim: int = 0) -> tuple[TV, ...]:
    each = -(-int(x.ex.shape[axis(dim, x.rank)]) // int(chunks))  # as torch does, at the example
    return split(ctx, x, each, dim)  # (SRU's ``u.chunk(length)``: steps, rolled back over T)


@handles("unbind")
def _unbind(ctx: Ctx, x: TV, dim: int = 0) -> tuple[TV, ...]:
    ax = axis(dim, x.rank)
    n = x.shape[ax]
    if not isinstance(n, int) and ctx.probing:
        raise ctx.unsupported(f"unbind of symbolic dim {n}", "unbind of fixed-size dims")
    return tuple(select(ctx, x, dim, i) for i in range(int(x.ex.shape[ax])))


@handles("zeros", "new_zeros", "zeros_like")
@reads("dtype", "size")
def zeros(ctx: Ctx, *args: Any, **kwargs: Any) -> TV:
    """An all-zero tensor: kept without a node (``zeros=True``) until something needs its value."""
    if kwargs.get("size") is not None:  # ``x.new_zeros(size=(b, h))``, ``torch.zeros(size=...)``
        args = (*args, tuple(kwargs.pop("size")))
    if args and is_tensor(args[0]):  # x.new_zeros(size) / zeros_like(x)
        like = args[0]
        shape = list(like.shape) if len(args) == 1 else _sym_shape(_dims(args[1:]))
        ex_shape = [int(d) for d in (like.ex.shape if len(args) == 1 else _dims(args[1:]))]
        dtype = kwargs.get("dtype") or like.ex.dtype
    else:
        dims = _dims(args)
        shape, ex_shape = _sym_shape(dims), [int(d) for d in dims]
        dtype = kwargs.get("dtype") or torch.float32
    dtype = torch_dtype_arg(dtype) or torch.float32
    if args and is_tensor(args[0]) and len(args) == 1:  # zeros_like(h): h's sizes (h's own when
        # h is itself an all-zero tensor not yet made: the initial state of a loop)
        sizes = like.sizes if like.value is None and like.sizes is not None else tuple(
            like.size(i) for i in range(like.rank))
    else:
        sizes = tuple(_dims(args[1:] if args and is_tensor(args[0]) else args))
    return TV(None, torch.zeros(ex_shape, dtype=dtype), zeros=True, shape_override=tuple(shape), sizes=sizes)


def filled(ctx: Ctx, sizes: Any, value: Any, dtype: torch.dtype) -> Any:
    """A tensor of ``sizes`` (``SymInt``s where symbolic) filled with ``value``: a ``full_dyn``
    node, or ``NotImplemented`` when a size cannot be read at run time."""
    if isinstance(value, TV):
        return NotImplemented
    made = ctx.shape_entries(list(sizes))
    if made is None or -1 in made[0]:
        return NotImplemented
    entries, refs = made
    value = float(value) if dtype.is_floating_point else int(value)
    if not refs:  # constant sizes: a constant (a scalar, or a tensor parameter)
        if not entries:
            return ctx.const(value, dtype_of_torch(dtype))
        return ctx.param(torch.full([int(e) for e in entries], value, dtype=dtype), "const")
    return ctx.emit("full_dyn", *refs, shape=entries, value=value, dtype=dtype_of_torch(dtype))


def _dtype(kwargs: dict[str, Any], like: TV | None, value: Any) -> torch.dtype:
    d = torch_dtype_arg(kwargs.get("dtype"))
    if d is not None:
        return d
    if like is not None:
        return like.ex.dtype
    return torch.int64 if isinstance(value, (bool, int)) and not isinstance(value, float) else torch.float32


@handles("ones")
@reads("dtype")
def _ones(ctx: Ctx, *sizes: Any, **kwargs: Any) -> Any:
    return filled(ctx, _dims(sizes), 1.0, _dtype(kwargs, None, 1.0))


HANDLERS["empty"] = lambda ctx, *sizes, **kwargs: zeros(ctx, *sizes, **kwargs)  # zeros: a defined value
HANDLERS["new_empty"] = lambda ctx, x, *sizes, **kwargs: zeros(ctx, x, *sizes, **kwargs)
HANDLERS["zero"] = lambda ctx, x: zeros(ctx, x)  # ``h.zero_()`` (the tracer made h its result)


@handles("new")
def _new(ctx: Ctx, x: TV, *sizes: Any) -> Any:
    """``weight.new(1, bsz, h).zero_()`` (AWD-LSTM's ``init_hidden``): an uninitialised tensor of
    those sizes -- zeros, since any value is one it may hold; ``x.new(data)`` takes the exact path."""
    dims = _dims(sizes)
    if not dims or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        return NotImplemented
    return zeros(ctx, x, *dims)


@handles("full")
@reads("dtype")
def _full(ctx: Ctx, size: Any, fill_value: Any, **kwargs: Any) -> Any:
    return filled(ctx, list(size), fill_value, _dtype(kwargs, None, fill_value))


@handles("new_ones")
@reads("dtype")
def _new_ones(ctx: Ctx, x: TV, *sizes: Any, **kwargs: Any) -> Any:
    return filled(ctx, _dims(sizes), 1.0, _dtype(kwargs, x, 1.0))


@handles("new_full")
@reads("dtype")
def _new_full(ctx: Ctx, x: TV, size: Any, fill_value: Any, **kwargs: Any) -> Any:
    return filled(ctx, list(size), fill_value, _dtype(kwargs, x, fill_value))


@handles("expand")
def expand(ctx: Ctx, x: TV, *sizes: Any) -> Any:
    """Sizes that keep a dim are ``-1``; a size-1 dim broadcast to a symbolic size reads that size
    at run time (``expand_dyn``)."""
    want = _dims(sizes)
    lead = len(want) - x.rank
    keep = []
    for i, s in enumerate(want):
        d = x.shape[i - lead] if i >= lead else None
        same = d is not None and ((isinstance(s, SymInt) and s.is_dim(x, i - lead))
                                  or (not isinstance(s, SymInt) and s == d))
        keep.append(-1 if (same or (s == -1 and not isinstance(s, SymInt))) else s)
    if all(k == -1 for k in keep) and lead == 0:
        return x
    made = ctx.shape_entries(keep)
    if made is None:
        return NotImplemented
    return ctx.emit("expand_dyn", x, *made[1], shape=made[0])


@handles("expand_as")
def _expand_as(ctx: Ctx, x: TV, other: TV) -> Any:
    return expand(ctx, x, *[other.size(i) for i in range(other.rank)])


@handles("repeat")
def _repeat(ctx: Ctx, x: TV, *reps: Any) -> Any:
    """``repeat`` of size-1 dims is an expand (``h.repeat(1, t, 1)`` in attention decoders)."""
    reps = _dims(reps)
    lead = len(reps) - x.rank
    sizes: list[Any] = []
    for i, r in enumerate(reps):
        d = x.ex.shape[i - lead] if i >= lead else 1
        if r == 1 and not isinstance(r, SymInt):
            sizes.append(-1 if i >= lead else 1)
        elif d == 1 and (i < lead or x.shape[i - lead] == 1):
            sizes.append(r)
        else:
            return NotImplemented  # a real tiling: torch.export captures it
    return expand(ctx, x, *sizes)


def _sym_shape(dims: list[Any]) -> list[Any]:
    return [d.sym if isinstance(d, SymInt) else int(d) for d in dims]


@handles("type_as")
def _as(ctx: Ctx, x: TV, other: TV) -> TV:
    if x.ex.dtype != other.ex.dtype:
        from rnnc.frontend.handlers import to

        x = to(ctx, x, other.ex.dtype)
    return x


@handles("_assert_is_none")
def _assert_is_none(ctx: Ctx, *args: Any, **kwargs: Any) -> None:
    """fx's guard for a forward argument left at its default ``None``: nothing to convert."""
    return None
