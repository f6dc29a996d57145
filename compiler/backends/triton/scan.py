"""Chunked parallel scan kernels for linear cells, rendered from a :class:`~rnnc.ir.scanform.ScanPlan`, and
the runtime that feeds them.

One kernel per scan component (``rnnc_scan_<i>`` in one module).  A program owns one batch row
and ``FT`` state elements for the whole sequence: it walks the sequence ``L`` steps at a time,
scans each chunk in parallel with ``tl.associative_scan`` over the pair operator
``(A1, b1) . (A2, b2) = (A2 A1, A2 b1 + b2)`` (``S x S`` per element; for max-plus states
``(a1 + a2, max(b1 + a2, b2))``), applies the carried state of the previous chunk to every
prefix and carries the chunk's last state on.  ``L`` and ``FT`` come from the solver's
``chunked_scan`` Schedule (``chunk``, ``channel_tile``) on a GPU target.

The coefficients ``A_t, b_t`` of every step are computed before the launch by evaluating the
step graph over all ``T * B`` rows (``rnnc.ir.scanform.evaluate``), in fp32 whatever the storage dtype:
they are intermediate buffers, and a decay of ``1 - 1e-4`` does not survive a round trip
through bf16.  The readout (``y``) is the step graph evaluated once more with every previous
state known.  Padding steps and steps past a sequence's length get the identity coefficients,
so the state is held there, as the ``rnn`` op defines.
"""

from __future__ import annotations

from typing import Any

from rnnc.ir.scanform import Component, ScanPlan, coefficients, evaluate

KERNEL_PREFIX = "rnnc_scan_"
#: elements of each [L, SUB] chunk tensor per thread: what keeps the working set in registers
ELEMS_PER_THREAD = 8


def sub_tile(chunk: int, tile: int, warps: int, size: int = 1) -> int:
    """State elements a program scans at once: ``chunk * SUB`` values per chunk tensor spread over
    the block's threads at :data:`ELEMS_PER_THREAD` each (``S x S`` coefficient tensors for
    coupled states shrink it further), a power of two no larger than ``tile``."""
    budget = max(1, 32 * warps * ELEMS_PER_THREAD // (chunk * size * size))
    return max(1, min(tile, 1 << (budget.bit_length() - 1)))


def _combine(comp: Component, name: str) -> list[str]:
    """A ``@triton.jit`` combine function for ``comp``'s pair operator (earlier operand first)."""
    s = comp.size
    if comp.kind == "maxplus":
        return ["@triton.jit", f"def {name}(a1, b1, a2, b2):", "    return a1 + a2, tl.maximum(b1 + a2, b2)"]
    a1 = [f"a1_{i}{j}" for i in range(s) for j in range(s)]
    a2 = [f"a2_{i}{j}" for i in range(s) for j in range(s)]
    b1 = [f"b1_{i}" for i in range(s)]
    b2 = [f"b2_{i}" for i in range(s)]
    outs = []
    for i in range(s):
        for j in range(s):
            outs.append(" + ".join(f"a2_{i}{k} * a1_{k}{j}" for k in range(s)))
    for i in range(s):
        outs.append(" + ".join([f"a2_{i}{k} * b1_{k}" for k in range(s)] + [f"b2_{i}"]))
    return ["@triton.jit", f"def {name}({', '.join(a1 + b1 + a2 + b2)}):", f"    return {', '.join(outs)}"]


def launch_config(lk: Any, comp: Component, steps: int | None = None) -> dict[str, int]:
    """Constexprs of one component's launch (what AOT compiles and the runtime launches):
    ``L`` (no longer than the sequence, rounded up to a power of two), ``FT`` (no larger than the
    state), ``SUB`` (:func:`sub_tile`)."""
    from rnnc.backends.triton.render import pow2

    chunk = max(1, lk.chunk) if steps is None else min(max(1, lk.chunk), pow2(steps))
    tile = min(max(1, lk.tile), pow2(comp.features))
    return {"L": chunk, "FT": tile, "SUB": sub_tile(chunk, tile, lk.warps, comp.size)}


def _kernel(comp: Component, index: int) -> list[str]:
    s = comp.size
    name = f"{KERNEL_PREFIX}{index}"
    lines = _combine(comp, f"_combine_{index}") + ["", "", "@triton.jit",
                                                    f"def {name}(a_ptr, b_ptr, h0_ptr, out_ptr, B, T, F, "
                                                    "L: tl.constexpr, FT: tl.constexpr, SUB: tl.constexpr):"]
    body = [
        f'"""Chunked scan of {comp.kind} state(s) {", ".join(comp.states)} (S={s}): this program owns '
        'FT elements, SUB at a time."""',
        "pid_b = tl.program_id(0)",
        "steps = tl.arange(0, L)",
        "for f0 in range(0, FT, SUB):",
    ]
    maxplus = comp.kind == "maxplus"
    sub = ["f = tl.program_id(1) * FT + f0 + tl.arange(0, SUB)", "fm = f < F"]
    for i in range(s):
        sub.append(f"carry_{i} = tl.load(h0_ptr + (pid_b * {s} + {i}) * F + f, mask=fm, other=0.0).to(tl.float32)")
    sub.append("for c in range(0, T, L):")
    body += ["    " + line for line in sub]
    # int64 row index: T * B * S * S * F passes 2**31 for big matrix states (mLSTM C)
    loop = ["t = c + steps", "row = (t * B + pid_b).to(tl.int64)", "m2 = (t < T)[:, None] & fm[None, :]",
            "last = (steps == L - 1)[:, None]"]
    if maxplus:
        loop += ["a_00 = tl.load(a_ptr + row[:, None] * F + f[None, :], mask=m2, other=0.0)",
                 "b_0 = tl.load(b_ptr + row[:, None] * F + f[None, :], mask=m2, other=-float('inf'))",
                 f"p_00, q_0 = tl.associative_scan((a_00, b_0), 0, _combine_{index})",
                 "h_0 = tl.maximum(carry_0[None, :] + p_00, q_0)"]
    else:
        for i in range(s):
            for j in range(s):
                loop.append(f"a_{i}{j} = tl.load(a_ptr + (row * {s * s} + {i * s + j})[:, None] * F "
                            f"+ f[None, :], mask=m2, other={1.0 if i == j else 0.0})")
        for i in range(s):
            loop.append(f"b_{i} = tl.load(b_ptr + (row * {s} + {i})[:, None] * F + f[None, :], "
                        "mask=m2, other=0.0)")
        ps = [f"p_{i}{j}" for i in range(s) for j in range(s)] + [f"q_{i}" for i in range(s)]
        ins = [f"a_{i}{j}" for i in range(s) for j in range(s)] + [f"b_{i}" for i in range(s)]
        loop.append(f"{', '.join(ps)}, = tl.associative_scan(({', '.join(ins)},), 0, _combine_{index})")
        for i in range(s):
            loop.append(f"h_{i} = " + " + ".join([f"p_{i}{j} * carry_{j}[None, :]" for j in range(s)] + [f"q_{i}"]))
    for i in range(s):
        loop.append(f"tl.store(out_ptr + (row * {s} + {i})[:, None] * F + f[None, :], h_{i}, mask=m2)")
    for i in range(s):  # padded steps are the identity, so the chunk's last row is the carried state
        loop.append(f"carry_{i} = tl.sum(tl.where(last, h_{i}, 0.0), axis=0)")
    return lines + ["    " + b for b in body] + ["            " + b for b in loop]


def render_scan(plan: ScanPlan) -> str:
    """Triton source with one ``rnnc_scan_<i>`` kernel per component of ``plan``."""
    out = [f'"""Chunked-scan kernels of the linear {plan.cell.kind} cell, rendered by rnnc from its IR step graph."""',
           "import triton", "import triton.language as tl", ""]
    for i, comp in enumerate(plan.components):
        out += ["", *_kernel(comp, i)]
    return "\n".join(out) + "\n"


def run_scan_layer(lk: Any, x: Any, params: dict[str, Any], init: list[Any], lengths: Any,
                   reverse: bool) -> tuple[Any, list[Any]]:
    """One (layer, direction) of a linear cell; same contract as ``runtime.run_layer``."""
    import torch

    from rnnc.ir.interp import run_graph

    plan: ScanPlan = lk.plan
    cell, step = plan.cell, plan.cell.step
    steps, batch = x.shape[0], x.shape[1]
    if reverse:  # the scan always runs forward: flip time, and with it where the live steps are
        x = x.flip(0)
    rows = steps * batch
    live = None
    if lengths is not None:
        t_idx = torch.arange(steps, device=x.device)
        order = (steps - 1 - t_idx) if reverse else t_idx
        live = (order[:, None] < lengths.to(x.device)[None, :]).reshape(rows)
    shapes = {s.name: tuple(int(d) for d in s.shape) for s in cell.states}
    env: dict[str, Any] = {step.input_names[0]: x.reshape(rows, -1).float(),
                           **{k: v.float() for k, v in params.items()}}
    prev: dict[str, Any] = {}
    finals: dict[str, Any] = {}
    h0 = {s: v.float() for s, v in zip(cell.state_names, init, strict=True)}
    index = 0
    unknown = tuple(cell.state_names)
    for stage in plan.stages:
        forms = evaluate(cell, env, unknown) if rows else {}
        for comp in stage:
            seq = _scan_component(lk, index, comp, forms, rows, steps, batch, shapes, h0, live)
            index += 1
            for k, s in enumerate(comp.states):
                states = seq[:, :, k].reshape(steps, batch, *shapes[s])
                before = torch.cat([h0[s][None], states[:-1]], dim=0) if steps else states
                prev[s] = before.reshape(rows, *shapes[s])
                finals[s] = states[-1] if steps else h0[s]
                env[s] = prev[s]
        done = {s for c in stage for s in c.states}
        unknown = tuple(s for s in unknown if s not in done)
    if rows:
        outs = dict(zip(step.output_names, run_graph(step, env), strict=True))
        y = outs[step.output_names[0]].reshape(steps, batch, -1)
        if live is not None:
            y = torch.where(live.reshape(steps, batch, 1), y, torch.zeros_like(y))
    else:
        y = x.new_zeros(steps, batch, cell.output_size)
    if reverse:
        y = y.flip(0)
    return y.to(x.dtype), [finals[s].to(x.dtype) for s in cell.state_names]


def _scan_component(lk: Any, index: int, comp: Component, forms: dict[str, Any], rows: int, steps: int, batch: int,
                    shapes: dict[str, tuple[int, ...]], h0: dict[str, Any], live: Any) -> Any:
    """Launch ``rnnc_scan_<index>``; returns the state sequence ``[T, B, S, F]`` (fp32)."""
    import torch

    s, feats = comp.size, comp.features
    device = h0[comp.states[0]].device
    if not rows:
        return torch.zeros(steps, batch, s, feats, device=device)
    new_of = dict(lk.plan.cell.step.outputs)
    pairs = [coefficients(comp, forms[new_of[st]], rows, shapes[st], device) for st in comp.states]
    if comp.kind == "maxplus":
        a, b = pairs[0]
        if live is not None:
            a = torch.where(live[:, None], a, torch.zeros_like(a))
            b = torch.where(live[:, None], b, torch.full_like(b, float("-inf")))
    else:
        a = torch.stack([p[0] for p in pairs], dim=1)  # [rows, S, S, F]
        b = torch.stack([p[1] for p in pairs], dim=1)  # [rows, S, F]
        if live is not None:
            eye = torch.eye(s, device=a.device)[None, :, :, None].expand_as(a)
            a = torch.where(live[:, None, None, None], a, eye)
            b = torch.where(live[:, None, None], b, torch.zeros_like(b))
    start = torch.stack([h0[st].reshape(batch, -1) for st in comp.states], dim=1).contiguous()
    out = torch.empty(steps, batch, s, feats, dtype=torch.float32, device=device)
    consts = launch_config(lk, comp, steps)
    grid = (batch, -(-feats // consts["FT"]))
    kernel = getattr(lk.module, f"{KERNEL_PREFIX}{index}")
    kernel[grid](a.contiguous(), b.contiguous(), start, out, batch, steps, feats, **consts, num_warps=lk.warps)
    return out
