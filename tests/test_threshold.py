"""The threshold experiment (elasticity.threshold, App. C.3) on synthetic summaries with a
planted change point, and its config checks."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest

from elasticity import config as cfg
from elasticity import grid, threshold
from elasticity.grid import BASE, COLUMNS

from .conftest import DEFAULT_CONFIG

BUDGETS = [10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000]
NEGATIVE = [0, 20, 200]


def summary(onset: float | None, seeds: int = 5, noise: float = 0.001) -> pd.DataFrame:
    """Cells of one model at every budget: below `onset` the margin falls linearly in N (early
    and late rates equal: no resistance), from `onset` on it decays exponentially (fast first,
    slow later). onset None: linear everywhere."""
    rng = np.random.default_rng(1)
    rows = []
    for tokens in BUDGETS:
        resists = onset is not None and tokens >= onset
        for seed in range(seeds):
            key = dict(task="sentiment", model="m", pretrain_tokens=tokens, seed=seed,
                       order="forward", replay=0.0)
            rows.append({**key, "algorithm": BASE, "positive": 0, "negative": 0,
                         "margin": rng.normal(0, noise)})
            for n in NEGATIVE:
                level = math.exp(-n / 50) if resists else 1 - n / 400
                rows.append({**key, "algorithm": "sft", "positive": 2000, "negative": n,
                             "margin": level + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def run(frame: pd.DataFrame, tmp_path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    path = tmp_path / "summary.parquet"
    frame.to_parquet(path)
    outs = {name: str(tmp_path / f"{name}.parquet") for name in ("stat", "change", "claims")}
    threshold.threshold(str(path), outs["stat"], outs["change"], outs["claims"],
                        str(tmp_path / "threshold.png"), cells=frame[COLUMNS].to_dict("records"),
                        interval=95, resamples=200)
    assert (tmp_path / "threshold.png").stat().st_size > 10_000
    return tuple(pd.read_parquet(outs[name]) for name in ("stat", "change", "claims"))


def test_a_planted_change_point_is_found_with_its_interval(tmp_path):
    stat, change, claims = run(summary(onset=100_000), tmp_path)
    # Below the onset the statistic is zero up to noise (a bootstrap over 5 seeds may still
    # call one of them significant by chance); from it on, about 0.013.
    assert (stat["estimate"][:3].abs() < 0.001).all()
    assert stat["significant"][3:].all() and (stat["estimate"][3:] > 0.01).all()
    row = change.iloc[0]
    assert row["change_point"] == pytest.approx(math.sqrt(50_000 * 100_000))
    assert row["change_point_lower"] <= row["change_point"] <= row["change_point_upper"]
    assert row["change_point_upper"] < 200_000
    assert row["first_significant"] == 100_000
    jump = claims[claims["claim"] == threshold.CHANGE_CLAIM].iloc[0]
    assert jump["verdict"] == "supported" and jump["lower"] > 0
    per_budget = claims[claims["claim"] != threshold.CHANGE_CLAIM]
    assert per_budget["verdict"].tolist()[3:] == ["supported"] * 5
    assert (claims["experiment"] == "threshold").all()


def test_no_rise_leaves_the_jump_undecided_not_supported_by_construction(tmp_path):
    _, change, claims = run(summary(onset=None), tmp_path)
    jump = claims[claims["claim"] == threshold.CHANGE_CLAIM].iloc[0]
    assert jump["verdict"] != "supported"
    assert math.isnan(change.iloc[0]["first_significant"])


def test_resistance_everywhere_puts_the_first_significant_budget_at_the_axis_start(tmp_path):
    stat, change, _ = run(summary(onset=0), tmp_path)
    assert stat["significant"].all()
    assert change.iloc[0]["first_significant"] == BUDGETS[0]


def test_fit_step_goes_either_way():
    assert threshold.fit_step(np.array([0, 0, 0, 1, 1.0])) == (3, 1.0)
    assert threshold.fit_step(np.array([2, 2, 0, 0.0])) == (2, -2.0)


def test_the_threshold_budgets_are_one_pretraining_chain_of_one_model():
    config = copy.deepcopy(DEFAULT_CONFIG)
    model = config["threshold"]["model"]
    budgets = sorted(config["threshold"]["pretrain_tokens"])
    assert len(budgets) >= 8
    ours = [t for m, t in grid.checkpoints(config) if m == model]
    assert set(budgets) <= set(ours)
    assert grid.previous_budget(config, model, budgets[1]) == budgets[0]
    # Other models keep the rebound axes' budgets only.
    axes = {config["grid"]["size_axis"]["pretrain_tokens"],
            *config["grid"]["pretraining_axis"]["pretrain_tokens"]}
    assert {t for m, t in grid.checkpoints(config) if m != model} <= axes


@pytest.mark.parametrize("change, key", [
    (lambda b: b.update(pretrain_tokens=[100_000, 200_000, 400_000]),
     "threshold.pretrain_tokens lists 3 budgets"),
    (lambda b: b.update(negative=[0, 200]), "threshold.negative is [0, 200]"),
    (lambda b: b.update(negative=[20, 200]), "threshold.negative is [20, 200]"),
    (lambda b: b.update(model="no-such"), "threshold.model names 'no-such'"),
])
def test_a_bad_threshold_block_is_named_before_any_job(change, key):
    config = copy.deepcopy(DEFAULT_CONFIG)
    change(config["threshold"])
    with pytest.raises(cfg.ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        cfg.validate(config, check_devices=False)
