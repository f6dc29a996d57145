"""torch.fx tracing with concrete example values, and the leaf-module rule.

Plain ``fx.symbolic_trace`` cannot run ``for t in range(x.size(1))`` or ``if x.dim() == 2``: a
proxy has no value.  ``ConcreteTracer`` runs every node on the example inputs while it records
it, so sizes, lengths and shape conditions have concrete answers: Python loops over time unroll
(the loop pass merges the unrolled cell calls back into one rnn node with a symbolic T), and
branches on shapes take the example's path.  Branches on tensor *data* are refused, because the
Program would silently bake in the example's path.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import math
import operator
import os
import re
import sys
import warnings
from typing import Any

import numpy as np
import torch
from torch import fx, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnc.errors import UnsupportedError
from rnnc.frontend.values import SIZE_DUNDERS, SymRatio, legacy_dtype
from rnnc.ir.ops_dyn import SIZE_OPS

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def is_rnnc_leaf(m: nn.Module) -> bool:
    """Modules converted whole: recurrent layers and cells (rnnc's and torch's), torch.nn layers."""
    from rnnc.frontend.usercell import Recurrent

    if isinstance(m, (nn.RNNBase, nn.RNNCellBase, Recurrent)) or hasattr(m, "rnnc_layer"):
        return True
    return type(m).__module__.startswith("torch.nn") and not isinstance(m, _CONTAINERS)


class ConcreteProxy(fx.Proxy):
    """A proxy that knows its example value, for sizes and control flow on shapes."""

    def _example(self) -> Any:
        return self.node.meta.get("rnnc_ex")

    def _constant(self) -> Any:
        """A buffer's value (a ``get_attr`` node): a constant of the model, not data of its inputs."""
        return self._example() if self.node.op == "get_attr" else None

    def __float__(self) -> float:
        const = self._constant()
        if isinstance(const, torch.Tensor) and const.numel() == 1:
            return float(const)
        raise UnsupportedError(f"float() of fx node {self.node.name!r} at {_calling_line()}: a value of the inputs, "
                               "not a constant (a Program would keep the example's number)")

    def __int__(self) -> int:
        const = self._constant()
        if isinstance(const, torch.Tensor) and const.numel() == 1:
            return int(const)
        raise UnsupportedError(f"int() of fx node {self.node.name!r} at {_calling_line()}: a value of the inputs, "
                               "not a constant -- a Python index or number taken from tensor data (a list or "
                               "nn.ParameterList indexed by a tensor of ids: index a stacked tensor instead)")

    __index__ = __int__

    def __bool__(self) -> bool:
        ex = self._example()
        if isinstance(ex, (bool, int)):
            return bool(ex)
        const = self._constant()
        if isinstance(const, torch.Tensor) and const.numel() == 1:  # ``if self.initialized:`` on a buffer
            return bool(const)
        passes = _asserted(sys._getframe(1))
        if passes is not None and isinstance(ex, torch.Tensor) and ex.numel() == 1 and bool(ex) == passes:
            # ``assert not torch.isnan(y).any()``, ``if not mask[:, 0].all(): raise``: held at the
            # example (the model ran there; a raise caught by the model is not this)
            line = _calling_line()
            if line not in self.tracer.asserts:
                self.tracer.asserts.add(line)
                warnings.warn(f"rnnc.trace: the check at {line} (an assert, or an if that raises) reads tensor "
                              "data; the Program does not check it (it held on the example)", stacklevel=2)
            return passes
        raise UnsupportedError(f"control flow on tensor data at fx node {self.node.name!r} at {_calling_line()} "
                               "cannot be traced; rnnc supports branches on shapes and loops over sizes only")

    def __len__(self) -> int:
        """``len(x)``: the example's length (an ``int``: ``range(len(x))`` unrolls like ``x.size(0)``)."""
        ex = self._example()
        if not isinstance(ex, (tuple, list, torch.Tensor)):
            raise UnsupportedError(f"len() of fx node {self.node.name!r} ({type(ex).__name__})")
        return len(ex)

    def __getattr__(self, name: str) -> Any:
        """Tensor facts that are constants while tracing (dtype, device) are read from the example;
        dunder probes (``__cuda_array_interface__``) get the AttributeError a tensor gives."""
        if name.startswith("__") or name in ("node", "tracer"):
            raise AttributeError(name)
        ex = self._example()
        if name == "shape" and isinstance(ex, torch.Tensor):  # as ``x.size()``: a proxy that iterates,
            return self.size()  # so ``t, b, *_ = x.shape`` and ``expand(*x.shape, n)`` trace
        if name == "data" and isinstance(ex, torch.Tensor):  # the same memory, without autograd: at
            return self  # inference, the tensor (``alignment.data.masked_fill_(mask, -inf)``, Tacotron 2)
        if isinstance(ex, torch.Tensor) and name in ("dtype", "device", "is_cuda", "layout"):
            return getattr(ex, name)
        return super().__getattr__(name)

    def __setitem__(self, idx: Any, value: Any) -> None:
        """``y[:, t] = h`` into a preallocated tensor: recorded as a functional write whose
        result this proxy stands for from now on (later reads of ``y`` see the write)."""
        old = self.node
        self.node = self.tracer.create_proxy("call_function", assign, (self, idx, value), {}).node
        _mark_written(self.tracer, old, self.node)

    def __iter__(self) -> Any:
        # no __len__: torch's argument parser would then take any proxy for a size list
        ex = self._example()
        if not isinstance(ex, (tuple, list, torch.Tensor)):
            raise UnsupportedError(f"cannot iterate over fx node {self.node.name!r} ({type(ex).__name__})")
        return iter([self[i] for i in range(len(ex))])


#: ops whose results share their input's memory (views), or may be their input itself
_ALIASING = frozenset({"to", "contiguous", "float", "double", "half", "bfloat16", "long", "int", "bool", "type",
                       "cpu", "cuda", "detach", "requires_grad_"})
_VIEWS = frozenset({"getitem", "select", "narrow", "view", "view_as", "reshape", "transpose", "permute", "t",
                    "unsqueeze", "squeeze", "expand", "expand_as", "split", "chunk", "unbind", "flatten",
                    "unflatten", "movedim", "swapaxes", "diagonal", "as_strided", "unfold"})
_SHARING = _VIEWS | _ALIASING


def _holds_traced(m: nn.Module) -> bool:
    """Whether ``m`` or a module under it keeps a traced value in an attribute: state the forward
    stored on a shared module (pytorch-ntm's heads read ``self.memory.memory``, set by
    ``memory.reset(B)``).  Such a step cell is traced through, not kept whole: run on example
    values it would read the proxy."""
    return any(isinstance(v, fx.Proxy) for sub in m.modules() for v in vars(sub).values())


def _call_name(target: Any) -> str:
    """A call's name: a function's or method's (``masked_fill_``), else the target as written."""
    return str(getattr(target, "__name__", target))


def _target_name(node: fx.Node) -> str:
    return _call_name(node.target)


def assign(x: torch.Tensor, idx: Any, value: Any) -> torch.Tensor:
    """``x[idx] = value`` without mutating ``x`` (what ``ConcreteProxy.__setitem__`` records)."""
    out = x.clone()
    out[idx] = value
    return out


class TracedInt(int):
    """A size read during tracing: a real int (``range``, ``if`` and torch factories work), which
    becomes its fx node again when it is recorded as an argument (so sizes stay symbolic)."""

    node: fx.Node
    tracer: Any
    #: read from tensor data (``lengths.max().item()``), not from a shape: fine as a size, but a
    #: Python branch or loop on it would bake the example's data in (``_refuse_data``)
    data: bool

    def __new__(cls, value: int, node: fx.Node, tracer: Any = None, data: bool = False) -> TracedInt:
        obj = super().__new__(cls, value)
        obj.node = node
        obj.tracer = tracer
        obj.data = data
        return obj

    def _record(self, op: Any, *args: Any) -> Any:
        """``t * b`` on sizes: recorded as a node too, so ``view(t * b, h)`` keeps its symbols; so
        is ``t - 1 - torch.zeros(1)``, a size with a constant tensor (else the example's size is
        baked into the tensor)."""
        value = op(*(int(a) if isinstance(a, TracedInt) else a for a in args))
        if isinstance(value, list) and op is operator.mul and self.tracer is not None and not self.tracer._running \
                and any(isinstance(a, list) and len(a) == 1 for a in args):
            return Repeated(value, self)  # ``[z] * (T + 1)``: a stack of it keeps the count (``Repeated``)
        if self.tracer is None or self.tracer._running or isinstance(value, bool) or not (
                isinstance(value, int) or isinstance(value, torch.Tensor)):
            if not isinstance(value, bool) and any(isinstance(a, TracedInt) and a.data for a in args):
                self.__float__()  # ``m * 0.5`` of a size read from data: the example's number; refused
            return value
        return self.tracer.create_proxy("call_function", op, args, {})


for _name, (_op, _reflected) in SIZE_DUNDERS.items():
    setattr(TracedInt, _name, (lambda f, r: lambda self, o: (self._record(f, o, self) if r
                                                             else self._record(f, self, o)))(SIZE_OPS[_op], _reflected))
TracedInt.__neg__ = lambda self: self._record(operator.neg, self)  # type: ignore[method-assign]


class Repeated(list):
    """``[z] * n`` with ``n`` a traced size (SketchRNN's ``torch.stack([z] * (Nmax + 1))`` and
    ``torch.stack([sos] * batch_size)``): the list Python builds holds the example's number of
    items; ``count`` is the size it was made with, so that ``stack``/``cat`` of it becomes an
    ``expand`` by that size (``fx_patches._SizedOpsRecorded``) instead of the example's count."""

    count: TracedInt

    def __init__(self, items: list[Any], count: TracedInt) -> None:
        super().__init__(items)
        self.count = count


_AS_NUMBER = ("__float__", "__round__", "__trunc__")


def _refuse_data(name: str, plain: Any) -> Any:
    def method(self: TracedInt, *other: Any) -> Any:
        if self.data or any(isinstance(o, TracedInt) and o.data for o in other):
            what = "a Python number from tensor data" if name in _AS_NUMBER else "control flow on tensor data"
            raise UnsupportedError(f"{what}: {name.strip('_')} of a size read from data (fx node "
                                   f"{self.node.name!r}, {user_line(self.node) or 'the model'}) would keep the "
                                   "example's answer; rnnc supports such sizes only as sizes of tensors")
        if name not in _AS_NUMBER and name not in ("__bool__", "__index__") and self.tracer is not None \
                and not self.tracer._running:
            if any(isinstance(o, TracedInt) and o.node is not self.node for o in other):
                self.tracer.compared = True  # ``a.size(1) > b.size(1)`` (``TracedInt.compared``)
            elif len(other) == 1 and type(other[0]) in (int, float):
                _threshold(self.tracer, self.node, int(self), other[0])
        return plain(self, *other)

    return method


#: how many distinct lines' comparisons of a size with a number the trace keeps (``_threshold``;
#: the sizes they propose are capped apart, ``dims.MAX_CROSSINGS``)
MAX_THRESHOLDS = 64


def _threshold(tracer: Any, node: fx.Node | None, value: float, c: float) -> None:
    """Remember a traced size (or ratio of sizes), ``value`` at the example, compared with the
    number ``c`` in the model's code (the latent ODE's ``if len(time_steps) == 1``, xLSTM's ``if
    S < 64``): Python takes the example's branch, and the trace checks at twice the example's
    sizes never cross ``c``, so they would not see it.  Kept: ``c``, ``value`` and the line, the
    first comparison of each line (a loop's ``if t == T - 1`` compares once a step), at most
    ``MAX_THRESHOLDS`` lines; the checks then try the sizes around the crossing
    (``dims.check_at_other_size``).  Comparisons in rnnc's own code are its business, not the
    model's; ``node``, the size's, says whether it is a rank (``_rank``: no size)."""
    if len(tracer.thresholds) >= MAX_THRESHOLDS or (node is not None and _rank(node.op, node.target, node.args)):
        return
    caller = sys._getframe(2).f_code.co_filename  # (the frame that wrote ``size < c``)
    if os.path.abspath(caller).startswith(_rnnc_dir()):
        return
    line = _calling_line()
    if all(at != line for _, _, at in tracer.thresholds):
        tracer.thresholds.append((c, value, line))


for _name in ("__bool__", "__index__", "__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__", *_AS_NUMBER):
    setattr(TracedInt, _name, _refuse_data(_name, getattr(int, _name)))
TracedInt.__hash__ = int.__hash__  # type: ignore[method-assign]


class TracedRatio(SymRatio):
    """``t / n`` of traced sizes: the float Python gives, remembering its operands, so that
    ``math.ceil`` and ``math.floor`` of it -- the usual ways back to a size, as in
    ``pad = math.ceil(t / stride) * stride - t`` -- are recorded as integer size arithmetic and
    stay symbolic (so does ``math.trunc``; ``int()`` must return a plain int, the example's).
    Used as a float otherwise, it is the example's value (the trace check then sees the
    difference at another size)."""

    def __floor__(self) -> Any:
        return self.num // self.den

    def __ceil__(self) -> Any:
        if int(self.den) <= 0:
            return math.ceil(float(self))
        return (self.num + (self.den - 1)) // self.den  # sizes are >= 0: ceil(a / b) = (a + b - 1) // b

    def __trunc__(self) -> Any:  # (``int()`` must return a plain int: it is the example's)
        if int(self.num) < 0 or int(self.den) <= 0:
            return math.trunc(float(self))
        return self.num // self.den


def _ratio_compared(name: str) -> Any:
    """``T / 3 < 3``: the float's answer, the comparison remembered like a size's (``_threshold``)."""
    plain = getattr(float, name)

    def method(self: TracedRatio, other: Any) -> Any:
        tracer = next((a.tracer for a in (self.num, self.den) if isinstance(a, TracedInt)), None)
        if tracer is not None and not tracer._running and type(other) in (int, float):
            _threshold(tracer, None, float(self), other)
        return plain(self, other)

    return method


for _name in ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__"):
    setattr(TracedRatio, _name, _ratio_compared(_name))
TracedRatio.__hash__ = float.__hash__  # type: ignore[method-assign]


def _ratio(a: Any, b: Any) -> Any:
    for v in (a, b):
        if isinstance(v, TracedInt) and v.data:  # ``m / 2`` of a size read from data: no size, refused
            v.__float__()
    if isinstance(b, int) and not isinstance(b, bool) and isinstance(a, int) and not isinstance(a, bool) and int(b):
        return TracedRatio(a, b)
    return int(a) / b if isinstance(a, int) else a / int(b)


TracedInt.__truediv__ = lambda self, o: _ratio(self, o)  # type: ignore[method-assign]
TracedInt.__rtruediv__ = lambda self, o: _ratio(o, self)  # type: ignore[method-assign]


class ConcreteTracer(fx.Tracer):
    """fx tracer whose proxies carry example values (see module docstring)."""

    def __init__(self, examples: list[Any]) -> None:
        super().__init__(autowrap_functions=(pack_padded_sequence, pad_packed_sequence))
        self.examples = list(examples)
        self.step_cells: set[int] = set()  # ids of user modules kept whole (``stepcells.py``)
        self.record_stack_traces = True  # each node's user source line, for messages (``user_line``)
        # buffers as graph values, like parameters: ``self.pe[:x.size(0)]`` (a positional
        # encoding) then slices by the symbolic length instead of running on the example's
        self.proxy_buffer_attributes = True
        self._next_placeholder = 0
        self._running = 0  # > 0 while a node runs on example values: no recording then
        self.stale: set[fx.Node] = set()  # views of a tensor written after they were taken
        self.data_sizes: set[fx.Node] = set()  # sizes read from tensor data (``TracedInt.data``)
        # two traced sizes compared in Python (``max(a.size(1), b.size(1))`` in a helper module,
        # ``if a.size(1) > b.size(1): crop``): the answer is the example's, and growing every
        # symbol together keeps it; the trace checks then grow each symbol alone too
        self.compared = False
        # a traced size compared with a number (``if len(time_steps) == 1``): (the number, the
        # size at the example, the line) -- ``_threshold``
        self.thresholds: list[tuple[float, float, str]] = []
        self.asserts: set[str] = set()  # lines of asserts on tensor data, said once (``_asserted``)

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        if self._running:
            return forward(*args, **kwargs)
        if not any(m is sub for sub in self.root.modules()):
            return forward(*args, **kwargs)  # built inside forward (``Helper()(x)``): traced through
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        if self._running:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return is_rnnc_leaf(m) or (id(m) in self.step_cells and not _holds_traced(m))

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return ConcreteProxy(node, self)

    def create_arg(self, a: Any) -> Any:
        if isinstance(a, TracedInt):
            return a.node
        if isinstance(a, TracedRatio) and not self._running and (isinstance(a.num, TracedInt)
                                                                  or isinstance(a.den, TracedInt)):
            return self.create_proxy("call_function", operator.truediv, (a.num, a.den), {}).node  # (values.SymRatio)
        if not isinstance(a, str) and (dtype := legacy_dtype(a)) is not None:  # ``x.type(torch.FloatTensor)``
            return dtype
        if isinstance(a, np.generic) and isinstance(a.item(), (bool, int, float)):  # ``mat[:, s:e]`` with
            return a.item()  # numpy ints (``np.cumsum([0] + sizes)``, pytorch-ntm): the Python number
        return super().create_arg(a)

    def create_proxy(self, kind: str, target: Any, args: Any, kwargs: Any, name: str | None = None,
                     type_expr: Any = None, proxy_factory_fn: Any = None) -> Any:
        if self.stale:
            used: list[fx.Node] = []
            fx.node.map_aggregate((args, kwargs), lambda a: used.append(a.node) if isinstance(a, fx.Proxy) else a)
            old = next((n for n in used if n in self.stale), None)
            if old is not None:
                raise UnsupportedError(f"{old.name!r} ({user_line(old) or 'the model'}) is read after a write into "
                                       "memory it shares (a view of it, or it a view of the tensor written): torch "
                                       "reads the write through it, rnnc's functional writes cannot; write into "
                                       "the tensor itself and take views after the write")
        written = _written_in_place(self, kind, target, args, kwargs)
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        node = proxy.node
        if kind == "call_method" and target == "tolist" and not (  # (a buffer's values are constants)
                isinstance(args[0], fx.Proxy) and args[0].node.op == "get_attr"):
            raise UnsupportedError(f".tolist() at {user_line(node) or 'the model'} turns tensor data into Python "
                                   "numbers, which a Program would keep as the example's; keep them a tensor "
                                   "(a padding mask: torch.arange(T)[None, :] < lengths[:, None])")
        self._running += 1
        try:
            ex = node.meta["rnnc_ex"] = self._run(node)
        finally:
            self._running -= 1
        if written is not None:  # ``e.masked_fill_(m, v)``: ``e`` is the result from now on
            _rebind(self, written, node)
        if isinstance(ex, int) and not isinstance(ex, bool) and kind == "call_method" and _rank(kind, target, args):
            return ex  # ``x.dim()``: a Program's ranks are fixed; a plain number (no size to compare)
        if isinstance(ex, int) and not isinstance(ex, bool):
            data = (kind == "call_method" and target == "item") or any(
                n in self.data_sizes for n in node.all_input_nodes)
            if data:
                self.data_sizes.add(node)
            return TracedInt(ex, node, self, data)
        if isinstance(ex, (str, torch.dtype, torch.device)):
            return ex  # x.type(), x.dtype: constants while tracing, passed on as values
        return proxy

    def _example_of(self, node: fx.Node) -> Any:
        if "rnnc_ex" not in node.meta and node.op == "get_attr":  # constants fx registers itself
            obj: Any = self.root
            for part in str(node.target).split("."):
                obj = getattr(obj, part)
            node.meta["rnnc_ex"] = obj
        return node.meta.get("rnnc_ex")

    def _run(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            i = self._next_placeholder
            self._next_placeholder += 1
            return self.examples[i] if i < len(self.examples) else None
        args = fx.node.map_arg(node.args, self._example_of)
        kwargs = fx.node.map_arg(node.kwargs, self._example_of)
        with torch.no_grad():
            if node.op == "get_attr":
                obj: Any = self.root
                for part in str(node.target).split("."):
                    obj = getattr(obj, part)
                return obj
            if node.op == "call_function":
                return node.target(*args, **kwargs)
            if node.op == "call_method":
                return getattr(args[0], node.target)(*args[1:], **kwargs)
            if node.op == "call_module":
                return self.root.get_submodule(node.target)(*args, **kwargs)
        return None


#: in-place methods that change no value (or whose result rnnc never reads as one)
_NOT_WRITES = frozenset({"requires_grad_", "share_memory_", "retain_grad_", "record_stream_", "detach_"})
#: in-place methods that change the tensor's view of its memory, not the memory: views taken
#: before keep seeing what they saw
_RESHAPES = frozenset({"unsqueeze_", "squeeze_", "transpose_", "t_", "swapdims_", "swapaxes_", "as_strided_",
                       "resize_", "resize_as_"})


def _written_in_place(tracer: ConcreteTracer, kind: str, target: Any, args: Any, kwargs: Any) -> Any:
    """The proxy an op is about to change in place -- ``e.masked_fill_(...)``, ``x.clamp_(...)``,
    ``torch.sigmoid_(e)``, ``F.relu(e, inplace=True)``, ``nn.ReLU(inplace=True)(e)`` -- or None.
    Why: the model may ignore the op's result and read ``e`` again; the functional op the trace
    records would leave ``e`` as it was, silently."""
    if tracer._running or not args or not isinstance(args[0], fx.Proxy):
        return None
    name = _call_name(target)
    if kind == "call_module":
        mod = tracer.root.get_submodule(str(target))
        identity = isinstance(mod, nn.modules.dropout._DropoutNd) and not mod.training  # (returns its input)
        found = args[0] if getattr(mod, "inplace", False) is True and not identity else None
    else:
        identity = "dropout" in name and not kwargs.get("training", len(args) > 2 and args[2])
        found = args[0] if not identity and (kwargs.get("inplace") is True or (
            name.endswith("_") and not name.startswith("_") and name not in _NOT_WRITES)) else None
    if found is not None and not isinstance(found, ConcreteProxy):  # ``g.T.clamp_()``: a view as an attribute
        raise UnsupportedError(f"an in-place {name} on {found.node.name!r}, an "
                               "attribute view of a tensor: rnnc traces in-place ops on tensors the model "
                               "computed; use the op's result")
    return found


def _rebind(tracer: ConcreteTracer, proxy: fx.Proxy, node: fx.Node) -> None:
    """``proxy`` (the tensor written in place) stands for ``node`` from now on, like a write."""
    old = proxy.node
    proxy.node = node
    if _target_name(node) not in _RESHAPES:
        _mark_written(tracer, old, node)


def _mark_written(tracer: ConcreteTracer, old: fx.Node, new: fx.Node) -> None:
    """After ``old`` was written (``new`` is its value now): every other tensor sharing its memory
    -- the base it is a view or an alias of, up to an input or a weight, and every view of those
    taken before -- would show the write in torch and does not in the functional trace, so
    reading one later is refused by name (``create_proxy``)."""
    root = old
    while _is_view(root):
        root = root.args[0]
    todo = [root]
    seen = {root}
    while todo:
        n = todo.pop()
        if n is not new:
            tracer.stale.add(n)
        for u in list(n.users):
            if u not in seen and u is not new and _is_view(u):
                seen.add(u)
                todo.append(u)
    tracer.stale.discard(new)


def _is_view(node: fx.Node) -> bool:
    """Whether ``node`` is a view or alias of the tensor it reads (``getitem`` of a tuple is not)."""
    return (node.op in ("call_function", "call_method") and _target_name(node) in _SHARING
            and bool(node.args) and isinstance(node.args[0], fx.Node)
            and isinstance(node.args[0].meta.get("rnnc_ex"), torch.Tensor))


class Traced:
    """An fx graph and the module it was traced from.  Not an ``fx.GraphModule``: generating
    code for it would register the autowrapped pack/pad functions in fx's global patch table in
    a way that breaks the next trace."""

    def __init__(self, root: nn.Module, graph: fx.Graph, defaults: list[Any] | None = None,
                 compared: bool = False, thresholds: list[tuple[float, float, str]] | None = None) -> None:
        self.root, self.graph = root, graph
        self.defaults = defaults or []  # the values of forward's arguments beyond the examples
        self.compared = compared  # two traced sizes were compared (``ConcreteTracer.compared``)
        self.thresholds = thresholds or []  # sizes compared with numbers (``ConcreteTracer.thresholds``)

    def get_submodule(self, target: str) -> nn.Module:
        return self.root.get_submodule(target)


def example_of(a: Any) -> Any:
    """The example value a node of a traced graph holds (anything else is its own value): what
    the graph rewrites (``writes.py``, ``sums.py``, ``stacks.py``) compute new examples from."""
    return a.meta.get("rnnc_ex") if isinstance(a, fx.Node) else a


def call_shape(node: fx.Node) -> Any:
    """What a node calls and how: its op, target, and arguments with the nodes among them blanked
    -- two nodes of one shape compute the same function of their node arguments."""
    blank = fx.node.map_aggregate((node.args, tuple(sorted(node.kwargs.items()))),
                                  lambda a: "node" if isinstance(a, fx.Node) else a)
    return (node.op, node.target, blank)


def add_call(graph: fx.Graph, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None) -> fx.Node:
    """A new ``call_function`` node at the graph's insertion point, with its example computed."""
    node = graph.call_function(fn, args, kwargs or {})
    node.meta["rnnc_ex"] = fn(*fx.node.map_arg(args, example_of), **fx.node.map_arg(kwargs or {}, example_of))
    return node


def trace_module(model: nn.Module, examples: list[Any], step_cells: Any = ()) -> Traced:
    """fx-trace ``model.forward`` on ``examples``; forward args beyond them keep their defaults;
    the modules whose ids are in ``step_cells`` stay leaves (user cells stepped in loops)."""
    if is_rnnc_leaf(model):  # a bare layer: one call_module node on a root that holds it
        root = nn.Module()
        root.add_module("model", model)
        graph = fx.Graph()
        phs = tuple(graph.placeholder(f"input{i}") for i in range(len(examples)))
        graph.output(graph.call_module("model", phs))
        return Traced(root, graph)
    sig = inspect.signature(model.forward)
    params = [p for p in sig.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    # forward's arguments beyond the examples keep their defaults: ``None`` ones as fx constants
    # (``if hidden is None`` must see None), others as placeholders whose example is the default
    # (fx would refuse ``scale=0.5`` as a constant: "specialized to have value 0.5")
    concrete = {p.name: None for p in params[len(examples):] if p.default is None}
    defaults = [p.default for p in params[len(examples):] if p.default is not p.empty]
    from rnnc.frontend.fx_patches import shadows, shadows_on, while_tracing

    first: Exception | None = None
    for shadowed in (True, False):
        tracer = ConcreteTracer([*examples, *defaults])
        tracer.step_cells = set(step_cells)
        try:
            with shadows(shadowed), while_tracing(tracer, model):
                graph = tracer.trace(model, concrete_args=concrete or None)
            return Traced(tracer.root, graph, defaults, tracer.compared, tracer.thresholds)
        except Exception as exc:  # noqa: BLE001 -- fx's own errors: say which model and why, keep the cause
            if shadowed and shadows_on() and not isinstance(exc, UnsupportedError):
                first = exc  # (``dtype=int`` with the model's ``int`` a stand-in: once more with the
                continue  # builtins themselves, ``fx_patches._builtins_traced``)
            exc = first or exc  # where both fail, the first blocker is the model's
            if isinstance(exc, UnsupportedError):
                raise exc from None
            raise UnsupportedError(f"torch.fx cannot trace {type(model).__name__}.forward: {exc}") from exc
    raise AssertionError("unreachable")


def function_name(target: Any) -> str:
    """The handler name of a call_function target (``torch.cat`` -> ``cat``, ``operator.add`` -> ``add``)."""
    if target is builtins.getattr:
        return "getattr"
    if target is pack_padded_sequence:
        return "pack_padded_sequence"
    if target is pad_packed_sequence:
        return "pad_packed_sequence"
    return _call_name(target)


_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def _rank(kind: str, target: Any, args: Any) -> bool:
    """Whether a call reads a tensor's rank (``x.dim()``, ``x.ndim``): SRU's and DRAW's ``if
    input.dim() != 3`` checks compare no size, and as sizes they filled ``_threshold``'s lines.
    (``x.dim()`` is the plain number; ``x.ndim``, an fx attribute, must stay a ``TracedInt``.)"""
    return (kind == "call_method" and target in ("dim", "ndimension")) or (
        kind == "call_function" and target is builtins.getattr and len(args) > 1 and args[1] == "ndim")


def _asserted(frame: Any) -> bool | None:
    """Whether ``frame`` is asking for a truth value to decide a check -- an ``assert``, or an
    ``if`` whose body only raises (pytorch-crf's ``if not mask[:, 0].all(): raise ValueError``)
    -- and then the value that skips the raise (``assert c`` and ``if not c: raise`` jump past it
    when ``c`` is true; ``assert not c`` and ``if c: raise`` when it is false), else None.  Read
    from the bytecode: the conditional jump being run falls through into a straight run of
    instructions that ends in a raise.  (fx's own ``trace_asserts`` knows only Python 3.10's jump
    names, and asserts only.)"""
    import dis

    insts = list(dis.get_instructions(frame.f_code))
    at = next((i for i, inst in enumerate(insts) if inst.offset >= frame.f_lasti), None)
    if at is None or at + 1 >= len(insts):
        return None
    if insts[at].opname == "TO_BOOL" and at + 2 < len(insts):  # (Python 3.13 converts first, then jumps)
        at += 1
    jump = insts[at]
    if not jump.opname.startswith("POP_JUMP") or "NONE" in jump.opname or not isinstance(jump.argval, int) \
            or jump.argval <= jump.offset:
        return None
    raise_at = None  # the fall-through path, up to its raise (code after it is another path's)
    for inst in insts[at + 1:]:
        if inst.offset >= jump.argval or inst.opname.startswith(
                ("JUMP", "POP_JUMP", "RETURN", "FOR_ITER", "SEND", "YIELD")) or inst.opname in ("RERAISE",
                                                                                             "PUSH_EXC_INFO"):
            return None
        if inst.opname == "RAISE_VARARGS":
            raise_at = inst.offset
            break
    caught = getattr(dis.Bytecode(frame.f_code), "exception_entries", ())  # (a raise inside ``try``
    if raise_at is None or any(e.start <= raise_at < e.end for e in caught):  # is control flow, not a check)
        return None
    return jump.opname.endswith("IF_TRUE")


@functools.cache
def _rnnc_dir() -> str:
    """Where rnnc's own code lives: frames there are not the model's."""
    import rnnc

    return os.path.dirname(os.path.abspath(rnnc.__file__))


def _users(path: str) -> bool:
    """Whether a frame at ``path`` is the user's code: not torch's, rnnc's or Python's own."""
    return not ("/torch/" in path or path.startswith(_rnnc_dir()) or path.startswith("<frozen"))


def _calling_line() -> str:
    """The innermost frame of the user's code on the current stack (``model.py:42``): where a
    traced value is being used as a Python number right now."""
    import traceback

    for frame in reversed(traceback.extract_stack()):
        if _users(frame.filename):
            return f"{os.path.basename(frame.filename)}:{frame.lineno}"
    return "the model"


def user_line(node: fx.Node) -> str:
    """The innermost frame of the user's code that made ``node`` (``model.py:42``): the last
    frame of its recorded stack outside torch and rnnc."""
    found = ""
    for path, line in _FRAME.findall(node.stack_trace or ""):
        if _users(path):
            found = f"{os.path.basename(path)}:{line}"
    return found
