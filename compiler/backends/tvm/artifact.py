"""Output directories of the TVM backend: ``rnnc compile --backend tvm -o OUTDIR``.

::

    manifest.json     shared format (``rnnc.backends.manifest``) + per layer direction: function
                      name, plan (stages, packed params), knobs, Schedule, unused Schedule params
    layers.so         every layer function, exported with TVM's ``export_library`` (load it
                      with ``tvm.runtime.load_module``; the calling convention is in ``layer.py``)
    params.npz        the functions' weight arguments by function and argument name, already
                      packed (linear weights in ``[out/jt, in, jt]`` tiles, ``layer.pack_weight``):
                      what a deployment without rnnc passes
    layers.tir.py     the TVMScript of the functions (readable, for review and debugging)
    program.rnnc      the IR;  weights.pt: its tensors (``rnnc.load`` runs the non-rnn nodes)
    <fn>.<arch>.cu    for GPU targets: the CUDA source per architecture, with nvcc's
                      per-kernel registers / shared memory / spills in the manifest
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from rnnc import __version__
from rnnc.backends.manifest import read_manifest, read_program, write_manifest, write_program
from rnnc.backends.tvm.build import LayerFn, build, layer_functions, llvm_target
from rnnc.backends.tvm.layer import pack_weight, packed_tiles, param_arg_name
from rnnc.backends.tvm.runtime import TvmProgram
from rnnc.ir.graph import Program
from rnnc.ir.rnn import rnn_layout

CUDA_ARCHS = ("sm_80", "sm_90")


def _versions() -> dict[str, str]:
    import torch
    import tvm

    return {"rnnc": __version__, "tvm": tvm.__version__, "torch": torch.__version__,
            "python": platform.python_version()}


def _target(target: Any) -> Any:
    from rnnc.targets import get

    return get(target or "cpu/host") if isinstance(target, str) or target is None else target


def packed_params(program: Program, fns: list[LayerFn]) -> dict[str, Any]:
    """``"<function>.<argument>" -> numpy array`` for every weight argument of every function."""
    out: dict[str, Any] = {}
    for ni, node in enumerate(program.rnn_nodes()):
        cells, dirs, _ = rnn_layout(node.attr_dict)
        weights = list(node.inputs[2 + len(cells[0].states):])
        at = 0
        for k, cell in enumerate(cells):
            for d in range(dirs):
                f = next(f for f in fns if (f.node, f.layer, f.direction) == (ni, k, d))
                for p in cell.param_names:
                    tensor = program.weights[weights[at]]
                    jt = packed_tiles(f.plan, f.knobs).get(p)
                    packed = pack_weight(tensor, jt) if jt is not None else tensor
                    out[f"{f.name}.{param_arg_name(f.plan, p)}"] = packed.numpy()
                    at += 1
    return out


def _layer_entry(f: LayerFn) -> dict[str, Any]:
    plan = f.plan
    return {"function": f.name, "path": "tir", "cell": plan.cell.kind, "layer": f.layer, "direction": f.direction,
            "stages": {s: [n.outputs[0] for n in plan.nodes(s)] for s in ("prologue", "hoisted", "step")},
            "materialized": sorted(plan.materialized), "packed": sorted(plan.packed),
            "knobs": f.knobs.to_dict(), "schedule": f.schedule.to_dict() if f.schedule is not None else None,
            "schedule_unused": list(f.knobs.unused),
            "schedule_note": "time loop is serial for every cell (no chunked scan); Schedule params listed in "
                             "schedule_unused do not shape the TIR loops" if f.knobs.unused else ""}


def compile_to_dir(program: Program, target: Any, outdir: str | Path, schedule: Any = None, batch: int = 1,
                   archs: tuple[str, ...] = CUDA_ARCHS) -> dict[str, Any]:
    """Write the output directory (module docstring) and return the manifest."""
    import numpy as np

    spec = _target(target)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    gpu = getattr(spec, "gpu", None) is not None
    # the CPU build is always there: it is what rnnc.load runs (a GPU target's numerics on the CPU)
    cpu_spec = _target("cpu/host") if gpu else spec
    fns, prims = layer_functions(program, cpu_spec, schedule if not gpu else None, batch)
    executable = build(prims, llvm_target())
    executable.export_library(str(out / "layers.so"))
    (out / "layers.tir.py").write_text("\n\n".join(p.script() for p in prims.values()))
    np.savez(out / "params.npz", **packed_params(program, fns))
    layers = {f.name: _layer_entry(f) for f in fns}
    if gpu:
        from rnnc.backends.tvm.cuda import compile_cuda_layers

        for name, entry in compile_cuda_layers(program, spec, out, schedule, batch, archs).items():
            layers[name]["cuda"] = entry
    manifest = {"backend": "tvm", "target": spec.tag, "versions": _versions(), "layers": layers,
                "library": "layers.so", "params": "params.npz", "tvm_target": str(llvm_target()),
                **write_program(out, program)}
    return write_manifest(out, manifest)


def load(outdir: str | Path) -> TvmProgram:
    """The callable program of a TVM output directory (runs ``layers.so`` on this CPU)."""
    import tvm

    out = Path(outdir)
    manifest = read_manifest(out)
    program = read_program(out, manifest)
    fns, _ = layer_functions(program, _target("cpu/host"), None, 1)  # plans only: cheap, no compile
    executable = tvm.runtime.load_module(str(out / manifest["library"]))
    return TvmProgram(program, executable, fns)
