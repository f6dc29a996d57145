"""``rnnc quantize``: calibrate a model on sample inputs and write it quantized (integer ONNX or IR)."""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter

from rnnc.commands._load import DTYPES, MODEL_HELP, example_inputs, load_model, select_submodule
from rnnc.errors import UserInputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize", help="post-training quantization with outlier handling (int8/int4, ONNX integer kernels)",
        description="Run MODEL on the calibration inputs, record per-channel activation statistics (inside "
                    "recurrent cells at every step), and write the model with int8/int4 weights. OUT ending in "
                    ".onnx gets onnxruntime integer kernels (MatMulInteger/ConvInteger/MatMulNBits; GRU/LSTM as "
                    "Scan); OUT ending in .pt gets the quantized IR (text + tensors, Program.parse to load).")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--submodule", metavar="PATH", help="quantize model.PATH (e.g. _model inside silero_vad.jit)")
    p.add_argument("--calib", required=True, metavar="DIR_OR_NPZ",
                   help="an .npz of input arrays named like the model's inputs (one batch), or a directory of "
                        "them; inputs left out (initial states) are zeros")
    p.add_argument("--scheme", default=None, choices=("w8a8", "w8", "w4a8", "w4", "auto"),
                   help="weight bits and whether activations are int8 (default w8a8)")
    p.add_argument("--outliers", default=None, choices=("none", "keep", "smooth", "rotate", "clip"),
                   help="activation outlier treatment: keep hot channels in float, SmoothQuant scale migration, "
                        "Hadamard rotation, or percentile clipping (default none; --scheme auto tries each "
                        "unless this names one)")
    p.add_argument("--threshold", type=float, default=8.0, help="keep: max/median channel ratio of an outlier")
    p.add_argument("--alpha", type=float, default=0.5, help="smooth: migration strength in [0, 1]")
    p.add_argument("--percentile", type=float, default=99.99, help="clip: percentile of |x| kept in range")
    p.add_argument("--group", type=int, default=32, help="int4: inputs per scale group")
    p.add_argument("--static", action="store_true",
                   help="a8 schemes: calibrated activation scales (QLinearConv chains in ONNX) instead of per-call "
                        "dynamic ones; fastest at small batch")
    p.add_argument("--dynamic", action="append", default=[], metavar="NAME",
                   help="with --static: weight/site name or dotted prefix (e.g. decoder.rnn) that keeps per-call "
                        "dynamic activation scales; a one-step LSTM so quantized becomes one onnxruntime "
                        "DynamicQuantizeLSTM node; repeatable")
    p.add_argument("--sequence-scale", default="lstm", choices=("lstm", "all", "none"),
                   help="dynamic a8: which cells quantize their input once per sequence instead of at every step "
                        "(default lstm: an LSTM then exports as onnxruntime's fused DynamicQuantizeLSTM; 'all' also "
                        "runs other cells' input projections as one integer GEMM over all steps)")
    p.add_argument("--recurrent-bits", type=int, default=0, choices=(0, 4, 8),
                   help="int4 schemes: weight bits of state-fed (recurrent) projections (0: the scheme's)")
    p.add_argument("--group8", type=int, default=0,
                   help="int8 weights: 0 = one scale per output channel, else group-wise (power of two >= 16)")
    p.add_argument("--mse-clip", action="store_true", help="int4: per-group scales searched for the least error")
    p.add_argument("--gptq", action="store_true",
                   help="GPTQ rounding of linear weights: each column's rounding error is spread onto the columns "
                        "not yet quantized, weighted by the calibrated input Hessian (slower calibration)")
    p.add_argument("--gptq-act-order", action="store_true",
                   help="gptq: quantize columns by decreasing input energy (group scales fixed up front)")
    p.add_argument("--int8-weight", action="append", default=[], metavar="NAME",
                   help="int4 schemes: weight or site name kept int8 (e.g. a sensitive output head); repeatable")
    p.add_argument("--weight-only", action="append", default=[], metavar="NAME",
                   help="weight or site name whose activations stay float (int8 storage only); repeatable")
    p.add_argument("--min-weight", type=int, default=0, metavar="N",
                   help="weights with fewer than N elements stay float (their int kernels cost more than they save)")
    p.add_argument("--no-fold", action="store_true",
                   help="smooth: keep the activation division as a run-time Mul instead of folding it into the "
                        "producing linear/conv")
    p.add_argument("--max-loss", type=float, default=0.01, metavar="L",
                   help="--scheme auto: the largest relative L2 distortion of the outputs on held-out data "
                        "(default 0.01); per-site precision is searched for the fastest plan within it")
    p.add_argument("--validation", metavar="DIR_OR_NPZ",
                   help="--scheme auto: data the loss is measured on (default: the last calibration batch)")
    p.add_argument("--for", dest="provider", metavar="PROVIDER",
                   help="a phone/edge execution provider (nnapi, coreml, qnn, xnnpack, ort-mobile): the int8 form "
                        "it places (static QDQ, or weight-only for coreml), exported as a fixed-shape streaming "
                        "model (shapes of --input-shape or of the first calibration batch) with its .ort file, "
                        "onnxruntime's coverage verdict and the output distortion against fp32")
    p.add_argument("--target", default=None, metavar="TAG",
                   help="the CPU the int8 model must be exact on (default: this machine, cpu/host; with --for an "
                        "Arm CPU, cpu/arm64-neon); its "
                        "int8_dot entry decides the weight format, e.g. 7-bit weights for cpu/x86-avx2, whose "
                        "u8 x s8 dot product saturates (`rnnc targets show TAG`)")
    p.add_argument("--int8-format", default="", choices=("", "s8", "s7", "u8"),
                   help="override the target's format: s8 full-range int8 weights, s7 7-bit weights (exact on "
                        "every CPU, fastest where u8 x s8 saturates), u8 full-range weights stored as u8 where "
                        "the target needs it (exact, slower there)")
    p.add_argument("--input-shape", action="append", metavar="SHAPE",
                   help="shape of an example input to trace with (default: the first calibration batch)")
    p.add_argument("--dtype", action="append", choices=DTYPES, help="dtype of each --input-shape input")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="OUT.onnx or OUT.pt")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.set_defaults(func=run)


#: the ops the summary line counts: onnxruntime's integer kernels and what feeds them
INTEGER_OPS = ("MatMulInteger", "MatMulIntegerToFloat", "ConvInteger", "QLinearConv", "MatMulNBits",
               "DynamicQuantizeLSTM", "DynamicQuantizeLinear", "QuantizeLinear", "Scan")


def _first_batch(calib: str) -> tuple:
    """Example inputs to trace with: the first calibration batch, arrays in file order."""
    from pathlib import Path

    import numpy as np
    import torch

    from rnnc.quant.data import load_path

    arrays = [np.asarray(v) for v in load_path(Path(calib))[0].values()]
    # numpy defaults to float64; models (and the calibration check) take float32
    return tuple(torch.from_numpy(a.astype(np.float32) if a.dtype.kind == "f" else a) for a in arrays)


def _distortion(program, qprogram, calib: str) -> str:
    """Relative L2 distortion of the outputs (the largest over outputs, ``quant.auto.relative_l2``),
    quantized IR against the float Program on the first calibration batch: the accuracy half of a
    provider export's report (the exported model matches the quantized IR,
    ``tests/backends/onnx/test_mobile.py``)."""
    from pathlib import Path

    import torch

    from rnnc.quant.auto import relative_l2
    from rnnc.quant.data import calibration_batches

    batch = calibration_batches(program, Path(calib))[0]
    with torch.no_grad():
        ref, got = program.run(*batch), qprogram.run(*batch)
    as_list = (lambda v: list(v) if isinstance(v, (tuple, list)) else [v])  # noqa: E731
    return f"{relative_l2(as_list(ref), as_list(got)):.4f}"


def run(args: argparse.Namespace) -> int:
    import torch

    from rnnc.frontend import trace
    from rnnc.quant import QuantConfig, quantize
    from rnnc.targets.int8dot import weight_format

    options = dict(threshold=args.threshold, alpha=args.alpha, percentile=args.percentile, group=args.group,
                   static=args.static, recurrent_bits=args.recurrent_bits, group8=args.group8, mse_clip=args.mse_clip,
                   gptq=args.gptq, gptq_act_order=args.gptq_act_order, int8_weights=tuple(args.int8_weight),
                   weight_only=tuple(args.weight_only), min_weight=args.min_weight, fold=not args.no_fold,
                   dynamic=tuple(args.dynamic), sequence_scale=args.sequence_scale, target=args.target,
                   int8_format=args.int8_format)
    auto = args.scheme == "auto"
    if args.provider:
        from rnnc.quant.config import for_provider

        if not args.output.endswith(".onnx"):
            raise UserInputError(f"with --for the output is an ONNX model for the provider; got {args.output!r}")
        scheme, checked = for_provider(args.provider, None if auto else args.scheme, options)
        QuantConfig(scheme, args.outliers or "none", **checked).check()
        options["target"] = checked["target"]
    else:
        options["target"] = args.target or "cpu/host"
        QuantConfig("w8a8" if auto else args.scheme or "w8a8", args.outliers or "none", **options).check()
    weight_format(options["target"], args.int8_format)  # so does a GPU or unknown --target
    if args.model.endswith(".onnx"):
        raise UserInputError(f"{args.model}: rnnc quantize reads the PyTorch model (.py, package.module:NAME or "
                             f".jit), not ONNX; quantize the source model and it writes the integer ONNX")
    if not args.output.endswith((".onnx", ".pt")):
        raise UserInputError(f"output {args.output!r} must end in .onnx (integer ONNX) or .pt (quantized IR)")
    if not os.path.exists(args.calib):
        raise UserInputError(f"calibration data {args.calib} does not exist")
    model = select_submodule(load_model(args.model), args.submodule)
    examples = example_inputs(args.input_shape, args.dtype) if args.input_shape else _first_batch(args.calib)
    program = trace(model, examples)
    if args.validation and not os.path.exists(args.validation):
        raise UserInputError(f"validation data {args.validation} does not exist")
    extra = {"max_loss": args.max_loss, "validation": args.validation} if auto else {}
    if args.provider:
        extra["provider"] = args.provider
    q = quantize(program, args.calib, args.scheme, args.outliers, progress=not args.json, **extra, **options)
    if args.provider:
        from rnnc.commands.export import print_mobile

        report = q.export_mobile(args.output, examples)
        if not args.json:
            print(q.report.summary())
            if q.auto is not None:
                print(q.auto.summary())
        return print_mobile(report, args.json, {"distortion vs fp32 (quantized IR, calibration data)":
                                                 _distortion(program, q.program, args.calib)})
    out: dict = {"path": args.output, **q.report.as_json()}
    if q.auto is not None:
        out["auto"] = q.auto.as_json()
    if args.output.endswith(".onnx"):
        model_proto = q.export_onnx(args.output)

        def ops(graph, c: Counter) -> Counter:
            for n in graph.node:
                c[n.op_type] += 1
                for a in n.attribute:
                    if a.type == a.GRAPH:
                        ops(a.g, c)
            return c

        out["ops"] = dict(ops(model_proto.graph, Counter()))
        meta = {m.key: m.value for m in model_proto.metadata_props}
        if "rnnc.int8" in meta:
            out["int8"] = json.loads(meta["rnnc.int8"])
    else:
        torch.save({"text": q.program.text(), "weights": dict(q.program.weights)}, args.output)
    out["bytes"] = os.path.getsize(args.output)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(q.report.summary())
    if q.auto is not None:
        print(q.auto.summary())
    if "int8" in out:
        i8 = out["int8"]
        print(f"int8 weights exact on {i8['target']} ({i8['instruction']}, {i8['semantics']}): "
              + ", ".join(f"{n} {f}" for f, n in sorted(i8["formats"].items()))
              + (f"; {len(i8['converted_to_u8'])} stored as u8 to stay exact" if i8["converted_to_u8"] else ""))
    integer = {k: v for k, v in out.get("ops", {}).items() if k in INTEGER_OPS}
    print(f"wrote {args.output} ({out['bytes'] / 1024:.1f} KiB)" + (f"; integer kernels: {integer}" if integer else ""))
    if "ConvInteger" in out.get("ops", {}) and not args.static:
        print("note: onnxruntime's ConvInteger (dynamic int8 convs) is slower than its float Conv at small sizes; "
              "--static turns conv chains into QLinearConv, and --scheme auto times the choices on this CPU "
              "(measurements: docs/benchmarks/quant_eval.md)")
    return 0
