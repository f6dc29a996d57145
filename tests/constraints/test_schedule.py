"""The one Schedule type: JSON round trip, hashing, validation."""

from __future__ import annotations

import json

import pytest

from rnnc.constraints import ProblemSpec, Schedule, solve
from rnnc.constraints.schedule import Resources
from rnnc.errors import UserInputError

CASES = [
    (ProblemSpec("lstm", 768, batch=16, dtype="bf16"), "nvidia/h100-sxm"),
    (ProblemSpec("mamba", 1024, batch=2, dtype="fp16"), "nvidia/t4"),
    (ProblemSpec("gru", 512, batch=4, dtype="fp32"), "cpu/x86-avx2"),
    (ProblemSpec("mingru", 512, batch=4, dtype="fp32"), "cpu/arm64-neon"),
]


@pytest.mark.parametrize("spec, tag", CASES, ids=lambda x: str(x)[:30])
def test_json_round_trip_and_hash(spec, tag):
    s = solve(spec, tag)
    back = Schedule.from_json(s.to_json())
    assert back == s and hash(back) == hash(s)
    assert len({s, back}) == 1
    assert json.loads(s.to_json())["problem"]["cell"] == spec.cell
    assert s.source == "solver:rnnc" and s.with_source("tuned").source == "tuned"
    assert s.with_source("tuned") != s


def test_rnnc_and_cpsat_schedules_differ_only_in_source():
    spec, tag = CASES[0]
    a, b = solve(spec, tag, solver="rnnc"), solve(spec, tag, solver="cpsat")
    assert a.with_source("tuned") == b.with_source("tuned")


def test_params_are_sorted_and_validated():
    s = Schedule("fused_recurrence", "lstm", "nvidia/t4", (("hidden", 8),), (("z", 1), ("a", "x")))
    assert s.params == (("a", "x"), ("z", 1)) and s.param("z") == 1 and s.param("missing", 7) == 7
    with pytest.raises(UserInputError, match="int or a string"):
        Schedule("k", "lstm", "t", (), (("a", 1.5),))
    with pytest.raises(UserInputError, match="source"):
        Schedule("k", "lstm", "t", (), (), source="guess")
    assert Schedule("k", "c", "t", (), (), Resources(blocks=1)).resources.blocks == 1


def test_bad_json_is_a_user_error():
    with pytest.raises(UserInputError, match="not valid JSON"):
        Schedule.from_json("{nope")
    with pytest.raises(UserInputError, match="not a valid rnnc schedule"):
        Schedule.from_json('{"kernel": "x"}')
    good = json.loads(solve(*CASES[0]).to_json())
    good["version"] = 99
    with pytest.raises(UserInputError, match="schema version 99"):
        Schedule.from_dict(good)
