"""Whole Programs on a GPU: the CUDA dialect's layer kernels driven from torch CUDA tensors.

The GPU twin of :mod:`rnnc.backends.cstyle.program` / :mod:`~rnnc.backends.cstyle.runtime`:
the same calling convention (scalars ``sc``, buffers in ``Kernel.args`` then ``Kernel.work``
order), the same weight packing (``Kernel.packs``), the same ``RnnRunner`` (one layer stack), but the tensors
live on the GPU in the kernel's storage dtype (``x``, ``y`` and weights fp32/fp16/bf16; states
and scratch fp32) and the kernel is launched through :mod:`~rnnc.backends.cstyle.cuda_driver`.
Non-recurrent nodes run through the IR's torch semantics on the same device.

Indices inside the kernels are 32-bit: every tensor must stay below 2**31 elements.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rnnc.backends.cstyle.cuda_driver import CudaKernel, driver, pick_cubin
from rnnc.backends.cstyle.runtime import RnnRunner, bound_tensors, host_projections, launch_values
from rnnc.backends.cstyle.variants import VARIANTS
from rnnc.errors import UnsupportedError, UserInputError
from rnnc.ir.graph import Program
from rnnc.ir.interp import check_inputs, run_graph
from rnnc.ir.printer import layer_cells, layer_key, layer_storage
from rnnc.ir.rnn import direction_params, rnn_layout
from rnnc.lower.loopnest import Kernel, eval_int, has_grid_barrier

_TORCH_DTYPES = ("float32", "float16", "bfloat16")


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


class CudaLayerRunner:
    """One (layer, direction) on the GPU: packed weights resident on the device."""

    def __init__(self, kernel: Kernel, launcher: CudaKernel, params: Mapping[str, Any], device: Any) -> None:
        import torch

        self.kernel, self.launcher, self.device = kernel, launcher, device
        self.dtype = kernel.meta.get("knobs", {}).get("dtype", "float32")
        store = _torch_dtype(self.dtype)
        self.tensors: dict[str, Any] = {}
        dtype = {b.name: torch.int8 if b.dtype == "int8" else (store if b.dtype == "param" else torch.float32)
                 for b in kernel.args}
        for b in kernel.args:
            if b.name.startswith("p_"):
                self.tensors[b.name] = params[b.name[2:]].detach().to(device=device, dtype=dtype[b.name]).contiguous()
        for p in kernel.packs:  # int8 codes packed as floats when the knobs widen them (exact)
            src = self.tensors[p.src].reshape(p.shape).permute(p.perm)
            self.tensors[p.buf] = src.to(dtype[p.buf]).contiguous()
        # input projections cuBLAS computes before the kernel (Knobs.host_gemm): buffer -> fp32
        # weight [I, G*H]; fp32 so a 16-bit model's projection is not rounded before the gate math
        self.hosted = {buf: self.tensors[w].t().float().contiguous()
                       for buf, w in kernel.meta.get("host_gemm", {}).items()}
        self._work: dict[tuple[int, int], list[Any]] = {}
        self._dummy_len = torch.zeros(1, dtype=torch.int64, device=device)
        self.state_names = [b.name[2:] for b in kernel.args if b.name.startswith("s_")]

    def work(self, batch: int, steps: int) -> list[Any]:
        import torch

        key = (batch, steps)
        if key not in self._work:
            env = {"B": batch, "T": steps}
            self._work[key] = [torch.empty(max(1, eval_int(b.size, env)), dtype=torch.float32, device=self.device)
                               for b in self.kernel.work]
        return self._work[key]

    def run(self, x: Any, y: Any, y_off: int, states: Sequence[Any], lengths: Any = None,
            reverse: bool = False) -> None:
        import torch

        steps, batch = int(x.shape[0]), int(x.shape[1])
        if steps == 0:
            return
        vals = launch_values(x, y, y_off, self.launcher.grid, reverse, lengths)
        st = dict(zip(self.state_names, states, strict=True))
        host_projections(self.hosted, x, self.tensors)  # one GEMM over all T*B rows, off the critical path
        ptrs = [t.data_ptr() for t in bound_tensors(self.kernel, x, y, lengths, st, self.tensors, self._dummy_len)]
        ptrs += [t.data_ptr() for t in self.work(batch, steps)]
        sc = torch.tensor([vals[n] for n in self.kernel.scalars], dtype=torch.int64, device=self.device)
        bufs = torch.tensor(ptrs, dtype=torch.int64, device=self.device)
        # sc/bufs are freed back to torch's stream-ordered allocator after this call, so later
        # work on the same stream cannot reuse them before the kernel has read them
        # a kernel without a grid barrier (generic path: one block per sample) fills the GPU with
        # the batch at hand; a cooperative one runs its Schedule's co-resident grid
        self.launcher.launch(sc, bufs, torch.cuda.current_stream(self.device).cuda_stream,
                             grid=0 if self.launcher.cooperative else batch)


class CudaProgram:
    """A Program whose recurrent layers run as CUDA kernels on the current GPU.

    ``layers`` maps a layer key to ``(kernel, launcher)``.  Inputs may be CPU or CUDA tensors;
    outputs come back where the first input was (so code written for the CPU twin, or for the
    torch module, runs unchanged), computed on the GPU either way."""

    def __init__(self, program: Program, layers: Mapping[str, tuple[Kernel, CudaKernel]]) -> None:
        import torch

        self.program = program
        self.layers = layers
        self.device = torch.device("cuda", driver().ordinal)
        self.weights = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in program.weights.items()}
        self.rnns: dict[str, RnnRunner] = {}
        for node in program.rnn_nodes():
            cells, dirs, _ = rnn_layout(node.attr_dict)
            per_direction = direction_params(node.attr_dict, node.inputs[2 + len(cells[0].states):])
            runners = []
            for k, cell in enumerate(cells):
                kernel, launcher = layers[layer_key(cell)]
                row = []
                for d in range(dirs):
                    try:
                        params = {p: self.weights[n] for p, n in per_direction[k * dirs + d].items()}
                    except KeyError as exc:
                        raise UnsupportedError(f"rnn weight {exc} is computed inside the graph; the CUDA backend "
                                               f"needs weights stored in the Program") from None
                    row.append(CudaLayerRunner(kernel, launcher, params, self.device))
                runners.append(row)
            first = runners[0][0]
            self.rnns[node.outputs[0]] = RnnRunner(runners, cells, node.attr_dict["batch_first"], device=first.device,
                                                   store=_torch_dtype(first.dtype))

    def describe(self) -> str:
        """What each layer launches (``explain()``)."""
        from rnnc.backends.cstyle import describe_kernels

        return describe_kernels({k: kernel for k, (kernel, _) in self.layers.items()})

    def __call__(self, *inputs: Any) -> Any:
        import torch

        g = self.program.graph
        env: dict[str, Any] = {n: v.to(self.device) for n, v in check_inputs(self.program, inputs).items()}
        env.update(self.weights)

        def rnn(node: Any, args: list[Any]) -> tuple[Any, ...]:
            n_states = len(node.attr("cells")[0].states)
            return self.rnns[node.outputs[0]](args[0], args[1], args[2:2 + n_states])

        with torch.no_grad():
            res = run_graph(g, env, rnn=rnn)
        home = next((v.device for v in inputs if isinstance(v, torch.Tensor)), self.device)
        res = tuple(r.to(home) if isinstance(r, torch.Tensor) else r for r in res)
        return res[0] if len(res) == 1 else res


def load_cuda(outdir: str | Path) -> CudaProgram:
    """The GPU program of a ``--backend cuda`` output directory: each layer's cubin for this
    GPU's architecture, launched as the manifest's ``launch`` entry says.  Raises
    :class:`UnsupportedError` when there is no CUDA device."""
    from rnnc.backends.manifest import read_manifest, read_program
    from rnnc.lower.layer import lower_layer

    drv = driver()  # first: no device -> one clear error before any file work
    out = Path(outdir)
    manifest = read_manifest(out)
    backend = manifest.get("backend")
    if backend not in VARIANTS or not VARIANTS[backend].on_gpu:  # no cubins in any other directory
        raise UserInputError(f"{out} was compiled with --backend {backend}, not cuda")
    program = read_program(out, manifest)
    layers: dict[str, tuple[Kernel, CudaKernel]] = {}
    for key, cell in layer_cells(program).items():
        entry = manifest["layers"][key]
        kernel = lower_layer(cell, None, entry["knobs"], name=f"rnnc_{key}", force_generic=entry["path"] == "generic")
        arch = pick_cubin(entry["cubins"], drv.arch)
        launch = entry["launch"]
        cubin = (out / entry["cubins"][arch]).read_bytes()
        layers[key] = (kernel, CudaKernel(cubin, launch["kernel"], int(launch["grid"]) or 1, int(launch["block"]),
                                          int(launch["dynamic_shared_bytes"]), bool(launch.get("cooperative", True))))
    return CudaProgram(program, layers)


def gpu_kernel(cell: Any, target: Any, sched: Any, dtype: str, name: str, batch: int = 1,
               arch: str | None = None) -> Kernel:
    """The GPU loop nest of one layer, as the CUDA kernel and its C twin both run it: a given
    Schedule as it is; else, for a fused cell on a GPU target, the solver's schedule for ``batch``
    fitted against ptxas (``fit_cuda_schedule``), or without nvcc the solver's schedule unfitted;
    else the backend's own knobs."""
    from rnnc.backends.cstyle.artifact import solver_schedule
    from rnnc.backends.cstyle.build import nvcc_path
    from rnnc.backends.cstyle.cuda_fit import fit_cuda_schedule
    from rnnc.lower.gates import analyse_gates
    from rnnc.lower.layer import lower_layer

    if dtype not in _TORCH_DTYPES:
        raise UnsupportedError(f"the CUDA backend stores {', '.join(_TORCH_DTYPES)}; {cell.kind} is {dtype}")
    if sched is None and analyse_gates(cell) is not None and getattr(target, "gpu", None) is not None:
        if nvcc_path() is not None:
            return fit_cuda_schedule(cell, target, dtype, name, batch=batch, arch=arch).kernel
        sched = solver_schedule(cell, target, dtype, batch)  # no ptxas to check it against here
    return lower_layer(cell, target, sched, dtype, name=name)


def compile_cuda_program(program: Program, target: Any, schedule: Any = None, batch: int = 1) -> CudaProgram:
    """Compile every recurrent layer for this GPU (nvcc, in-process) and return the program;
    ``batch`` is the batch the solver tiles for.  Raises :class:`UnsupportedError` when there is
    no CUDA device or no nvcc."""
    from rnnc.backends.cstyle.build import compile_cuda
    from rnnc.backends.cstyle.dialects import CudaDialect

    drv = driver()
    layers: dict[str, tuple[Kernel, CudaKernel]] = {}
    storage = layer_storage(program)
    for key, cell in layer_cells(program).items():
        dtype = storage[key]
        kernel = gpu_kernel(cell, target, schedule.get(key) if isinstance(schedule, Mapping) else schedule,
                            dtype, f"rnnc_{key}", batch, drv.arch)
        r = CudaDialect(kernel, dtype)
        cubin, _ = compile_cuda(r.render(), drv.arch)
        kn = kernel.meta["knobs"]
        layers[key] = (kernel, CudaKernel(cubin.read_bytes(), kernel.name, int(kn["workers"]) or 1,
                                          int(kn["threads"]), r.smem_bytes if r.dynamic else 0,
                                          has_grid_barrier(kernel.body)))
    return CudaProgram(program, layers)
