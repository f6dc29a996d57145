"""Tensor types of the IR: a shape of concrete or symbolic dims and a dtype name.

Dims are ``int`` (known) or ``str`` (a symbol such as ``"B"`` or ``"T"``, or ``"?"`` for a
derived size that is only known at run time).  Keeping batch and time symbolic is what lets one
Program (and one tuning key) serve every sequence length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

Dim = int | str

#: IR dtype name -> short name used by the printer.
DTYPES: dict[str, str] = {
    "float32": "f32",
    "float16": "f16",
    "bfloat16": "bf16",
    "float64": "f64",
    "int64": "i64",
    "int32": "i32",
    "int8": "i8",
    "uint8": "u8",
    "bool": "b1",
}
_SHORT_TO_DTYPE = {v: k for k, v in DTYPES.items()}
_DIM_RE = re.compile(r"^(?:-?\d+|[A-Za-z_?][\w'?]*)$")


def torch_dtype(name: str):  # -> torch.dtype, imported lazily: types.py stays torch-free
    """The torch dtype of an IR dtype name."""
    import torch

    return getattr(torch, name)


def dtype_of_torch(dtype) -> str:
    """The IR dtype name of a torch dtype (``torch.float32`` -> ``"float32"``)."""
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"dtype {dtype} is not supported by the rnnc IR (supported: {', '.join(DTYPES)})")
    return name


@dataclass(frozen=True)
class TensorType:
    """Shape and dtype of one IR value."""

    shape: tuple[Dim, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; expected one of {', '.join(DTYPES)}")
        for d in self.shape:
            if not isinstance(d, (int, str)) or isinstance(d, bool):
                raise ValueError(f"dim {d!r} in shape {self.shape} must be an int or a symbol name")
            if isinstance(d, int) and d < 0:
                raise ValueError(f"negative dim {d} in shape {self.shape}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    def text(self) -> str:
        """Printer form, e.g. ``f32[B,T,128]``."""
        return f"{DTYPES[self.dtype]}[{','.join(str(d) for d in self.shape)}]"

    @staticmethod
    def parse(text: str) -> TensorType:
        """Inverse of :meth:`text`."""
        m = re.fullmatch(r"\s*(\w+)\[(.*)\]\s*", text)
        if not m or m.group(1) not in _SHORT_TO_DTYPE:
            raise ValueError(f"cannot parse tensor type {text!r} (expected e.g. f32[B,128])")
        dims: list[Dim] = []
        body = m.group(2).strip()
        for part in body.split(",") if body else []:
            part = part.strip()
            if not _DIM_RE.match(part):
                raise ValueError(f"bad dim {part!r} in tensor type {text!r}")
            dims.append(int(part) if part.lstrip("-").isdigit() else part)
        return TensorType(tuple(dims), _SHORT_TO_DTYPE[m.group(1)])

    def with_shape(self, shape: tuple[Dim, ...]) -> TensorType:
        return TensorType(tuple(shape), self.dtype)


def dims_compatible(a: Dim, b: Dim) -> bool:
    """Whether two dims can be equal at run time (symbols and ``?`` match anything)."""
    return not (isinstance(a, int) and isinstance(b, int) and a != b)


def broadcast_shapes(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> tuple[Dim, ...] | None:
    """Numpy broadcasting over possibly symbolic dims; ``None`` if the shapes conflict."""
    out: list[Dim] = []
    for i in range(max(len(a), len(b))):
        da = a[len(a) - 1 - i] if i < len(a) else 1
        db = b[len(b) - 1 - i] if i < len(b) else 1
        if da == 1:
            out.append(db)
        elif db == 1 or da == db:
            out.append(da)
        elif isinstance(da, int) and isinstance(db, int):
            return None
        else:
            out.append(da if isinstance(da, int) else db)
    return tuple(reversed(out))
