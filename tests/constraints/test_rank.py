"""k-best ranking (`rnnc.constraints.rank.top_k`, `candidates`) against exhaustive enumeration."""

from __future__ import annotations

import itertools

import pytest

from rnnc.constraints import Model, ProblemSpec, brute_force, build, candidates, solve
from rnnc.constraints.brute import combinations
from rnnc.constraints.rank import top_k
from rnnc.targets import get


def ranked_by_enumeration(model: Model) -> list[tuple[tuple[int, ...], list[int]]]:
    """Every feasible assignment sorted by (objective, enumeration order): the ground truth."""
    dec = model.decisions()
    orders = [model.vars[i].values if model.vars[i].prefer == "min" else model.vars[i].values[::-1] for i in dec]
    out = []
    for n, combo in enumerate(itertools.product(*orders)):
        vals = model.evaluate(dict(zip(dec, combo, strict=True)))
        if vals is not None and model.feasible(vals):
            out.append((model.objective_value(vals), n, vals))
    out.sort(key=lambda e: (e[0], e[1]))
    return [(obj, vals) for obj, _, vals in out]


@pytest.mark.parametrize("cell,hidden,target", [
    ("lstm", 64, "cpu/x86-avx512"), ("gru", 48, "cpu/x86-avx2"), ("mingru", 64, "cpu/arm64-neon"),
    ("elman", 64, "nvidia/t4"), ("mamba", 32, "nvidia/a10"),
])
def test_top_k_equals_sorted_enumeration(cell: str, hidden: int, target: str) -> None:
    model = build(ProblemSpec(cell, hidden=hidden, batch=2, dtype="fp32", seq_len=64), get(target)).model
    assert combinations(model) < 300_000
    truth = ranked_by_enumeration(model)
    assert len(truth) >= 3
    for k in (1, 3, 10):
        got = top_k(model, k)
        names = [v.name for v in model.vars]
        assert [s.objective for s in got] == [obj for obj, _ in truth[:k]]
        assert [[s.values[n] for n in names] for s in got] == [vals for _, vals in truth[:k]]
    assert top_k(model, 1)[0].values == brute_force(model).values


def test_top_k_when_fewer_exist_and_infeasible() -> None:
    m = Model("tiny")
    a = m.decision("a", [1, 2, 3])
    m.add_le(a, 2)
    m.minimize(a * -1)
    assert [s.values["a"] for s in top_k(m, 5)] == [2, 1]
    m.add_ge(a, 3)
    assert top_k(m, 5) == []
    with pytest.raises(ValueError):
        top_k(m, 0)


def test_candidates_start_with_the_solver_answer_and_are_distinct() -> None:
    spec = ProblemSpec("lstm", hidden=256, batch=4, dtype="fp32")
    cands = candidates(spec, "cpu/x86-avx512", 6)
    assert cands[0].params == solve(spec, "cpu/x86-avx512").params
    assert len(cands) == 6 and len({c.params for c in cands}) == 6
    est = [c.estimate.seconds for c in cands]
    assert est == sorted(est)
