"""``newton``: recurrent layers solved parallel-in-time by Newton's method (``rnnc.lower.newton``).

Registered like a backend so that ``rnnc compile --time-parallel newton -o DIR`` writes an
output directory and ``rnnc.load(DIR)`` runs it; it is never picked automatically (it is not in
``rnnc.api.PREFERENCE``): parallel-in-time pays off on wide parallel hardware and long
sequences, which the user asks for.  It runs rnnc's torch reference on any device torch has; each
Newton step's linear recurrence runs in torch, in C over a CPU's threads or as Triton kernels
(the manifest's ``scan``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rnnc.backends import register_backend


class NewtonBackend:
    name = "newton"

    def supports(self, program: Any, target: Any = None) -> tuple[bool, str]:
        if not program.rnn_nodes():
            return False, "the program has no recurrent layer (rnn node) to solve in parallel"
        return True, ""

    def runnable(self, program: Any, target: Any = None, schedule: Any = None, batch: int = 1) -> Any:
        from rnnc.lower.newton import NewtonProgram, pick_methods

        return NewtonProgram(program, pick_methods(program, None)[0])

    def compile(self, program: Any, target: Any, outdir: str, schedule: Any = None, methods: Any = None,
                scan: str = "torch", **_: Any) -> dict:
        """Write the Program, each layer's method (``methods``: layer key -> full/diag/block) and the
        linear-recurrence solver (``scan``: "torch", "c" or "triton", ``rnnc.api.newton_scan``)."""
        from rnnc.backends.manifest import write_manifest, write_program
        from rnnc.ir.printer import layer_cells

        Path(outdir).mkdir(parents=True, exist_ok=True)
        methods = dict(methods or {})
        layers = {key: {"cell": c.kind, "path": "newton", "knobs": {"method": methods.get(key, "full")}}
                  for key, c in layer_cells(program).items()}
        tag = getattr(target, "tag", str(target))
        return write_manifest(outdir, {"backend": self.name, "target": tag, "layers": layers, "scan": scan,
                                       **write_program(outdir, program)})

    def load(self, outdir: str) -> Any:
        from rnnc.api import newton_scan
        from rnnc.backends.manifest import read_manifest, read_program
        from rnnc.lower.newton import NewtonProgram

        manifest = read_manifest(outdir)
        program = read_program(outdir, manifest)
        return NewtonProgram(program, {k: v["knobs"]["method"] for k, v in manifest["layers"].items()},
                             scan=newton_scan(manifest.get("scan", "torch")))


NEWTON_BACKEND = register_backend(NewtonBackend())
