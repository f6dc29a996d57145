"""``rnnc trace``: trace a PyTorch model into rnnc IR and show it."""

from __future__ import annotations

import argparse
import json

from rnnc.commands._load import add_model_arguments, model_and_inputs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help="trace a PyTorch model into rnnc IR",
                       description="Trace MODEL with example inputs of the given shapes (random values), "
                                   "verify the IR and print a summary, the full IR (--print) or JSON (--json).")
    add_model_arguments(p)
    p.add_argument("--print", dest="print_ir", action="store_true", help="print the full IR text")
    p.add_argument("-o", "--output", metavar="FILE", help="write the IR text to FILE")
    p.add_argument("--json", action="store_true", help="machine-readable summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model, inputs = model_and_inputs(args)
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
