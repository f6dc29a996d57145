"""onnxruntime on an emulated CPU: run an ONNX model the way an AVX2 CPU without VNNI runs it.

Why: int8 results depend on the CPU's integer dot product (``targets/int8dot.py``), and the
machines that test rnnc differ.  ``qemu-x86_64 -cpu Haswell`` (Debian's ``qemu-user``, installed
by ``make setup``) runs this file as a worker process; onnxruntime's MLAS reads the emulated
CPUID and takes its AVX2 ``vpmaddubsw`` kernels, so every machine can check what a user without
VNNI gets -- numerics, not speed.  The worker imports only numpy and onnxruntime (each import is
emulated) and keeps its sessions; ``tests/conftest.py`` starts one per test session.

Protocol: 8-byte little-endian length, then a pickle of ``(model bytes, feeds, threads)``; ``None`` ends it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import struct
import subprocess
import sys
from typing import Any

#: the CPU model qemu emulates for each saturating dot-product semantics
EMULATED_CPU = {"saturating_pairs": "Haswell"}


def _send(stream: Any, obj: Any) -> None:
    data = pickle.dumps(obj)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _recv(stream: Any) -> Any:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError
    return pickle.loads(stream.read(struct.unpack("<Q", head)[0]))


class EmulatedOrt:
    """A worker process running onnxruntime under ``qemu-x86_64 -cpu <cpu>``."""

    def __init__(self, cpu: str = "Haswell") -> None:
        qemu = shutil.which("qemu-x86_64")
        if qemu is None:
            raise RuntimeError("qemu-x86_64 is not installed; `make setup` installs Debian's qemu-user "
                               "(apt-get install qemu-user), which the emulated-AVX2 int8 tests need")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "OPENBLAS"))}
        self.cpu = cpu
        self.proc = subprocess.Popen([qemu, "-cpu", cpu, sys.executable, os.path.abspath(__file__)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=env)

    def run(self, model: Any, feeds: dict[str, Any], threads: int = 0) -> list[Any]:
        """Outputs of ``model`` (a ModelProto or bytes) for ``feeds`` (numpy arrays); ``threads``:
        onnxruntime's intra-op threads (0: its default)."""
        data = model if isinstance(model, bytes) else model.SerializeToString()
        _send(self.proc.stdin, (data, feeds, threads))
        status, value = _recv(self.proc.stdout)
        if status != "ok":
            raise RuntimeError(f"onnxruntime under emulated {self.cpu}: {value}")
        return value

    def close(self) -> None:
        if self.proc.poll() is None:
            _send(self.proc.stdin, None)
            self.proc.wait(timeout=30)


def _worker() -> None:
    import onnxruntime as ort

    sessions: dict[str, Any] = {}
    while True:
        try:
            request = _recv(sys.stdin.buffer)
        except EOFError:
            return
        if request is None:
            return
        model, feeds, threads = request
        key = f"{hashlib.sha256(model).hexdigest()}/{threads}"
        try:
            if key not in sessions:
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                sessions[key] = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
            reply = ("ok", sessions[key].run(None, feeds))
        except Exception as exc:  # noqa: BLE001 -- the caller raises it with the worker's words
            reply = ("error", f"{type(exc).__name__}: {exc}")
        _send(sys.stdout.buffer, reply)


if __name__ == "__main__":
    _worker()
