"""Shape-manipulating, reduction and neural-network ops of the IR (see ``ops.py`` for the
registry).  Split out to keep modules small."""

from __future__ import annotations

from typing import Any

from rnnc.ir import symdims
from rnnc.ir.ops import ShapeError, _axis, _req, _t, infers, register_op
from rnnc.ir.types import Dim, TensorType, dims_compatible


def _norm_axes(axes: Any, rank: int) -> tuple[int, ...]:
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    return tuple(sorted(_axis(a, rank) for a in axes))


# --------------------------------------------------------------------------- reductions
def _reduce(fn_name: str):
    def evaluate(xs, a):
        x = xs[0]
        axes = _norm_axes(a["axes"], x.dim())
        if fn_name == "amax":
            return (_t().amax(x, dim=axes, keepdim=a.get("keepdim", False)),)
        return (getattr(_t(), fn_name)(x, dim=axes, keepdim=a.get("keepdim", False)),)

    def infer(types, attrs):
        x = _req(types[0], "x")
        axes = _norm_axes(attrs["axes"], x.rank)
        keep = attrs.get("keepdim", False)
        shape = [1 if i in axes else d for i, d in enumerate(x.shape)] if keep else [
            d for i, d in enumerate(x.shape) if i not in axes]
        return (TensorType(tuple(shape), x.dtype),)

    return evaluate, infer


for _n in ("sum", "mean", "amax"):
    _e, _i = _reduce(_n)
    register_op(_n, inputs=1, attrs=("axes",))(_e)
    infers(_n)(_i)


@register_op("softmax", inputs=1, attrs=("axis",))
def _softmax(xs, a):
    return (_t().softmax(xs[0], dim=a["axis"]),)


@infers("softmax")
def _softmax_infer(types, attrs):
    x = _req(types[0], "x")
    _axis(attrs["axis"], x.rank)
    return (x,)


# --------------------------------------------------------------------------- shapes
@register_op("reshape", inputs=1, attrs=("shape",), doc="ONNX rules: 0 copies the input dim, -1 infers")
def _reshape(xs, a):
    x = xs[0]
    shape = [x.shape[i] if d == 0 else d for i, d in enumerate(a["shape"])]
    return (x.reshape(shape),)


@infers("reshape")
def _reshape_infer(types, attrs):
    x = _req(types[0], "x")
    out: list[Dim] = []
    for i, d in enumerate(attrs["shape"]):
        if d == 0:
            if i >= x.rank:
                raise ShapeError(f"reshape: 0 at position {i} but input rank is {x.rank}")
            out.append(x.shape[i])
        else:
            out.append(d)
    if out.count(-1) > 1:
        raise ShapeError("reshape: at most one -1")
    if -1 in out:
        known = [d for d in out if d != -1]
        total = 1
        for d in x.shape:
            total = total * d if isinstance(total, int) and isinstance(d, int) else None
        if total is not None and all(isinstance(d, int) for d in known):
            prod = 1
            for d in known:
                prod *= d
            if prod == 0 or total % prod:
                raise ShapeError(f"reshape {x.text()} to {attrs['shape']}: sizes do not divide")
            out[out.index(-1)] = total // prod
        else:
            # dims copied in place (``0``) cancel out, so a ``?`` among them does not hide the rest
            kept = {i for i, d in enumerate(attrs["shape"]) if d == 0}
            out[out.index(-1)] = symdims.quotient([d for i, d in enumerate(x.shape) if i not in kept],
                                                  [d for i, d in enumerate(out) if i not in kept and d != -1])
    return (TensorType(tuple(out), x.dtype),)


@register_op("transpose", inputs=1, attrs=("perm",))
def _transpose(xs, a):
    return (xs[0].permute(*a["perm"]),)


@infers("transpose")
def _transpose_infer(types, attrs):
    x = _req(types[0], "x")
    perm = attrs["perm"]
    if sorted(perm) != list(range(x.rank)):
        raise ShapeError(f"transpose: perm {perm} is not a permutation of rank {x.rank}")
    return (TensorType(tuple(x.shape[p] for p in perm), x.dtype),)


@register_op("unsqueeze", inputs=1, attrs=("axis",))
def _unsqueeze(xs, a):
    return (xs[0].unsqueeze(a["axis"]),)


@infers("unsqueeze")
def _unsqueeze_infer(types, attrs):
    x = _req(types[0], "x")
    ax = _axis(attrs["axis"], x.rank + 1)
    return (TensorType((*x.shape[:ax], 1, *x.shape[ax:]), x.dtype),)


@register_op("squeeze", inputs=1, attrs=("axis",))
def _squeeze(xs, a):
    return (xs[0].squeeze(a["axis"]),)


@infers("squeeze")
def _squeeze_infer(types, attrs):
    x = _req(types[0], "x")
    ax = _axis(attrs["axis"], x.rank)
    if not dims_compatible(x.shape[ax], 1):
        # torch leaves a non-1 dim alone; keep that meaning
        return (x,)
    return (TensorType((*x.shape[:ax], *x.shape[ax + 1:]), x.dtype),)


@register_op("slice", inputs=1, attrs=("axis", "start", "stop", "step"))
def _slice(xs, a):
    x = xs[0]
    idx = [slice(None)] * x.dim()
    idx[a["axis"]] = slice(a["start"], a["stop"], a["step"])
    return (x[tuple(idx)],)


@infers("slice")
def _slice_infer(types, attrs):
    x = _req(types[0], "x")
    ax = _axis(attrs["axis"], x.rank)
    if attrs["step"] <= 0:
        raise ShapeError("slice: step must be positive (use flip)")
    shape = list(x.shape)
    shape[ax] = symdims.slice_length(x.shape[ax], attrs["start"], attrs["stop"], attrs["step"])
    return (TensorType(tuple(shape), x.dtype),)


@register_op("select", inputs=1, attrs=("axis", "index"), doc="x.select(axis, index): drops the axis")
def _select(xs, a):
    return (xs[0].select(a["axis"], a["index"]),)


@infers("select")
def _select_infer(types, attrs):
    x = _req(types[0], "x")
    ax = _axis(attrs["axis"], x.rank)
    d = x.shape[ax]
    if isinstance(d, int) and not -d <= attrs["index"] < d:
        raise ShapeError(f"select: index {attrs['index']} out of range for dim {d}")
    return (TensorType((*x.shape[:ax], *x.shape[ax + 1:]), x.dtype),)


@register_op("flip", inputs=1, attrs=("axis",))
def _flip(xs, a):
    return (xs[0].flip(a["axis"]),)


@infers("flip")
def _flip_infer(types, attrs):
    x = _req(types[0], "x")
    _axis(attrs["axis"], x.rank)
    return (x,)


def _cat_shape(types, axis: int, stack: bool) -> tuple[Dim, ...]:
    xs = [_req(t, f"#{i}") for i, t in enumerate(types)]
    if not xs:
        raise ShapeError("needs at least one input")
    base = xs[0]
    for t in xs[1:]:
        if t.rank != base.rank or t.dtype != base.dtype:
            raise ShapeError(f"inputs {base.text()} and {t.text()} differ in rank or dtype")
    if stack:
        ax = _axis(axis, base.rank + 1)
        for t in xs[1:]:
            if not all(dims_compatible(a, b) for a, b in zip(t.shape, base.shape, strict=True)):
                raise ShapeError(f"stack: {base.text()} vs {t.text()}")
        return (*base.shape[:ax], len(xs), *base.shape[ax:])
    ax = _axis(axis, base.rank)
    total: Dim = 0
    for t in xs:
        for i, (a, b) in enumerate(zip(t.shape, base.shape, strict=True)):
            if i != ax and not dims_compatible(a, b):
                raise ShapeError(f"concat: {base.text()} vs {t.text()} differ off axis {ax}")
        d = t.shape[ax]
        total = symdims.name("+", total, d)
    return (*base.shape[:ax], total, *base.shape[ax + 1:])


@register_op("concat", inputs=(1, None), attrs=("axis",))
def _concat(xs, a):
    return (_t().cat(list(xs), dim=a["axis"]),)


@infers("concat")
def _concat_infer(types, attrs):
    return (TensorType(_cat_shape(types, attrs["axis"], False), _req(types[0], "#0").dtype),)


@register_op("stack", inputs=(1, None), attrs=("axis",))
def _stack(xs, a):
    return (_t().stack(list(xs), dim=a["axis"]),)


@infers("stack")
def _stack_infer(types, attrs):
    return (TensorType(_cat_shape(types, attrs["axis"], True), _req(types[0], "#0").dtype),)


@register_op("split", inputs=1, attrs=("axis", "sizes"), doc="one output per size")
def _split(xs, a):
    return tuple(_t().split(xs[0], list(a["sizes"]), dim=a["axis"]))


@infers("split")
def _split_infer(types, attrs):
    x = _req(types[0], "x")
    ax = _axis(attrs["axis"], x.rank)
    sizes = attrs["sizes"]
    if isinstance(x.shape[ax], int) and sum(sizes) != x.shape[ax]:
        raise ShapeError(f"split sizes {list(sizes)} do not add up to dim {x.shape[ax]} of {x.text()}")
    return tuple(TensorType((*x.shape[:ax], s, *x.shape[ax + 1:]), x.dtype) for s in sizes)


# --------------------------------------------------------------------------- neural-network ops
@register_op("conv1d", inputs=(2, 3), attrs=("stride", "padding", "dilation", "groups"),
             doc="x[B, C, L] * w[O, C/groups, K] (+ b[O]); STFT is a conv1d with a fixed basis")
def _conv1d(xs, a):
    return (_t().nn.functional.conv1d(xs[0], xs[1], xs[2] if len(xs) > 2 else None, a["stride"],
                                      a["padding"], a["dilation"], a["groups"]),)


@infers("conv1d")
def _conv1d_infer(types, attrs):
    x, w = _req(types[0], "x"), _req(types[1], "weight")
    if x.rank != 3 or w.rank != 3:
        raise ShapeError(f"conv1d wants x[B, C, L] and weight[O, C/g, K], got {x.text()}, {w.text()}")
    g = attrs["groups"]
    if isinstance(x.shape[1], int) and isinstance(w.shape[1], int) and x.shape[1] != w.shape[1] * g:
        raise ShapeError(f"conv1d: input has {x.shape[1]} channels, weight expects {w.shape[1] * g}")
    length = x.shape[2]
    k = w.shape[2]
    if isinstance(length, int) and isinstance(k, int):
        eff = attrs["dilation"] * (k - 1) + 1
        out_len: Dim = (length + 2 * attrs["padding"] - eff) // attrs["stride"] + 1
        if out_len <= 0:
            raise ShapeError(f"conv1d: input length {length} is shorter than the kernel ({eff})")
    elif isinstance(k, int):  # (L + 2p - eff) // stride + 1, by name: a "same" conv keeps T, a causal
        # one after F.pad(x, (k - 1, 0)) gets T back, a strided one ((T-1)//2)+1
        eff = attrs["dilation"] * (k - 1) + 1
        out_len = symdims.name("+", symdims.name("//", symdims.name("+", length, 2 * attrs["padding"] - eff),
                                                 attrs["stride"]), 1)
    else:
        out_len = "?"
    return (TensorType((x.shape[0], w.shape[0], out_len), x.dtype),)


@register_op("pad", inputs=1, attrs=("pads", "mode", "value"),
             doc="pads = (left, right) on the last axis; mode constant | reflect | replicate")
def _pad(xs, a):
    mode = a["mode"]
    if mode == "constant":
        return (_t().nn.functional.pad(xs[0], list(a["pads"]), mode=mode, value=a["value"]),)
    x = xs[0]  # torch pads the last axis of a 2-D or 3-D input in these modes: others are viewed so
    flat = x.reshape(-1, 1, x.shape[-1]) if x.dim() != 3 else x
    out = _t().nn.functional.pad(flat, list(a["pads"]), mode=mode)
    return (out.reshape(*x.shape[:-1], out.shape[-1]) if x.dim() != 3 else out,)


@infers("pad")
def _pad_infer(types, attrs):
    x = _req(types[0], "x")
    if attrs["mode"] not in ("constant", "reflect", "replicate"):
        raise ShapeError(f"pad mode {attrs['mode']!r} is not one of constant, reflect, replicate")
    left, right = attrs["pads"]
    d = x.shape[-1]
    return (TensorType((*x.shape[:-1], symdims.name("+", d, left + right)), x.dtype),)


@register_op("layer_norm", inputs=(1, 3), attrs=("eps", "ndim"), doc="normalises the last ndim axes")
def _layer_norm(xs, a):
    x = xs[0]
    shape = x.shape[x.dim() - a["ndim"]:]
    w = xs[1] if len(xs) > 1 else None
    b = xs[2] if len(xs) > 2 else None
    return (_t().nn.functional.layer_norm(x, shape, w, b, a["eps"]),)


@infers("layer_norm")
def _layer_norm_infer(types, attrs):
    x = _req(types[0], "x")
    if not 1 <= attrs["ndim"] <= x.rank:
        raise ShapeError(f"layer_norm over {attrs['ndim']} axes of {x.text()}")
    for t in types[1:]:
        if t is not None and t.shape != x.shape[x.rank - attrs["ndim"]:] and all(
                isinstance(d, int) for d in x.shape[x.rank - attrs["ndim"]:]):
            raise ShapeError(f"layer_norm: affine param {t.text()} does not match {x.text()}")
    return (x,)


@register_op("embedding", inputs=2, doc="table[idx]: idx int64 [...], table [V, D] -> [..., D]")
def _embedding(xs, a):
    return (_t().nn.functional.embedding(xs[0], xs[1]),)


@infers("embedding")
def _embedding_infer(types, attrs):
    idx, table = _req(types[0], "indices"), _req(types[1], "table")
    if idx.dtype not in ("int64", "int32") or table.rank != 2:
        raise ShapeError(f"embedding wants int indices and a [V, D] table, got {idx.text()}, {table.text()}")
    return (TensorType((*idx.shape, table.shape[1]), table.dtype),)
