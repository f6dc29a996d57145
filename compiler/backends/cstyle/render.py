"""One C-style renderer, two dialects (the tinygrad ClangRenderer/CUDARenderer split).

The renderer walks a :class:`rnnc.lower.loopnest.Kernel` node by node.  Everything that is
the same in C and CUDA (expressions, index math, lets, stores, ifs, serial loops, math helpers)
lives in :class:`CStyleRenderer`; a dialect overrides only the hooks that map the loop nest onto
its hardware: the kernel signature, the worker loop, vector loops, barriers, local buffers and
how storage dtypes are widened to fp32.  Nothing here knows which cell or schedule produced the
nest.
"""

from __future__ import annotations

import math
import re
import zlib

from rnnc.lower.loopnest import (
    Alloc,
    Barrier,
    Bin,
    Buffer,
    Call,
    Comment,
    Const,
    Expr,
    If,
    Invoke,
    Kernel,
    Let,
    Load,
    Loop,
    MicroGemm,
    Ref,
    Select,
    Stmt,
    Store,
    Var,
)

_INT_OPS = {"+": "+", "-": "-", "*": "*", "/": "/", "%": "%", "&": "&", "<": "<", "==": "==", "||": "||"}
_FLOAT_OPS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "gt": ">", "lt": "<"}
#: binary float ops that are calls, not operators
_FLOAT_CALLS = {"max": "fmaxf({}, {})", "min": "fminf({}, {})", "pow": "powf({}, {})"}

#: float helpers, written once; ``{q}`` is the dialect's function qualifier
_HELPERS = """\
{q} float rn_sigmoid(float x) {{ return 1.0f / (1.0f + expf(-x)); }}
{q} float rn_softplus(float x) {{ return x > 20.0f ? x : log1pf(expf(x)); }}
{q} float rn_logsigmoid(float x) {{ return fminf(x, 0.0f) - log1pf(expf(-fabsf(x))); }}
{q} float rn_silu(float x) {{ return x / (1.0f + expf(-x)); }}
{q} float rn_gelu(float x) {{ return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }}
{q} {i} rn_imin({i} a, {i} b) {{ return a < b ? a : b; }}
"""
_CALLS = {"sigmoid": "rn_sigmoid({})", "tanh": "tanhf({})", "exp": "expf({})", "log": "logf({})",
          "softplus": "rn_softplus({})", "relu": "fmaxf({}, 0.0f)", "abs": "fabsf({})", "sqrt": "sqrtf({})",
          "silu": "rn_silu({})", "gelu": "rn_gelu({})", "logsigmoid": "rn_logsigmoid({})",
          "reciprocal": "(1.0f / {})", "cos": "cosf({})", "sin": "sinf({})", "neg": "(-{})"}


def cid(name: str) -> str:
    """A C identifier for an IR name: user cells bring names like ``w.weight``; a changed name gets
    a short checksum so two names that differ only in punctuation stay distinct."""
    safe = re.sub(r"\W", "_", name)
    return safe if safe == name else f"{safe}_{zlib.crc32(name.encode()) & 0xFFFF:04x}"


class CStyleRenderer:
    """Shared rendering; subclasses set the hooks marked *dialect*."""

    dialect = "?"
    qualifier = "static inline"
    #: dialect spellings of IR functions that differ from the shared ``_CALLS`` (dialect)
    calls: dict[str, str] = {}
    #: integer type of indices and loop counters (dialect)
    index = "long"
    storage = {"float32": "float"}

    def __init__(self, kernel: Kernel, dtype: str = "float32") -> None:
        if dtype not in self.storage:
            raise ValueError(f"the {self.dialect} dialect has no storage type for {dtype}")
        self.k, self.dtype = kernel, dtype
        self.bufs = {b.name: b for b in kernel.buffers}
        self.lines: list[str] = []
        self.depth = 0
        self.scopes: list[set[str]] = [set()]

    # ------------------------------------------------------------------ types
    def ctype(self, b: Buffer) -> str:
        if b.dtype == "int64":
            return "long"
        if b.dtype == "ptr":
            return "void*"
        if b.dtype == "int8":  # quantized weight codes: 1 byte each in both dialects
            return "signed char"
        return self.storage[self.dtype] if b.dtype == "param" else "float"

    def widen(self, b: Buffer, text: str) -> str:  # dialect: storage -> fp32
        # int8 codes are cast explicitly so the product with a float never runs in int arithmetic
        return f"((float){text})" if b.dtype == "int8" else text

    def narrow(self, b: Buffer, text: str) -> str:  # dialect: fp32 -> storage
        return text

    @staticmethod
    def restrict(b: Buffer) -> str:
        """``__restrict__`` unless a called kernel also writes the buffer (``Buffer.shared``)."""
        return "" if b.shared else "__restrict__ "

    # ------------------------------------------------------------------ expressions
    def expr(self, e: Expr) -> str:
        if isinstance(e, Const):
            if e.is_float:
                v = float(e.value)
                if math.isinf(v):
                    return "INFINITY" if v > 0 else "(-INFINITY)"
                return f"{v!r}f" if "e" in repr(v) or "." in repr(v) else f"{v}.0f"
            return str(int(e.value))
        if isinstance(e, Var):
            return cid(e.name)
        if isinstance(e, Ref):
            return cid(e.name)
        if isinstance(e, Load):
            b = self.bufs[e.buf]
            return self.widen(b, f"{cid(e.buf)}[{self.expr(e.index)}]")
        if isinstance(e, Bin):
            a, b = self.expr(e.a), self.expr(e.b)
            if e.op in _INT_OPS:
                return f"({a} {_INT_OPS[e.op]} {b})"
            if e.op == "imin":
                return f"rn_imin({a}, {b})"
            if e.op in _FLOAT_OPS:
                return f"({a} {_FLOAT_OPS[e.op]} {b})"
            return _FLOAT_CALLS[e.op].format(a, b)
        if isinstance(e, Call):
            return self.calls.get(e.fn, _CALLS[e.fn]).format(self.expr(e.arg))
        if isinstance(e, Select):
            return f"({self.expr(e.cond)} ? {self.expr(e.a)} : {self.expr(e.b)})"
        raise TypeError(f"cannot render {e!r}")

    # ------------------------------------------------------------------ statements
    def emit(self, line: str) -> None:
        self.lines.append("  " * self.depth + line)

    def block(self, stmts: tuple[Stmt, ...]) -> None:
        self.depth += 1
        self.scopes.append(set(self.scopes[-1]))
        for s in stmts:
            self.stmt(s)
        self.scopes.pop()
        self.depth -= 1

    def stmt(self, s: Stmt) -> None:
        if isinstance(s, Loop):
            if s.kind == "parallel":
                self.worker_loop(s)
            elif s.kind == "vector":
                self.vector_loop(s)
            else:
                if s.kind == "unroll":
                    self.emit(self.unroll_pragma())
                self.emit(f"for ({self.index} {s.var} = 0; {s.var} < {self.expr(s.extent)}; ++{s.var}) {{")
                self.block(s.body)
                self.emit("}")
        elif isinstance(s, Store):
            b = self.bufs[s.buf]
            target = f"{cid(s.buf)}[{self.expr(s.index)}]"
            if s.accumulate:
                self.emit(f"{target} = {self.narrow(b, f'{self.widen(b, target)} + {self.expr(s.value)}')};")
            else:
                self.emit(f"{target} = {self.narrow(b, self.expr(s.value))};")
        elif isinstance(s, Let):
            if s.name in self.scopes[-1] and not s.is_int:
                self.emit(f"{cid(s.name)} = {self.expr(s.value)};")
            else:
                self.scopes[-1].add(s.name)
                self.emit(f"{'const ' + self.index if s.is_int else 'float'} {cid(s.name)} = {self.expr(s.value)};")
        elif isinstance(s, If):
            self.emit(f"if ({self.expr(s.cond)}) {{")
            self.block(s.body)
            if s.orelse:
                self.emit("} else {")
                self.block(s.orelse)
            self.emit("}")
        elif isinstance(s, Barrier):
            line = self.barrier(s.scope)
            if line:
                self.emit(line)
        elif isinstance(s, Alloc):
            self.alloc(self.bufs[s.buf])
        elif isinstance(s, Comment):
            self.emit(f"/* {s.text} */")
        elif isinstance(s, MicroGemm):
            self.micro_gemm(s)
        elif isinstance(s, Invoke):
            self.invoke(s)
        else:
            raise TypeError(f"cannot render {s!r}")

    # ------------------------------------------------------------------ dialect hooks
    def unroll_pragma(self) -> str:
        return "#pragma GCC unroll 8"

    def worker_loop(self, s: Loop) -> None:
        raise NotImplementedError

    def vector_loop(self, s: Loop) -> None:
        raise NotImplementedError

    def barrier(self, scope: str) -> str:
        raise NotImplementedError

    def micro_gemm(self, s: MicroGemm) -> None:  # dialect: only CPU lowerings emit the node
        raise TypeError(f"the {self.dialect} dialect has no micro-kernel GEMM ({s.acc})")

    def invoke(self, s: Invoke) -> None:  # dialect: host-side programs only
        raise TypeError(f"the {self.dialect} dialect cannot call another kernel ({s.calls}[{s.slot}])")

    def helpers(self) -> str:
        """Dialect text placed before the kernel function, known once the body is rendered."""
        return ""

    def alloc(self, b: Buffer) -> None:
        raise NotImplementedError

    def preamble(self) -> str:
        raise NotImplementedError

    def signature(self) -> list[str]:
        raise NotImplementedError

    # ------------------------------------------------------------------ driver
    def unpack_args(self) -> None:
        """Scalars from ``sc[]``, buffers from ``bufs[]``, in the order of ``Kernel.args`` then
        ``Kernel.work`` (the runtime passes them in that order)."""
        for i, name in enumerate(self.k.scalars):
            self.emit(f"const {self.index} {name} = ({self.index})sc[{i}];")
        for i, b in enumerate((*self.k.args, *self.k.work)):
            const = "" if b.writable else "const "
            self.emit(f"{const}{self.ctype(b)}* {self.restrict(b)}{cid(b.name)} = ({const}{self.ctype(b)}*)bufs[{i}];")
        if self.k.scalars:  # not every kernel reads every scalar it is passed
            self.emit(" ".join(f"(void){name};" for name in self.k.scalars))

    def render_function(self) -> str:
        """The kernel's function alone: a module of several kernels (``whole_cuda``) puts one
        :meth:`module_head` before all of them."""
        self.lines = []
        for line in self.signature():
            self.emit(line)
        self.depth += 1
        self.unpack_args()
        self.depth -= 1
        self.block(self.k.body)
        self.emit("}")
        return "\n".join(self.lines) + "\n"

    def module_head(self) -> str:
        """Includes and the shared math helpers (call before rendering: a dialect resets state here)."""
        return self.preamble() + _HELPERS.format(q=self.qualifier, i=self.index)

    def render(self) -> str:
        head = self.module_head()
        function = self.render_function()
        return head + self.helpers() + "\n" + function
