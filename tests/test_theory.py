"""Theorem 4.2 evaluated numerically (elasticity.theory): formulas, protocol, regime, outputs."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest

from elasticity import theory
from elasticity.analysis import CLAIMS_COLUMNS
from elasticity.io import parquet_params

BLOCK = {"k": [1, 3, 10, 30, 100, 300, 1000, 3000, 10000], "l": [0.001, 0.01, 0.1, 0.5, 1.0],
         "pareto": {"alpha": [1.5, 2.0, 3.0, 5.0], "c": [1.0]},
         "lognormal": {"sigma": [0.5, 1.0, 2.0]}, "samples": 1000000,
         "tree": {"depth": 16, "trees": 8}, "tolerance": 0.1, "seed": 0}


def half_width(row: pd.Series) -> float:
    return (row["ratio_upper"] - row["ratio_lower"]) / 2


def test_ratio_does_not_depend_on_the_pareto_scale():
    small = theory.integrals("pareto", 3.0, 0.5, [1, 100, 10000], [0.001, 0.1], 20000, 0)
    large = theory.integrals("pareto", 3.0, 2.0, [1, 100, 10000], [0.001, 0.1], 20000, 0)
    np.testing.assert_allclose(small["ratio"], large["ratio"], rtol=1e-9)
    # The derivatives themselves scale with c (the masses do), only R is invariant.
    np.testing.assert_allclose(large["dgamma_a"], 4 * small["dgamma_a"], rtol=1e-9)


def test_stable_formulas_match_brute_force_differentiation_of_s1_s2():
    """Naive Monte Carlo of S1, S2 (eq. 5) at l +- h on the same draws, against the stable
    forms, at a moderate k where the naive estimate is still precise enough."""
    k, ll, h, alpha = 3.0, 0.1, 1e-4, 3.0
    x = (1 - np.random.default_rng(12345).random((2_000_000, 3))) ** (-1 / alpha)
    x1, x2, x3 = x.T
    s = x1 + x2 + x3

    def log_mass(at: float) -> np.ndarray:
        return np.log((k / 3 * s + x2 + at * x3) / (k + 1 + at))

    step = (log_mass(ll + h) - log_mass(ll - h)) / (2 * h)
    naive = {"dgamma_p": -(s / 3) * step, "dgamma_a": -x2 * step}
    stable = theory.integrals("pareto", alpha, 1.0, [k], [ll], 1_000_000, 0).iloc[0]
    for name, values in naive.items():
        se = math.hypot(values.std() / math.sqrt(len(values)), stable[f"{name}_se"])
        assert abs(values.mean() - stable[name]) < 4 * se, name
        # The check has teeth: the error bars are far smaller than the derivative.
        assert se < 0.05 * abs(stable[name])


def test_code_length_telescopes_to_minus_log_leaf_probability():
    rng = np.random.default_rng(3)
    q = rng.pareto(1.5, (2, 3, 2**7)) + 1
    q /= q.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(theory.code_lengths(q), -np.log(q), rtol=1e-12)
    unnormalized = 5 * q
    np.testing.assert_allclose(theory.code_lengths(unnormalized), -np.log(q), rtol=1e-12)
    np.testing.assert_allclose(theory.code_lengths(np.full(16, 1 / 16)), 4 * math.log(2))
    with pytest.raises(ValueError, match="power of 2"):
        theory.code_lengths(np.full(12, 1 / 12))


def test_signs_hold_and_ratio_tends_to_one_only_as_l_vanishes():
    """Pareto alpha = 3. What is true (module doc): R = 1 + O(l) for every k, tending to
    1/(1 - 2l) as k grows; so R is close to 1 at small l already at k = 1, and far from it at
    l = 0.1 even at k = 10^4; dgamma_p/dl changes sign from l = 1/2 on at large k."""
    frame = theory.integrals("pareto", 3.0, 1.0, [1, 10, 100, 10000], [0.001, 0.1, 1.0],
                             400000, 0).set_index(["k", "l"])
    corner = frame.loc[(10000, 0.001)]
    assert corner["dgamma_p"] + 3 * corner["dgamma_p_se"] < 0 < (
        corner["dgamma_a"] - 3 * corner["dgamma_a_se"])
    assert abs(corner["ratio"] - 1) < 0.01
    for k in (1, 10, 100, 10000):
        assert abs(frame.loc[(k, 0.001), "ratio"] - 1) < 0.01
        assert frame.loc[(k, 0.001), "ratio"] > 1
    assert frame.loc[(10000, 0.1), "ratio"] == pytest.approx(1 / (1 - 2 * 0.1), abs=0.01)
    assert frame.loc[(1, 0.1), "ratio"] > 1.4
    assert frame.loc[(10000, 1.0), "dgamma_p"] > 0 < frame.loc[(10000, 1.0), "dgamma_a"]
    assert frame.loc[(10000, 1.0), "ratio"] == pytest.approx(-1, abs=0.05)


def test_ratio_is_one_at_l_zero_by_the_mixture_identity():
    """-k dgamma_p/dl = dgamma_a/dl + l dgamma_t/dl: at l = 0 the ratio is 1 for every k, by
    the formulas and, independently, on simulated trees (finite differences)."""
    integral = theory.integrals("pareto", 2.0, 1.0, [1, 100], [0.0], 4000, 1)
    np.testing.assert_allclose(integral["ratio"], 1, rtol=1e-12)
    simulated = theory.simulate("pareto", 2.0, 1.0, [1, 100], [0.0], 10, 3, 1)
    np.testing.assert_allclose(simulated["ratio"], 1, atol=1e-6)


@pytest.mark.parametrize("k, ll", [(100, 0.01), (1, 0.1), (10000, 0.001)])
def test_simulation_agrees_with_integrals(k, ll):
    integral = theory.integrals("pareto", 3.0, 1.0, [k], [ll], 1_000_000, 0).iloc[0]
    simulated = theory.simulate("pareto", 3.0, 1.0, [k], [ll], 16, 8, 0).iloc[0]
    assert abs(simulated["ratio"] - integral["ratio"]) <= half_width(simulated) + half_width(
        integral)
    assert simulated["dgamma_p"] < 0 < simulated["dgamma_a"]
    # Both are informative at this size: intervals far narrower than R - 1 (>= 2l).
    assert half_width(simulated) < 0.5 * (integral["ratio"] - 1)


def test_lognormal_keeps_the_inverse_proportionality():
    frame = theory.integrals("lognormal", 1.0, None, [1, 10000], [0.001, 0.1], 400000, 0)
    frame = frame.set_index(["k", "l"])
    assert frame["c"].isna().all()
    corner = frame.loc[(10000, 0.001)]
    assert corner["dgamma_p"] < 0 < corner["dgamma_a"]
    assert abs(corner["ratio"] - 1) < 0.01
    assert frame.loc[(10000, 0.1), "ratio"] == pytest.approx(1.25, abs=0.01)


@pytest.mark.parametrize("sigma", [1e-3, 1e-5])
def test_nearly_constant_masses_keep_a_finite_interval(sigma):
    row = theory.integrals("lognormal", sigma, None, [10000], [0.001], 20000, 0).iloc[0]
    assert np.isfinite([row["ratio_lower"], row["ratio_upper"]]).all()
    assert row["ratio_lower"] <= row["ratio"] <= row["ratio_upper"]
    assert abs(row["ratio"] - 1 / (1 - 2 * 0.001)) < 0.001


def test_regime_is_the_first_k_from_which_the_ratio_stays_in_the_band():
    ks = [1, 10, 100, 1000, 10000]
    rows = [{"method": "integral", "distribution": "pareto", "parameter": 3.0, "c": 1.0,
             "k": k, "l": ll, "ratio": r, "dgamma_p": p, "dgamma_a": 1.0}
            for ll, ratios, signs in [(0.01, [1.05, 1.5, 1.08, 1.02, 1.01], [-1] * 5),
                                     (0.5, [1.05, 1.2, 1.3, 1.5, 1.2], [-1, -1, 1, -1, -1])]
            for k, r, p in zip(ks, ratios, signs, strict=True)]
    table = theory.regime(pd.DataFrame(rows), 0.1)
    assert list(table.columns) == theory.REGIME_COLUMNS
    table = table.set_index("l")
    assert table.loc[0.01, "k_start"] == 100
    assert bool(table.loc[0.01, "signs_hold"])
    assert table.loc[0.01, "signs_from"] == 1
    assert math.isnan(table.loc[0.5, "k_start"])
    assert not table.loc[0.5, "signs_hold"]
    assert table.loc[0.5, "signs_from"] == 1000
    assert table.loc[0.5, "ratio_largest_k"] == 1.2


@pytest.mark.parametrize("lower, upper, expected", [(1.02, 1.05, "supported"),
                                                     (0.95, 1.2, "not resolved"),
                                                     (1.2, 1.3, "contradicted")])
def test_inverse_proportionality_claim_uses_the_interval_of_r(lower, upper, expected):
    row = {"method": "integral", "distribution": "pareto", "parameter": 3.0, "c": 1.0,
           "dgamma_p": -1.0, "dgamma_p_se": 0.1, "dgamma_a": 1.0, "dgamma_a_se": 0.1,
           "ratio": (lower + upper) / 2, "ratio_lower": lower, "ratio_upper": upper,
           "replicates": 20}
    corner = pd.DataFrame([row | {"k": 1000.0, "l": 0.01}, row | {"k": 10.0, "l": 0.01},
                           row | {"k": 1000.0, "l": 0.0}, row | {"k": 1000.0, "l": 0.1}])
    table = theory.claims(corner, corner.assign(method="simulation"), 0.1)
    assert list(table.columns) == CLAIMS_COLUMNS
    assert len(table) == 6
    assert set(table["scope"].str.extract(r"k=(\S+), l=(\S+)\)").itertuples(index=False)) == {
        ("1000", "0.01")}
    proportional = table[table["claim"].str.contains("inverse")].iloc[0]
    assert proportional["verdict"] == expected
    assert proportional["lower"] == pytest.approx(0.1 - max(abs(lower - 1), abs(upper - 1)))
    signs = table[~table["claim"].str.contains("inverse")]
    assert (signs["verdict"] == "supported").all()
    assert (table["seeds"] == 20).all() and (table["resamples"] == 0).all()


def test_ratio_at_one_point():
    out = theory.ratio_at("pareto", 3.0, 1.0, 186.3, 0.01, 200000, 0, 12, 4)
    assert out["k"] == 186.3 and out["l"] == 0.01
    for method in ("integral", "simulation"):
        assert out[f"{method}_lower"] <= out[f"{method}_ratio"] <= out[f"{method}_upper"]
        assert out[f"{method}_ratio"] == pytest.approx(1.02, abs=0.005)


def test_default_block_is_valid():
    assert theory.theory_problems(BLOCK) == []


def changed(path: str, value) -> dict:
    block = copy.deepcopy(BLOCK)
    *parents, leaf = path.split(".")
    node = block
    for part in parents:
        node = node[part]
    if value is None:
        del node[leaf]
    else:
        node[leaf] = value
    return block


@pytest.mark.parametrize("path, value, words", [
    ("pareto.alpha", [1.0, 3.0], "alpha > 1"),
    ("pareto.c", [0.0], "must be > 0"),
    ("lognormal.sigma", [-1.0], "must be > 0"),
    ("k", [0, 10, 1000], "must be > 0"),
    ("k", [1, 3, 10], "k >> 1"),
    ("k", [10, 1000], "at least 3"),
    ("k", "many", "finite numbers"),
    ("l", [-0.1, 0.001], ">= 0"),
    ("l", [0.1, 1.0], "l << 1"),
    ("l", [0.0], "no value > 0"),
    ("tree.depth", 3, "[4, 22]"),
    ("tree.depth", 23, "[4, 22]"),
    ("tree.trees", 1, ">= 2"),
    ("samples", 999, ">= 1000"),
    ("samples", None, "is missing"),
    ("tolerance", 0, "(0, 1)"),
    ("tolerance", 1.0, "(0, 1)"),
    ("seed", -1, ">= 0"),
])
def test_theory_problems_names_the_key(path, value, words):
    problems = theory.theory_problems(changed(path, value))
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"theory.{path} ")
    assert words in problems[0]


def test_run_writes_every_output(tmp_path):
    block = {"k": [1, 10, 100], "l": [0.0, 0.01, 0.1], "pareto": {"alpha": [3.0], "c": [1.0]},
             "lognormal": {"sigma": [1.0]}, "samples": 2000, "tree": {"depth": 6, "trees": 2},
             "tolerance": 0.1, "seed": 0}
    summary = theory.run(block, tmp_path)
    ratios = pd.read_parquet(tmp_path / "ratios.parquet")
    assert len(ratios) == summary["rows"] == 2 * 2 * 3 * 3
    assert set(ratios["method"]) == {"integral", "simulation"}
    assert set(theory.SIMULATION_COLUMNS) | set(theory.INTEGRAL_COLUMNS) == set(ratios.columns)
    assert parquet_params(tmp_path / "ratios.parquet") == {"theory": block}
    regime = pd.read_parquet(tmp_path / "regime.parquet")
    assert list(regime.columns) == theory.REGIME_COLUMNS and len(regime) == 2 * 2 * 3
    claims = pd.read_parquet(tmp_path / "claims.parquet")
    assert list(claims.columns) == ["experiment", *CLAIMS_COLUMNS]
    assert (claims["experiment"] == "theory").all() and len(claims) == 2 * 2 * 3
    assert sum(summary["claims"].values()) == len(claims)
    for figure in ("ratio_vs_k.png", "rates_vs_l.png"):
        assert (tmp_path / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(ValueError, match="theory.tree.trees"):
        theory.run(changed("tree.trees", 1), tmp_path / "bad")
