"""Launching the CUDA dialect's cubins through the CUDA driver API (``libcuda`` via ctypes).

Why the driver API and not a torch C++/CUDA extension: the cubins already exist (``rnnc compile
--backend cuda`` wrote one per architecture, with the resources the Schedule was checked
against), so loading them needs neither a host compiler nor torch's extension build at run
time, and the kernel that runs is byte for byte the one whose registers were checked.  torch
owns the device memory and the stream: kernel arguments are ``data_ptr()`` of CUDA tensors and
launches go to ``torch.cuda.current_stream()``, so they order with torch's own work.

Every fused kernel has a grid-wide barrier (``cg::this_grid().sync()``), which is only legal
when all blocks are co-resident: :class:`CudaKernel` checks that with
``cuOccupancyMaxActiveBlocksPerMultiprocessor`` before the first launch and launches with
``cuLaunchCooperativeKernel``, which the driver refuses rather than deadlocks.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

from rnnc.errors import RnncError, UnsupportedError

NO_DEVICE = ("no CUDA device: the CUDA backend's kernels need an NVIDIA GPU with its driver "
             "(libcuda) and a CUDA build of torch; {why}. On this machine run the C dialect "
             "instead (`--backend c`, or rnnc.load of a cuda output directory, which falls back "
             "to the kernels' CPU twin)")
#: CUdevice_attribute / CUfunction_attribute values (cuda.h)
_ATTR_SM_COUNT = 16
_ATTR_COOPERATIVE_LAUNCH = 95
_ATTR_CC_MAJOR, _ATTR_CC_MINOR = 75, 76
_FUNC_MAX_DYNAMIC_SHARED = 8
#: shared memory a block gets without opting in
_DEFAULT_DYNAMIC_LIMIT = 48 * 1024


class Driver:
    """The loaded ``libcuda`` with torch's current device and its (primary) context current."""

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise UnsupportedError(NO_DEVICE.format(why="torch.cuda.is_available() is False"))
        name = ctypes.util.find_library("cuda") or "libcuda.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError as exc:
            raise UnsupportedError(NO_DEVICE.format(why=f"the driver library {name} did not load ({exc})")) from None
        self.lib.cuGetErrorName.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)]
        self.check(self.lib.cuInit(0), "cuInit")
        torch.cuda.init()
        self.ordinal = torch.cuda.current_device()
        dev = ctypes.c_int()
        self.check(self.lib.cuDeviceGet(ctypes.byref(dev), self.ordinal), "cuDeviceGet")
        self.device = dev.value
        ctx = ctypes.c_void_p()
        self.check(self.lib.cuCtxGetCurrent(ctypes.byref(ctx)), "cuCtxGetCurrent")
        if not ctx.value:  # torch creates the primary context lazily; share it, never make our own
            self.check(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), self.device), "cuDevicePrimaryCtxRetain")
            self.check(self.lib.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        self.sm_count = self.attribute(_ATTR_SM_COUNT)
        self.cooperative = bool(self.attribute(_ATTR_COOPERATIVE_LAUNCH))
        self.arch = f"sm_{self.attribute(_ATTR_CC_MAJOR)}{self.attribute(_ATTR_CC_MINOR)}"

    def check(self, rc: int, what: str) -> None:
        if rc != 0:
            name = ctypes.c_char_p()
            self.lib.cuGetErrorName(rc, ctypes.byref(name))
            raise RnncError(f"CUDA driver call {what} failed: {(name.value or b'?').decode()} ({rc})")

    def attribute(self, attr: int) -> int:
        out = ctypes.c_int()
        self.check(self.lib.cuDeviceGetAttribute(ctypes.byref(out), attr, self.device), "cuDeviceGetAttribute")
        return out.value


_DRIVER: Driver | None = None


def driver() -> Driver:
    """The process-wide :class:`Driver`; raises :class:`UnsupportedError` without a CUDA device."""
    global _DRIVER
    if _DRIVER is None:
        _DRIVER = Driver()
    return _DRIVER


def cuda_available() -> bool:
    try:
        driver()
    except (UnsupportedError, RnncError):
        return False
    return True


def pick_cubin(cubins: dict[str, Any], arch: str) -> str:
    """The cubin key to run on ``arch``: its own, else the newest of the same major version that
    is not newer (cubins run on later minor revisions of their major architecture)."""
    if arch in cubins:
        return arch
    major, minor = int(arch[3:-1]), int(arch[-1])
    same = [a for a in cubins if int(a[3:-1]) == major and int(a[-1]) <= minor]
    if not same:
        raise UnsupportedError(f"this GPU is {arch}; the output directory has cubins for {', '.join(sorted(cubins))} "
                               f"only: recompile with --target matching this GPU")
    return max(same, key=lambda a: int(a[-1]))


class CudaKernel:
    """One loaded ``extern "C" __global__ NAME(const long* sc, void** bufs)`` kernel."""

    def __init__(self, cubin: bytes, name: str, grid: int, block: int, dynamic_shared: int = 0,
                 cooperative: bool = True) -> None:
        """``cooperative``: the kernel has a grid-wide barrier, so it is launched cooperatively and
        its ``grid`` must be co-resident; a kernel without one (the generic path) takes any grid,
        given per launch."""
        drv = driver()
        self.drv, self.name, self.grid, self.block, self.dynamic_shared = drv, name, grid, block, dynamic_shared
        self.cooperative = cooperative
        self._image = ctypes.create_string_buffer(cubin, len(cubin))  # must outlive the module load
        self.module, self.fn = ctypes.c_void_p(), ctypes.c_void_p()
        drv.check(drv.lib.cuModuleLoadData(ctypes.byref(self.module), self._image), f"cuModuleLoadData({name})")
        drv.check(drv.lib.cuModuleGetFunction(ctypes.byref(self.fn), self.module, name.encode()),
                  f"cuModuleGetFunction({name})")
        if dynamic_shared > _DEFAULT_DYNAMIC_LIMIT:
            drv.check(drv.lib.cuFuncSetAttribute(self.fn, _FUNC_MAX_DYNAMIC_SHARED, dynamic_shared),
                      f"cuFuncSetAttribute({name}, max dynamic shared memory {dynamic_shared})")
        per_sm = ctypes.c_int()
        drv.check(drv.lib.cuOccupancyMaxActiveBlocksPerMultiprocessor(
            ctypes.byref(per_sm), self.fn, ctypes.c_int(block), ctypes.c_size_t(dynamic_shared)),
            "cuOccupancyMaxActiveBlocksPerMultiprocessor")
        self.max_coresident = per_sm.value * drv.sm_count
        if cooperative and not drv.cooperative:
            raise UnsupportedError(f"this GPU ({drv.arch}) does not support cooperative launches, which the fused "
                                   f"kernel's grid-wide sync needs")
        if cooperative and grid > self.max_coresident:
            raise UnsupportedError(
                f"kernel {name} needs {grid} co-resident blocks of {block} threads for its grid sync; this GPU "
                f"holds {self.max_coresident} ({per_sm.value} per SM x {drv.sm_count} SMs): compile for this GPU's "
                f"target so the Schedule fits it")

    def launch(self, sc: Any, bufs: Any, stream: int, grid: int = 0) -> None:
        """Launch on ``stream`` with ``sc`` (device int64 scalars) and ``bufs`` (device array of
        device pointers): both are CUDA tensors owned by the caller until the stream passes.
        ``grid`` overrides the compiled grid of a non-cooperative kernel (one block per sample)."""
        a, b = ctypes.c_uint64(sc.data_ptr()), ctypes.c_uint64(bufs.data_ptr())
        params = (ctypes.c_void_p * 2)(ctypes.addressof(a), ctypes.addressof(b))
        dims = (ctypes.c_uint(grid if grid and not self.cooperative else self.grid), ctypes.c_uint(1),
                ctypes.c_uint(1), ctypes.c_uint(self.block), ctypes.c_uint(1), ctypes.c_uint(1),
                ctypes.c_uint(self.dynamic_shared), ctypes.c_void_p(stream), params)
        if self.cooperative:
            self.drv.check(self.drv.lib.cuLaunchCooperativeKernel(self.fn, *dims),
                           f"cuLaunchCooperativeKernel({self.name})")
        else:
            self.drv.check(self.drv.lib.cuLaunchKernel(self.fn, *dims, None), f"cuLaunchKernel({self.name})")
