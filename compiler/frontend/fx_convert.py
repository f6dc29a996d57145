"""Walk an fx graph and convert each node with the shared handlers into IR.

``convert_graph`` is used both for whole models and for the step of a user-written cell; leaf
modules (see ``fx_trace.is_rnnc_leaf``) are converted by ``MODULES`` below, everything else by
``HANDLERS``.  A layer or call without a handler (or whose handler declines the form it was
called in, returning ``NotImplemented``) is captured through torch.export (``aten.py``); what
cannot be captured either is one ``UnsupportedError`` naming the module and the op.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn
from torch.utils import _pytree as pytree

from rnnc.frontend import handlers_aten, handlers_shape, handlers_write  # noqa: F401  (register their handlers)
from rnnc.frontend.aten import convert_call
from rnnc.frontend.fx_trace import Traced, function_name, user_line
from rnnc.frontend.handlers import HANDLERS, conv1d, layer_norm, linear, pad, understands
from rnnc.frontend.loops import cell_scan, convert_cell_scan
from rnnc.frontend.recurrent import convert_rnnc_layer, convert_torch_cell, convert_torch_rnn, pack_padded, pad_packed
from rnnc.frontend.spectral import ComplexTV, complex_call
from rnnc.frontend.values import TV, Ctx, SymInt

ModuleHandler = Callable[..., Any]


def _p(ctx: Ctx, mod: nn.Module, qual: str, name: str) -> TV | None:
    t = getattr(mod, name, None)
    return ctx.param(t, f"{qual}.{name}") if isinstance(t, torch.Tensor) else None


def _linear(ctx: Ctx, mod: nn.Linear, qual: str, x: TV) -> TV:
    return linear(ctx, x, _p(ctx, mod, qual, "weight"), _p(ctx, mod, qual, "bias"))


def _conv1d(ctx: Ctx, mod: nn.Conv1d, qual: str, x: TV) -> TV:
    if mod.padding_mode != "zeros":
        if isinstance(mod.padding, str):
            raise ctx.unsupported(f"Conv1d padding={mod.padding!r} with padding_mode={mod.padding_mode!r}")
        p = mod.padding[0]
        x = pad(ctx, x, (p, p), {"circular": "circular"}.get(mod.padding_mode, mod.padding_mode))
        padding: Any = 0
    else:
        padding = mod.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        else:
            raise ctx.unsupported(f"Conv1d padding={padding!r}", "integer padding or 'valid'")
    return conv1d(ctx, x, _p(ctx, mod, qual, "weight"), _p(ctx, mod, qual, "bias"), mod.stride, padding,
                  mod.dilation, mod.groups)


def _layer_norm(ctx: Ctx, mod: nn.LayerNorm, qual: str, x: TV) -> TV:
    return layer_norm(ctx, x, mod.normalized_shape, _p(ctx, mod, qual, "weight"), _p(ctx, mod, qual, "bias"),
                      mod.eps)


def _embedding(ctx: Ctx, mod: nn.Embedding, qual: str, x: TV) -> TV:
    if mod.max_norm is not None:
        raise ctx.unsupported("Embedding with max_norm", "Embedding without max_norm")
    return ctx.emit("embedding", x, _p(ctx, mod, qual, "weight"))


def _embedding_bag(ctx: Ctx, mod: nn.EmbeddingBag, qual: str, x: Any, offsets: Any = None,
                   per_sample_weights: Any = None) -> Any:
    """Fixed-size bags (``ids`` of ``[N, K]``, no offsets): the rows gathered, then reduced over
    each bag -- ops every backend has.  Ragged bags (offsets), per-sample weights, ``max_norm``
    or a padding index take the exact path (``aten._embedding_bag``: interpreter only)."""
    plain = (offsets is None and per_sample_weights is None and mod.max_norm is None
             and mod.padding_idx is None and isinstance(x, TV) and x.rank == 2)
    if not plain:
        return _exported_module(ctx, mod, qual, x, offsets, per_sample_weights)
    rows = ctx.emit("embedding", x, _p(ctx, mod, qual, "weight"))
    return ctx.emit({"sum": "sum", "mean": "mean", "max": "amax"}[mod.mode], rows, axes=(1,), keepdim=False)


def _act(name: str) -> ModuleHandler:
    return lambda ctx, mod, qual, x: HANDLERS[name](ctx, x)


def _padmod(mode: str) -> ModuleHandler:
    return lambda ctx, mod, qual, x: pad(ctx, x, mod.padding, mode, getattr(mod, "value", 0.0))


MODULES: dict[type, ModuleHandler] = {
    nn.Linear: _linear,
    nn.Conv1d: _conv1d,
    nn.LayerNorm: _layer_norm,
    nn.Embedding: _embedding,
    nn.EmbeddingBag: _embedding_bag,
    nn.ReLU: _act("relu"), nn.Tanh: _act("tanh"), nn.Sigmoid: _act("sigmoid"), nn.SiLU: _act("silu"),
    nn.LogSigmoid: _act("logsigmoid"),
    nn.GELU: lambda ctx, mod, qual, x: HANDLERS["gelu"](ctx, x, mod.approximate),
    nn.Softplus: lambda ctx, mod, qual, x: HANDLERS["softplus"](ctx, x, mod.beta, mod.threshold),
    nn.Softmax: lambda ctx, mod, qual, x: HANDLERS["softmax"](ctx, x, mod.dim),
    nn.Dropout: lambda ctx, mod, qual, x: x, nn.Identity: lambda ctx, mod, qual, x, *a, **k: x,
    nn.Flatten: lambda ctx, mod, qual, x: HANDLERS["flatten"](ctx, x, mod.start_dim, mod.end_dim),
    nn.ReflectionPad1d: _padmod("reflect"), nn.ReplicationPad1d: _padmod("replicate"),
    nn.ConstantPad1d: _padmod("constant"), nn.ZeroPad1d: _padmod("constant"),
    nn.LSTM: convert_torch_rnn, nn.GRU: convert_torch_rnn, nn.RNN: convert_torch_rnn,
    nn.LSTMCell: convert_torch_cell, nn.GRUCell: convert_torch_cell, nn.RNNCell: convert_torch_cell,
}



def _module_handler(ctx: Ctx, mod: nn.Module) -> ModuleHandler:
    from rnnc.frontend.usercell import Recurrent, convert_recurrent

    if isinstance(mod, Recurrent):
        return convert_recurrent
    if hasattr(mod, "rnnc_layer"):
        return convert_rnnc_layer
    for cls in type(mod).__mro__:
        if cls in MODULES:
            return MODULES[cls]
    return _exported_module


def _exported_module(ctx: Ctx, mod: nn.Module, qual: str, *args: Any, **kwargs: Any) -> Any:
    """A torch.nn layer rnnc has no handler for: captured through torch.export (``aten.py``)."""
    return convert_call(ctx, mod, args, kwargs, f"layer {type(mod).__module__}.{type(mod).__name__}", qual)


def _where(node: fx.Node, root_name: str) -> str:
    stack = node.meta.get("nn_module_stack")
    if stack:
        last = list(stack.values())[-1]
        return str(last[0] if isinstance(last, tuple) else last)
    return root_name


def convert_graph(ctx: Ctx, gm: Traced, inputs: list[Any], *, root_name: str = "") -> Any:
    """Convert ``gm``'s nodes; ``inputs`` are the placeholders' values. Returns the output
    structure of the graph with ``TV``s in place of tensors."""
    env: dict[fx.Node, Any] = {}
    placeholders = iter(inputs)

    def load(n: fx.Node) -> Any:
        return env[n]

    out: Any = None
    for node in gm.graph.nodes:
        args = fx.node.map_arg(node.args, load)
        kwargs = fx.node.map_arg(node.kwargs, load)
        ctx.where = _where(node, root_name) if node.op != "call_module" else str(node.target)
        ctx.source = user_line(node)
        if node.op == "placeholder":
            env[node] = next(placeholders, None)
        elif node.op == "get_attr":
            obj: Any = gm.root
            for part in str(node.target).split("."):
                obj = getattr(obj, part)
            if isinstance(obj, torch.Tensor) and obj.numel() and not obj.any() and not obj.requires_grad:
                # a constant all-zero tensor (torch.zeros with sizes read while tracing)
                env[node] = TV(None, obj, zeros=True, shape_override=tuple(obj.shape))
            else:
                env[node] = ctx.param(obj, str(node.target)) if isinstance(obj, torch.Tensor) else obj
        elif node.op == "call_module":
            mod = gm.get_submodule(str(node.target))
            env[node] = _module_handler(ctx, mod)(ctx, mod, str(node.target), *args, **kwargs)
        elif node.op == "call_function" and node.target is cell_scan:
            qual = args[0]
            env[node] = convert_cell_scan(ctx, gm.get_submodule(qual), qual, *args[1:])
        elif node.op == "call_function":
            env[node] = _call(ctx, function_name(node.target), args, kwargs, node.target)
        elif node.op == "call_method":
            env[node] = _call(ctx, str(node.target), args, kwargs, _method(str(node.target)))
        elif node.op == "output":
            out = args[0]
    return out


@functools.cache
def _method(name: str) -> Callable[..., Any]:
    """``x.name(*args)`` as a function (one object per name, so exports of it are cached)."""
    def call(x: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(x, name)(*args, **kwargs)

    call.__name__ = name
    return call


def _call(ctx: Ctx, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], fn: Callable[..., Any]) -> Any:
    if name == "pack_padded_sequence":
        return pack_padded(ctx, *args, **kwargs)
    if name == "pad_packed_sequence":
        return pad_packed(ctx, *args, **kwargs)
    leaves = pytree.tree_leaves((args, kwargs))
    if any(isinstance(a, ComplexTV) for a in leaves):  # a torch.stft result (``spectral.py``)
        return complex_call(ctx, name, args, kwargs)
    constant = not any(isinstance(a, TV) for a in leaves) and any(isinstance(a, torch.Tensor) for a in leaves)
    if constant and any(isinstance(a, SymInt) for a in leaves):
        # an op on a constant given a symbolic size (``arange(n)[None].expand(b, -1)``): the
        # constant becomes a graph value, so the size stays symbolic instead of baked in
        args, kwargs = pytree.tree_map(lambda a: ctx.lift(a) if isinstance(a, torch.Tensor) else a, (args, kwargs))
        leaves, constant = pytree.tree_leaves((args, kwargs)), False
    handler = HANDLERS.get(name.removeprefix("__").removesuffix("__") if name.startswith("__") else name)
    if handler is None and name.endswith("_") and not name.startswith("_"):  # ``h.unsqueeze_(1)``: the
        handler = HANDLERS.get(name[:-1])  # functional twin (the tracer made the written proxy its result)
    if handler is not None and not constant and understands(handler, args, kwargs):
        # (an op on constant tensors is just run, below; a call written in a form the handler
        # does not declare, ``axis=1``, goes to the exact path, ``convert_call``)
        out = handler(ctx, *args, **kwargs)
        if out is not NotImplemented:  # a handler declines a form it has no IR op for
            return out
    if not any(isinstance(a, TV) for a in leaves):
        out = fn(*args, **kwargs)  # python arithmetic on sizes and constants: just run it
        sym = next((a.sym for a in leaves if isinstance(a, SymInt)), None)
        if isinstance(out, torch.Tensor) and sym is not None:  # would bake a symbolic size in
            raise ctx.unsupported(f"function {name} with a size that follows the symbolic dim {sym}")
        return out
    kind = "tensor method" if fn is _method(name) else "function"
    return convert_call(ctx, fn, args, kwargs, f"{kind} {name}")
