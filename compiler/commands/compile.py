"""``rnnc compile``: trace a model and write a compiled output directory for one backend.

    rnnc compile model.py --input-shape 1,100,40 --target cpu/host --backend c -o out/
    rnnc compile model.py --input-shape 1,100,40 --target nvidia/h100-sxm --backend cuda -o out/

Any registered backend with a ``compile(program, target, outdir)`` method is accepted (the
registry answers, there is no list of names here); ``rnnc.load(OUTDIR)`` reads the result back.
"""

from __future__ import annotations

import argparse
import json

from rnnc.commands._load import DTYPES as _DTYPES
from rnnc.commands._load import MODEL_HELP, example_inputs, load_model
from rnnc.errors import UnsupportedError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile a model's recurrent layers for a target (C or CUDA kernels)",
                       description="Trace MODEL, lower each recurrent layer to a loop nest for TARGET, render it "
                                   "with BACKEND and write sources, built artifacts and manifest.json to OUTDIR. "
                                   "Load the result with rnnc.load(OUTDIR).")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--input-shape", action="append", required=True, metavar="SHAPE",
                   help="shape of one example input, e.g. 1,16,40; repeat once per input")
    p.add_argument("--dtype", action="append", choices=_DTYPES, help="dtype of each input (default float32)")
    p.add_argument("--target", default=None, help="target tag (see `rnnc targets`), default cpu/host for c")
    p.add_argument("--backend", default="c", help="backend name, e.g. c or cuda (default c)")
    p.add_argument("--batch", type=int, default=1, help="batch size the schedule is solved for (default 1)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output directory")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rnnc.backends import get_backend
    from rnnc.frontend import trace

    backend = get_backend(args.backend)
    if not hasattr(backend, "compile"):
        raise UnsupportedError(f"backend {args.backend!r} does not write compiled output directories")
    model = load_model(args.model)
    program = trace(model, example_inputs(args.input_shape, args.dtype))
    target = args.target
    ok, reason = backend.supports(program, target)
    if not ok:
        raise UnsupportedError(f"backend {args.backend} cannot compile this model: {reason}")
    manifest = backend.compile(program, target, args.output, batch=args.batch)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        return 0
    print(f"wrote {args.output} ({args.backend} for {manifest['target']}, program {manifest['program_hash'][:12]})")
    for key, layer in manifest["layers"].items():
        line = f"  {key}: {layer['path']} loop nest, knobs {layer['knobs']}"
        print(line)
        for arch, res in layer.get("resources", {}).items():
            print(f"    {arch}: {res['registers']} registers, {res['shared_bytes']} B static smem, "
                  f"{res['spill_stores'] + res['spill_loads']} B spills")
    return 0
