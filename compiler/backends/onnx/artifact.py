"""ONNX as a compile target: ``rnnc compile --backend onnx -o OUT`` and ``rnnc.load(OUT)``.

The output directory holds ``model.onnx`` next to the shared manifest (``rnnc.backends.manifest``),
so ONNX directories load like every other backend's.  The loaded callable has the Program's
signature: tensors in, tensors out, each call a fresh sequence — initial states the exporter
added as inputs (a layer traced without one) are fed zeros, as ``Program.run`` does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from rnnc.backends.manifest import read_manifest, read_program, write_manifest, write_program
from rnnc.backends.onnx.export import export_onnx
from rnnc.backends.onnx.render import DEFAULT_OPSET
from rnnc.backends.onnx.runtime import StatefulSession

MODEL_FILE = "model.onnx"


class OnnxRunner:
    """Runs an exported model in onnxruntime with the traced model's call signature."""

    def __init__(self, path: str | Path, program: Any = None) -> None:
        self.session = StatefulSession(path)
        self.program = program

    def __call__(self, *inputs: Any) -> Any:
        import torch

        if self.program is not None:
            from rnnc.ir.interp import check_inputs

            check_inputs(self.program, inputs)
        self.session.reset()  # stateless between calls, like the interpreter
        outs = [torch.from_numpy(o) for o in self.session(*inputs)]
        if self.program is not None:  # the Program's own outputs, in its order (the export may add
            names = self.session.outputs  # final states of layers whose initial state was an input)
            outs = [outs[names.index(n)] for n in self.program.graph.output_names]
        return outs[0] if len(outs) == 1 else tuple(outs)


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    import rnnc

    return {"rnnc": rnnc.__version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def compile_to_dir(program: Any, target: Any, outdir: str | Path, opset: int = DEFAULT_OPSET,
                   **_: Any) -> dict[str, Any]:
    """Export ``program`` into ``outdir`` and write the manifest; returns the manifest."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(program, None, out / MODEL_FILE, opset=opset)
    tag = getattr(target, "tag", target) or "any"
    manifest = {"backend": "onnx", "target": tag, "versions": _versions(), "layers": {}, "model": MODEL_FILE,
                "opset": opset, **write_program(out, program)}
    return write_manifest(out, manifest)


def load(outdir: str | Path) -> OnnxRunner:
    manifest = read_manifest(outdir)
    return OnnxRunner(Path(outdir) / manifest["model"], read_program(outdir, manifest))


def runnable(program: Any) -> OnnxRunner:
    """An in-process runner (the file lives in a temporary directory kept alive with the runner)."""
    tmp = tempfile.TemporaryDirectory(prefix="rnnc-onnx-")
    path = Path(tmp.name) / MODEL_FILE
    export_onnx(program, None, path)
    runner = OnnxRunner(path, program)
    runner._tmp = tmp  # type: ignore[attr-defined]
    return runner
