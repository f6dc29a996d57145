"""Running C-dialect layer kernels from Python (ctypes), whole ``rnn`` nodes and streaming steps.

A :class:`LayerRunner` owns one built kernel and the packed weights of one (layer, direction);
it passes tensor views by pointer and element strides, so batch-first inputs and the halves of
a bidirectional output are never copied.  :class:`RnnRunner` chains the layers of one ``rnn``
node; :class:`Stream` is the real-time API: states are allocated once and each ``step`` runs
every layer for one time step (``T=1``) without allocating.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from typing import Any

from rnnc.errors import UnsupportedError, UserInputError
from rnnc.lower.loopnest import Kernel, eval_int


def launch_values(x: Any, y: Any, y_off: int, workers: int, reverse: bool, lengths: Any) -> dict[str, int]:
    """The scalar arguments every layer kernel takes (both dialects): sizes, strides, flags."""
    return {"B": int(x.shape[1]), "T": int(x.shape[0]), "W": workers, "reverse": int(reverse),
            "has_len": int(lengths is not None), "xs_t": x.stride(0), "xs_b": x.stride(1), "ys_t": y.stride(0),
            "ys_b": y.stride(1), "y_off": y_off}


def bound_tensors(kernel: Kernel, x: Any, y: Any, lengths: Any, states: dict[str, Any], weights: dict[str, Any],
                  no_lengths: Any) -> list[Any]:
    """The tensor behind each of ``kernel.args``, in order (both dialects bind the same names):
    ``x``, ``y``, ``lengths`` (``no_lengths`` when absent), ``s_<state>``, else a packed weight."""
    out = []
    for b in kernel.args:
        if b.name == "x":
            out.append(x)
        elif b.name == "y":
            out.append(y)
        elif b.name == "lengths":
            out.append(lengths if lengths is not None else no_lengths)
        elif b.name.startswith("s_"):
            out.append(states[b.name[2:]])
        else:
            out.append(weights[b.name])
    return out


def host_projections(hosted: dict[str, Any], x: Any, into: dict[str, Any]) -> None:
    """``Knobs.host_gemm``: each hosted input projection ``x @ W`` ([T, B, I] view, any storage
    dtype) as one fp32 GEMM of torch's BLAS (cuBLAS on a GPU, oneDNN/MKL on a CPU) into ``into``
    -- fp32 so a 16-bit model's projection is not rounded before the gate math.  Runs under
    torch's float32 matmul precision (default "highest": no TF32)."""
    import torch

    for buf, wt in hosted.items():
        into[buf] = torch.matmul(x if x.dtype == torch.float32 else x.float(), wt)


def default_threads() -> int:
    env = os.environ.get("RNNC_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS")
    if env:
        return max(1, int(env))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


#: recurrent multiply-adds per step (times batch) from which the fused kernel runs on every core:
#: an OpenMP barrier costs well under a microsecond, so splitting even an LSTM H=128 step (64K
#: MACs, ~1.3 us from L2 on one core) across two cores wins (B=1 T=128: 320 -> 193 us measured)
_PARALLEL_STEP_MACS = 1 << 15
#: the same for a single step (streaming): waking the OpenMP team is most of a small call (two
#: cores saved 1 us of 9 at LSTM H=128), and when anything else keeps the second core busy
#: (another process, another library's spinning thread pool) the woken worker can wait for a
#: scheduler tick (2-worker steps measured 6-24 ms on this 2-core machine while other jobs ran).
#: Steps that stream megabytes still need both cores' cache bandwidth to match onnxruntime (GRU
#: B=1: H=1024 334 us on one core vs 176 us for ort on two; H=512 73 us vs 58 us), so they fork
_PARALLEL_ONE_STEP_MACS = 1 << 19


class LayerRunner:
    """One compiled (layer, direction): ``run(x[T,B,I] view, y[T,B,F] view, states, ...)``."""

    def __init__(self, kernel: Kernel, fn: Any, params: dict[str, Any], workers: int = 0) -> None:
        import torch

        self.kernel, self.fn = kernel, fn
        self.workers = workers or default_threads()
        meta = kernel.meta
        # recurrent multiply-adds per step and sample (decides one core vs all, see _PARALLEL_STEP_MACS)
        self.step_macs = meta.get("gates", 1) * meta.get("hidden", 0) * meta.get("hidden", 0)
        self.tensors: dict[str, Any] = {}
        # int8 buffers hold quantized codes: passing them as float would break the C types
        dtype = {b.name: torch.int8 if b.dtype == "int8" else torch.float32 for b in kernel.args}
        for b in kernel.args:
            if b.name.startswith("p_"):
                self.tensors[b.name] = params[b.name[2:]].detach().to(dtype[b.name]).contiguous()
        for p in kernel.packs:  # int8 codes packed as floats when the knobs widen them (exact)
            src = self.tensors[p.src]
            self.tensors[p.buf] = src.reshape(p.shape).permute(p.perm).to(dtype[p.buf]).contiguous()
        # input projections the host's GEMM computes (Knobs.host_gemm): buffer -> weight [I, G*H]
        self.hosted = {buf: self.tensors[w].t().contiguous() for buf, w in meta.get("host_gemm", {}).items()}
        self._work: dict[int, list[Any]] = {}
        self._dummy_len = torch.zeros(1, dtype=torch.int64)
        self.sc = (ctypes.c_long * len(kernel.scalars))()
        self.ptrs = (ctypes.c_void_p * (len(kernel.args) + len(kernel.work)))()
        self.state_names = [b.name[2:] for b in kernel.args if b.name.startswith("s_")]

    def work(self, batch: int, steps: int) -> list[Any]:
        import torch

        if batch not in self._work:  # work sizes depend on B and compile-time chunk sizes only
            env = {"B": batch, "T": steps}
            self._work[batch] = [torch.empty(max(1, eval_int(b.size, env)), dtype=torch.float32)
                                 for b in self.kernel.work]
        return self._work[batch]

    def run(self, x: Any, y: Any, y_off: int, states: Sequence[Any], lengths: Any = None,
            reverse: bool = False) -> None:
        """``x``: [T, B, I] view (last dim contiguous); ``y``: [T, B, F] view written at
        ``y_off``; ``states``: contiguous [B, *shape] tensors updated in place."""
        self.owner: Any = None  # whoever may call run_again next (set by Stream)
        if int(x.shape[0]) == 0:
            return
        self.project(x)
        scalars, pointers = self.launch(x, y, y_off, states, lengths, reverse)
        self.sc[:] = scalars
        self.ptrs[:] = pointers
        self.fn(self.sc, self.ptrs)

    def launch(self, x: Any, y: Any, y_off: int, states: Sequence[Any], lengths: Any = None,
               reverse: bool = False, hosted: dict[str, Any] | None = None) -> tuple[list[int], list[int]]:
        """The kernel's scalar arguments and buffer addresses for one call on these tensors (the
        worker count decided here), without calling it: :meth:`run` passes them at once, a
        whole-model native program (``cstyle.whole``) bakes them into its call of the kernel, with
        ``hosted``: its own buffers for the host-computed input projections."""
        steps, batch = int(x.shape[0]), int(x.shape[1])
        knobs = self.kernel.meta.get("knobs", {})
        if knobs.get("resident"):  # per-worker weight copies: exactly one worker per tile group
            workers = knobs["workers"]
        elif knobs.get("workers"):  # a Schedule's thread count (capped by the cores we may use)
            workers = min(int(knobs["workers"]), self.workers)
        elif (self.step_macs * batch >= (_PARALLEL_STEP_MACS if steps > 1 else _PARALLEL_ONE_STEP_MACS)
              or self.kernel.meta.get("path") == "generic"):
            workers = self.workers
        else:
            workers = 1
        vals = launch_values(x, y, y_off, workers, reverse, lengths)
        st = dict(zip(self.state_names, states, strict=True))
        tensors = {**self.tensors, **hosted} if hosted else self.tensors
        pointers = [t.data_ptr() for t in bound_tensors(self.kernel, x, y, lengths, st, tensors, self._dummy_len)]
        pointers += [t.data_ptr() for t in self.work(batch, steps)]
        return [vals[name] for name in self.kernel.scalars], pointers

    def run_again(self, x: Any, y: Any) -> None:
        """Streaming fast path: the previous :meth:`run` had the same batch, states, lengths
        and ``T``; only the x/y views change (sets two pointers and four strides)."""
        sc, ptrs, ix = self.sc, self.ptrs, self._index
        sc[ix["xs_t"]], sc[ix["xs_b"]] = x.stride(0), x.stride(1)
        sc[ix["ys_t"]], sc[ix["ys_b"]] = y.stride(0), y.stride(1)
        ptrs[ix["x"]], ptrs[ix["y"]] = x.data_ptr(), y.data_ptr()
        if self.hosted:
            self.project(x)
            for buf in self.hosted:
                ptrs[ix[buf]] = self.tensors[buf].data_ptr()
        self.fn(sc, ptrs)

    def project(self, x: Any) -> None:
        """The hosted input projections of ``x`` ([T, B, I] view): one GEMM of torch's BLAS each."""
        host_projections(self.hosted, x, self.tensors)

    @property
    def _index(self) -> dict[str, int]:
        if not hasattr(self, "_idx"):
            self._idx = {**{n: i for i, n in enumerate(self.kernel.scalars)},
                         **{b.name: i for i, b in enumerate(self.kernel.args)}}
        return self._idx


class RnnRunner:
    """The layers of one ``rnn`` node: ``runners[layer][direction]``; torch ``nn.LSTM`` layout.

    The same class drives the C dialect's :class:`LayerRunner` on this CPU (``device`` None,
    float32) and the CUDA dialect's ``CudaLayerRunner`` on a GPU (``device`` set, ``store`` the
    kernels' storage dtype for ``x``/``y``; states fp32); the layer stack itself is
    :func:`rnnc.ir.rnn.run_stack`, the one driver every backend shares."""

    def __init__(self, runners: list[list[Any]], cells: Sequence[Any], batch_first: bool, device: Any = None,
                 store: Any = None) -> None:
        self.runners, self.cells, self.batch_first = runners, list(cells), batch_first
        self.dirs = len(runners[0])
        self.device, self.store = device, store

    def __call__(self, x: Any, lengths: Any = None, init_states: Sequence[Any | None] | None = None
                 ) -> tuple[Any, ...]:
        import torch

        from rnnc.ir.rnn import run_stack

        in_dtype = x.dtype
        if self.device is None and x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # a 16-bit model on the C backend: fp32 kernels, outputs stored back in 16 bits
        elif self.device is None and x.dtype != torch.float32:
            raise UnsupportedError(f"the C backend runs float32 inputs, got {x.dtype}")
        if self.device is not None:
            x = x.to(device=self.device, dtype=self.store)
        xt = x.transpose(0, 1) if self.batch_first else x
        if xt.stride(-1) != 1:
            xt = xt.contiguous()
        if lengths is not None:
            lengths = lengths.to(device=xt.device, dtype=torch.int64).contiguous()

        def direction(k: int, d: int, cell: Any, layer_in: Any, out: Any, off: int, states: list[Any]) -> None:
            self.runners[k][d].run(layer_in, out, off, states, lengths, reverse=d == 1)

        y, states = run_stack(self.cells, self.dirs, xt, list(init_states or ()), direction, out_dtype=xt.dtype,
                              state_dtype=torch.float32, device=xt.device, batch_first_out=self.batch_first)
        y = y.transpose(0, 1) if self.batch_first else y
        if self.device is None and in_dtype == torch.float32:
            return (y, *states)
        return (y.to(in_dtype), *(s.to(in_dtype) for s in states))

    def stream(self, batch: int = 1) -> Stream:
        return Stream(self, batch)


class Stream:
    """Real-time stepping: ``y_t, state = step(x_t, state)`` with preallocated buffers.

    ``x_t`` is ``[B, I]`` (or ``[B, T_chunk, I]`` for a chunk of steps, e.g. 32 ms of audio
    frames); the state lives in ``self.states`` (the same layout as the full-sequence call's
    final states) and is updated in place, so a step allocates nothing but its output view.
    """

    def __init__(self, rnn: RnnRunner, batch: int) -> None:
        import torch

        if rnn.dirs != 1:
            raise UserInputError("a bidirectional rnn cannot be streamed: its reverse direction needs the future")
        self.rnn, self.batch = rnn, batch
        first = rnn.cells[0]
        lay = len(rnn.cells)
        self.states = [torch.zeros((lay, batch, *s.shape), dtype=torch.float32) for s in first.states]
        self._bufs = [torch.empty((1, batch, c.output_size), dtype=torch.float32) for c in rnn.cells]

    def reset(self) -> None:
        for s in self.states:
            s.zero_()

    def step(self, x_t: Any, state: Sequence[Any] | None = None) -> tuple[Any, list[Any]]:
        import torch

        if state is not None and any(a.data_ptr() != b.data_ptr() for a, b in zip(state, self.states, strict=True)):
            for dst, src in zip(self.states, state, strict=True):
                dst.copy_(src)
        chunk = x_t.dim() == 3
        xt = x_t.transpose(0, 1) if chunk else x_t.unsqueeze(0)
        if xt.dtype != torch.float32 or xt.stride(-1) != 1:
            xt = xt.to(torch.float32).contiguous()
        steps = int(xt.shape[0])
        layer_in = xt
        fast = steps == 1 and all(getattr(r[0], "owner", None) is self for r in self.rnn.runners)
        for k, runner in enumerate(self.rnn.runners):
            out = self._bufs[k] if steps == 1 else torch.empty((steps, self.batch, self.rnn.cells[k].output_size))
            if fast:
                runner[0].run_again(layer_in, out)
            else:
                runner[0].run(layer_in, out, 0, [s[k] for s in self.states])
                runner[0].owner = self if steps == 1 else None
            layer_in = out
        y = layer_in.transpose(0, 1) if chunk else layer_in[0]
        return y, self.states
