"""Make every recurrent state a graph input and a graph output (an IR -> IR rewrite).

A deployed RNN is driven chunk by chunk, so the caller must be able to feed the state it kept
and read the state to keep.  ``expose_states`` gives each ``rnn`` node whose initial state is
omitted (zeros) a new graph input, and makes each final state a graph output.  The inputs are
*required*: ONNX has no way to default a ``[L*D, B, H]`` input with a dynamic batch to zeros,
so the caller feeds zeros to start (the ``rnnc.states`` metadata lists every pair).  The
rewritten Program runs in the IR interpreter like any other, which is how the tests check it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from rnnc.ir import Graph, Program, TensorType


@dataclass(frozen=True)
class StateIO:
    """One recurrent state of the exported model: feed ``input``, read ``output`` back."""

    input: str
    output: str
    type: TensorType
    layer_node: str  # the rnn node (its first output), for humans
    added_input: bool = True  # the exporter made it a graph input (the Program had none)
    added_output: bool = True  # the exporter made it a graph output

    def as_json(self) -> dict[str, object]:
        return {"input": self.input, "output": self.output, "shape": list(self.type.shape),
                "dtype": self.type.dtype, "rnn": self.layer_node, "added_input": self.added_input,
                "added_output": self.added_output}


def expose_states(program: Program) -> tuple[Program, tuple[StateIO, ...]]:
    """The Program with every rnn state as graph input and output, and the list of pairs."""
    g = program.graph
    rnn_nodes = [n for n in g.nodes if n.op == "rnn"]
    taken = {*g.input_names, *g.param_names, *(o for n in g.nodes for o in n.outputs), *g.output_names}

    def unique(name: str) -> str:
        base, k = name, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name

    inputs, outputs = list(g.inputs), list(g.outputs)
    graph_inputs = set(g.input_names)
    out_of_value = {v: n for n, v in reversed(g.outputs)}
    nodes, pairs = [], []
    for node in g.nodes:
        if node.op != "rnn":
            nodes.append(node)
            continue
        prefix = "" if len(rnn_nodes) == 1 else f"{node.outputs[0]}."
        ins = list(node.inputs)
        for i, s in enumerate(node.attr("cells")[0].states):
            st_type = node.types[1 + i]
            added_in = not ins[2 + i]
            if added_in:
                ins[2 + i] = unique(f"{prefix}{s.name}0")
                inputs.append((ins[2 + i], st_type))
                graph_inputs.add(ins[2 + i])
            final = node.outputs[1 + i]
            if ins[2 + i] not in graph_inputs:
                continue  # computed inside the model (Silero slices its state input): the model returns its own
            added_out = final not in out_of_value
            if added_out:
                out_of_value[final] = unique(f"{prefix}{s.name}_n")
                outputs.append((out_of_value[final], final))
            pairs.append(StateIO(ins[2 + i], out_of_value[final], st_type, node.outputs[0], added_in, added_out))
        nodes.append(dataclasses.replace(node, inputs=tuple(ins)))
    graph = Graph(g.name, tuple(inputs), g.params, tuple(nodes), tuple(outputs))
    return Program(graph, program.weights, program.source).verify(), tuple(pairs)
