"""Which input dims stay symbolic when ``trace`` is not told (``dynamic=None``).

Why two methods: the question is "which sizes does the model leave free?", and the model itself
can answer it.  ``free_dims`` runs the model eagerly with each group of same-sized input dims
doubled (``repeat_interleave``, so token ids stay valid and sorted lengths stay sorted); a group
the model still runs with is free: batch, time, an attention memory's length, an image's width.
Dims it rejects (features, channels, a fixed height) stay constants.  Each free group gets one
symbol: ``B`` for the batch -- the group along which the model is separable (sample 1 run alone
gives sample 1 of the full run; else the one group of example size 1, else the group holding dim 0
of the first input) -- and ``T``,
``T1``, ... for the others.  ``rnn_dims`` is the narrower older rule
(only dims that reach an ``rnn`` node), the fallback when rnnc cannot keep every free dim
symbolic.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from rnnc.ir import symdims
from rnnc.ir.types import Dim

Spot = tuple[int, int]  # (input index, dim)


def _runs(model: Any, examples: list[torch.Tensor], spots: list[Spot]) -> bool:
    return _runs_at(model, examples, {(i, d): 2 * int(examples[i].shape[d]) for i, d in spots})


def _runs_at(model: Any, examples: list[torch.Tensor], sizes: dict[Spot, int]) -> bool:
    """Whether the model runs with the input dims at ``sizes`` (``_grow``)."""
    grown = list(examples)
    for (i, d), new in sizes.items():
        grown[i] = _grow(grown[i], d, new)
    grown = _lengths_grown(examples, grown, {int(examples[i].shape[d]): new for (i, d), new in sizes.items()})
    try:
        with torch.no_grad():
            model(*grown)
    except Exception:  # noqa: BLE001 -- any failure means the model fixes one of these sizes
        return False
    return True


def free_groups(model: Any, examples: list[torch.Tensor]) -> list[list[Spot]]:
    """Groups of input dims the model runs with at twice the example's size, jointly per size."""
    by_size: dict[int, list[Spot]] = {}
    for i, e in enumerate(examples):
        for d, n in enumerate(e.shape):
            by_size.setdefault(int(n), []).append((i, d))
    groups: list[list[Spot]] = []
    for members in by_size.values():
        if _runs(model, examples, members):
            inputs = [i for i, _ in members]
            if len(set(inputs)) < len(inputs):  # two dims of one input: batch and time of one size?
                alone = [m for m in members if _runs(model, examples, [m])]
                groups.extend([m] for m in alone)
                rest = [m for m in members if m not in alone]
                if rest:
                    groups.append(rest)
            else:
                groups.append(members)
        elif len(members) > 1:
            groups.extend(_split_group(model, examples, members))
    return groups


def _split_group(model: Any, examples: list[torch.Tensor], members: list[Spot]) -> list[list[Spot]]:
    """The free groups among same-sized dims the model rejects doubled together: an example batch
    of 2 beside a 2-layer state ``h0 [2, B, H]`` puts the layer dim with the batch dims.  Dims at
    one axis position, or all but those, are tried as groups (largest first), then dims alone."""
    by_axis: dict[int, list[Spot]] = {}
    for m in members:
        by_axis.setdefault(m[1], []).append(m)
    tries = [*by_axis.values(), *([m for m in members if m[1] != ax] for ax in by_axis)]
    found: list[list[Spot]] = []
    taken: set[Spot] = set()
    for cand in sorted((c for c in tries if 1 < len(c) < len(members)), key=len, reverse=True):
        if not taken & set(cand) and _runs(model, examples, cand):
            found.append(cand)
            taken |= set(cand)
    found.extend([m] for m in members if m not in taken and _runs(model, examples, [m]))
    return found


def free_dims(model: Any, examples: list[torch.Tensor], names: list[str]) -> list[tuple[Dim, ...]]:
    groups = free_groups(model, examples)
    batch = next((g for g in groups if _is_batch(model, examples, g)), None)
    if batch is None:  # nothing provably separable (an example batch of 1, or outputs that
        # ``squeeze`` a batch of 1 away): the one group of size 1 -- a time-major [T, 1, F]
        # example's batch is dim 1 -- else the group that reaches the recurrent layers' batch,
        # else the group of dim 0
        ones = [g for g in groups if int(examples[g[0][0]].shape[g[0][1]]) == 1]
        batch = ones[0] if len(ones) == 1 else None
        if batch is None and groups:
            roles = rnn_dims(model, examples, names)
            batch = next((g for g in groups if any(roles[i][d] == "B" for i, d in g)), None)
        if batch is None:
            batch = next((g for g in groups if (0, 0) in g), None)
    tied = _tied(model, examples, names, groups, batch)
    symbol: dict[Spot, str] = {}
    n_time = 0
    for g in groups:
        if g is batch:
            name = "B"
        else:
            name = "T" if n_time == 0 else f"T{n_time}"
            n_time += 1
        for m in g:
            symbol[m] = name
    for spot, (k, factor, offset) in tied.items():
        times = symdims.mul(symdims.const(factor), symdims.atom(symbol[groups[k][0]]))
        symbol[spot] = str(symdims.render(symdims.add(times, symdims.const(offset))))
    return [tuple(symbol.get((i, d), int(n)) for d, n in enumerate(e.shape)) for i, e in enumerate(examples)]


def _tied(model: Any, examples: list[torch.Tensor], names: list[str], groups: list[list[Spot]],
          batch: list[Spot] | None) -> dict[Spot, tuple[int, int, int]]:
    """Dims the model runs with only when another group grows with them, by a factor and an
    offset: spot -> (the group's index in ``groups``, factor, offset).  WaveRNN's samples = hop x
    frames: the samples, doubled alone, fail; doubled with the (free) frames, run -- and with
    ``pad`` context frames each side, samples = hop x (frames - 2 pad).  Two dims neither of which
    the model runs with alone, but does together (audio and its frame features, each required),
    make the smaller a new group in ``groups``.  A tied dim is named ``4*T-16`` after the group's
    symbol.  A dim *smaller* than the free one it moves with would need a division no input size
    guarantees: it stays the example's, and the trace says so.  Nothing is tied to the batch
    (a dim that runs with a larger batch is a length bounded by another, not a multiple of it)."""
    free = {m for g in groups for m in g}
    by_size: dict[int, list[Spot]] = {}
    for i, e in enumerate(examples):
        for d, n in enumerate(e.shape):
            if (i, d) not in free and int(n) > 2:
                by_size.setdefault(int(n), []).append((i, d))
    tied: dict[Spot, tuple[int, int, int]] = {}
    said = []
    for n, members in sorted(by_size.items(), reverse=True):
        if members[0] in tied or any(members[0] in g for g in groups):
            continue
        for k, g in enumerate(groups):
            m = int(examples[g[0][0]].shape[g[0][1]])
            if m < 2 or g is batch:
                continue
            if m > n:
                if _runs(model, examples, [*members, *g]):
                    (i, d), (j, a) = members[0], g[0]
                    said.append(f"{names[i]} dim {d} ({n}) runs at another size only with {names[j]} dim {a} "
                                f"({m}) grown too (bounded by it, or a fraction of it): the Program takes "
                                f"{names[i]} dim {d} at {n} only")
                    break
                continue
            rule = _tie(model, examples, members, g, n, m)
            if rule is not None:
                tied.update((spot, (k, *rule)) for spot in members)
                break
        else:
            for m, others in sorted(by_size.items(), reverse=True):
                rule = _tie(model, examples, members, others, n, m) if m < n and others[0] not in tied else None
                if rule is not None:
                    groups.append(list(others))
                    tied.update((spot, (len(groups) - 1, *rule)) for spot in members)
                    break
    if said:
        warnings.warn("rnnc.trace names a size tied to another only as a multiple of it (plus a constant), so "
                      "these stay the example's: " + "; ".join(said), stacklevel=4)
    return tied


def _tie(model: Any, examples: list[torch.Tensor], members: list[Spot], group: list[Spot], n: int, m: int
         ) -> tuple[int, int] | None:
    """(factor, offset) with ``n = factor * m + offset`` at which the model runs when ``group``
    (size ``m``) doubles and ``members`` (size ``n``) grow by factor x m; the exact multiple is
    tried first, then the next factor (a negative offset: context frames cropped).  A model that
    only needs ``n`` at most so large (it reads a prefix of the longer input) takes the first."""
    for factor in (n // m, n // m + 1):  # (confirmed at three times the size too)
        if factor and all(_runs_at(model, examples, {spot: k * m for spot in group} |
                                   {spot: n + (k - 1) * factor * m for spot in members}) for k in (2, 3)):
            return factor, n - factor * m
    return None


def _is_batch(model: Any, examples: list[torch.Tensor], group: list[Spot]) -> bool:
    """Whether ``group`` is the batch: the model run on sample 1 alone gives sample 1 of the full
    run in every output (a time axis does not: step 1 alone lacks the state from step 0)."""
    from rnnc.tolerances import tolerance

    n = int(examples[group[0][0]].shape[group[0][1]])
    if n < 2:
        return False
    one = list(examples)
    for i, d in group:
        one[i] = one[i].narrow(d, 1, 1)
    try:
        with torch.no_grad():
            full, single = _flat(model(*examples)), _flat(model(*one))
    except Exception:  # noqa: BLE001 -- the model cannot run on one sample: not separable
        return False
    atol, rtol = tolerance("float32", "trace-check")
    found = False
    for f, o in zip(full, single, strict=False):
        if not isinstance(f, torch.Tensor) or f.dim() != o.dim():
            return False
        axes = [a for a in range(f.dim()) if f.shape[a] == n and o.shape[a] == 1]
        if not axes:
            continue
        # a probe, not a comparison that must pass: plain allclose, nothing logged
        # (a sample's other sizes may differ from the batch's: pad_packed_sequence pads to the
        # longest length present, so one short sample comes back shorter -- not separable)
        if not any(f.narrow(a, 1, 1).shape == o.shape and
                   torch.allclose(f.narrow(a, 1, 1).double(), o.double(), atol=atol, rtol=rtol) for a in axes):
            return False
        found = True
    return found


def rnn_dims(model: Any, examples: list[torch.Tensor], names: list[str],
             cells: dict[int, Any] | None = None) -> list[tuple[Dim, ...]]:
    """Symbols for the dims that reach an rnn node's batch/time positions: B, and T, T1, ... for
    independent time axes (an all-dims-symbolic probe conversion shows where each input dim goes)."""
    probe = [tuple(f"{n}_d{i}" for i in range(e.dim())) for n, e in zip(names, examples, strict=True)]
    static = [tuple(int(s) for s in e.shape) for e in examples]
    try:
        from rnnc.frontend.api import _build

        prog = _build(model, examples, probe, names, probing=True, cells=cells)
    except Exception:  # noqa: BLE001 -- a best-effort probe: any failure means "no roles known"
        return static
    batch_dims: list[Dim] = []
    time: set[str] = set()
    types = prog.graph.value_types()
    for node in prog.rnn_nodes():
        x = types[node.inputs[0]].shape
        bf = node.attr("batch_first")
        batch_dims.append(x[0] if bf else x[1])
        time |= symdims.symbols(x[1] if bf else x[0])  # T'5004, ((T+4)//8): sizes computed from T
        if node.inputs[1]:
            batch_dims.append(types[node.inputs[1]].shape[0])
        n_states = len(node.attr("cells")[0].states)
        batch_dims += [types[s].shape[1] for s in node.inputs[2:2 + n_states] if s]
    batch: set[str] = set()
    for d in batch_dims:  # DPRNN's intra-chunk layer runs over batch B*K (K chunks of T): B is the batch
        syms = symdims.symbols(d)
        batch |= (syms - time) or syms
    # independent time axes (an encoder's and a decoder's inputs) get their own symbols, T, T1, ...:
    # one shared symbol would claim at export time that their lengths are equal
    time_names: dict[str, str] = {}
    for p in probe:
        for sym in p:
            if sym in time and sym not in batch and sym not in time_names:
                time_names[sym] = "T" if not time_names else f"T{len(time_names)}"
    out = []
    for p, s in zip(probe, static, strict=True):
        out.append(tuple("B" if sym in batch else time_names.get(sym, n) for sym, n in zip(p, s, strict=True)))
    return out




def _flat(out: Any) -> list[Any]:
    """A model's outputs in the order ``trace`` flattens them (``api._flatten``)."""
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flat(o)]
    if out is None:
        return []
    if hasattr(out, "data") and hasattr(out, "batch_sizes"):  # a PackedSequence: its data
        return [out.data]
    return [out]


def check_at_example(model: Any, program: Any, examples: list[torch.Tensor]) -> str:
    """Why ``program`` disagrees with ``model`` on the example inputs themselves ("" when it
    agrees).  Why: every other check compares at other sizes; a Program wrong at the traced sizes
    (an in-place change torch shows through an alias the trace cannot follow) must not be
    returned as if it held there.  A model that disagrees with itself (it samples noise) is not
    judged."""
    want = _model_outputs(model, examples)
    if want is None or _judge(want, lambda xs: _run(model, xs), examples):
        return ""
    return _judge(want, lambda xs: program.run(*xs), examples)


#: the end of what ``check_at_other_size`` says when a size compared with a number is the cause
BRANCH_KEPT = "and the Program keeps the branch Python took at the example's sizes"


def check_at_other_size(model: Any, program: Any, examples: list[torch.Tensor], dims: list[tuple[Dim, ...]],
                        each: bool = False, near: Sequence[tuple[float, float, str]] = ()) -> str:
    """Why ``program`` disagrees with ``model`` at twice the example's size in every symbolic dim,
    then at twice plus one ("" when it agrees, or when the model itself cannot run there).
    Catches what a trace bakes in without knowing (a Python loop unrolled over the example's
    length, a branch or a pad amount decided by its parity).  ``each``: then every symbol grown
    alone -- a loop rolled over one symbol's length that really runs for another's (a clocked
    loop, ``scan_match.clocked``, counts steps, not reads) agrees wherever both grow alike.
    ``near``: sizes the model compared with numbers (``fx_trace._threshold``): each symbol alone
    at the sizes around each crossing (``_crossings``), which twice the example never reaches."""
    symbols = {s: int(e.shape[d]) for ds, e in zip(dims, examples, strict=True)
               for d, s in enumerate(ds) if isinstance(s, str) and symdims.symbols(s) == {s}}
    tries = [{s: 2 * n for s, n in symbols.items()}, {s: 2 * n + 1 for s, n in symbols.items()}]
    if each and len(symbols) > 1:
        tries += [{**symbols, s: 2 * n} for s, n in symbols.items()]
    for sizes in tries:
        wrong = _compare_grown(model, program, examples, dims, sizes)
        if wrong:
            return wrong
    for sizes, (c, _, line) in _crossings(symbols, near):
        wrong = _compare_grown(model, program, examples, dims, sizes)
        if wrong:
            return f"{wrong}: {line} compares a size with {c} in Python, {BRANCH_KEPT}"
    return ""


def _crossings(symbols: dict[str, int], near: Sequence[tuple[float, float, str]]
               ) -> list[tuple[dict[str, int], tuple[float, float, str]]]:
    """The sizes that cross each comparison ``size <op> c`` the model made: the size was ``v`` at
    the example, so a symbol ``n`` there that the size follows one to one (``T``, ``T - 1``,
    ``len(x)``) crosses at ``n + c - v`` or next to it, whichever the operator, and one it
    follows in proportion (``T // 2``, ``4 * T``) near ``n * c / v``; each symbol alone (the
    others at the example's), sizes of at least 1 that the other checks do not take, at most
    ``MAX_CROSSINGS`` of them, the nearest the example's first."""
    out: list[tuple[dict[str, int], tuple[float, float, str]]] = []
    seen: set[tuple[str, int]] = set()
    for c, v, line in near:
        for s, n in symbols.items():
            centres = [n + c - v] + ([n * c / v] if v > 0 and c > 0 else [])  # (floats: ``T < 9.5``)
            near_ones = (k for x in centres for k in (math.floor(x) - 1, math.floor(x), math.ceil(x), math.ceil(x) + 1))
            for new in dict.fromkeys(near_ones):
                if new >= 1 and new not in (n, 2 * n, 2 * n + 1) and (s, new) not in seen:
                    seen.add((s, new))
                    out.append(({**symbols, s: new}, (c, v, line)))
    # the nearest sizes first: a size that fails is then named by the comparison it crosses
    # first, not by one of a fixed dim whose guessed crossing lies beyond it
    out.sort(key=lambda t: sum(abs(t[0][s] - n) for s, n in symbols.items()))
    return out[:MAX_CROSSINGS]


#: at most this many sizes next to compared numbers are tried (``_crossings``)
MAX_CROSSINGS = 32


def _compare_grown(model: Any, program: Any, examples: list[torch.Tensor], dims: list[tuple[Dim, ...]],
                   sizes: dict[str, int]) -> str:
    """One size of the check: the inputs with each symbol at its size in ``sizes`` (a dim named
    ``4*T`` grows with T).  ``2n + 1`` shows what a model that pads or branches on the length's
    parity (``if t % 2``) bakes in: the example's even answer.  Entries are repeated, the first
    ones most, so sorted lengths stay sorted and token ids stay valid."""
    grown = list(examples)
    for i, ds in enumerate(dims):
        for d, s in enumerate(ds):
            new = symdims.evaluate(s, sizes) if isinstance(s, str) else None
            if new is not None and new != int(grown[i].shape[d]):
                grown[i] = _grow(grown[i], d, new)
    grown = _lengths_grown(examples, grown, {int(e.shape[d]): int(g.shape[d]) for ds, e, g in
                                             zip(dims, examples, grown, strict=True)
                                             for d, s in enumerate(ds) if isinstance(s, str) and s != "B"})
    want = _model_outputs(model, grown)
    return "" if want is None else _judge(want, lambda xs: program.run(*xs), grown)


def _lengths_grown(examples: list[torch.Tensor], grown: list[torch.Tensor], sizes: dict[int, int]
                   ) -> list[torch.Tensor]:
    """``grown`` with each vector of lengths scaled to the grown length: a 1-D integer input whose
    values lie in ``0 .. n`` and reach ``n``, the example size of a dim that grows to ``new``
    (NVIDIA's masks take ``max(lengths)`` as the length, so lengths that stayed at the example's
    would make every longer size look fixed).  The longest stays the longest: ``v * new // n``."""
    out = list(grown)
    for i, (e, g) in enumerate(zip(examples, grown, strict=True)):
        if e.dim() != 1 or e.dtype.is_floating_point or e.dtype == torch.bool or not e.numel():
            continue
        n = int(e.max())
        if n in sizes and sizes[n] != n and int(e.min()) >= 0:  # (a length of at least 1 stays one)
            out[i] = torch.where(g > 0, (g * sizes[n] // n).clamp(min=1), g)
    return out


def _grow(x: torch.Tensor, d: int, new: int) -> torch.Tensor:
    """``x`` with dim ``d`` grown to ``new`` by repeating entries, the first ones once more where
    ``new`` is not a multiple: token ids stay valid and sorted lengths stay sorted."""
    n = int(x.shape[d])
    reps = torch.full((n,), new // n, dtype=torch.long)
    reps[:new % n] += 1
    return x.repeat_interleave(reps, dim=d)


def _model_outputs(model: Any, inputs: list[torch.Tensor]) -> list[Any] | None:
    """The model's outputs on copies of ``inputs`` (it may write into them), None if it fails."""
    try:
        return _flat(_run(model, [x.clone() for x in inputs]))
    except Exception:  # noqa: BLE001 -- the model has no answer there: nothing to compare
        return None


def _run(model: Any, inputs: list[torch.Tensor]) -> Any:
    with torch.no_grad():
        return model(*inputs)


def _judge(want: list[Any], run: Any, inputs: list[torch.Tensor]) -> str:
    """Why ``run`` on copies of ``inputs`` disagrees with ``want``, the model's outputs there
    ("" when it agrees), by the ``trace-check`` tolerance."""
    from rnnc.ir.rnn import HALF_DTYPES
    from rnnc.tolerances import is_close

    shapes = [tuple(x.shape) for x in inputs]
    try:
        got = _flat(run([x.clone() for x in inputs]))
    except Exception as exc:  # noqa: BLE001 -- the Program is wrong there: that is the finding
        return f"at input sizes {shapes} the Program fails ({type(exc).__name__}: {str(exc)[:200]})"
    for k, (g, w) in enumerate(zip(got, want, strict=False)):
        if not isinstance(w, torch.Tensor):
            continue
        if tuple(g.shape) != tuple(w.shape):
            return f"at input sizes {shapes} output {k} has shape {tuple(g.shape)}, the model's {tuple(w.shape)}"
        half = str(w.dtype).removeprefix("torch.")
        if not is_close(g.double(), w.double(), half if half in HALF_DTYPES else "float32", "trace-check"):
            return f"at input sizes {shapes} output {k} differs from the model's"
    return "" if len(got) == len(want) else f"at input sizes {shapes} the Program returns {len(got)} outputs"
