"""What the model's world looks like while ``fx_trace`` records it: torch and module behaviour
patched for the duration of one trace, and put back after it.

Why a module of its own: each patch answers one way real models escape a plain fx trace --
``pack_padded_sequence`` reached as a module attribute, ``torch.zeros(b, h)`` with a size read
from a tensor, ops on constants given such sizes, weights set while the model runs (AWD-LSTM's
weight drop), ``Variable(...)`` -- and none of them may outlive the trace.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import sys
import types
from typing import Any

import torch
from torch import fx, nn

from rnnc.errors import UnsupportedError
from rnnc.frontend.fx_trace import ConcreteTracer, Repeated, TracedInt, TracedRatio, is_rnnc_leaf, user_line
from rnnc.frontend.values import LEGACY_TENSORS, one_integer


@contextlib.contextmanager
def while_tracing(tracer: ConcreteTracer, model: nn.Module) -> Any:
    """Every patch below, for one trace of ``model``."""
    with (_packing_recorded(), _factories_recorded(tracer), _SizedOpsRecorded(tracer), _module_writes(tracer),
          _variables_pass_through(), _builtins_traced(model), _legacy_constructors()):
        yield


@contextlib.contextmanager
def _patched(owner: Any, names: Any, wrap: Any) -> Any:
    """``owner.<name>`` replaced by ``wrap(original)`` for each name while the block runs; an
    attribute ``owner`` only inherited (``Variable.__new__``) is removed again, not copied in."""
    saved = {name: (getattr(owner, name), name in vars(owner)) for name in names}
    try:
        for name, (fn, _) in saved.items():
            setattr(owner, name, wrap(fn))
        yield
    finally:
        for name, (fn, own) in saved.items():
            if own:
                setattr(owner, name, fn)
            else:
                delattr(owner, name)


def _packing_recorded() -> Any:
    """``nn.utils.rnn.pack_padded_sequence(...)`` reached as a module attribute: fx's autowrap
    only sees names imported into the model's module, so the attributes are wrapped too while
    tracing (recorded as one call, not traced into)."""
    from torch.fx._symbolic_trace import _create_wrapped_func
    from torch.nn.utils import rnn as rnn_utils

    return _patched(rnn_utils, ("pack_padded_sequence", "pad_packed_sequence"), _create_wrapped_func)


#: torch factories a model calls with sizes it read (``torch.zeros(x.size(0), h)``)
_FACTORIES = ("zeros", "ones", "full", "empty", "arange")
_FACTORY_FUNCS = frozenset(getattr(torch, n) for n in _FACTORIES)


def _factories_recorded(tracer: ConcreteTracer) -> Any:
    """``torch.zeros(b, h)`` with ``b = x.size(0)`` is not a tensor operation, so fx would run it
    and bake the example's batch into a constant; while tracing, the factories record a node
    whenever a size argument was read from a traced tensor (a ``TracedInt``)."""

    def recording(fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            leaves = [a for a in (*args, *kwargs.values()) for a in (a if isinstance(a, (list, tuple)) else [a])]
            if tracer._running or not any(isinstance(a, (TracedInt, fx.Proxy)) for a in leaves):
                return fn(*args, **kwargs)
            return tracer.create_proxy("call_function", fn, args, kwargs)

        return call

    return _patched(torch, _FACTORIES, recording)


class _SizedOpsRecorded(torch.overrides.TorchFunctionMode):
    """``torch.arange(8)[None].expand(b, -1)``: an op on a *constant* tensor, given a size read
    from a traced one, runs outside fx and would bake the example's batch into a constant
    silently.  While tracing, such calls (a ``TracedInt`` among the arguments, no proxy) are
    recorded as nodes instead, so the size stays symbolic."""

    def __init__(self, tracer: ConcreteTracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in (torch.stack, torch.cat) and args and isinstance(args[0], Repeated) and not self.tracer._running:
            out = self._repeated(func, args[0], args[1] if len(args) > 1 else kwargs.get("dim", 0))
            if out is not None:
                return out
        if any(isinstance(a, Repeated) for a in (*args, *kwargs.values())):  # a plain list from here on
            args = tuple(list(a) if isinstance(a, Repeated) else a for a in args)
            kwargs = {k: list(v) if isinstance(v, Repeated) else v for k, v in kwargs.items()}
        leaves = torch.utils._pytree.tree_leaves((args, kwargs))
        if (self.tracer._running or not any(isinstance(a, TracedInt) for a in leaves)
                or any(isinstance(a, fx.Proxy) for a in leaves) or func in _FACTORY_FUNCS):
            return func(*args, **kwargs)
        return self.tracer.create_proxy("call_function", func, args, kwargs)


    def _repeated(self, func: Any, items: Repeated, dim: Any) -> Any:
        """``stack([z] * n, d)``: ``z`` stacked once and expanded to ``n`` along ``d`` (``cat``:
        then flattened into ``d``), ``n`` the traced size the list was made with."""
        first = items[0] if items else None
        ex = _example(first) if isinstance(first, fx.Proxy) else first
        if not isinstance(ex, torch.Tensor) or not isinstance(dim, int) or any(v is not first for v in items) \
                or len(items) != int(items.count):  # (appended to or shortened since it was made)
            return None
        rank = ex.dim() + 1
        if func is torch.cat and ex.dim() == 0:
            return None
        axis = dim % (rank if func is torch.stack else rank - 1)
        one = self.tracer.create_proxy("call_function", torch.stack, ([first], axis), {})
        out = one.expand(*[items.count if k == axis else -1 for k in range(rank)])
        return out if func is torch.stack else out.flatten(axis, axis + 1)


def _legacy(name: str) -> type:
    """``torch.BoolTensor(x.size())`` or ``torch.FloatTensor(x.size(0), 4)`` (deepspeech.pytorch's
    MaskConv, NVIDIA's ``torch.LongTensor(max_len)``) with sizes read from a traced tensor: an
    uninitialised tensor of those sizes, recorded as ``torch.zeros`` (any contents are right for
    uninitialised memory, and models fill it next; the legacy constructor refuses a traced size,
    or bakes the example's); data (``torch.LongTensor([1, 2])``) and ``isinstance`` as the
    constructor itself."""
    builtin = getattr(torch, name)

    def new(cls: type, *args: Any) -> Any:
        leaves = [a for a in args for a in (a if isinstance(a, (tuple, list)) else [a])]
        sized = args and all(isinstance(a, int) or isinstance(_example(a), torch.Size) for a in leaves)
        if sized and any(isinstance(a, (TracedInt, fx.Proxy)) for a in leaves):
            return torch.zeros(*args, dtype=LEGACY_TENSORS[name])  # (recorded: ``_factories_recorded``)
        return builtin(*args)

    return _BuiltinType(name, (), {"builtin": builtin, "__new__": new})


@contextlib.contextmanager
def _legacy_constructors() -> Any:
    saved = {name: getattr(torch, name) for name in LEGACY_TENSORS}
    try:
        for name in LEGACY_TENSORS:
            setattr(torch, name, _legacy(name))
        yield
    finally:
        for name, cls in saved.items():
            setattr(torch, name, cls)


_NONE = object()  # an attribute a module did not have


def _weight_only(node: fx.Node) -> bool:
    """Whether ``node`` is computed from weights and constants only (no input reaches it)."""
    todo, seen = [node], set()
    while todo:
        n = todo.pop()
        if n.op == "placeholder":
            return False
        if n not in seen:
            seen.add(n)
            todo.extend(n.all_input_nodes)
    return True


@contextlib.contextmanager
def _module_writes(tracer: ConcreteTracer) -> Any:
    """``setattr(self.module, "weight_hh_l0", F.dropout(raw, p, self.training))`` (AWD-LSTM's
    WeightDrop) sets a layer's weight from its raw parameter while the model runs.  While
    tracing, a value computed from weights alone is set as its example -- the tensor the layer
    would hold at inference -- so the layer converts with it; a tensor set from the inputs on a
    layer rnnc converts whole (a hypernetwork's weights) is refused.  Every attribute the trace
    writes a traced value into is put back afterwards, so no proxy stays in the user's model."""
    saved: list[tuple[nn.Module, str, Any]] = []

    def wrap(original: Any) -> Any:
        def setattr_(module: nn.Module, name: str, value: Any) -> None:
            if not isinstance(value, fx.Proxy) or tracer._running:  # (fx's own: ``_tensor_constant0``)
                original(module, name, value)
                return
            ex: Any = value
            if _weight_only(value.node):
                ex = value.node.meta.get("rnnc_ex")
                if isinstance(ex, torch.Tensor) and name in module._parameters and not isinstance(ex, nn.Parameter):
                    ex = nn.Parameter(ex.detach(), requires_grad=False)
            elif is_rnnc_leaf(module) and isinstance(value.node.meta.get("rnnc_ex"), torch.Tensor):
                raise UnsupportedError(f"{type(module).__name__}.{name} is set from the model's inputs while it "
                                       f"runs ({user_line(value.node) or 'the model'}); rnnc traces weights set "
                                       "from weights only")
            # (else a value of the inputs kept on the module, ``self.attention_hidden = ...`` in
            # Tacotron 2's decoder: the proxy, read back as the graph value it is)
            if not any(m is module and n == name for m, n, _ in saved):  # (read past fx's getattr proxies)
                held = (module._parameters, module._buffers, module._modules, module.__dict__)
                saved.append((module, name, next((d[name] for d in held if name in d), _NONE)))
            original(module, name, ex)

        return setattr_

    try:
        with _patched(nn.Module, ("__setattr__",), wrap):
            yield
    finally:
        for module, name, old in reversed(saved):
            if old is _NONE:
                delattr(module, name)
            else:
                nn.Module.__setattr__(module, name, old)


def _variables_pass_through() -> Any:
    """``Variable(torch.zeros(x.size(0), h))`` (older code: DA-RNN, many tutorials): a no-op
    wrapper since torch 0.4, but it refuses a proxy; while tracing it returns what it wraps."""
    from torch.autograd import Variable

    def wrap(original: Any) -> Any:
        def new(cls: Any, data: Any = None, *args: Any, **kwargs: Any) -> Any:
            return data if isinstance(data, fx.Proxy) else original(cls, data, *args, **kwargs)

        return new

    return _patched(Variable, ("__new__",), wrap)


#: whether traces put stand-ins for builtins in the model's modules (``_builtins_traced``); off
#: for a second try where a model uses one as a type (``dtype=int``, ``type(n) is int``)
_SHADOWS: contextvars.ContextVar[bool] = contextvars.ContextVar("rnnc_builtin_shadows", default=True)


def shadows_on() -> bool:
    return _SHADOWS.get()


@contextlib.contextmanager
def shadows(on: bool) -> Any:
    """The block with the stand-ins off (``on`` False), or as they were."""
    token = _SHADOWS.set(on and _SHADOWS.get())
    try:
        yield
    finally:
        _SHADOWS.reset(token)


class _BuiltinType(type):
    """``isinstance(n, int)``, ``issubclass``, ``type(n) == int``, ``int.from_bytes`` answer as
    for the builtin a class stands for (``is`` cannot: a trace that trips on it is retried with
    the builtins themselves)."""

    builtin: type

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, cls.builtin)

    def __subclasscheck__(cls, sub: Any) -> bool:
        return issubclass(sub, cls.builtin)

    def __eq__(cls, other: object) -> bool:
        return other is cls or other is cls.builtin

    def __hash__(cls) -> int:
        return hash(cls.builtin)

    def __getattr__(cls, name: str) -> Any:
        return getattr(cls.builtin, name)


class _Range(metaclass=_BuiltinType):
    """``range`` as the model's own code sees it while tracing: a loop as long as a size read from
    data (``range(int(lengths.max()))``) is refused -- Python's ``range`` reads an int subclass
    without asking it, so ``TracedInt`` cannot refuse it itself."""

    builtin = range

    def __new__(cls, *args: Any) -> Any:  # type: ignore[misc]
        for a in args:
            if isinstance(a, TracedInt) and a.data:
                a.__index__()  # raises, naming the size
        return range(*args)


class _Int(metaclass=_BuiltinType):
    """``int`` as the model's own code sees it while tracing.  Why: Python's ``int()`` must
    return a plain int, so ``int(x.size(1) / n)`` (NVIDIA Tacotron 2's ``parse_decoder_inputs``)
    and ``int(x.size(1))`` would give the example's number and fix the length.  Here ``int`` of
    a size stays the size, and of ``size / n`` is its truncation, recorded as size arithmetic;
    everything else is Python's ``int``."""

    builtin = int

    def __new__(cls, x: Any = 0, *base: Any, **kw: Any) -> Any:  # type: ignore[misc]
        if base or kw:  # ``int(s, base=16)``
            return int(x, *base, **kw)
        if isinstance(x, TracedInt):
            return x
        if _from_inputs(x) and one_integer(_example(x)):
            return x.item()  # ``int(lengths.max())``: a size read from data (``TracedInt.data``)
        if isinstance(x, TracedRatio):
            return math.trunc(x)
        return int(x)


def _len(obj: Any, /) -> Any:
    """``len(x)`` of a tensor is ``x.size(0)``: a size that stays symbolic (pytorch-dilated-rnn's
    ``n_steps = len(inputs)`` then ``outputs[:n_steps]``); Python's ``len`` must return the
    example's number."""
    if isinstance(_example(obj), torch.Tensor):
        return obj.size(0)
    return len(obj)


def _extreme(builtin: Any) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        """``max(lengths)`` over a vector of integers (ESPnet's ``xs_pad[:, :max(ilens)]``): the
        largest element as a size read from data (``TracedInt.data``), not a Python loop over the
        example's elements. ``max(a.size(1), b.size(1))`` (pad two streams to the longer) and
        ``min(len(x), len(y))`` over traced sizes: a recorded size op, not the one that was larger
        at the example."""
        if len(args) == 1 and not kwargs and _from_inputs(args[0]):
            ex = _example(args[0])
            if isinstance(ex, torch.Tensor) and ex.dim() == 1 and ex.numel() and one_integer(ex[:1]):
                return getattr(args[0], builtin.__name__)().item()
        if len(args) == 1 and not isinstance(args[0], fx.Proxy) and not isinstance(args[0], (str, bytes, dict)) \
                and hasattr(args[0], "__iter__"):
            args = (list(args[0]),)  # a generator is read once: the builtin below gets the list
            items = args[0]
        else:
            items = list(args) if len(args) > 1 else []
        sizes = all(isinstance(v, int) and not isinstance(v, bool) for v in items)
        if items and not kwargs and sizes and any(isinstance(v, TracedInt) for v in items):
            out = items[0]
            for v in items[1:]:
                traced = out if isinstance(out, TracedInt) else v
                out = traced._record(builtin, out, v) if isinstance(traced, TracedInt) else builtin(out, v)
            return out
        return builtin(*args, **kwargs)

    return call


_MAX, _MIN = _extreme(max), _extreme(min)


def _isinstance(obj: Any, kinds: Any, /) -> bool:
    """``isinstance(x, torch.Tensor)`` of a traced tensor is True (DCCRN's complex convolutions
    branch on it; a proxy is no Tensor to Python)."""
    if isinstance(_example(obj), torch.Tensor):
        every = kinds if isinstance(kinds, tuple) else (kinds,)
        if any(isinstance(k, type) and issubclass(torch.Tensor, k) and k is not object for k in every):
            return True
    return isinstance(obj, kinds)


def _example(obj: Any) -> Any:
    """The example value a traced proxy stands for (None for anything else)."""
    return obj.node.meta.get("rnnc_ex") if isinstance(obj, fx.Proxy) else None


def _from_inputs(obj: Any) -> bool:
    """A traced value that is not a buffer of the model (``int(self.n)`` is a constant)."""
    return isinstance(obj, fx.Proxy) and obj.node.op != "get_attr"


def _users(module: str) -> bool:
    """A module of the user's code: not torch, rnnc, numpy or the standard library."""
    top = module.split(".")[0]
    return top not in ("torch", "rnnc", "numpy", "builtins") and top not in sys.stdlib_module_names


@contextlib.contextmanager
def _builtins_traced(model: nn.Module) -> Any:
    """``_Int`` as ``int``, ``_Range`` as ``range``, ``len``, ``max`` and ``min`` of tensors as
    sizes, ``isinstance`` that knows a traced tensor is a Tensor, in the modules that define the
    model's own classes and the modules of the functions and classes those import (a utilities
    module's ``pad_to_same_length``; a name the module binds itself is left alone), for the trace
    only."""
    owners = list(dict.fromkeys(type(m).__module__ for m in model.modules())) if shadows_on() else []
    helpers = [v.__module__ for owner in owners if owner in sys.modules for v in list(vars(sys.modules[owner]).values())
               if isinstance(v, (types.FunctionType, type)) and isinstance(getattr(v, "__module__", None), str)]
    spaces: list[dict[str, Any]] = []
    for owner in dict.fromkeys([*owners, *helpers]):
        ns = vars(sys.modules[owner]) if owner in sys.modules and _users(owner) else None
        if ns is not None and all(ns is not seen for seen in spaces):
            spaces.append(ns)
    stand_ins = {"int": _Int, "range": _Range, "len": _len, "max": _MAX, "min": _MIN, "isinstance": _isinstance}
    added = [(ns, name) for ns in spaces for name in stand_ins if name not in ns]
    sym = {"sym_max": torch.sym_max, "sym_min": torch.sym_min}
    try:
        for ns, name in added:
            ns[name] = stand_ins[name]
        if shadows_on():  # ``torch.sym_max(x.size(1), y.size(1))``: max of two sizes, as ``max``
            torch.sym_max, torch.sym_min = _extreme(max), _extreme(min)
        yield
    finally:
        torch.sym_max, torch.sym_min = sym["sym_max"], sym["sym_min"]
        for ns, name in added:
            if ns.get(name) is stand_ins[name]:
                del ns[name]
