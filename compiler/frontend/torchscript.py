"""TorchScript -> IR: a generic converter over the inlined aten graph.

Scripted models (Silero VAD ships as one) have no Python source to re-trace, but their graph is
there: ``forward``'s graph is inlined, then walked node by node.  ``prim::`` nodes (constants,
attributes, lists, tuples, ``If``) are evaluated in Python, because with the example inputs'
shadows every condition on shapes (``len(state)``, ``x.dim() == 2``) has a concrete answer and
only the branch taken is converted; ``aten::`` nodes go through the same handler table as fx.
Nodes whose result is never used (Silero's STFT phase) are skipped, so an unsupported op only
fails when it matters.  ``aten::lstm_cell``/``gru_cell``/``rnn_tanh_cell`` become one-step rnn
nodes.
"""

from __future__ import annotations

from typing import Any

import torch

from rnnc.frontend import handlers_shape  # noqa: F401  (registers the shape handlers)
from rnnc.frontend.handlers import HANDLERS
from rnnc.frontend.recurrent import step_cell
from rnnc.frontend.values import TV, Ctx
from rnnc.kernels.elman.cell import build_cell as elman_cell
from rnnc.kernels.gru.cell import build_cell as gru_cell
from rnnc.kernels.lstm.cell import build_cell as lstm_cell


class _Attr:
    """A submodule reached through ``prim::GetAttr``: the object and its qualified name."""

    def __init__(self, obj: Any, path: str) -> None:
        self.obj, self.path = obj, path


def _used(block: Any, live: set[int]) -> None:
    """Mark every value needed for the block's outputs (reverse walk; If blocks recurse)."""
    for v in block.outputs():
        live.add(v.unique())
    for node in reversed(list(block.nodes())):
        effect = node.kind() in ("prim::RaiseException", "prim::If", "prim::Loop")
        if effect or any(o.unique() in live for o in node.outputs()):
            for sub in node.blocks():
                _used(sub, live)
            for i in node.inputs():
                live.add(i.unique())


def convert_script_module(ctx: Ctx, module: torch.jit.ScriptModule, inputs: list[TV]) -> Any:
    """Convert ``module.forward`` given the input TVs; returns the output structure."""
    graph = module.forward.graph.copy()
    torch._C._jit_pass_inline(graph)
    args = list(graph.inputs())
    env: dict[int, Any] = {args[0].unique(): _Attr(module, "")}
    defaults = module.forward.schema.arguments[1:]
    for i, v in enumerate(args[1:]):
        if i < len(inputs):
            env[v.unique()] = inputs[i]
        elif defaults[i].default_value is not None:
            env[v.unique()] = defaults[i].default_value
        else:
            env[v.unique()] = None
    live: set[int] = set()
    for v in graph.outputs():
        live.add(v.unique())
    _mark(graph, live)
    outs = _run_block(ctx, graph, env, live)
    _check(outs)
    return outs[0] if len(outs) == 1 else tuple(outs)


def _mark(graph: Any, live: set[int]) -> None:
    for node in reversed(list(graph.nodes())):
        effect = node.kind() in ("prim::RaiseException", "prim::If", "prim::Loop")
        if effect or any(o.unique() in live for o in node.outputs()):
            for sub in node.blocks():
                _used(sub, live)
            for i in node.inputs():
                live.add(i.unique())


def _run_block(ctx: Ctx, block: Any, env: dict[int, Any], live: set[int]) -> list[Any]:
    for node in block.nodes():
        if not any(o.unique() in live for o in node.outputs()) and node.kind() not in (
                "prim::RaiseException", "prim::If"):
            continue
        if node.kind() not in _PASS_THROUGH:
            for i in node.inputs():
                _check(env.get(i.unique()))
        try:
            results = _convert_node(ctx, node, env, live)
        except Exception as exc:  # noqa: BLE001  (kept, raised only if the value is used)
            if not node.kind().startswith("aten::"):
                raise
            results = _Poison(exc)
            if len(list(node.outputs())) > 1:
                results = tuple(results for _ in node.outputs())
        outs = list(node.outputs())
        if len(outs) == 1:
            env[outs[0].unique()] = results
        elif outs:
            for o, r in zip(outs, results, strict=True):
                env[o.unique()] = r
    return [env[v.unique()] for v in block.outputs()]


class _Poison:
    """The result of an op rnnc cannot convert; an error only if something uses it."""

    def __init__(self, error: Exception) -> None:
        self.error = error


_PASS_THROUGH = ("prim::ListConstruct", "prim::TupleConstruct", "prim::TupleIndex", "prim::TupleUnpack",
                 "prim::ListUnpack", "aten::__getitem__", "prim::If", "prim::GetAttr")


def _check(x: Any) -> None:
    if isinstance(x, _Poison):
        raise x.error
    if isinstance(x, (list, tuple)):
        for y in x:
            _check(y)


def _where(node: Any) -> str:
    """``@file.py:line`` of the node's source, for error messages."""
    import re

    m = re.search(r'File "([^"]+)", line (\d+)', node.sourceRange())
    return f"@{m.group(1).rsplit('/', 1)[-1]}:{m.group(2)}" if m else "@<TorchScript>"


def _convert_node(ctx: Ctx, node: Any, env: dict[int, Any], live: set[int]) -> Any:
    kind = node.kind()
    ins = [env.get(i.unique()) for i in node.inputs()]
    if kind == "prim::Constant":
        out = node.output()
        return out.toIValue() if out.type().kind() != "FunctionType" else None
    if kind == "prim::GetAttr":
        owner = ins[0]
        name = node.s("name")
        obj = getattr(owner.obj, name)
        path = f"{owner.path}.{name}" if owner.path else name
        if isinstance(obj, torch.Tensor):
            return ctx.param(obj, path)
        if isinstance(obj, torch.jit.ScriptModule) or hasattr(obj, "_c"):
            return _Attr(obj, path)
        return obj
    if kind in ("prim::ListConstruct", "prim::TupleConstruct"):
        return list(ins) if kind == "prim::ListConstruct" else tuple(ins)
    if kind in ("prim::TupleUnpack", "prim::ListUnpack"):
        return tuple(ins[0])
    if kind in ("prim::TupleIndex", "aten::__getitem__"):
        return ins[0][ins[1]]
    if kind == "prim::If":
        cond = ins[0]
        if not isinstance(cond, (bool, int)):
            ctx.where = _where(node)
            raise ctx.unsupported("an If on tensor data", "branches on shapes")
        blocks = list(node.blocks())
        outs = _run_block(ctx, blocks[0] if cond else blocks[1], env, live)
        return outs[0] if len(outs) == 1 else tuple(outs)
    if kind == "prim::RaiseException":
        raise ctx.unsupported(f"the model raising an exception on the example inputs at {_where(node)}")
    if kind in ("prim::data", "aten::detach", "aten::contiguous"):
        return ins[0]
    if kind == "prim::dtype":
        return ins[0].ex.dtype
    if kind == "prim::device":
        return ins[0].ex.device
    if kind == "prim::NumToTensor":
        return ins[0]
    if kind in ("aten::Int", "aten::Float", "aten::Bool"):
        return {"aten::Int": int, "aten::Float": float, "aten::Bool": bool}[kind](ins[0])
    if kind == "aten::__not__":
        return not ins[0]
    if kind == "aten::__contains__":
        return ins[1] in ins[0]
    if kind == "aten::format":
        return str(ins[0]).format(*ins[1:])
    if kind == "aten::__is__":
        return ins[0] is ins[1]
    if kind == "aten::__isnot__":
        return ins[0] is not ins[1]
    if kind in ("aten::lstm_cell", "aten::gru_cell", "aten::rnn_tanh_cell", "aten::rnn_relu_cell"):
        return _cell(ctx, kind, ins)
    name = kind.split("::", 1)[1]
    handler = HANDLERS.get(name)
    if handler is None or not kind.startswith("aten::"):
        ctx.where = _where(node)
        raise ctx.unsupported(f"TorchScript op {kind}",
                              "the ops listed in rnnc.frontend.supported_ops()")
    ctx.where = _where(node)
    return handler(ctx, *ins)


def _cell(ctx: Ctx, kind: str, ins: list[Any]) -> Any:
    """aten::lstm_cell(x, [h, c], w_ih, w_hh, b_ih, b_hh) and the GRU/Elman variants."""
    x, hx, w_ih, w_hh = ins[0], ins[1], ins[2], ins[3]
    b_ih, b_hh = (ins[4], ins[5]) if len(ins) > 5 else (None, None)
    bias = b_ih is not None
    hidden = w_hh.ex.shape[1]
    size_in = w_ih.ex.shape[1]
    if kind == "aten::lstm_cell":
        cell = lstm_cell(size_in, hidden, bias=bias)
        states = list(hx)
    elif kind == "aten::gru_cell":
        cell = gru_cell(size_in, hidden, bias=bias)
        states = [hx]
    else:
        cell = elman_cell(size_in, hidden, bias=bias, nonlinearity="tanh" if "tanh" in kind else "relu")
        states = [hx]
    weights = {"weight_ih": w_ih.ex, "weight_hh": w_hh.ex}
    if bias:
        weights.update(bias_ih=b_ih.ex, bias_hh=b_hh.ex)
    prefix = w_ih.value.name.rsplit(".", 1)[0] if "." in w_ih.value.name else "cell"
    return step_cell(ctx, cell, weights, prefix, x, states, single=kind != "aten::lstm_cell")
