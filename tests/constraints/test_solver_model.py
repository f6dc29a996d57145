"""The modelling layer and the two solvers on generic models: rnnc == CP-SAT == brute force."""

from __future__ import annotations

import random

import pytest

from rnnc.constraints import Model, ModelError, brute_force, solve_model
from rnnc.constraints.search import RnncSolver


def _agree(model: Model):
    """Solve with all three; they must return the same objective and the same decisions."""
    results = [brute_force(model), solve_model(model, "rnnc"), solve_model(model, "cpsat")]
    keys = [None if r is None else (r.objective, r.decisions(model)) for r in results]
    assert keys[0] == keys[1] == keys[2], f"{model.name}: brute={keys[0]} rnnc={keys[1]} cpsat={keys[2]}"
    return results[0]


def _random_model(seed: int) -> Model:
    """Products, quotients, divisibility, linear and max constraints over small divisor-rich domains."""
    r = random.Random(seed)
    m = Model(f"random{seed}")
    pool = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
    ds = [m.decision(f"d{k}", r.sample(pool, r.randint(1, 6)), prefer=r.choice(["min", "max"]))
          for k in range(r.randint(2, 5))]
    a, b = r.sample(ds, 2)
    p = m.product("p", a, b)
    q = m.quotient("q", r.choice([96, 128, 192, 256]), ds[0])
    m.add_divides(ds[-1], r.choice([48, 64, 96]))
    m.add_le(p + 3 * ds[-1], r.randint(20, 400))
    mx = m.maximum("mx", p * 2, q + ds[1] * 3)
    m.add_resource("res", p * 4 - q, r.randint(50, 800), "bytes", "test resource")
    if r.random() < 0.3:
        m.add_eq(ds[0] + ds[1], r.choice([10, 14, 34, 48]))
    m.minimize(mx - p + r.randint(0, 3) * q, ds[0] * r.choice([1, -1]))
    return m


@pytest.mark.parametrize("chunk", range(6))
def test_random_models_all_three_agree(chunk):
    feasible = 0
    for seed in range(chunk * 60, chunk * 60 + 60):
        feasible += _agree(_random_model(seed)) is not None
    assert feasible > 10  # the generator must produce feasible models too


def test_cpsat_presolve_bug_model_is_solved():
    """OR-Tools 9.15 presolve calls this feasible model INFEASIBLE (google/or-tools#5274);
    the backend turns presolve off, so it must agree with brute force."""
    m = Model("presolve_bug")
    d0 = m.decision("d0", [2, 8, 32, 48, 64])
    d1 = m.decision("d1", [2, 12])
    d2 = m.decision("d2", [1, 2, 8, 24, 32], prefer="max")
    p = m.product("p", d2, d1)
    q = m.quotient("q", 256, d0)
    mx = m.maximum("mx", p * 2, q + d1 * 3)
    m.add_eq(mx - p + q, 10)
    m.add_eq(d0, 64)
    sol = _agree(m)
    assert sol is not None and sol["d0"] == 64 and sol["q"] == 4


def test_tie_break_is_first_in_preference_order():
    m = Model("ties")
    a = m.decision("a", [1, 2, 3, 4], prefer="max")
    b = m.decision("b", [1, 2, 3, 4])
    m.add_le(a + b, 5)
    m.minimize(m.define("zero", 0 * a))  # every assignment ties
    sol = _agree(m)
    assert (sol["a"], sol["b"]) == (4, 1)


def test_no_objective_returns_the_first_feasible_assignment():
    m = Model("feasibility")
    x = m.decision("x", [3, 5, 7, 9], prefer="max")
    m.add_divides(3, x)
    assert _agree(m)["x"] == 9


def test_lexicographic_objective():
    m = Model("lex")
    x = m.decision("x", range(1, 7))
    y = m.decision("y", range(1, 7))
    m.add_ge(x + y, 7)
    m.minimize(x + y, -x * 2 + y)  # x + y = 7 first, then as large an x as possible
    sol = _agree(m)
    assert (sol["x"], sol["y"]) == (6, 1)


def test_infeasible_model_gives_none_everywhere():
    m = Model("infeasible")
    x = m.decision("x", [2, 4, 8])
    m.add_divides(3, m.product("y", x, 5))
    assert _agree(m) is None


def test_divisor_propagation_at_the_root():
    """x * y == 768 leaves only divisor pairs in both domains (the ConstrINT idea)."""
    m = Model("divisors")
    x = m.decision("x", range(1, 100))
    y = m.decision("y", [1, 2, 3, 4, 5, 6, 7, 8])
    m.add_eq(m.product("xy", x, y), 768)
    solver = RnncSolver(m)
    st = solver._root()
    solver._propagate(st, list(range(len(solver.props))))
    assert st[2][x.index] == (96,)  # 768 / 8; no other y gives an x below 100
    assert st[2][y.index] == (8,)


def test_linear_expression_arithmetic():
    m = Model("expr")
    x, y = m.decision("x", [1, 2]), m.decision("y", [3])
    e = 2 * x - (y - 4) * 3 + 1
    assert e.terms == ((x.index, 2), (y.index, -3)) and e.const == 13
    assert e.value([2, 3]) == 4 + 13 - 9


def test_model_errors_are_reported():
    m = Model("bad")
    with pytest.raises(ModelError, match="negative"):
        m.decision("neg", [-1, 2])
    z = m.decision("z", [0, 1])
    with pytest.raises(ModelError, match="zero"):
        m.quotient("q", 8, z)
    with pytest.raises(ModelError, match="twice"):
        m.decision("z", [1])
    with pytest.raises(ModelError, match="scaled by an int"):
        _ = z * 1.5  # type: ignore[operator]
    with pytest.raises(ModelError, match="exceeds the limit"):
        brute_force(m, limit=1)


def test_unknown_solver_is_a_user_error():
    from rnnc.errors import UserInputError

    with pytest.raises(UserInputError, match="unknown solver"):
        solve_model(Model("m"), "gurobi")


def test_quotient_without_an_exact_value_is_infeasible_not_an_error():
    m = Model("empty")
    b = m.decision("b", [64])
    m.quotient("q", 96, b)  # 96 / 64 has no integer value
    assert m.empty == ["q"]
    assert _agree(m) is None
