"""The claims analysis (elasticity.analysis) on cells whose truth is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from elasticity import aggregate, analysis
from elasticity.aggregate import SUMMARY_COLUMNS
from elasticity.grid import BASE
from elasticity.likelihood import METRICS

POSITIVE = [100, 200, 400, 800]
NEGATIVE = [0, 20, 40, 80, 160, 320]


def decay(p: float, n: float, alpha: float) -> float:
    """The analysis's own model: base 0, asymptote 0.1, gain 1, tau = 100 (P / 100)^alpha."""
    return 0.1 + np.exp(-n / (100 * (p / 100) ** alpha))


def summary(alpha: float = -0.5, seeds: int = 6, noise: float = 0.005,
            positive=POSITIVE, negative=NEGATIVE,
            bases=(("m-s", 1_000_000, 600_000), ("m-l", 4_000_000, 600_000)),
            drop_scale=None) -> pd.DataFrame:
    """Cells of a grid following `decay`, a little noise per seed; `drop_scale` multiplies the
    gain's decay rate per base (a larger model losing more)."""
    rng = np.random.default_rng(0)
    rows = []
    for i, (model, params, tokens) in enumerate(bases):
        scale = 1.0 if drop_scale is None else drop_scale[i]
        for seed in range(seeds):
            key = dict(task="sentiment", model=model, pretrain_tokens=tokens, seed=seed,
                       model_parameters=params)
            rows.append({**key, "algorithm": BASE, "positive": 0, "negative": 0, "value": 0.0})
            for p in positive:
                for n in negative:
                    rows.append({**key, "algorithm": "sft", "positive": p, "negative": n,
                                 "value": decay(p, n * scale, alpha) + rng.normal(0, noise)})
    frame = pd.DataFrame(rows)
    for column in SUMMARY_COLUMNS:
        if column not in frame:
            frame[column] = 0.0
    frame["margin"] = frame["positive_rate"] = frame.pop("value")
    return frame


def claims_of(frame: pd.DataFrame, scope: str = "m-l", metric: str = "margin") -> pd.DataFrame:
    boot = analysis.Bootstrap(frame["seed"].nunique(), 200, 95)
    one = frame[frame["model"] == scope]
    c = analysis.curves(one, metric, sorted(one["seed"].unique()))
    key = {"model": scope, "pretrain_tokens": 600_000, "algorithm": "sft"}
    fitted = analysis.elasticity_scores(c, metric, key, boot)
    return pd.DataFrame(analysis.base_claims(c, metric, scope, boot, fitted)), fitted


@pytest.mark.parametrize(("prediction", "lower", "upper", "expected"), [
    ("> 0", 0.1, 0.2, "supported"), ("> 0", -0.2, -0.1, "contradicted"),
    ("> 0", -0.1, 0.1, "not resolved"), ("< 0", -0.2, -0.1, "supported"),
    ("< 0", 0.1, 0.2, "contradicted"), ("< 0", 0.0, 0.1, "not resolved"),
])
def test_the_verdict_rule(prediction, lower, upper, expected):
    assert analysis.verdict(lower, upper, prediction) == expected


def test_the_fit_recovers_a_known_decay():
    mean = np.array([[decay(p, n, -0.5) for n in NEGATIVE] for p in POSITIVE])
    fit = analysis.fit_decay(np.array(POSITIVE), np.array(NEGATIVE), mean)
    assert fit["alpha"] == pytest.approx(-0.5, abs=1e-4)
    np.testing.assert_allclose(fit["a"], 0.1, atol=1e-4)
    # Half the gain over the base (1.1 -> 0.55) is left where 0.1 + exp(-N / tau) = 0.55.
    tau = 100 * 8 ** -0.5
    assert analysis.n_half(fit, 0.0, 3) == pytest.approx(-tau * math.log(0.45), rel=1e-3)


def test_a_decay_that_shrinks_with_p_is_supported_and_its_opposite_contradicted():
    claims, fitted = claims_of(summary(alpha=-0.5))
    by = claims.set_index("claim")
    assert by.loc["faster than proportional: decay time shrinks with P", "verdict"] == "supported"
    assert fitted["alpha_lower"] < -0.5 < fitted["alpha_upper"]
    assert fitted["alpha_upper"] - fitted["alpha_lower"] < 0.3
    assert by.loc["faster than proportional: larger P keeps less of its gain",
                  "verdict"] == "supported"
    assert by.loc["resistance: fast decline first, slow later", "verdict"] == "supported"
    opposite, _ = claims_of(summary(alpha=+0.5))
    by = opposite.set_index("claim")
    assert by.loc["faster than proportional: decay time shrinks with P",
                  "verdict"] == "contradicted"


def test_noise_as_large_as_the_effect_is_not_resolved():
    claims, _ = claims_of(summary(alpha=-0.05, seeds=8, noise=0.5))
    assert set(claims["verdict"]) == {"not resolved"}


def test_too_few_seeds_decide_nothing_but_still_report_the_estimate():
    claims, _ = claims_of(summary(alpha=-0.5, seeds=3))
    assert set(claims["verdict"]) == {"not resolved"}
    assert claims["estimate"].notna().all()
    assert claims["reason"].str.contains("3 seeds").any()


def test_the_size_claim_compares_bases_on_their_axis():
    frame = summary(drop_scale=[1.0, 3.0])  # the larger model loses its gain 3x faster
    boot = analysis.Bootstrap(6, 200, 95)
    named = [(params, analysis.curves(frame[frame["model"] == m], "margin", list(range(6))))
             for m, params in (("m-s", 1e6), ("m-l", 4e6))]
    row = analysis.axis_claim(named, "margin", "size", "parameters", boot)
    assert row["verdict"] == "supported" and row["estimate"] > 0
    alone = analysis.axis_claim(named[:1], "margin", "size", "parameters", boot)
    assert alone["verdict"] == "not testable" and "2 bases" in alone["reason"]


@pytest.mark.parametrize(("grid", "reason"), [
    (dict(seeds=1), "grid.seed"),
    (dict(negative=[20, 40, 80]), "N = 0"),
    (dict(positive=[400]), "grid.positive"),
    (dict(negative=[0, 20]), "grid.negative"),
])
def test_a_grid_that_cannot_feed_a_claim_says_why_instead_of_nan(grid, reason):
    claims, _ = claims_of(summary(**grid))
    untestable = claims[claims["verdict"] == "not testable"]
    assert len(untestable) > 0
    assert untestable["reason"].str.contains(reason, regex=False).any()
    # A number is either an estimate with an interval or absent with a reason.
    assert (claims["estimate"].isna() == (claims["verdict"] == "not testable")).all()
    assert (claims.loc[claims["verdict"] == "not testable", "reason"] != "").all()


def test_an_infinite_half_life_gives_an_interval_not_nan():
    boot = analysis.Bootstrap(4, 50, 95)
    values = np.array([1.0, np.inf, 2.0, np.inf])
    estimate, lower, upper = boot.interval(lambda d: float(np.mean(values[d])))
    assert estimate == np.inf and not math.isnan(lower) and upper == np.inf


def test_a_decay_the_grid_cannot_see_is_not_estimated_at_the_fits_bound():
    """A decay exponent beyond the fit's bounds (-8 < -5): alpha is undefined, not -5."""
    mean = np.array([[decay(p, n, -8.0) for n in NEGATIVE] for p in POSITIVE])
    fit = analysis.fit_decay(np.array(POSITIVE), np.array(NEGATIVE), mean)
    assert math.isnan(fit["alpha"]) and math.isnan(analysis.n_half(fit, 0.0, 3))


def test_a_cell_without_the_sampled_metric_still_says_its_model_and_code():
    cell = {"task": "sentiment", "model": "tiny-a", "pretrain_tokens": 4096, "algorithm": "sft",
            "positive": 40, "negative": 8, "seed": 1, "order": "forward", "replay": 0.0}
    sampled_cell = dict(cell, seed=0)
    rows = pd.DataFrame([{**sampled_cell, "uid": "movie:1", "prompt": "a", "response": "b",
                          "score": 0.5, "is_positive": True, "is_negative": False,
                          "model_parameters": 123, "config_hash": "s0",
                          "code_version": "sampled-code"}])
    likelihoods = pd.DataFrame([{**c, **dict.fromkeys(METRICS, 0.1), "model_parameters": 123,
                                 "config_hash": "l", "code_version": "likelihood-code"}
                                for c in (sampled_cell, cell)])
    summary = aggregate.summarize(rows, likelihoods).set_index("seed")
    assert summary.loc[0, "code_version"] == "sampled-code"
    assert summary.loc[1, "code_version"] == "likelihood-code"
    assert (summary["model_parameters"] == 123).all()
    assert pd.isna(summary.loc[1, "positive_rate"]) and pd.isna(summary.loc[1, "config_hash"])
