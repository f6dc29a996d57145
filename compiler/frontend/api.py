"""``trace(model, example_inputs, *, dynamic=None) -> Program``: the frontend's entry point.

Eager ``nn.Module``s go through torch.fx (``fx_trace``/``fx_convert``; calls it has no handler
for through torch.export, ``aten.py``), TorchScript modules through the TorchScript graph
converter (``torchscript``).  Which dims stay symbolic:

* ``dynamic=None`` (default): every dim the model leaves free (``dims.py``: the model is run with
  each group of same-sized dims doubled), ``B`` for the batch, ``T``, ``T1``, ... for the others.
  The Program is checked against the model at twice the example's sizes; if it disagrees, or a
  size cannot be said, fewer dims stay symbolic (the batch with one other group, one free
  group, then the dims that reach a recurrent layer, then none) and a warning says why.  So one
  Program serves every batch size and sequence length the model does.
* a list aligned with ``example_inputs`` (or a dict keyed by input name) of ``{dim: symbol}``
  (``None`` or ``{}`` for a fully static input): taken as given, not checked.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rnnc.errors import UnsupportedError, UserInputError
from rnnc.frontend.values import TV, Ctx, Packed
from rnnc.ir import Graph, GraphBuilder, Program, Weights
from rnnc.ir.types import Dim, dtype_of_torch

DynamicSpec = Sequence[Mapping[int, str] | None] | Mapping[str, Mapping[int, str] | None] | None


def _examples(example_inputs: Any) -> list[torch.Tensor]:
    items = list(example_inputs) if isinstance(example_inputs, (tuple, list)) else [example_inputs]
    for i, t in enumerate(items):
        if not isinstance(t, torch.Tensor):
            raise UserInputError(f"example input #{i} is a {type(t).__name__}; trace takes a tensor or a tuple "
                                 "of tensors (pass lengths as an int64 tensor)")
        try:
            dtype_of_torch(t.dtype)
        except ValueError as exc:
            raise UserInputError(f"example input #{i}: {exc}") from None
    return items


def _input_names(model: Any, n: int) -> list[str]:
    try:
        if isinstance(model, torch.jit.ScriptModule):
            names = [a.name for a in model.forward.schema.arguments[1:]]
        else:
            import inspect

            names = [p for p in inspect.signature(model.forward).parameters]
    except (TypeError, ValueError, AttributeError):
        names = []
    names = [n_ for n_ in names if n_.isidentifier()][:n]
    return names + [f"input{i}" for i in range(len(names), n)]


def _dims_for(example: torch.Tensor, spec: Mapping[int, str] | None) -> tuple[Dim, ...]:
    spec = dict(spec or {})
    rank = example.dim()
    for d in spec:
        if not -rank <= d < rank:
            raise UserInputError(f"dynamic dim {d} is out of range for an input of shape {tuple(example.shape)}")
    spec = {d % rank: s for d, s in spec.items()}
    return tuple(spec.get(i, int(n)) for i, n in enumerate(example.shape))


def _flatten(ctx: Ctx, out: Any, prefix: str, acc: list[tuple[str, Any]]) -> None:
    if isinstance(out, Packed):
        out = out.data
    if isinstance(out, TV):
        acc.append((prefix, ctx.materialize(out)))
    elif isinstance(out, (tuple, list)):
        for i, o in enumerate(out):
            _flatten(ctx, o, f"{prefix}_{i}", acc)
    elif isinstance(out, Mapping):  # {"logits": ..., "state": ...}: outputs named by key, in order
        for k, o in out.items():
            _flatten(ctx, o, f"{prefix}_{k}" if str(k).isidentifier() else f"{prefix}_{len(acc)}", acc)
    elif out is None:
        return
    else:
        raise UnsupportedError(f"model output {prefix} is a {type(out).__name__}; rnnc Programs return tensors")


def _fixed_time_layers(program: Program) -> int:
    """How many rnn nodes run over a fixed number of steps (a loop unrolled over a dim kept fixed)."""
    types = program.graph.value_types()
    fixed = 0
    for node in program.rnn_nodes():
        x = types[node.inputs[0]].shape
        fixed += isinstance(x[1] if node.attr("batch_first") else x[0], int)
    return fixed


def _fixed_here(program: Program, dims: list[tuple[Dim, ...]], examples: list[torch.Tensor],
                lines: dict[str, str]) -> str:
    """Where the Program first fixed a size it was traced at: the first node whose output has,
    as a constant, the example's size of a symbolic dim that none of its inputs has (a Python
    loop unrolled over the length, ``torch.zeros(24, ...)`` from a size read as a plain int)."""
    sized = [(int(n), d) for ds, e in zip(dims, examples, strict=True) for d, n in zip(ds, e.shape, strict=True)
             if isinstance(d, str) and int(n) > 1]
    # lengths first, then the batch; a 2 last (as often a layer or direction count as the batch
    # of 2 that ``np.zeros((batch_size, 1))`` baked in)
    for traced, consts in (({n: d for n, d in sized if d != "B" and n > 2}, False),
                           ({n: d for n, d in sized if d == "B" and n > 2}, False),
                           ({n: d for n, d in sized if n == 2}, True)):  # (a 2 in constants only)
        found = _first_fixed(program, traced, lines, consts)
        if found:
            return found
    return "a size the trace fixed, e.g. a Python loop unrolled over the example's length"


def _first_fixed(program: Program, traced: dict[int, str], lines: dict[str, str], consts: bool = False) -> str:
    """The first node or constant with a dim of a size in ``traced`` none of its inputs has;
    ``consts``: constants only (a size of 2 in a node's result is as often a feature count)."""
    types = program.graph.value_types()
    params = {p for p, _ in program.graph.params}
    for node in program.graph.nodes:
        made = [(v, f"constant %{v}") for v in node.inputs if v in params]  # a constant built at the
        made += [] if consts else [(v, node.label) for v in node.outputs]  # example's size, or this node
        for v, label in made:
            others = {d for u in node.inputs if u and u != v for d in types[u].shape if isinstance(d, int)}
            fixed = [d for d in types[v].shape if isinstance(d, int) and d in traced and d not in others]
            if fixed:
                at = f" at {lines[v]}" if v in lines else ""
                return (f"a size the trace fixed: {label}{at} is {types[v].text()}, {fixed[0]} being "
                        f"{traced[fixed[0]]} at the example -- a size read as a plain number, or a loop unrolled")
    return ""


def _show(dims: list[tuple[Dim, ...]], names: list[str]) -> str:
    return ", ".join(f"{n}[{','.join(str(d) for d in ds)}]" for n, ds in zip(names, dims, strict=True))


def _warn_fixed(tried: list[str]) -> None:
    if tried:
        warnings.warn("rnnc.trace kept fewer dims symbolic than the model allows; " + " | ".join(tried),
                      stacklevel=3)


def _build(model: Any, examples: list[torch.Tensor], dims: list[tuple[Dim, ...]], names: list[str],
           probing: bool = False, cells: dict[int, Any] | None = None, loops: dict[str, Any] | None = None,
           roll: bool = True, unreverse: bool | None = None) -> Program:
    """One conversion with the given dims; ``cells``: the step cells one eager run found
    (``stepcells.find_step_cells``), passed in so a trace that builds several times runs it once.
    ``roll``: roll loops over a symbolic dim back over it (``scan.py``; stacks of per-step values
    keep the dim); ``loops`` receives what that did: ``rolled``/``retimed`` counts and ``left``,
    why loops found stayed unrolled.  ``unreverse``: stacks of a reversed list are the flip of
    the stack in step order (``stacks.py``) -- ``None``: tried where a loop stayed unrolled (a loop
    that steps backwards reads its reversed list in time order as it is; ``loops["unreversed"]``
    says the try was kept), ``False``: never."""
    name = type(model).__name__ if not isinstance(model, torch.jit.ScriptModule) else model.original_name
    b = GraphBuilder(name or "model")
    ctx = Ctx(b, probing=probing, retime_loops=roll)
    inputs = [TV(b.input(n, d, dtype_of_torch(e.dtype)), e) for n, d, e in zip(names, dims, examples, strict=True)]
    if isinstance(model, torch.jit.ScriptModule):
        from rnnc.frontend.torchscript import convert_script_module

        out = convert_script_module(ctx, model, inputs)
    else:
        from rnnc.frontend.fx_convert import convert_graph
        from rnnc.frontend.fx_trace import trace_module
        from rnnc.frontend.loops import merge_cell_loops
        from rnnc.frontend.stacks import index_late_reads, unreverse_stacks
        from rnnc.frontend.stepcells import find_step_cells
        from rnnc.frontend.sums import gather_sums
        from rnnc.frontend.writes import gather_writes

        if cells is None:
            cells = find_step_cells(model, examples)
        gm = trace_module(model, examples, cells)
        if loops is not None:
            loops["compared"] = gm.compared
            loops["thresholds"] = gm.thresholds
        gather_writes(gm)  # before the merge: a loop's writes become the stack it reads
        gather_sums(gm)  # and a loss summed from ``0`` across steps, the sum of a stack
        reversed_stacks = unreverse_stacks(gm, rewrite=bool(unreverse))
        index_late_reads(gm)  # values a later loop walks one by one: read from their stack
        merge_cell_loops(gm, cells)
        out = convert_graph(ctx, gm, [*inputs, *gm.defaults], root_name="")
    flat: list[tuple[str, Any]] = []
    single = isinstance(out, (TV, Packed))
    _flatten(ctx, out, "output", flat)
    if not flat:
        raise UnsupportedError(f"model {name} returns no tensor")
    if single:
        flat = [("output", flat[0][1])]
    graph = _live(b.build(flat))
    weights = ctx.weights
    if roll and any(isinstance(d, str) for _, t in graph.inputs for d in t.shape):
        from rnnc.frontend.chunks import merge_chunked_rnns
        from rnnc.frontend.scan import roll_loops

        sizes = {d: int(n) for ds, e in zip(dims, examples, strict=True) for d, n in zip(ds, e.shape, strict=True)
                 if isinstance(d, str)}
        graph = merge_chunked_rnns(graph, sizes)
        graph, weights, rolled, clocked, left = roll_loops(graph, weights, sizes, ctx.lines)
        if left and unreverse is None and not isinstance(model, torch.jit.ScriptModule) and reversed_stacks:
            again: dict[str, Any] = {}
            program = _build(model, examples, dims, names, probing, cells, again, roll, unreverse=True)
            if len(again["left"]) < len(left):
                if loops is not None:
                    loops.update(again, unreversed=True)
                return program
        if loops is not None:
            loops.update(rolled=rolled, clocked=clocked, left=left)
    if loops is not None:
        loops["retimed"] = ctx.retimed
        loops["lines"] = ctx.lines
    lines = {v: at for v, at in ctx.lines.items() if at}
    return Program(graph, Weights(weights), source=f"rnnc.frontend.trace({name})", lines=lines).verify()


def _checks(*builds: dict[str, Any]) -> dict[str, Any]:
    """What the trace checks (``dims.check_at_other_size``) try beyond growing every symbol
    alike, from what the builds of one model saw: ``each`` symbol grown alone where a clocked
    loop rolled (``scan_match.clocked``) or two sizes were compared in Python
    (``ConcreteTracer.compared``) -- answers that hold wherever every symbol grows alike; the
    sizes ``near`` where a size compared with a number changes Python's answer
    (``ConcreteTracer.thresholds``, one trace's)."""
    each = any(b.get("clocked") or b.get("compared") for b in builds)
    return {"each": each, "near": builds[0].get("thresholds", ())}


def _rebuilt(model: Any, examples: list[torch.Tensor], dims: list[tuple[Dim, ...]], names: list[str],
             cells: dict[int, Any], loops: dict[str, Any]) -> tuple[Program, dict[str, Any]] | None:
    """The same dims built again without what the loop pass did, where the first build (that
    saw ``loops``) was wrong at another size: without the flipped stack (a fixed-count loop's
    reversed list), else without rolling (a stack of per-step reads that is no loop over time, a
    fixed-count loop taken for one clocked by the length).  The first that holds, with what its
    build saw; None when none does."""
    from rnnc.frontend.dims import check_at_other_size

    retries = [{"unreverse": False}] if loops.get("unreversed") else []
    retries += [{"roll": False}] if loops.get("rolled") or loops.get("retimed") else []
    for retry in retries:
        again: dict[str, Any] = {}
        try:
            program = _build(model, examples, dims, names, cells=cells, loops=again, **retry)
        except Exception:  # noqa: BLE001 -- the first build's verdict stands
            continue
        if not check_at_other_size(model, program, examples, dims, **_checks(loops, again)):
            return program, again
    return None


def _live(graph: Graph) -> Graph:
    """``graph`` without the ``concat`` nodes nothing reads: once a growing ``cat`` chain is
    flattened, every step's partial concatenation is unread.  (Only those: other unread values,
    a loop's last cell state, keep the unrolled steps alike for ``scan.py``.)"""
    nodes = list(graph.nodes)
    while True:
        used = {v for n in nodes for v in n.inputs if v} | {v for _, v in graph.outputs}
        keep = [n for n in nodes if n.op != "concat" or any(o in used for o in n.outputs)]
        if len(keep) == len(nodes):
            break
        nodes = keep
    if len(nodes) == len(graph.nodes):
        return graph
    return Graph(graph.name, graph.inputs, graph.params, tuple(nodes), graph.outputs)


@contextlib.contextmanager
def inference_mode(model: nn.Module) -> Any:
    """The model in eval mode while rnnc runs and traces it (rnnc compiles inference: dropout is
    the identity, norms use running statistics), its buffers untouched by those runs; every
    module's training flag and every buffer are put back afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    model.eval()
    try:
        yield
    finally:
        for m, was in flags:
            m.training = was
        with torch.no_grad():
            for b, saved in buffers:
                if b.shape == saved.shape:
                    b.copy_(saved)


def trace(model: nn.Module | torch.jit.ScriptModule, example_inputs: Any, *, dynamic: DynamicSpec = None) -> Program:
    """Convert a PyTorch model into a verified rnnc ``Program``.

    ``example_inputs``: a tensor or a tuple of tensors, as ``model(*example_inputs)`` takes them.
    ``dynamic``: which dims stay symbolic (module docstring); default: every dim the model leaves
    free, checked at another size (docs/frontend.md).  The model is traced in eval mode.
    """
    if not isinstance(model, nn.Module):
        raise UserInputError(f"trace expects a torch.nn.Module or TorchScript module, got {type(model).__name__}")
    from rnnc.frontend.dims import check_at_example

    # copies: a model that writes into its inputs changes rnnc's, not the caller's tensors
    examples = [e.clone() for e in _examples(example_inputs)]
    from rnnc.frontend.fx_patches import shadows

    with inference_mode(model):
        with warnings.catch_warnings(record=True) as said:  # (said below, unless a retry replaces them)
            warnings.simplefilter("always")
            program = _trace(model, examples, dynamic)
        wrong = check_at_example(model, program, examples)
        if wrong and not isinstance(model, torch.jit.ScriptModule):  # ``type(n) is int`` took another
            try:  # branch with ``int`` a stand-in: once more with the builtins themselves
                with shadows(False):
                    again = _trace(model, examples, dynamic)
            except Exception:  # noqa: BLE001 -- the first trace's finding stands
                again = None
            if again is not None and not check_at_example(model, again, examples):
                program, wrong, said = again, "", []
    for w in {(str(w.message), w.category): w for w in said}.values():  # (once each: every build says them)
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if wrong:  # every other check is at other sizes: never return a Program wrong where it was traced
        raise UnsupportedError(f"rnnc.trace: the traced Program differs from {type(model).__name__} on the example "
                               f"inputs themselves ({wrong}): the model changes a tensor in a way the trace "
                               "cannot follow -- in place through an alias (`skip = y; y += f(y)`, a piece of "
                               "`chunk`/`split` written in place, `out=`), or state it keeps between calls; "
                               "write that step out of place")
    return program


def _trace(model: nn.Module, example_inputs: Any, dynamic: DynamicSpec) -> Program:
    examples = _examples(example_inputs)
    with torch.no_grad():
        try:
            model(*examples)
        except Exception as exc:  # the user's inputs do not fit the user's model: say so plainly
            raise UserInputError(f"{type(model).__name__} fails on the example inputs "
                                 f"{[tuple(e.shape) for e in examples]}: {type(exc).__name__}: {exc}") from None
    names = _input_names(model, len(examples))
    from rnnc.frontend.stepcells import find_step_cells

    cells = {} if isinstance(model, torch.jit.ScriptModule) else find_step_cells(model, examples)
    if dynamic is None:
        return _trace_auto(model, examples, names, cells)
    if isinstance(dynamic, Mapping):
        unknown = set(dynamic) - set(names)
        if unknown:
            raise UserInputError(f"dynamic names unknown inputs {sorted(unknown)}; inputs are {names}")
        dims = [_dims_for(e, dynamic.get(n)) for n, e in zip(names, examples, strict=True)]
    else:
        spec = list(dynamic)
        if len(spec) != len(examples):
            raise UserInputError(f"dynamic has {len(spec)} entries for {len(examples)} example inputs")
        dims = [_dims_for(e, s) for e, s in zip(examples, spec, strict=True)]
    from rnnc.frontend.dims import check_at_other_size

    with torch.no_grad():
        loops: dict[str, Any] = {}
        program = _build(model, examples, dims, names, cells=cells, loops=loops)
        wrong = check_at_other_size(model, program, examples, dims, **_checks(loops))
        found = _rebuilt(model, examples, dims, names, cells, loops) if wrong else None
        if found is not None:
            (program, loops), wrong = found, ""
    if wrong:  # the dims are the user's: kept, but never silently wrong at another size
        left = loops.get("left") or []
        warnings.warn(f"rnnc.trace: the Program is right at the example's sizes only; with {_show(dims, names)}: "
                      f"{wrong}" + (" (a loop over time stayed unrolled: " + "; ".join(dict.fromkeys(left)) + ")"
                                    if left else ""), stacklevel=3)
    return program


def _trace_auto(model: Any, examples: list[torch.Tensor], names: list[str], cells: dict[int, Any]) -> Program:
    """The default dims (``dims.py``): every dim the model leaves free, else the batch with one
    other group, else one group of them (batch first), else the dims that reach a recurrent layer,
    else the example's sizes; each choice is checked at another size, and a fallback warns why."""
    from rnnc.frontend.dims import BRANCH_KEPT, check_at_other_size, free_dims, rnn_dims

    static = [tuple(int(s) for s in e.shape) for e in examples]
    seen: list[list[tuple[Dim, ...]]] = [static]
    why: list[str] = []
    with torch.no_grad():
        free = free_dims(model, examples, names)
        symbols = sorted({d for ds in free for d in ds if isinstance(d, str)}, key=lambda d: (d != "B", d))
        def keeping(*keep: str) -> list[tuple[Dim, ...]]:
            return [tuple(d if d in keep else int(n) for d, n in zip(ds, e.shape, strict=True))
                    for ds, e in zip(free, examples, strict=True)]

        # the batch with one other group (an elementwise model leaves its features free too,
        # and a loop over time rolls only over fixed features), then each group alone
        pairs = [keeping("B", s) for s in symbols if s != "B"] if "B" in symbols and len(symbols) > 2 else []
        one_each = [keeping(s) for s in symbols] if len(symbols) > 1 else []
        candidates = [free, *pairs, *one_each, None]
        held: tuple[int, Program] | None = None  # a Program that holds, but runs a layer over a fixed length
        for dims in candidates:
            if held is not None and dims is not None and dims not in pairs:
                break  # the pairs are tried through; the best of them is kept

            dims = dims if dims is not None else rnn_dims(model, examples, names, cells)
            if dims in seen:
                continue
            seen.append(dims)
            loops: dict[str, Any] = {}
            try:
                program = _build(model, examples, dims, names, cells=cells, loops=loops)
            except Exception as exc:  # noqa: BLE001 -- this choice of dims failed; the next is tried
                why.append(f"with {_show(dims, names)}: {exc}")
                continue
            wrong = check_at_other_size(model, program, examples, dims, **_checks(loops))
            found = _rebuilt(model, examples, dims, names, cells, loops) if wrong else None
            if found is not None:
                program, wrong = found[0], ""
            if wrong:
                left = loops.get("left") or []
                cause = ("a loop over time stayed unrolled: " + "; ".join(dict.fromkeys(left)) if left
                         else "" if BRANCH_KEPT in wrong  # (the check named the line)
                         else _fixed_here(program, dims, examples, loops.get("lines", {})))
                why.append(f"with {_show(dims, names)}: {wrong}" + (f" ({cause})" if cause else ""))
                continue
            fixed = _fixed_time_layers(program)
            if fixed and dims in pairs:  # another pair may keep the recurrent length symbolic
                if held is None or fixed < held[0]:
                    held = (fixed, program)
                why.append(f"with {_show(dims, names)}: {fixed} recurrent layer(s) run over a fixed length")
                continue
            _warn_fixed(why)
            return program
        if held is not None:
            _warn_fixed(why)
            return held[1]
        program = _build(model, examples, static, names, cells=cells)
    _warn_fixed(why)
    return program
