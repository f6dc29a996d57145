"""The output-directory manifest shared by every backend that writes one (``rnnc compile -o``).

Every output directory holds ``manifest.json`` with at least ``format``, ``backend``,
``program_hash``, ``target``, ``versions``, ``layers``, ``program`` (the IR text file) and
``weights`` (a ``torch.save`` file); backends add their own keys per layer.  :func:`load`
reads the backend name from the manifest and asks that backend (through the registry, no
dispatch on names here) to load the directory, which is what ``rnnc.load(OUTDIR)`` should call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rnnc.errors import UserInputError

FORMAT = 1


def write_manifest(outdir: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write ``manifest.json`` (sorted keys, readable) with the format number added."""
    manifest = {"format": FORMAT, **manifest}
    Path(outdir, "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return manifest


def read_manifest(outdir: str | Path) -> dict[str, Any]:
    """The manifest of ``outdir``; a missing, corrupt or newer-format one is the user's error."""
    out = Path(outdir)
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserInputError(f"{out} is not an rnnc output directory (manifest.json: {exc})") from None
    if manifest.get("format") != FORMAT:
        raise UserInputError(f"{out}/manifest.json has format {manifest.get('format')}; this rnnc reads {FORMAT}")
    return manifest


def read_program(outdir: str | Path, manifest: dict[str, Any]) -> Any:
    """The Program stored in ``outdir`` (IR text + weights), checked against the manifest hash."""
    import torch

    from rnnc.ir.graph import Program

    out = Path(outdir)
    wpath, ppath = manifest_file(out, manifest, "weights"), manifest_file(out, manifest, "program")
    try:
        weights = torch.load(wpath, weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors alike for a damaged file
        raise UserInputError(f"{wpath} cannot be read as rnnc weights ({type(exc).__name__}); "
                             f"recompile the model into {out}") from None
    program = Program.parse(ppath.read_text(), weights)
    if program.hash() != manifest_field(out, manifest, "program_hash"):
        raise UserInputError(f"{out}/{manifest['program']} does not match the manifest's program hash (edited?)")
    return program


def manifest_field(outdir: str | Path, manifest: dict[str, Any], key: str) -> Any:
    """``manifest[key]``, or one sentence saying the manifest lacks it."""
    if key not in manifest:
        raise UserInputError(f"{outdir}/manifest.json has no {key!r} entry (damaged or hand-edited); recompile")
    return manifest[key]


def manifest_file(outdir: str | Path, manifest: dict[str, Any] | dict, key: str) -> Path:
    """The existing file ``manifest[key]`` names inside ``outdir``, or one sentence saying which is missing."""
    path = Path(outdir) / str(manifest_field(outdir, manifest, key))
    if not path.is_file():
        raise UserInputError(f"{path} is missing from the output directory (manifest key {key!r}); recompile")
    return path


def write_program(outdir: str | Path, program: Any) -> dict[str, str]:
    """Store the Program next to the artifacts; returns the manifest keys naming the files."""
    import torch

    out = Path(outdir)
    (out / "program.rnnc").write_text(program.text())
    torch.save(dict(program.weights), out / "weights.pt")
    return {"program": "program.rnnc", "weights": "weights.pt", "program_hash": program.hash()}


def load(outdir: str | Path) -> Any:
    """The callable program of any backend's output directory (``rnnc.load``)."""
    from rnnc.backends import get_backend

    manifest = read_manifest(outdir)
    backend = get_backend(str(manifest.get("backend", "")))
    if not hasattr(backend, "load"):
        raise UserInputError(f"backend {manifest.get('backend')!r} cannot load output directories")
    return backend.load(outdir)
