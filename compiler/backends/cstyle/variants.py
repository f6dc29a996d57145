"""What differs between the two C-style backends, as data: which device a dialect runs on,
which storage dtypes its kernels take, its default target and its renderer class.

``rnnc.backends.cstyle`` (support checks, ``runnable``) and ``artifact`` (what an output
directory holds) read these fields instead of branching on the backend's name, so a third
dialect (say a Metal or HIP one) is one more entry here, not a hunt through ``if name ==``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rnnc.errors import UserInputError


@dataclass(frozen=True)
class Variant:
    """One C-style backend: ``c`` (this CPU) or ``cuda`` (a GPU; its numerics through the C twin)."""

    name: str
    device: str  # "cpu" | "gpu": the kind of target it compiles for
    kernel_dtypes: tuple[str, ...]  # storage dtypes of x, y and weights its kernels take
    default_target: str  # the target tag when none is given
    sibling: str  # the other backend, named in the message when a target is the wrong kind

    @property
    def on_gpu(self) -> bool:
        return self.device == "gpu"

    def kernel_dtype(self, dtype: str) -> str:
        """The storage dtype a cell of ``dtype`` gets (float32 where this dialect has no other)."""
        return dtype if dtype in self.kernel_dtypes else "float32"

    def wrong_target(self, target: Any) -> str:
        """Why ``target`` is the wrong kind of device for this backend ("" when it is right)."""
        is_gpu = getattr(target, "gpu", None) is not None
        if is_gpu == self.on_gpu:
            return ""
        what = "needs a GPU target" if self.on_gpu else "runs on CPUs"
        return (f"the {self.name.upper()} backend {what}; {target.tag} is {'a GPU' if is_gpu else 'a CPU'} "
                f"(use --backend {self.sibling})")


C = Variant("c", "cpu", ("float32",), "cpu/host", "cuda")
CUDA = Variant("cuda", "gpu", ("float32", "float16", "bfloat16"), "nvidia/h100-sxm", "c")
VARIANTS = {v.name: v for v in (C, CUDA)}


def variant(name: str) -> Variant:
    """The variant of a backend name; one sentence for anything else."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise UserInputError(f"the C-style backends are 'c' and 'cuda', not {name!r}") from None
