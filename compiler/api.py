"""``rnnc.compile``: trace, schedule (a tuning record first, else the backend's untuned default:
``rnnc.tune.resolve``), render, build,
and hand back a module with the original call signature.

Backend choice is data, not dispatch: for a target kind there is a preference order, and each
registered backend answers ``supports(program, target)``; the first that says yes wins and the
reasons of the others are kept, so ``explain`` can say which backend was picked and why.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from rnnc.errors import RnncError, UnsupportedError, UserInputError

#: Backends that can *run* compiled layers in this process, best first, per target kind.
#: A GPU target's kernels run their C-dialect twin on the CPU when no GPU is present.
PREFERENCE: dict[str, tuple[str, ...]] = {"cpu": ("c", "tvm"), "gpu": ("cuda", "c")}


@dataclass(frozen=True)
class Choice:
    """Which backend was picked for which target, and why the others were not."""

    backend: str
    target: str
    reasons: tuple[tuple[str, str], ...] = ()
    schedules: tuple[tuple[str, str], ...] = field(default=())  # layer key -> where its schedule came from
    note: str = ""

    def explain(self) -> str:
        lines = [f"backend {self.backend} for {self.target}" + (f" ({self.note})" if self.note else "")]
        lines += [f"  skipped {name}: {why}" for name, why in self.reasons]
        lines += [f"  layer {key}: schedule from {src}" for key, src in self.schedules]
        return "\n".join(lines)


def _target_kind(target: Any) -> str:
    return "gpu" if getattr(target, "gpu", None) is not None else "cpu"


def _verdict(program: Any, target: Any, name: str) -> tuple[bool, str]:
    """Whether backend ``name`` takes ``program`` for ``target``, and why not."""
    from rnnc.backends import get_backend

    try:
        return get_backend(name).supports(program, target)
    except UserInputError as exc:  # backend not installed / registered
        return False, str(exc)


def able_backends(program: Any, target: Any) -> list[str]:
    """The backends of the target kind's preference order that can compile ``program``."""
    return [name for name in PREFERENCE[_target_kind(target)] if _verdict(program, target, name)[0]]


class NoBackendError(UnsupportedError):
    """No backend takes the program; ``reasons`` holds (backend, why) for each one asked."""

    def __init__(self, message: str, reasons: tuple[tuple[str, str], ...]) -> None:
        super().__init__(message)
        self.reasons = reasons


def choose_backend(program: Any, target: Any, backend: str | None = None) -> Choice:
    """The backend to use: ``backend`` if given and able, else the first able one by preference."""
    names = (backend,) if backend else PREFERENCE[_target_kind(target)]
    reasons: list[tuple[str, str]] = []
    for name in names:
        ok, why = _verdict(program, target, name)
        if ok:
            return Choice(name, target.tag, tuple(reasons))
        reasons.append((name, why))
    detail = "; ".join(f"{n}: {w}" for n, w in reasons)
    raise NoBackendError(f"no backend can compile this model for {target.tag} ({detail})", tuple(reasons))


class CompiledModule(torch.nn.Module):
    """The compiled model: same call signature as the traced one; recurrent layers run as
    compiled kernels, the rest through the IR interpreter's torch ops."""

    def __init__(self, program: Any, runner: Any, choice: Choice) -> None:
        super().__init__()
        self.program = program
        self.runner = runner
        self.choice = choice

    def forward(self, *inputs: Any) -> Any:
        return self.runner(*inputs)

    def __call__(self, *inputs: Any) -> Any:
        """Straight to the runner: nn.Module's hook machinery costs microseconds per call, which a
        32 ms streaming chunk run natively in ~100 us notices (a compiled module has no hooks)."""
        return self.runner(*inputs)

    def explain(self) -> str:
        """The choice and its reasons; and, unless one engine runs the model whole, the operators
        rnnc has no op of its own for (the IR's ``aten`` nodes), which run in torch."""
        text = self.choice.explain()
        if hasattr(self.runner, "explain_lines"):  # what the last call did (parallel-in-time runners)
            text = "\n".join([text, *self.runner.explain_lines()])
        lines = self.program.lines
        in_torch = sorted({f"aten.{n.attr('target')}" + (f" ({lines[n.outputs[0]]})" if n.outputs[0] in lines else "")
                           for n in self.program.graph.nodes if n.op == "aten"})
        if in_torch and self.choice.backend != "onnx":
            text += "\n  runs in torch (no rnnc op): " + ", ".join(in_torch)
        return text

    def stream(self, batch: int = 1, states: int | None = None) -> Any:
        """Streaming step API: the C backend's per-step stepper (``step(x_t) -> y_t``, state
        preallocated) for a program that is one ``rnn`` node; otherwise, for a model whose last
        inputs come back as its last outputs (``prob, state = model(chunk, state)``), a stepper
        that keeps that state inside (``rnnc.streaming``; ``states``: how many trailing inputs are
        state, guessed by type when None), whichever engine runs the model."""
        from rnnc.streaming import WholeStream, state_count

        single = len(self.program.graph.nodes) == 1 and self.program.graph.nodes[0].op == "rnn"
        if hasattr(self.runner, "stream") and single and states is None:
            return self.runner.stream(batch)
        if state_count(self.program):
            return WholeStream(self.runner, self.program, batch, states)
        if hasattr(self.runner, "stream"):
            return self.runner.stream(batch)  # says why it cannot stream this program
        raise UnsupportedError(f"backend {self.choice.backend} has no streaming step API, and the model has no "
                               f"state inputs that come back as its last outputs")


def compile(model: Any, example_inputs: Sequence[Any] | None = None, target: str | Any = "cpu/host",
            backend: str | None = None, *, batch: int | None = None, use_db: bool = True,
            measure: bool = True, time_parallel: str | None = None) -> CompiledModule:
    """Compile ``model`` (an ``nn.Module``, TorchScript module or ``Program``) for ``target``.

    ``backend=None`` picks the best able backend (see :data:`PREFERENCE`); the module's
    ``explain()`` says which and why; with tuned records for every layer in several backends, the
    fastest recorded backend wins.  Schedules come from the tuning database when it has a verified
    record for the layer, target and backend, else from the backend's untuned default, and
    ``explain()`` names each layer's source (``rnnc.tune.resolve``).  A CPU model with
    non-recurrent ops, or with matrix-state layers (which the export writes as onnxruntime's
    ``LinearAttention``), is also planned as one native C program (``native``:
    ``rnnc.backends.cstyle.whole``) and run whole by onnxruntime on rnnc's export, and the fastest
    on ``example_inputs`` is kept (``measure=False`` skips that; ``rnnc.engines.whole_model_may_win``).

    ``time_parallel="newton"``: every recurrent layer is solved parallel-in-time by Newton's method
    (DEER / ParaRNN, ``rnnc.lower.newton``): exact, diagonal or block-diagonal Jacobians, picked per
    layer by measurement on ``example_inputs`` (``"newton-full"``/``"newton-diag"``/``"newton-block"``
    fix the method and skip the timing runs); a sequence that does not converge is finished step
    by step with a warning.  Jacobians come from the cell's step graph in torch; each Newton
    step's linear recurrence runs as torch's scan (``backend=None``), as the C chunked scan over
    the CPU's threads (``backend="c"``, ``rnnc.lower.newton_scan``) or as Triton kernels
    (``"triton"``, ``rnnc.backends.triton.newton``); ``explain()`` reports each layer's method,
    iterations and final residual after a call, and the cost model's verdict for ``target``.
    """
    from rnnc.engines import whole_model_may_win
    from rnnc.frontend import trace
    from rnnc.ir import Program
    from rnnc.targets import get
    from rnnc.tune.resolve import fastest_backend, resolve_schedules

    if isinstance(model, Program):
        program = model
    else:
        if example_inputs is None:
            raise UserInputError("rnnc.compile needs example_inputs to trace a torch model")
        program = trace(model, tuple(example_inputs))
    tgt = get(target) if isinstance(target, str) else target
    if time_parallel is not None:
        return _time_parallel(program, tgt, backend, time_parallel, example_inputs if measure else None)
    if backend is None and not program.rnn_nodes():
        none = "the program has no recurrent layer to compile"
        return _whole_model(program, tgt, example_inputs if measure else None,
                            [(n, none) for n in PREFERENCE[_target_kind(tgt)]])
    try:
        choice = choose_backend(program, tgt, backend)
    except NoBackendError as exc:
        if backend is not None:
            raise
        return _whole_model(program, tgt, example_inputs if measure else None, list(exc.reasons))
    if batch is None:
        batch = example_batch(program, example_inputs)
    note = ""
    resolved = None
    if backend is None and use_db:  # the backend is part of the search: the fastest measured one wins
        able = able_backends(program, tgt)
        best, per, why = fastest_backend(program, tgt, able, batch)
        if best is not None:
            choice = Choice(best, tgt.tag, tuple(
                (n, f"slower in its tuned records ({why})" if per[n].fully_measured
                 else "no measured tuning record for every layer") for n in able if n != best))
            resolved, note = per[best], why
        else:  # no backend fully tuned: the preference order's pick, already resolved above
            resolved = per.get(choice.backend)
    if resolved is None:
        resolved = resolve_schedules(program, tgt, choice.backend, batch, use_db=use_db)
    schedules = resolved.schedules
    mixed = _mixed_runner(program, tgt, choice.backend, per, batch) if backend is None and use_db else None
    if mixed is not None:
        runner, per_node = mixed
        note = "; ".join(filter(None, [note, "each rnn node on its fastest tuned backend: " + "; ".join(per_node)]))
        for b, built in runner.runners.items():  # is each kernel the one its record timed?
            per[b].check_built(b, built)
        resolved = _merged(per, runner.assign, program)  # (checked: the merge carries no identities)
    else:
        runner = _runner(program, tgt, choice.backend, schedules or None, batch)
    ran = runner.describe() if hasattr(runner, "describe") else ""
    if _target_kind(tgt) == "gpu" and not torch.cuda.is_available():
        ran = ("the kernels' C-dialect twin runs on this CPU (" + ran + ")" if ran else "the kernels run on this CPU"
               + (" in Triton's interpreter" if os.environ.get("TRITON_INTERPRET") == "1" else ""))
        ran = "no GPU here: " + ran
    note = "; ".join(filter(None, [note, ran]))
    resolved.check_built(choice.backend, runner)
    sources = list(resolved.provenance.items())
    choice = Choice(choice.backend, choice.target, choice.reasons, tuple(sources), note)
    if backend is None and measure and example_inputs is not None and _target_kind(tgt) == "cpu" \
            and whole_model_may_win(program):
        choice, runner = _whole_model_choice(program, tgt, choice, runner, tuple(example_inputs))
    return CompiledModule(program, runner, choice)


def example_batch(program: Any, inputs: Sequence[Any] | None) -> int:
    """The batch the example inputs carry, for the schedules to be solved for: the first recurrent
    layer's batch dimension when its input is a model input (``batch_first`` says which dimension;
    ``nn.LSTM``'s default is time-major), else the first input's leading dimension; 1 without
    inputs."""
    if not inputs:
        return 1
    names = program.graph.input_names
    for node in program.rnn_nodes():
        if node.inputs[0] in names:
            x = inputs[names.index(node.inputs[0])]
            if hasattr(x, "shape") and len(x.shape) == 3:
                return int(x.shape[0 if node.attr_dict.get("batch_first") else 1])
            if hasattr(x, "shape") and len(x.shape) == 2:  # an unbatched [T, I] sequence
                return 1
        break
    first = inputs[0]
    return int(first.shape[0]) if hasattr(first, "shape") and len(first.shape) else 1


#: ``compile(time_parallel=...)`` values: Newton with the method measured, or fixed
TIME_PARALLEL = ("newton", "newton-full", "newton-diag", "newton-block")


def _time_parallel(program: Any, target: Any, backend: str | None, how: str,
                   inputs: Sequence[Any] | None) -> CompiledModule:
    """``compile(..., time_parallel=how)``: the Newton runner (see :func:`compile`)."""
    from rnnc.ir.printer import layer_cells
    from rnnc.lower.newton import NewtonProgram, block_layout, pick_methods

    if how not in TIME_PARALLEL:
        raise UserInputError(f"unknown time_parallel {how!r}; rnnc knows {', '.join(TIME_PARALLEL)}")
    if backend not in NEWTON_SCANS:
        raise UnsupportedError(f"time_parallel='newton' solves each Newton step's linear recurrence in torch "
                               f"(backend None or 'newton'), in C ('c') or in Triton ('triton'); the {backend} "
                               f"backend has no parallel-in-time kernel yet")
    if not program.rnn_nodes():
        raise UserInputError("time_parallel='newton' needs a recurrent layer; this model has none")
    scan = newton_scan(NEWTON_SCANS[backend], target)
    if how == "newton":
        methods, notes = pick_methods(program, inputs, scan)
    else:
        fixed = how.removeprefix("newton-")
        methods = dict.fromkeys(layer_cells(program), fixed)
        if fixed == "block":  # a cell the method cannot group says so now, not at the first call
            for cell in layer_cells(program).values():
                block_layout(cell)
        notes = [f"Newton {fixed} (asked for)"]
    where = {"c": "the C chunked scan over threads", "triton": "the Triton chunked scan"}.get(
        getattr(scan, "name", ""), "the torch reference")
    choice = Choice("newton", target.tag, (), (), f"parallel in time, {where}; " + "; ".join(notes))
    return CompiledModule(program, NewtonProgram(program, methods, scan=scan, target=target), choice)


#: ``compile(backend=..., time_parallel=...)``: which linear-recurrence solver runs each Newton step
NEWTON_SCANS = {None: "torch", "newton": "torch", "c": "c", "triton": "triton"}


def newton_scan(name: str, target: Any = None) -> Any:
    """The ``scan`` of ``rnnc.lower.newton.solve`` by name: None for torch, else the C or Triton one."""
    if name == "torch":
        return None
    if name == "c":
        from rnnc.backends.cstyle.newton_scan import CScan

        return CScan(target if getattr(target, "cpu", None) is not None else None)
    if name == "triton":
        from rnnc.backends.triton.newton import TritonScan

        return TritonScan()
    raise UserInputError(f"unknown Newton scan {name!r}; rnnc knows torch, c, triton")


def _engine_runners(program: Any, target: Any) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Runners of the whole-model engines that take ``program`` (``rnnc.engines``), and why the
    others do not: an engine that cannot take a model is a reason, not a failure."""
    from rnnc.engines import WHOLE_MODEL_ENGINES

    runners: dict[str, Any] = {}
    skipped: list[tuple[str, str]] = []
    for name in WHOLE_MODEL_ENGINES:
        try:
            ok, why = _verdict(program, target, name)
            if ok:
                runners[name] = _runner(program, target, name, None)
            else:
                skipped.append((name, why))
        except RnncError as exc:
            skipped.append((name, str(exc)))
        except Exception as exc:  # noqa: BLE001 -- an optional engine must never fail the compile
            skipped.append((name, f"could not be built ({type(exc).__name__}: {exc})"))
    return runners, skipped


def _whole_model(program: Any, target: Any, inputs: Sequence[Any] | None,
                 declined: list[tuple[str, str]]) -> CompiledModule:
    """A model no kernel backend takes (no recurrent layer left, or a cell step with an op they
    cannot lower) is still compiled, never refused: onnxruntime on rnnc's export on a CPU where it
    exports, else the IR interpreter (torch ops); with example inputs both are timed and the
    faster kept.  ``explain()`` lists why each kernel backend declined."""
    from rnnc.engines import describe, fastest

    runners: dict[str, Any] = {"interp": program.run}
    reasons = list(declined)
    if _target_kind(target) == "cpu":
        engines, skipped = _engine_runners(program, target)
        runners.update(engines)
        reasons += skipped
    best, note = ("onnx" if "onnx" in runners else "interp"), "no kernel backend takes this model: it runs whole"
    if inputs is not None and len(runners) > 1:
        best, times = fastest(runners, tuple(inputs))
        note = f"{note}; {describe(times, best)}"
    reasons += [(n, "slower on this model") for n in runners if n != best]
    return CompiledModule(program, runners[best], Choice(best, target.tag, tuple(reasons), (), note))


def _native_runner(runner: Any, target: Any, inputs: tuple[Any, ...]) -> tuple[Any, str]:
    """The ``native`` engine over the C backend's ``runner`` (``rnnc.backends.cstyle.whole``: the
    whole program, layer kernels included, as one C function), or why it cannot take the model."""
    from rnnc.backends.cstyle.program import CompiledProgram
    from rnnc.backends.cstyle.whole import NativeProgram

    if type(runner) is not CompiledProgram:
        return None, "runs the C backend's kernels on a CPU only"
    try:
        return NativeProgram(runner, target, inputs), ""
    except UnsupportedError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 -- an optional engine must never fail the compile
        return None, f"could not be planned ({type(exc).__name__}: {exc})"


def _whole_model_choice(program: Any, target: Any, choice: Choice, runner: Any,
                        inputs: tuple[Any, ...]) -> tuple[Choice, Any]:
    """The kernel backend's runner against whole-model engines, timed on the example inputs
    (``rnnc.engines``); the fastest is kept and ``explain()`` shows every time."""
    from rnnc.engines import describe, fastest

    engines, skipped = _engine_runners(program, target)
    runners = {choice.backend: runner, **engines}
    if choice.backend == "c":
        native, why = _native_runner(runner, target, inputs)
        if native is not None:
            runners["native"] = native
        else:
            skipped.append(("native", why))
    if len(runners) == 1:
        return Choice(choice.backend, choice.target, (*choice.reasons, *skipped), choice.schedules, choice.note), runner
    best, times = fastest(runners, inputs)
    why = describe(times, best)
    reasons = (*choice.reasons, *skipped, *((n, f"slower on this model ({why})") for n in runners if n != best))
    note = "; ".join(filter(None, [choice.note if best in (choice.backend, "native") else "", why]))
    schedules = (choice.schedules if best in (choice.backend, "native")
                 else (("whole model", "onnxruntime's own kernels"),))
    return Choice(best, choice.target, reasons, schedules, note), runners[best]


#: backends whose CPU runners run one rnn node at a time (``run_rnn``), so a program can mix them
MIXABLE = {"c", "tvm"}


def _mixed_runner(program: Any, target: Any, default: str, per: dict[str, Any], batch: int
                  ) -> tuple[Any, list[str]] | None:
    """A runner with each ``rnn`` node on the backend its tuned records measure fastest for that
    node (``rnnc.backends.mixed``), and a line per node; None when one backend serves every node
    as well (then the single-backend runner is built as before).  Nodes without measured records
    stay on ``default``."""
    from rnnc.backends.mixed import MixedProgram
    from rnnc.tune.resolve import node_backends

    if _target_kind(target) != "cpu":  # the GPU runners drive whole programs (no per-node entry)
        return None
    assign, lines = node_backends(program, per)
    assign = {n.outputs[0]: assign.get(n.outputs[0], default) for n in program.rnn_nodes()}
    used = sorted(set(assign.values()))
    if len(used) < 2 or not set(used) <= MIXABLE:
        return None
    runners = {b: _runner(program, target, b, per[b].schedules or None, batch) for b in used}
    return MixedProgram(program, runners, assign), lines


def _merged(per: dict[str, Any], assign: dict[str, str], program: Any) -> Any:
    """One Resolved naming, per layer, the backend its node runs on and where its schedule came from."""
    from rnnc.ir import layer_key
    from rnnc.tune.resolve import Resolved

    out = Resolved()
    for node in program.rnn_nodes():
        b = assign[node.outputs[0]]
        for cell in node.attr("cells"):
            key = layer_key(cell)  # a layer shared by nodes on two backends is named once, by the first
            out.provenance.setdefault(key, f"{b}: {per[b].provenance[key]}")
            for mine, theirs in ((out.schedules, per[b].schedules), (out.times, per[b].times)):
                if key in theirs:
                    mine.setdefault(key, theirs[key])
    return out


def _runner(program: Any, target: Any, backend: str, schedules: dict[str, Any] | None, batch: int = 1) -> Any:
    from rnnc.backends import get_backend

    b = get_backend(backend)
    if not hasattr(b, "runnable"):
        raise UnsupportedError(f"backend {backend} cannot run in this process")
    return b.runnable(program, target, schedules, batch=batch)
