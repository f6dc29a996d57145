"""Output directories of the Triton backend: ``rnnc compile --backend triton -o OUTDIR``.

::

    manifest.json          shared format (``rnnc.backends.manifest``) + per layer (``node.k``): kernel file,
                           Schedule (GPU targets; after compiler feedback, see
                           ``aot.fit_schedule``), launch config, ``feedback`` (every solve/compile
                           round), and per architecture the compiled registers / shared memory /
                           spills next to the prediction
    layer_<n>_<k>.py       the rendered kernel source (what ``load`` imports and launches): one fused
                           kernel, or one chunked-scan kernel per scan component (linear cells)
    layer_<n>_<k>.<sm>.cubin / .ptx   the ahead-of-time compiled kernel per architecture (scan
                           components after the first: layer_<n>_<k>.<sm>.<i>.cubin)
    program.rnnc, weights.pt          the IR and its tensors (the non-rnn nodes run from them)
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path
from typing import Any

from rnnc import __version__
from rnnc.backends.manifest import read_manifest, read_program, write_manifest, write_program
from rnnc.backends.triton.runtime import LayerKernel, TritonProgram, plan_any
from rnnc.ir.printer import layer_key, layer_storage

#: compute capabilities compiled when the target is not a GPU (and always alongside the target's)
DEFAULT_CAPABILITIES = (80, 90)


def _versions() -> dict[str, str]:
    import torch
    import triton

    return {"rnnc": __version__, "triton": triton.__version__, "torch": torch.__version__,
            "python": platform.python_version()}


def compile_to_dir(program: Any, target: Any, outdir: str | Path, batch: int = 1, aot: bool = True,
                   **_: Any) -> dict[str, Any]:
    """Render, AOT-compile and describe every layer of ``program`` into ``outdir``."""
    from rnnc.backends.triton import TRITON_BACKEND, kernel_at, layer_kernels, schedule_for
    from rnnc.backends.triton.aot import compile_for, fit_schedule
    from rnnc.errors import UnsupportedError
    from rnnc.ir.rnn import rnn_layout

    ok, why = TRITON_BACKEND.supports(program, target)
    if not ok:
        raise UnsupportedError(why)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    gpu = getattr(target, "gpu", None)
    caps = sorted({*DEFAULT_CAPABILITIES, *([10 * gpu.compute_capability[0] + gpu.compute_capability[1]]
                                             if gpu is not None else [])})
    layers: dict[str, dict[str, Any]] = {}
    storage = layer_storage(program)
    for key, kernels in layer_kernels(program, target, batch, fit=False).items():
        node = next(n for n in program.rnn_nodes() if n.outputs[0] == key)
        for k, (lk, cell) in enumerate(zip(kernels, rnn_layout(node.attr_dict)[0], strict=True)):
            stem = f"layer_{key}_{k}"
            fit = None
            if gpu is not None and aot:  # compiler feedback on the target's own architecture
                cap = 10 * gpu.compute_capability[0] + gpu.compute_capability[1]
                fit = fit_schedule(cell, target, cap, batch, storage[layer_key(cell)])
                lk = kernel_at(cell, fit.schedule, storage[layer_key(cell)])
            (out / f"{stem}.py").write_text(lk.source)
            entry: dict[str, Any] = {"node": key, "layer": k, "cell": cell.kind, "source": f"{stem}.py",
                                     "path": "chunkwise" if lk.is_chunk else "chunked scan" if lk.is_scan
                                     else "fused single-block",
                                     "resources": {}, "knobs": lk.knobs}
            if lk.multi_block:  # the persistent launch a GPU runs (per-step launches as the fallback)
                entry.update(path="fused multi-block", variant="persistent grid-sync",
                             grid=list(lk.grid(batch)), fallback="one launch per step")
            if gpu is not None:
                entry["schedule"] = (fit.schedule if fit else schedule_for(cell, target, batch)).to_dict()
            if fit is not None:  # every solve/compile round: predictions next to what ptxas reported
                entry["feedback"] = {"rounds": fit.rounds, "converged": fit.converged}
            for cc in caps if aot else ():
                try:
                    res = compile_for(lk, cc, str((out / f"{stem}.sm_{cc}").resolve()))
                except Exception as exc:  # noqa: BLE001 - an arch the bundled compiler lacks is reported
                    entry["resources"][f"sm_{cc}"] = {"error": str(exc)[:300]}
                    continue
                entry["resources"][f"sm_{cc}"] = {**res.to_dict(), "registers": res.registers_per_thread,
                                                  "shared_bytes": res.shared_memory_per_block}
            layers[f"{key}.{k}"] = entry
    manifest = {"backend": "triton", "target": target.tag, "versions": _versions(), "layers": layers,
                **write_program(out, program)}
    return write_manifest(out, manifest)


def load(outdir: str | Path) -> TritonProgram:
    """The callable Program of a Triton output directory (kernels imported from its sources)."""
    from rnnc.backends.triton.plan import split_hidden
    from rnnc.ir.rnn import rnn_layout

    manifest = read_manifest(outdir)
    program = read_program(outdir, manifest)
    kernels: dict[str, list[LayerKernel]] = {}
    for node in program.rnn_nodes():
        cells = rnn_layout(node.attr_dict)[0]
        row = []
        for k, cell in enumerate(cells):
            entry = manifest["layers"][f"{node.outputs[0]}.{k}"]
            source = Path(outdir, entry["source"]).read_text()
            knobs = entry["knobs"]
            plan = plan_any(cell, chunkwise=entry.get("path") != "chunked scan")
            if knobs.get("hidden_tile"):  # multi-block kernel: the same split as at compile time
                plan = split_hidden(plan, int(knobs["hidden_tile"]))
            if knobs.get("storage"):  # a 16-bit model's fused kernel
                plan = dataclasses.replace(plan, storage=str(knobs["storage"]))
            row.append(LayerKernel(plan, source, int(knobs.get("batch_tile", 1)), int(knobs["warps"]),
                                   int(knobs.get("chunk", 0)), int(knobs.get("tile", 0)),
                                   int(knobs.get("hidden_tile", 0))))
        kernels[node.outputs[0]] = row
    return TritonProgram(program, kernels)
