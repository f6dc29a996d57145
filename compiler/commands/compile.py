"""``rnnc compile``: trace a model and write a compiled output directory for one backend.

    rnnc compile model.py --input-shape 1,100,40 --target cpu/host --backend c -o out/
    rnnc compile model.py --input-shape 1,100,40 --target nvidia/h100-sxm --backend cuda -o out/

Any registered backend with a ``compile(program, target, outdir)`` method is accepted (the
registry answers, there is no list of names here); ``rnnc.load(OUTDIR)`` reads the result back.
"""

from __future__ import annotations

import argparse
import json

from rnnc.commands._load import add_model_arguments, model_and_inputs
from rnnc.errors import RnncError, UnsupportedError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile a model's recurrent layers for a target (C, CUDA, TVM, Triton or ONNX)",
                       description="Trace MODEL, render each recurrent layer for TARGET with BACKEND (chosen "
                                   "automatically unless given) and write sources, built artifacts and "
                                   "manifest.json to OUTDIR. "
                                   "Load the result with rnnc.load(OUTDIR).")
    add_model_arguments(p)
    p.add_argument("--target", default="cpu/host",
                   help="target tag or YAML file (see `rnnc targets`; default cpu/host)")
    p.add_argument("--backend", default=None,
                   help="backend name (c, cuda, tvm, triton, onnx); default: what rnnc.compile picks -- the fastest "
                        "tuned backend, and for a CPU model with non-recurrent ops the faster of the kernel backend "
                        "and onnxruntime on rnnc's export, measured on the example inputs")
    p.add_argument("--explain", action="store_true", help="say which backend was picked and why")
    p.add_argument("--time-parallel", choices=["newton", "newton-full", "newton-diag", "newton-block"],
                   default=None,
                   help="solve the recurrent layers parallel-in-time by Newton's method (DEER/ParaRNN): exact, "
                        "diagonal or block-diagonal Jacobians picked per layer on the example input, or fixed with "
                        "newton-full / newton-diag / newton-block; each step's linear recurrence in torch, "
                        "with --backend c in C over threads, with --backend triton as Triton kernels")
    p.add_argument("--batch", type=int, default=None,
                   help="batch size the schedule is solved for (default: the example input's batch)")
    p.add_argument("--no-db", action="store_true",
                   help="ignore the tuning database (default: a verified record for a layer, target and backend "
                        "is used, as rnnc.compile does)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output directory")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rnnc.api import choose_backend, example_batch
    from rnnc.api import compile as rnnc_compile
    from rnnc.backends import get_backend
    from rnnc.backends.manifest import write_manifest
    from rnnc.frontend import trace
    from rnnc.targets import get
    from rnnc.tune.resolve import default_source, resolve_schedules

    model, inputs = model_and_inputs(args)
    program = trace(model, inputs)
    target = get(args.target)
    if args.batch is None:
        args.batch = example_batch(program, inputs)
    if args.time_parallel:
        compiled = rnnc_compile(program, inputs, target, args.backend, time_parallel=args.time_parallel)
        if args.explain:
            print(compiled.explain())
        get_backend("newton").compile(program, target, args.output, methods=compiled.runner.methods,
                                      scan=getattr(compiled.runner.scan, "name", "torch"))
        print(f"wrote {args.output} (newton for {target.tag}; load with rnnc.load)")
        return 0
    if args.backend is None:  # the same choice rnnc.compile makes: records, then a measured engine
        choice = rnnc_compile(program, inputs, target, batch=args.batch, use_db=not args.no_db).choice
    else:
        choice = choose_backend(program, target, args.backend)
    # the native engine is the C backend's directory, whose loader runs the whole program natively
    native = choice.backend == "native"
    kernels = "c" if native else choice.backend
    backend = get_backend(kernels)
    if not hasattr(backend, "compile"):
        raise UnsupportedError(f"backend {choice.backend!r} does not write compiled output directories")
    # the same schedules rnnc.compile would use: a tuning record first, else the backend's default
    resolved = resolve_schedules(program, target, kernels, args.batch, use_db=not args.no_db)
    if args.explain:
        # rnnc.compile's explanation already names each layer's schedule source; choose_backend's does not
        extra = [f"  {line}" for line in resolved.lines()] if args.backend else []
        print("\n".join([choice.explain(), *extra]))
    kw = {"schedule": resolved.schedules} if resolved.schedules else {}
    manifest = backend.compile(program, target, args.output, batch=args.batch, **kw)
    for key, layer in manifest.get("layers", {}).items():  # where each layer's schedule came from
        if isinstance(layer, dict):
            layer["schedule_source"] = resolved.provenance.get(key, default_source(kernels))
    if native:
        manifest["engine"] = "native"
    if getattr(target, "gpu", None) is not None and kernels == "cuda":
        from rnnc.engines import has_non_recurrent_ops

        if has_non_recurrent_ops(program):  # the whole model as one CUDA module beside the layers
            from rnnc.backends.cstyle.whole_cuda import cuda_module, write_module

            try:
                module = cuda_module(program, inputs, target, resolved.schedules or None, args.batch)
                manifest["module"] = write_module(module, args.output)
            except RnncError as exc:  # the layers stand on their own: the module is declined, with why
                manifest["module"] = {"declined": str(exc).splitlines()[0]}
    manifest = write_manifest(args.output, {k: v for k, v in manifest.items() if k != "format"})
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        return 0
    engine = " as one native program" if native else (" + one CUDA module of the whole model"
                                                        if "source" in manifest.get("module", {}) else "")
    print(f"wrote {args.output} ({kernels}{engine} for {manifest['target']}, "
          f"program {manifest['program_hash'][:12]})")
    for key, layer in manifest["layers"].items():
        line = f"  {key}: {layer['path']} kernel, knobs {layer['knobs']}; schedule from {layer['schedule_source']}"
        print(line)
        for arch, res in layer.get("resources", {}).items():
            print(f"    {arch}: {res['registers']} registers, {res['shared_bytes']} B static smem, "
                  f"{res['spill_stores'] + res['spill_loads']} B spills")
    return 0
