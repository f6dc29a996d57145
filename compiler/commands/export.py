"""``rnnc export``: trace a PyTorch model and write it as a checked ONNX file."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

from rnnc.commands._load import add_model_arguments, model_and_inputs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a PyTorch model to ONNX (dynamic length, state in/out)",
                       description="Trace MODEL with example inputs of the given shapes and write an ONNX model. "
                                   "Batch and sequence length stay dynamic; every recurrent state is an extra "
                                   "input (feed zeros to start) and output. LSTM/GRU/RNN layers use the native "
                                   "ONNX ops, other cells an ONNX Scan.")
    add_model_arguments(p, shape_help="shape of one example input, e.g. 1,16,40; repeat once per input. With "
                        "--streaming its time dim is the chunk length of the step model")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write the .onnx file")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    p.add_argument("--streaming", action="store_true",
                   help="write a step model: one chunk of the example's length in, state in, state out")
    p.add_argument("--for", dest="provider", metavar="PROVIDER",
                   help="a phone/edge execution provider (nnapi, coreml, qnn, xnnpack, ort-mobile; "
                        "targets/providers/*.yaml): a streaming model with fixed shapes in that provider's ops, "
                        "its .ort file and reduced-build operator config beside it, and onnxruntime's verdict "
                        "on how much of it the provider takes (exit 1 below 90 %%)")
    p.add_argument("--no-ort", action="store_true", help="with --for: skip the .ort conversion")
    p.add_argument("--no-linear-attention", action="store_true",
                   help="write GLA/RetNet/HGRN2/DeltaNet/Mamba-2 layers as an ONNX Scan instead of onnxruntime's "
                        "com.microsoft.LinearAttention (for runtimes other than onnxruntime)")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.set_defaults(func=run)


def print_mobile(report, as_json: bool, extra: dict | None = None) -> int:
    """The report of an export for a provider (``rnnc export --for``, ``rnnc quantize --for``);
    exit status 1 when the provider takes too little of the model."""
    out = {**report.as_json(), **(extra or {})}
    if as_json:
        print(json.dumps(out, indent=2))
    else:
        fixed = ", ".join(f"{k}={v}" for k, v in report.fixed_dims.items())
        print(f"wrote {report.path} for {report.provider.name} ({os.path.getsize(report.path) / 1024:.1f} KiB"
              f"{', fixed ' + fixed if fixed else ''})")
        print(f"  {report.provider.short}: {report.coverage.text()}")
        if report.rewrites:
            print(f"  rewritten into its ops: {', '.join(sorted(set(report.rewrites)))}")
        if report.ort_path:
            print(f"  {report.ort_path} and {report.config_path} (onnxruntime's converter, "
                  f"{report.provider.ort_style} style)")
        for key, value in (extra or {}).items():
            print(f"  {key}: {value}")
    if report.problem:
        print(f"error: {report.problem}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    from rnnc.backends.onnx import DEFAULT_OPSET, export_onnx

    model, inputs = model_and_inputs(args)
    if args.provider:
        from rnnc.backends.onnx.mobile import export_mobile

        report = export_mobile(model, inputs, args.output, provider=args.provider, opset=args.opset,
                               ort=not args.no_ort)
        return print_mobile(report, args.json)
    onnx_model = export_onnx(model, inputs, args.output, opset=args.opset or DEFAULT_OPSET,
                             streaming=args.streaming, linear_attention=not args.no_linear_attention)
    meta = {p.key: p.value for p in onnx_model.metadata_props}

    def shapes(values) -> dict[str, list]:
        return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}

    summary = {
        "path": args.output,
        "bytes": os.path.getsize(args.output),
        "opset": int(meta["rnnc.opset"]),
        "streaming": args.streaming,
        "program_hash": meta["rnnc.program_hash"],
        "inputs": shapes(onnx_model.graph.input),
        "outputs": shapes(onnx_model.graph.output),
        "states": json.loads(meta["rnnc.states"]),
        "ops": dict(Counter(n.op_type for n in onnx_model.graph.node)),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"wrote {args.output} ({summary['bytes'] / 1024:.1f} KiB, opset {summary['opset']}"
          f"{', streaming' if args.streaming else ''})")
    for kind in ("inputs", "outputs"):
        print(f"  {kind}: " + ", ".join(f"{n}{v}" for n, v in summary[kind].items()))
    if summary["states"]:
        pairs = ", ".join(f"{s['input']} -> {s['output']}" for s in summary["states"])
        print(f"  states (feed zeros to start): {pairs}")
    recurrent = {k: v for k, v in summary["ops"].items() if k in ("LSTM", "GRU", "RNN", "Scan")}
    print(f"  recurrent ops: {recurrent or 'none'}")
    return 0
