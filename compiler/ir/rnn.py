"""The ``rnn`` op: a stack of recurrent layers, each running a Cell over time.

Inputs, in order: ``x``, ``lengths`` (``""`` if absent), one initial-state input per cell
state (``""`` for zeros), then the weights of every (layer, direction) in the order of that
layer's ``cell.step.params``.  Outputs: ``y`` then one final state per cell state.

Shapes follow ``torch.nn.LSTM``: ``x`` is ``[B, T, I]`` (``batch_first``) or ``[T, B, I]``;
states are ``[layers * directions, B, *state.shape]``; ``y`` has ``directions * output_size``
features.  ``lengths`` (int64 ``[B]``) gives packed-sequence semantics: steps past a sample's
length leave its state unchanged and output zeros, and the reverse direction starts at the last
valid step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rnnc.ir import symdims
from rnnc.ir.graph import Cell
from rnnc.ir.ops import OPS, OpDef, ShapeError, _req
from rnnc.ir.types import TensorType, dims_compatible

#: storage dtypes of a model cast to 16 bits: its steps still compute in fp32 (the IR's and the
#: kernels' mixed precision), x, y, weights and states are stored in it
HALF_DTYPES = ("float16", "bfloat16")


def float_states(cell: Cell) -> bool:
    """Whether every state of ``cell`` is fp32 (the ones a 16-bit model stores in 16 bits)."""
    return all(st.dtype == "float32" for st in cell.states)


def rnn_layout(attrs: dict[str, Any]) -> tuple[tuple[Cell, ...], int, int]:
    """(cells per layer, number of directions, number of weight inputs)."""
    cells: tuple[Cell, ...] = attrs["cells"]
    dirs = 2 if attrs["bidirectional"] else 1
    if len(cells) != attrs["num_layers"]:
        raise ShapeError(f"rnn has num_layers={attrs['num_layers']} but {len(cells)} cells")
    return cells, dirs, sum(len(c.param_names) for c in cells) * dirs


def direction_params(attrs: dict[str, Any], weights: Sequence[Any]) -> list[dict[str, Any]]:
    """The weight inputs of each (layer, direction) by parameter name, at ``layer * dirs + direction``
    (the order :func:`weight_slots` lists them in)."""
    cells, dirs, _ = rnn_layout(attrs)
    out: list[dict[str, Any]] = []
    at = 0
    for cell in cells:
        n = len(cell.param_names)
        for _ in range(dirs):
            out.append(dict(zip(cell.param_names, weights[at:at + n], strict=True)))
            at += n
    return out


def weight_slots(attrs: dict[str, Any]) -> list[tuple[int, int, str]]:
    """(layer, direction, param name) for each weight input, in input order."""
    cells, dirs, _ = rnn_layout(attrs)
    return [(k, d, p) for k, c in enumerate(cells) for d in range(dirs) for p in c.param_names]


def _infer(types: Sequence[TensorType | None], attrs: dict[str, Any]) -> tuple[TensorType, ...]:
    cells, dirs, n_weights = rnn_layout(attrs)
    x = _req(types[0], "x")
    first = cells[0]
    n_states = len(first.states)
    expected = 2 + n_states + n_weights
    if len(types) != expected:
        raise ShapeError(f"rnn expects {expected} inputs (x, lengths, {n_states} states, {n_weights} "
                         f"weights), got {len(types)}")
    if x.rank != 3:
        raise ShapeError(f"rnn input must be rank 3 ([B, T, I] or [T, B, I]), got {x.text()}")
    b, t = (x.shape[0], x.shape[1]) if attrs["batch_first"] else (x.shape[1], x.shape[0])
    for k, cell in enumerate(cells):
        want = first.input_size if k == 0 else cells[k - 1].output_size * dirs
        if cell.input_size != want:
            raise ShapeError(f"layer {k} cell {cell.kind} takes {cell.input_size} inputs, gets {want}")
        if cell.state_names != first.state_names:
            raise ShapeError(f"layer {k} cell states {cell.state_names} differ from layer 0's")
    if not dims_compatible(x.shape[2], first.input_size):
        raise ShapeError(f"rnn input {x.text()} has {x.shape[2]} features, cell takes {first.input_size}")
    lengths = types[1]
    if lengths is not None and (lengths.rank != 1 or lengths.dtype != "int64"):
        raise ShapeError(f"lengths must be int64 [B], got {lengths.text()}")
    lay = attrs["num_layers"] * dirs
    states_out = []
    # a model cast to fp16/bf16 keeps fp32 steps but stores its states like its x (as torch does)
    store = x.dtype if x.dtype in HALF_DTYPES and float_states(first) else None
    for i, s in enumerate(first.states):
        st = TensorType((lay, b, *s.shape), store or s.dtype)
        given = types[2 + i]
        if given is not None and (given.rank != st.rank or not all(
                dims_compatible(p, q) for p, q in zip(given.shape, st.shape, strict=True))):
            raise ShapeError(f"initial state {s.name} is {given.text()}, expected {st.text()}")
        states_out.append(st)
    slots = weight_slots(attrs)
    for (k, _d, p), wt in zip(slots, types[2 + n_states:], strict=True):
        want_t = dict(cells[k].step.params)[p]
        if wt is None or wt.shape != want_t.shape:
            got = wt.text() if wt is not None else "nothing"
            raise ShapeError(f"weight {p} of layer {k} is {got}, cell wants {want_t.text()}")
    feat = symdims.name("*", dirs, cells[-1].output_size)
    y_shape = (b, t, feat) if attrs["batch_first"] else (t, b, feat)
    return (TensorType(y_shape, x.dtype), *states_out)


#: ``run_direction(layer, direction, cell, layer_in, out, offset, states)``: run one (layer,
#: direction) over ``layer_in [T, B, I]``, write its ``[T, B, F]`` output into ``out[..., offset:
#: offset + F]`` and leave its final states in the ``states`` views (``[B, *shape]`` each, holding
#: the initial states on entry)
RunDirection = Any


def output_width(cell: Cell, states: Sequence[Any]) -> int:
    """The cell's per-step output width; a symbolic one (a rolled loop collecting attention
    weights over a memory of symbolic length, ``frontend/scan.py``) is read off the sizes its
    pass-through states have in this call."""
    if isinstance(cell.output_size, int):
        return cell.output_size
    sizes: dict[str, int] = {}
    for spec, st in zip(cell.states, states, strict=True):
        for d, n in zip(spec.shape, st.shape[2:], strict=True):
            if isinstance(d, str):
                sizes[d] = int(n)
                # a state dim a*X + c in one atom X (``T-1``, ``2*S``, ``((T+4)//8)``) gives X
                poly = symdims.parse(d) or {}
                terms = [(key, v) for key, v in poly.items() if key]
                if len(terms) == 1 and len(terms[0][0]) == 1:
                    (atom,), a = terms[0]
                    rest = int(n) - poly.get((), 0)
                    if rest % a == 0:
                        sizes.setdefault(atom, rest // a)
    n = symdims.evaluate(cell.output_size, sizes)
    if n is None:  # a state dim plus fixed features: T*T1 + 50 from a [B, T*T1, C] memory
        want = symdims.parse(cell.output_size)
        for d, size in sizes.items():
            rest = symdims.apply("-", want, symdims.parse(d))
            if rest is not None and all(not k for k in rest):
                n = size + rest.get((), 0)
                break
    if n is None:
        raise ValueError(f"cell {cell.kind}: its output width {cell.output_size} follows no state's size")
    return n


def run_stack(cells: Sequence[Cell], dirs: int, x_tm: Any, inits: Sequence[Any | None], run_direction: RunDirection,
              *, out_dtype: Any = None, state_dtype: Any = None, device: Any = None,
              batch_first_out: bool = False, zeroed: bool = False) -> tuple[Any, list[Any]]:
    """The one layer-stack driver (interpreter and every backend's runner): chains the layers of
    an ``rnn`` node through ``[T, B, D*F]`` outputs, each direction writing its slice, with the
    states laid out like ``torch.nn.LSTM`` (``[L*D, B, *shape]``, zeros where ``inits`` has None).

    Returns the last layer's output (time-major; a batch-major buffer transposed when
    ``batch_first_out``, so the caller's final transpose is free) and the final states.
    ``zeroed``: outputs start at zeros (for kernels that skip padded steps) instead of empty."""
    import torch

    steps, batch = int(x_tm.shape[0]), int(x_tm.shape[1])
    device = device if device is not None else x_tm.device
    out_dtype = out_dtype or x_tm.dtype
    lay = len(cells) * dirs
    states = []
    for i, s in enumerate(cells[0].states):
        dtype = state_dtype or getattr(torch, s.dtype)
        init = inits[i] if i < len(inits) else None
        states.append(torch.zeros((lay, batch, *s.shape), dtype=dtype, device=device) if init is None
                      else init.to(device=device, dtype=dtype).clone().contiguous())
    layer_in = x_tm
    alloc = torch.zeros if zeroed else torch.empty
    for k, cell in enumerate(cells):
        feat = dirs * output_width(cell, states)
        if batch_first_out and k == len(cells) - 1:
            out = alloc((batch, steps, feat), dtype=out_dtype, device=device).transpose(0, 1)
        else:
            out = alloc((steps, batch, feat), dtype=out_dtype, device=device)
        for d in range(dirs):
            idx = k * dirs + d
            run_direction(k, d, cell, layer_in, out, d * (feat // dirs), [s[idx] for s in states])
        layer_in = out
    return layer_in, states


def _evaluate(xs: Sequence[Any], attrs: dict[str, Any]) -> tuple[Any, ...]:
    import torch

    from rnnc.ir.interp import run_graph
    from rnnc.ir.ops_quant import sequence_codes

    cells, dirs, _ = rnn_layout(attrs)
    x_tm = xs[0].transpose(0, 1) if attrs["batch_first"] else xs[0]
    lengths = xs[1]
    n_states = len(cells[0].states)
    steps = int(x_tm.shape[0])
    per_direction = direction_params(attrs, xs[2 + n_states:])

    def direction(k: int, d: int, cell: Cell, layer_in: Any, out: Any, off: int, states: list[Any]) -> None:
        if cell.attr("xquant") == "sequence":  # quantized cell input: the whole sequence at one scale
            layer_in = sequence_codes(layer_in)  # per tensor: the layout does not matter
        params = per_direction[k * dirs + d]
        # 16-bit storage, fp32 arithmetic (the kernels' mixed precision): the step runs in fp32 on
        # widened x, weights and states; y and the final states are rounded back on store
        wide = str(layer_in.dtype).removeprefix("torch.") in HALF_DTYPES
        if wide:
            params = {n: v.float() if isinstance(v, torch.Tensor) and v.is_floating_point() else v
                      for n, v in params.items()}
        state = [s.clone().float() if wide else s.clone() for s in states]
        ys: list[Any] = [None] * steps
        for t in (range(steps - 1, -1, -1) if d == 1 else range(steps)):
            xt = layer_in[t].float() if wide else layer_in[t]
            env = {"x": xt, **dict(zip(cell.state_names, state, strict=True)), **params}
            res = run_graph(cell.step, env)
            y, new = res[0], list(res[1:])
            if lengths is not None:
                live = (lengths > t).to(layer_in.device)
                new = [torch.where(live.view(-1, *([1] * (n.dim() - 1))), n, o)
                       for n, o in zip(new, state, strict=True)]
                y = torch.where(live.view(-1, *([1] * (y.dim() - 1))), y, torch.zeros_like(y))
            ys[t] = y
            state = new
        if steps:
            out[:, :, off:off + out.shape[2] // dirs] = torch.stack(ys, dim=0)
        for view, final in zip(states, state, strict=True):
            view.copy_(final)

    half = str(x_tm.dtype).removeprefix("torch.") in HALF_DTYPES and float_states(cells[0])
    y, finals = run_stack(cells, dirs, x_tm, xs[2:2 + n_states], direction, batch_first_out=attrs["batch_first"],
                          state_dtype=x_tm.dtype if half else None)
    return (y.transpose(0, 1) if attrs["batch_first"] else y, *finals)


OPS["rnn"] = OpDef("rnn", 2, None, ("cells", "num_layers", "bidirectional", "batch_first"), _infer, _evaluate,
                   doc="stack of recurrent layers; each layer's Cell step graph runs over time")
