"""Parser for the text written by ``printer.py`` (exact round trip: parse(print(p)) == p)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from rnnc.errors import IRVerificationError
from rnnc.ir.graph import Cell, Graph, Node, Program, StateSpec, Weights, freeze_attr
from rnnc.ir.printer import HEADER
from rnnc.ir.types import TensorType

_DECL = re.compile(r"^(input|param) %([\w.\-]+): (.+)$")
_NODE = re.compile(r"^(?P<outs>%[^=]*?): (?P<types>.+?) = (?P<op>[\w.]+)\((?P<ins>[^)]*)\)(?: (?P<attrs>\{.*\}))?$")
_OUT = re.compile(r"^output ([\w.\-]+) = %([\w.\-]+)$")


class IRParseError(IRVerificationError):
    """The text is not valid rnnc IR; the message gives the line number."""


def _split_types(text: str) -> list[TensorType]:
    return [TensorType.parse(p + "]") for p in text.rstrip("]").split("], ")]


def parse_program(text: str, weights: Mapping[str, Any] | None = None) -> Program:
    lines = [ln.rstrip() for ln in text.splitlines()]
    if not lines or lines[0].strip() != HEADER:
        raise IRParseError(f"not rnnc IR: the first line must be {HEADER!r}")
    cells: dict[str, Cell] = {}
    i = 1
    pending: tuple[str, dict[str, Any]] | None = None
    program: Graph | None = None
    while i < len(lines):
        line = lines[i].strip()
        if not line or line.startswith("#"):
            i += 1
            continue
        if line.startswith("cell "):
            name, _, meta = line[5:].partition(" ")
            try:
                pending = (name, json.loads(meta))
            except json.JSONDecodeError as exc:
                raise IRParseError(f"line {i + 1}: bad cell metadata: {exc}") from None
            i += 1
        elif line.startswith("graph ") or line.startswith("program "):
            is_program = line.startswith("program ")
            graph, i = _parse_graph(lines, i, cells)
            if is_program:
                program = graph
            elif pending is None:
                raise IRParseError(f"line {i}: graph {graph.name} does not follow a cell line")
            else:
                cells[pending[0]] = _make_cell(pending[1], graph, cells, i)
                pending = None
        else:
            raise IRParseError(f"line {i + 1}: unexpected {line[:60]!r}")
    if program is None:
        raise IRParseError("no 'program' block in the text")
    return Program(program, Weights(weights or {}))


def _make_cell(meta: dict[str, Any], graph: Graph, cells: dict[str, Cell], line: int) -> Cell:
    try:
        return Cell(
            kind=meta["kind"], recurrence=meta["recurrence"], input_size=meta["input_size"],
            hidden_size=meta["hidden_size"], output_size=meta["output_size"],
            states=tuple(StateSpec(n, tuple(s), d) for n, s, d in meta["states"]),
            step=graph,
            attrs=tuple(sorted((k, _decode(v, cells)) for k, v in meta.get("attrs", {}).items())),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IRParseError(f"line {line}: incomplete cell metadata ({exc})") from None


def _decode(v: Any, cells: dict[str, Cell]) -> Any:
    if isinstance(v, dict) and set(v) == {"$cell"}:
        if v["$cell"] not in cells:
            raise IRParseError(f"reference to undefined cell {v['$cell']}")
        return cells[v["$cell"]]
    if isinstance(v, list):
        return tuple(_decode(x, cells) for x in v)
    return freeze_attr(v)


def _parse_graph(lines: list[str], i: int, cells: dict[str, Cell]) -> tuple[Graph, int]:
    name = lines[i].strip().split(" ", 1)[1]
    inputs: list[tuple[str, TensorType]] = []
    params: list[tuple[str, TensorType]] = []
    nodes: list[Node] = []
    outputs: list[tuple[str, str]] = []
    i += 1
    while i < len(lines):
        line = lines[i].strip()
        lineno = i + 1
        i += 1
        try:
            if line == "end":
                return Graph(name, tuple(inputs), tuple(params), tuple(nodes), tuple(outputs)), i
            if m := _DECL.match(line):
                (inputs if m.group(1) == "input" else params).append((m.group(2), TensorType.parse(m.group(3))))
            elif m := _OUT.match(line):
                outputs.append((m.group(1), m.group(2)))
            elif m := _NODE.match(line):
                outs = tuple(o.strip().lstrip("%") for o in m.group("outs").split(","))
                ins_text = m.group("ins").strip()
                ins = tuple("" if s.strip() == "_" else s.strip().lstrip("%")
                            for s in ins_text.split(",")) if ins_text else ()
                raw = json.loads(m.group("attrs")) if m.group("attrs") else {}
                attrs = tuple(sorted((k, _decode(v, cells)) for k, v in raw.items()))
                nodes.append(Node(m.group("op"), ins, outs, tuple(_split_types(m.group("types"))), attrs))
            elif line:
                raise IRParseError(f"line {lineno}: cannot parse {line[:80]!r}")
        except (ValueError, json.JSONDecodeError) as exc:
            if isinstance(exc, IRParseError):
                raise
            raise IRParseError(f"line {lineno}: {exc}") from None
    raise IRParseError(f"graph {name} has no 'end'")
