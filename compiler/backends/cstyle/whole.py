"""A whole Program as one native C function per input signature: the ``native`` engine.

Why: ``CompiledProgram`` runs the recurrent layers as C kernels and every other op through the
IR interpreter, a torch call each; for a small model those calls, not arithmetic, are the cost.
Here the whole top-level graph is lowered (``rnnc.lower.program``) at the call's shapes -- a
conv, a norm, the head, copies into the layer kernels' buffers -- and the layer kernels the C
backend already built, tuned and packed are called from inside it (``Invoke``), so a call is:
check the inputs, allocate the outputs, one ctypes call.

Memory plan: every intermediate gets a ``work`` buffer allocated once per input signature (the
first call with new shapes lowers, builds -- gcc, cached on disk -- and allocates; later calls
with those shapes reuse all of it).  Outputs are fresh tensors each call, so a caller may keep
them.  Not reentrant: two threads calling one program at once would share its buffers.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from rnnc.backends.cstyle.build import build_c, c_flags, load_library
from rnnc.backends.cstyle.dialects import CDialect
from rnnc.backends.cstyle.program import CompiledProgram, kernel_storage
from rnnc.backends.cstyle.runtime import LayerRunner, default_threads
from rnnc.errors import UnsupportedError
from rnnc.ir.graph import Node
from rnnc.ir.interp import check_inputs, run_graph
from rnnc.ir.rnn import rnn_layout
from rnnc.lower.loopnest import Bin, Buffer, Const, Invoke, Let, Load, Loop, Ref, Stmt, Store, Var, add, mul
from rnnc.lower.program import ProgramLowerer, copy, program_kernel
from rnnc.lower.stepgraph import View, dense, loop_nest

#: input dtypes the program reads as they are (anything else is refused, not converted silently)
_DTYPES = {"torch.float32": "float", "torch.int64": "int64"}


@dataclass
class _Call:
    """One (layer, direction) kernel call: the runner and how its tensors sit in the buffers."""

    runner: Any
    x: tuple[str, tuple[int, ...], bool]  # buffer, dense shape, batch-first (view as [T, B, I])
    y: tuple[str, tuple[int, ...], bool]
    y_off: int
    states: list[tuple[str, tuple[int, ...], int]]  # buffer, dense shape [L*D, B, ...], index
    reverse: bool
    hosted: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)  # projection buffers
    lengths: tuple[str, tuple[int, ...]] | None = None  # the int64 sequence lengths buffer


@dataclass
class _Plan:
    """Everything one input signature needs: the built function and its buffers."""

    fn: Any
    kernel: Any
    source: str
    out_shapes: list[tuple[tuple[int, ...], Any]]
    n_inputs: int
    ptrs: Any
    keep: list[Any] = field(default_factory=list)  # tensors and ctypes arrays the pointers name
    #: (input position, table rows) of every input that indexes an embedding: C cannot raise
    #: torch's IndexError, so the indices are checked before the call
    index_inputs: list[tuple[int, int]] = field(default_factory=list)
    scalars: Any = None  # the kernel's W
    calls: list[Any] = field(default_factory=list)  # the layer kernel calls, in order (a GPU module's launches)
    work: dict[str, Any] = field(default_factory=dict)  # the kernel's work buffers by name

    def __call__(self, inputs: tuple[Any, ...]) -> Any:
        import torch

        for i, rows in self.index_inputs:
            check_indices(inputs[i], rows)
        ptrs = self.ptrs
        for i, x in enumerate(inputs):
            ptrs[i] = x.data_ptr()
        outs = [torch.empty(shape, dtype=dtype) for shape, dtype in self.out_shapes]
        for k, o in enumerate(outs):
            ptrs[self.n_inputs + k] = o.data_ptr()
        self.fn(self.scalars, ptrs)
        return outs[0] if len(outs) == 1 else tuple(outs)


class NativeProgram:
    """``compiled``'s Program as one native function per input signature (module docstring).

    ``example_inputs``: plan for them now, so a model the native program cannot take is refused
    here (``UnsupportedError`` naming the op) rather than at its first call."""

    def __init__(self, compiled: CompiledProgram, target: Any = None, example_inputs: Any = None,
                 gpu: bool = False) -> None:
        """``gpu``: lower for a GPU's grid -- the C twin of a CUDA module (``whole_cuda``)."""
        self.compiled, self.program, self.target, self.gpu = compiled, compiled.program, target, gpu
        self._plans: dict[tuple, _Plan] = {}
        if example_inputs is not None:
            self.plan(tuple(example_inputs))

    def __call__(self, *inputs: Any) -> Any:
        plan = self._plans.get(_signature(inputs))
        if plan is None:
            plan = self.plan(inputs)
        return plan(tuple(x if x.is_contiguous() else x.contiguous() for x in inputs))

    @property
    def sources(self) -> dict[str, str]:
        return {**self.compiled.sources, **{p.kernel.name: p.source for p in self._plans.values()}}

    def plan(self, inputs: tuple[Any, ...]) -> _Plan:
        """Lower, build and allocate for the signature of ``inputs`` (one recorded run gives every
        value's shape)."""
        import torch

        g = self.program.graph
        check_inputs(self.program, inputs)
        for name, x in zip(g.input_names, inputs, strict=True):
            if x.device.type != "cpu":
                raise UnsupportedError(f"the native program runs on this CPU; %{name} is on {x.device}")
            if str(x.dtype) not in _DTYPES:
                raise UnsupportedError(f"the native program reads float32 and int64 inputs; %{name} is {x.dtype}")
        values: dict[str, Any] = {}
        with torch.no_grad():
            run_graph(g, {**dict(zip(g.input_names, inputs, strict=True)), **self.program.weights},
                      rnn=self._record_rnn, values=values)
        shapes = {k: tuple(v.shape) for k, v in values.items() if isinstance(v, torch.Tensor)}
        self._plans[_signature(inputs)] = plan = _build(self, inputs, values, shapes)
        return plan

    def _record_rnn(self, node: Node, args: list[Any]) -> tuple[Any, ...]:
        n_states = len(node.attr("cells")[0].states)
        return self.compiled.rnns[node.outputs[0]](args[0], args[1], args[2:2 + n_states])


def _signature(inputs: tuple[Any, ...]) -> tuple:
    """What a plan is built for: each input's shape, dtype and device."""
    return tuple((tuple(x.shape), x.dtype, x.device) for x in inputs)


def _build(native: NativeProgram, inputs: tuple[Any, ...], values: dict[str, Any],
           shapes: dict[str, tuple[int, ...]]) -> _Plan:
    import torch

    program = native.program
    g = program.graph
    args: list[Buffer] = []
    env: dict[str, View] = {}
    for i, (name, x) in enumerate(zip(g.input_names, inputs, strict=True)):
        args.append(Buffer(f"in{i}", Const(max(1, x.numel())), "arg", _DTYPES[str(x.dtype)]))
        env[name] = dense(f"in{i}", tuple(x.shape))
    outs = []
    for k, (name, v) in enumerate(g.outputs):
        t = values[v]
        if str(t.dtype) not in _DTYPES:
            raise UnsupportedError(f"the native program returns float32 and int64 outputs; {name} is {t.dtype}")
        args.append(Buffer(f"out{k}", Const(max(1, t.numel())), "arg", _DTYPES[str(t.dtype)], writable=True))
        outs.append((tuple(t.shape), t.dtype))
    # weights the program reads itself: all but the rnn nodes' layer weights (their kernels hold those)
    read = {i for n in g.nodes for i in (n.inputs if n.op != "rnn" else _rnn_data_inputs(n))}
    weights: list[Any] = []
    for name in g.param_names:
        if name in read:
            w = program.weights[name].detach().contiguous()
            if str(w.dtype) not in _DTYPES:
                raise UnsupportedError(f"the native program reads float32 and int64 weights; %{name} is {w.dtype}")
            args.append(Buffer(f"wt{len(weights)}", Const(max(1, w.numel())), "arg", _DTYPES[str(w.dtype)]))
            env[name] = dense(f"wt{len(weights)}", tuple(w.shape))
            weights.append(w)
    calls: list[_Call] = []
    extra: list[tuple[str, Any]] = []  # arg buffers the lowering adds: (name, tensor)
    lowerer = ProgramLowerer(g, env, shapes, lambda lw, node: _lower_rnn(native, lw, node, calls, extra),
                             threads=default_threads(), gpu=native.gpu, constant=values.__getitem__)
    body = lowerer.lower(g.nodes)
    for k, (_, v) in enumerate(g.outputs):
        body.extend(copy(dense(f"out{k}", outs[k][0]), lowerer.env[v]))
    if calls:
        args.append(Buffer("calls", Const(3 * len(calls)), "arg", "ptr", writable=True))
    kernel = program_kernel("rnnc_model_" + hashlib.sha1(repr((g, shapes)).encode()).hexdigest()[:12],
                            args + lowerer.buffers, body)
    source = CDialect(kernel).render()
    fn = getattr(load_library(build_c(source, c_flags(native.target))), kernel.name)
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    fn.restype = None

    work = {b.name: torch.empty(int(b.size.value), dtype=torch.int64 if b.dtype == "int64" else torch.float32)
            for b in kernel.work}
    keep: list[Any] = list(weights)
    ptrs = (ctypes.c_void_p * (len(kernel.args) + len(kernel.work)))()
    names = [b.name for b in (*kernel.args, *kernel.work)]
    for j, w in enumerate(weights):
        ptrs[names.index(f"wt{j}")] = w.data_ptr()
    for name, t in work.items():
        ptrs[names.index(name)] = t.data_ptr()
    for name, value in lowerer.constants:
        extra.append((name, values[value]))
    for name, t in extra:
        t = t.detach().contiguous()
        keep.append(t)
        ptrs[names.index(name)] = t.data_ptr()
    for name, src, offset, cols, k_dim, width in lowerer.packs:  # gemm's panels: [panel, K, width], zero-padded
        w = weights[int(src[2:])].reshape(-1)[offset:offset + cols * k_dim].reshape(cols, k_dim)
        panel = torch.zeros(-(-cols // width) * width, k_dim, dtype=torch.float32)
        panel[:cols] = w
        panel = panel.reshape(-1, width, k_dim).transpose(1, 2).contiguous()
        keep.append(panel)
        ptrs[names.index(name)] = panel.data_ptr()
    if calls:
        table = (ctypes.c_void_p * (3 * len(calls)))()
        for slot, c in enumerate(calls):
            sc, bufs = c.runner.launch(*call_views(work, c))
            sc_arr, buf_arr = (ctypes.c_long * max(1, len(sc)))(*sc), (ctypes.c_void_p * len(bufs))(*bufs)
            table[3 * slot] = ctypes.cast(c.runner.fn, ctypes.c_void_p).value
            table[3 * slot + 1] = ctypes.addressof(sc_arr)
            table[3 * slot + 2] = ctypes.addressof(buf_arr)
            keep += [sc_arr, buf_arr, c.runner]
        ptrs[names.index("calls")] = ctypes.addressof(table)
        keep.append(table)
    index_inputs = []
    for buf, rows in lowerer.index_bounds:
        if buf.startswith("in"):  # an input, through views: checked at every call
            index_inputs.append((int(buf[2:]), rows))
        else:  # a stored index tensor: checked once
            check_indices(weights[int(buf[2:])], rows)
    return _Plan(fn, kernel, source, outs, len(inputs), ptrs, keep, index_inputs,
                 (ctypes.c_long * 1)(lowerer.threads), calls, work)


def check_indices(idx: Any, rows: int) -> None:
    """torch's embedding error for an index outside ``[0, rows)`` (the kernel would read past its table)."""
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= rows):
        raise IndexError(f"index out of range in self: embedding indices must lie in [0, {rows}), got "
                         f"{int(idx.min())}..{int(idx.max())}")


def _rnn_data_inputs(node: Node) -> tuple[str, ...]:
    """An ``rnn`` node's input sequence and initial states (not its weights)."""
    return node.inputs[:2 + len(node.attr("cells")[0].states)]


def call_views(work: dict[str, Any], c: _Call) -> tuple[Any, ...]:
    """The arguments of ``LayerRunner.launch`` for one recorded call, on the plan's buffers."""
    lengths = _view(work, (*c.lengths, False)) if c.lengths else None
    return (_view(work, c.x), _view(work, c.y), c.y_off, [_view(work, (b, s, False))[i] for b, s, i in c.states],
            lengths, c.reverse, {buf: _view(work, (name, shape, False)) for buf, (name, shape) in c.hosted.items()})


def _view(work: dict[str, Any], spec: tuple[str, tuple[int, ...], bool]) -> Any:
    buf, shape, batch_first = spec
    t = work[buf][:math.prod(shape)].view(shape)
    return t.transpose(0, 1) if batch_first else t


def _project(lw: ProgramLowerer, runner: Any, buf: str, layer_in: tuple[str, tuple[int, ...], bool],
             stmts: list[Stmt], extra: list[tuple[str, Any]]) -> tuple[str, tuple[int, ...]]:
    """A layer whose input projection the host computes (``Knobs.host_gemm``; on a GPU, the
    backend's cuBLAS call): that GEMM, ``proj[t, b, :] = x[t, b, :] @ W``, as the program's own
    op into a buffer the kernel then reads."""
    wt = runner.hosted[buf]  # [I, G*H]
    name = f"hw{len(extra)}"
    extra.append((name, wt))
    lw.buffers.append(Buffer(name, Const(max(1, wt.numel())), "arg"))
    xbuf, xshape, bf = layer_in
    steps, batch = (xshape[1], xshape[0]) if bf else (xshape[0], xshape[1])
    inputs, cols = int(wt.shape[0]), int(wt.shape[1])
    pv = lw.work_buffer(f"proj{lw._next()}", (steps, batch, cols), shared=True)
    x = dense(xbuf, xshape)
    acc, j, i = f"pacc{lw._n}", Var(f"pj{lw._n}"), Var(f"pi{lw._n}")

    def row(r: Any) -> list[Stmt]:
        t, b = Bin("/", r, Const(batch)), Bin("%", r, Const(batch))
        product = Bin("mul", x.load((b, t, i) if bf else (t, b, i)), Load(name, add(mul(i, cols), j)))
        return [Loop(j.name, Const(cols), (
            Let(acc, Const(0.0, True)),
            Loop(i.name, Const(inputs), (Let(acc, Bin("add", Ref(acc), product)),)),
            Store(pv.buf, add(mul(r, cols), j), Ref(acc))), "vector")]

    stmts.extend(lw.rows(steps * batch, steps * batch * cols * inputs, row))
    return pv.buf, (steps, batch, cols)


def _lower_rnn(native: NativeProgram, lw: ProgramLowerer, node: Node, calls: list[_Call],
               extra: list[tuple[str, Any]]) -> list[Stmt]:
    """Buffers of one ``rnn`` node (its input, states and layer outputs), the copies into them
    and one kernel call per layer and direction -- ``rnnc.ir.rnn.run_stack``'s layout."""
    attrs = node.attr_dict
    cells, dirs, _ = rnn_layout(attrs)
    rnn = native.compiled.rnns[node.outputs[0]]
    for row in rnn.runners:
        for r in row:
            if type(r) is not LayerRunner or kernel_storage(r.kernel) != "float32":
                raise UnsupportedError(f"the native program calls fp32 step kernels; layer {r.kernel.name} is "
                                       f"{r.kernel.meta.get('path')} (chunkwise or 16-bit)")
    bf = bool(attrs["batch_first"])
    tag = f"rnn{lw._next()}_"
    stmts: list[Stmt] = []
    x_shape = lw.shape_of(node.inputs[0])
    xv = lw.work_buffer(f"{tag}x", x_shape, shared=True)
    stmts += copy(xv, lw.env[node.inputs[0]])
    steps, batch = (x_shape[1], x_shape[0]) if bf else (x_shape[0], x_shape[1])
    lengths = None
    if node.inputs[1]:  # sequence lengths: an int64 copy the kernels read (they skip padded steps)
        if lw.types[node.inputs[1]].dtype != "int64":
            raise UnsupportedError(f"{node.label}: sequence lengths of {lw.types[node.inputs[1]].dtype}")
        lv = lw.work_buffer(f"{tag}len", (batch,), dtype="int64")
        stmts += copy(lv, lw.env[node.inputs[1]])
        lengths = (lv.buf, (batch,))
    states = []
    for j, st in enumerate(cells[0].states):
        shape = (len(cells) * dirs, batch, *st.shape)
        sv = lw.work_buffer(f"{tag}s{j}", shape, shared=True)
        init = node.inputs[2 + j] if 2 + j < len(node.inputs) else ""
        if init:
            stmts += copy(sv, lw.env[init])
        else:
            stmts += loop_nest(shape, "z", lambda ix, sv=sv: [Store(sv.buf, sv.load(ix).index, Const(0.0, True))])
        states.append((sv.buf, shape))
        lw.env[node.outputs[1 + j]] = sv
    layer_in = (xv.buf, x_shape, bf)
    for k, cell in enumerate(cells):
        feat = dirs * cell.output_size
        last = k == len(cells) - 1
        shape = (batch, steps, feat) if last and bf else (steps, batch, feat)
        yv = lw.work_buffer(f"{tag}y{k}", shape, shared=True)
        for d in range(dirs if steps else 0):  # no steps: the states pass through, y is empty
            runner = rnn.runners[k][d]
            hosted = {buf: _project(lw, runner, buf, layer_in, stmts, extra) for buf in runner.hosted}
            calls.append(_Call(runner, layer_in, (yv.buf, shape, last and bf), d * cell.output_size,
                               [(b, s, k * dirs + d) for b, s in states], d == 1, hosted, lengths))
            stmts.append(Invoke("calls", len(calls) - 1))
        layer_in = (yv.buf, shape, False)
        if last:
            lw.env[node.outputs[0]] = yv
    return stmts
