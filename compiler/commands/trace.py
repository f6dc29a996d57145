"""``rnnc trace``: trace a PyTorch model into rnnc IR and show it."""

from __future__ import annotations

import argparse
import json

from rnnc.commands._load import MODEL_HELP, load_model, parse_shape, select_submodule
from rnnc.errors import UserInputError

_DTYPES = ("float32", "float16", "bfloat16", "float64", "int64")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help="trace a PyTorch model into rnnc IR",
                       description="Trace MODEL with example inputs of the given shapes (random values), "
                                   "verify the IR and print a summary, the full IR (--print) or JSON (--json).")
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--input-shape", action="append", required=True, metavar="SHAPE",
                   help="shape of one example input, e.g. 4,32,16; repeat once per input")
    p.add_argument("--submodule", metavar="PATH",
                   help="trace model.PATH instead of the whole model, e.g. _model for silero_vad.jit's "
                        "stateless inner network")
    p.add_argument("--dtype", action="append", choices=_DTYPES,
                   help="dtype of each input (default float32; int64 inputs are filled with small ints)")
    p.add_argument("--print", dest="print_ir", action="store_true", help="print the full IR text")
    p.add_argument("-o", "--output", metavar="FILE", help="write the IR text to FILE")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.set_defaults(func=run)


def example_inputs(shapes: list[str], dtypes: list[str] | None) -> tuple:
    import torch

    dtypes = dtypes or []
    if len(dtypes) > len(shapes):
        raise UserInputError(f"{len(dtypes)} --dtype values for {len(shapes)} --input-shape values")
    gen = torch.Generator().manual_seed(0)
    out = []
    for i, s in enumerate(shapes):
        shape = parse_shape(s)
        dt = dtypes[i] if i < len(dtypes) else "float32"
        if dt == "int64":
            out.append(torch.randint(0, 2, shape, generator=gen))
        else:
            out.append(torch.randn(shape, generator=gen).to(getattr(torch, dt)))
    return tuple(out)


def run(args: argparse.Namespace) -> int:
    model = select_submodule(load_model(args.model), args.submodule)
    inputs = example_inputs(args.input_shape, args.dtype)
    from rnnc.frontend import trace

    program = trace(model, inputs)
    if args.output:
        with open(args.output, "w") as f:
            f.write(program.text())
    if args.json:
        g = program.graph
        types = g.value_types()
        print(json.dumps({
            "hash": program.hash(),
            "inputs": {n: t.text() for n, t in g.inputs},
            "outputs": {n: types[v].text() for n, v in g.outputs},
            "ops": [n.op for n in g.nodes],
            "recurrent_layers": [{
                "cells": [c.kind for c in n.attr("cells")], "recurrence": n.attr("cells")[0].recurrence,
                "bidirectional": n.attr("bidirectional"), "batch_first": n.attr("batch_first"),
                "input_size": n.attr("cells")[0].input_size, "hidden_size": n.attr("cells")[0].hidden_size,
            } for n in program.rnn_nodes()],
            "num_weights": sum(int(w.numel()) for w in program.weights.values()),
        }, indent=2))
    elif args.print_ir:
        print(program.text(), end="")
    else:
        print(program.summary())
    return 0
