"""Capture through ``torch.export``: everything that is not a recurrent layer, in core ATen.

Why: the fx converter translates calls it has a handler for; a model written with an op it
lacks (``nn.Conv2d``, ``F.normalize``, ``torch.einsum`` ...) used to stop the trace.  Here such a
call -- a torch.nn layer, a function, a tensor method -- is exported with PyTorch's standard
``torch.export`` (non-strict, the call's symbolic dims marked dynamic) and decomposed to core
ATen, except the high-level operators in ``KEEP`` that exporters render better whole
(convolutions, norms, pools, resizes).  Its ATen graph is then converted node by node
(``handlers_aten.py``): first-class IR ops where rnnc has them, the generic ``aten`` IR op
otherwise.  So the frontend's coverage is core ATen's, and recurrent layers stay ``rnn`` nodes
because the fx tracer keeps them as leaves and never hands them here.

Sizes: the export marks the call's symbolic dims dynamic and is size-oblivious (an example batch
of 1 does not become a batch fixed at 1); its ``sym_size`` nodes read the IR's dims back as ``SymInt``s,
so a reshape to ``(b, t, c * f)`` keeps ``B`` and ``T`` symbolic.  A call that fixes a
symbolic dim (its export specializes it) is refused with the call's name and the dim.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn
from torch.utils import _pytree as pytree

from rnnc.frontend.values import TV, Ctx, SymInt, size_op

aten = torch.ops.aten

#: ATen operators kept whole when decomposing to core ATen: each is one exporter op (ONNX Conv,
#: BatchNormalization, MaxPool, Resize ...) that its decomposition would scatter into index math
KEEP = (
    aten.conv1d.default, aten.conv2d.default, aten.conv_transpose1d.default, aten.conv_transpose2d.input,
    aten.linear.default, aten.layer_norm.default, aten.group_norm.default, aten.batch_norm.default,
    aten.instance_norm.default, aten.max_pool1d.default, aten.max_pool2d.default, aten.avg_pool1d.default,
    aten.avg_pool2d.default, aten.adaptive_avg_pool1d.default, aten.adaptive_avg_pool2d.default,
    aten.adaptive_max_pool1d.default, aten.adaptive_max_pool2d.default,
    aten.upsample_nearest1d.vec, aten.upsample_nearest2d.vec, aten.upsample_linear1d.vec,
    aten.upsample_bilinear2d.vec, aten.glu.default, aten.linalg_vector_norm.default, aten.leaky_relu.default,
    aten.elu.default, aten.hardswish.default, aten.hardsigmoid.default, aten.mish.default, aten.prelu.default,
    aten.gelu.default, aten.silu.default, aten.softplus.default, aten.hardtanh.default, aten.embedding.default,
    aten.cumsum.default, aten.rsqrt.default, aten.log1p.default, aten.scaled_dot_product_attention.default,
    aten.pixel_shuffle.default, aten.logsumexp.default, aten.tril.default, aten.triu.default,
)


def _decompositions() -> dict[Any, Callable[..., Any]]:
    table = torch.export.default_decompositions()
    for op in KEEP:
        table.pop(op, None)
    return table


class _Call(nn.Module):
    """``fn(*args, **kwargs)`` as a module whose forward takes the call's tensors only."""

    def __init__(self, fn: Callable[..., Any], rebuild: Callable[[tuple[torch.Tensor, ...]], tuple[Any, Any]]) -> None:
        super().__init__()
        if isinstance(fn, nn.Module):
            self.m = fn  # registered: its parameters and buffers become the export's state
        else:
            self._fns = (fn,)  # a tuple: not registered as a submodule
        self._rebuild = rebuild

    def forward(self, *tensors: torch.Tensor) -> Any:
        args, kwargs = self._rebuild(tensors)
        fn = self.m if hasattr(self, "m") else self._fns[0]
        return fn(*args, **kwargs)


#: exports of this process, by call signature: a trace converts each call twice or more (the
#: candidate dims, the fallbacks), and an export costs ~0.1-1 s.  Values hold the callable too,
#: so its id cannot be reused by another object while the entry lives.
_CACHE: dict[Any, tuple[Any, Any]] = {}


def _signature(fn: Any, leaves: list[Any]) -> Any:
    """Cache key: the callable (and, for a module, its current parameter and buffer objects), and
    each argument's dims/dtype (tensors) or value."""
    key: list[Any] = [id(fn)]
    if isinstance(fn, nn.Module):
        key.append(tuple(id(t) for t in (*fn.parameters(), *fn.buffers())))
    for a in leaves:
        if isinstance(a, TV):
            key.append((tuple(a.shape), tuple(a.ex.shape), str(a.ex.dtype)))
        elif isinstance(a, SymInt):
            key.append(("sym", a.sym, int(a)))
        else:
            key.append(repr(a))
    return tuple(key)


def convert_call(ctx: Ctx, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], what: str,
                 qual: str = "") -> Any:
    """Convert ``fn(*args, **kwargs)`` (``TV``s in place of tensors) through torch.export.

    ``what`` names the call in errors ("layer torch.nn.Conv2d", "function einsum"); ``qual`` is
    the module's qualified name, the prefix of its weights' names."""
    leaves, spec = pytree.tree_flatten((args, kwargs))
    for a in leaves:
        if isinstance(a, SymInt) and isinstance(a.sym, str):
            raise ctx.unsupported(f"{what} with a size argument that follows the symbolic dim {a.sym}",
                                  "sizes read from tensors inside the call")
    positions = [i for i, a in enumerate(leaves) if isinstance(a, TV)]
    tvs = [leaves[i] for i in positions]

    def rebuild(tensors: tuple[torch.Tensor, ...]) -> tuple[Any, Any]:
        flat = list(leaves)
        for i, t in zip(positions, tensors, strict=True):
            flat[i] = t
        return pytree.tree_unflatten(flat, spec)

    key = _signature(fn, leaves)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is fn:
        ep = hit[1]
    else:
        ep = _export(ctx, fn, rebuild, tvs, what)
        if len(_CACHE) > 256:
            _CACHE.clear()
        _CACHE[key] = (fn, ep)
    return _walk(ctx, ep, tvs, qual, what)


def _export(ctx: Ctx, fn: Callable[..., Any], rebuild: Any, tvs: list[TV], what: str) -> Any:
    from torch.fx.experimental import _config as fx_config

    dynamic = tuple({i: torch.export.Dim.AUTO for i, d in enumerate(t.shape) if isinstance(d, str)} or None
                    for t in tvs)
    wrapper = _Call(fn, rebuild)  # (trace holds the model in eval mode: api.inference_mode)
    try:
        # size-oblivious: an example batch of 1 must not make export specialize the batch to 1
        with fx_config.patch(backed_size_oblivious=True), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # export's deprecation notices are not the user's concern
            # contiguous examples: the values are the same, and export's decompositions trip over
            # some strided views (an einsum of a slice broadcast against itself)
            ep = torch.export.export(wrapper, tuple(t.ex.contiguous() for t in tvs), dynamic_shapes=(dynamic,),
                                     strict=False)
            ep = ep.run_decompositions(_decompositions())
    except Exception as exc:  # torch.export's own error: keep its first line, it names the cause
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ctx.unsupported(f"{what} (torch.export failed: {first})") from exc
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder"]
    users = [n for n, s in zip(placeholders, ep.graph_signature.input_specs, strict=True)
             if s.kind == torch.export.graph_signature.InputKind.USER_INPUT]
    for tv, node in zip(tvs, users, strict=True):
        val = node.meta.get("val")
        for d, (want, got) in enumerate(zip(tv.shape, getattr(val, "shape", ()), strict=False)):
            if isinstance(want, str) and not isinstance(got, torch.SymInt) and not ctx.probing:
                raise ctx.unsupported(f"{what}: it fixes dim {d} ({want}) of its input {list(tv.shape)} to {got}",
                                      "calls that work for every batch size and length")
    return ep


def _state(ep: Any, target: str) -> torch.Tensor:
    if target in ep.state_dict:
        return ep.state_dict[target]
    return ep.constants[target]


_ARITH: dict[Any, Callable[..., Any]] = {
    operator.add: operator.add, operator.sub: operator.sub, operator.mul: operator.mul,
    operator.floordiv: operator.floordiv, operator.truediv: operator.truediv, operator.mod: operator.mod,
    operator.neg: operator.neg, torch.sym_float: float, torch.sym_int: int, math.ceil: math.ceil,
    math.floor: math.floor, torch.sym_max: lambda a, b: size_op("max", a, b),
    torch.sym_min: lambda a, b: size_op("min", a, b),
}


def _walk(ctx: Ctx, ep: Any, tvs: list[TV], qual: str, what: str) -> Any:
    from rnnc.frontend.handlers_aten import convert_node

    env: dict[fx.Node, Any] = {}
    user = iter(tvs)
    prefix = f"{qual}." if qual else ""
    specs = iter(ep.graph_signature.input_specs)
    out: Any = None
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            spec = next(specs)
            if spec.kind == torch.export.graph_signature.InputKind.USER_INPUT:
                env[node] = next(user)
            elif spec.kind == torch.export.graph_signature.InputKind.TOKEN:
                env[node] = None  # the order of side effects (``with_effects``): nothing to compute
            else:
                name = str(spec.target).removeprefix("m.")
                env[node] = ctx.param(_state(ep, spec.target), prefix + name if prefix or name else "const")
            continue
        args = fx.node.map_arg(node.args, env.__getitem__)
        kwargs = fx.node.map_arg(node.kwargs, env.__getitem__)
        if node.op == "output":
            out = args[0]
        elif node.target is operator.getitem:
            env[node] = args[0][args[1]]
        elif node.target in _ARITH:
            env[node] = _ARITH[node.target](*args)  # SymInt arithmetic keeps its expression
        elif node.target is torch.ops.higher_order.with_effects and isinstance(node.args[1], torch._ops.OpOverload) \
                and not node.args[1]._schema.returns:
            env[node] = (None,)  # ``torch.linalg.inv``'s error check (``_linalg_check_errors``): a check, no value
        elif isinstance(node.target, torch._ops.OpOverload):
            if not node.target._schema.returns:  # export's runtime asserts: nothing to compute
                env[node] = None
            else:  # (sym_size reads a SymInt back: handlers_aten)
                env[node] = convert_node(ctx, node.target, args, kwargs, what)
        else:
            raise ctx.unsupported(f"{what}: its export calls {node.target} (not an ATen operator)")
    flat = list(out) if isinstance(out, (tuple, list)) else [out]
    user_out = torch.export.graph_signature.OutputKind.USER_OUTPUT
    flat = [v for v, spec in zip(flat, ep.graph_signature.output_specs, strict=True) if spec.kind == user_out]
    return pytree.tree_unflatten(flat, ep.module_call_graph[0].signature.out_spec)


__all__ = ["KEEP", "convert_call"]
