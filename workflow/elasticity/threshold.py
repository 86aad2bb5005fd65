"""Experiment `threshold` (App. C.3): the pretraining budget at which resistance appears.

The paper saw no resistance at 0.1T pretraining tokens and clear resistance at 0.5T, and could
not look in between for want of "a series of models with continuously varying pre-training data
volumes". The micro-world pretrains its own models as one chain, so one model (`threshold.model`)
is taken at many budgets (`threshold.pretrain_tokens`, from barely trained to several epochs),
each aligned on P and inverse-fine-tuned on N like the rebound grid.

Per budget, the claims step's resistance statistic (elasticity.analysis.resistance_statistic:
the early minus the late rate of decline per example, mean over P) on the preference margin,
with its seed-bootstrap interval; a budget is *significant* when the interval lies above 0.

The change point: one step in the statistic over the ordered budgets, fitted by least squares
over every split (up or down); its estimate is the geometric midpoint of the two budgets around
the split, and its interval the percentiles of the same fit over the seed resamples (seeds
resampled jointly for all budgets). The claim row: the jump (later minus earlier level) at the
fitted split, predicted > 0; with no rise the fitted jumps take either sign and the verdict
stays open. Also reported: the first budget from which every budget is significant.

Only the margin: the threshold's new budgets are never sampled, and a tiny model's sampled text
measures its fluency more than its sentiment.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from elasticity.aggregate import read_experiment
from elasticity.analysis import (
    CLAIMS_COLUMNS,
    RESISTANCE_CLAIM,
    RESISTANCE_STATISTIC,
    Bootstrap,
    Curves,
    claim_row,
    curves,
    measured_seeds,
    resistance_statistic,
    testability,
)
from elasticity.grid import BASE, COLUMNS
from elasticity.io import write_parquet
from elasticity.provenance import code_version
from elasticity.rebound import _save, _setup, tokens_label

log = logging.getLogger(__name__)

METRIC = "margin"
STATISTIC_COLUMNS = ["model", "pretrain_tokens", "metric", "estimate", "lower", "upper",
                     "significant", "seeds"]
CHANGE_COLUMNS = ["model", "metric", "change_point", "change_point_lower", "change_point_upper",
                  "jump", "jump_lower", "jump_upper", "first_significant", "budgets", "seeds",
                  "resamples", "code_version"]
CHANGE_CLAIM = "threshold: resistance rises at a change point inside the pretraining axis"
CHANGE_STATISTIC = ("jump of the resistance statistic at its least-squares step over the "
                    "budgets (later minus earlier level)")


def fit_step(y: np.ndarray) -> tuple[int, float]:
    """The least-squares step in y (ordered by budget): the index of the first point after the
    step and the jump (later level minus earlier). The step may go either way, so that a
    statistic without a rise gives jumps of either sign, not a rise by construction."""
    best, split, jump = math.inf, -1, math.nan
    for j in range(1, len(y)):
        before, after = y[:j].mean(), y[j:].mean()
        sse = ((y[:j] - before) ** 2).sum() + ((y[j:] - after) ** 2).sum()
        if sse < best:
            best, split, jump = sse, j, float(after - before)
    return split, jump


def change_point(budgets: np.ndarray, split: int) -> float:
    """The budget of a step before index `split`: the geometric midpoint of its neighbours."""
    if split < 1:
        return math.nan
    return float(math.sqrt(budgets[split - 1] * budgets[split]))


def first_significant(budgets: np.ndarray, significant: np.ndarray) -> float:
    """The smallest budget from which every budget is significant (nan: the largest is not)."""
    if not significant[-1]:
        return math.nan
    j = len(significant)
    while j > 0 and significant[j - 1]:
        j -= 1
    return float(budgets[j])


def _statistics(by_budget: list[Curves], draw: np.ndarray) -> np.ndarray:
    return np.array([resistance_statistic(c, draw) for c in by_budget])


def analyze(cells: pd.DataFrame, seed_list: list[int], boot: Bootstrap,
            model: str) -> tuple[pd.DataFrame, dict[str, Any], list[dict[str, Any]]]:
    """The statistic per budget, the change point and the claims, from one model's cells
    (`boot` resamples `seed_list`)."""
    seeds = len(seed_list)
    budgets = np.sort(cells["pretrain_tokens"].unique())
    by_budget = [curves(cells[cells["pretrain_tokens"] == t], METRIC, seed_list)
                 for t in budgets]
    rows, claims = [], []
    for t, c in zip(budgets, by_budget, strict=True):
        scope = f"{model} @ {t:,} tokens"
        why = testability(c, seeds, need_p=1, need_n=2)
        claim = claim_row(RESISTANCE_CLAIM, METRIC, scope, RESISTANCE_STATISTIC, "> 0", boot,
                          lambda d, c=c: resistance_statistic(c, d), why)
        claims.append(claim)
        rows.append({"model": model, "pretrain_tokens": int(t), "metric": METRIC,
                     "estimate": claim["estimate"], "lower": claim["lower"],
                     "upper": claim["upper"], "significant": bool(claim["lower"] > 0),
                     "seeds": seeds})
    table = pd.DataFrame(rows, columns=STATISTIC_COLUMNS)
    why = next((w for c in by_budget if (w := testability(c, seeds, 1, 2))), None)

    def step(draw):
        split, jump = fit_step(_statistics(by_budget, draw))
        return math.log10(change_point(budgets, split)), jump

    (point, low, high), (jump, jump_low, jump_high) = (
        boot.intervals(step) if why is None else [(math.nan,) * 3] * 2)
    claims.append(claim_row(CHANGE_CLAIM, METRIC, f"{model}, {len(budgets)} budgets",
                            CHANGE_STATISTIC, "> 0", boot, reason=why,
                            result=(jump, jump_low, jump_high)))
    change = {"model": model, "metric": METRIC, "change_point": _power(point),
              "change_point_lower": _power(low), "change_point_upper": _power(high),
              "jump": jump, "jump_lower": jump_low, "jump_upper": jump_high,
              "first_significant": first_significant(budgets, table["significant"].to_numpy()),
              "budgets": len(budgets), "seeds": seeds, "resamples": len(boot.draws),
              "code_version": code_version()}
    return table, change, claims


def _power(log_value: float) -> float:
    return math.nan if math.isnan(log_value) else float(10 ** log_value)


def threshold(summary: str, out_statistic: str, out_change: str, out_claims: str,
              out_figure: str, *, cells: list[dict[str, Any]], interval: float,
              resamples: int) -> dict[str, Any]:
    """Step `threshold`: the tables, claims and figure of the threshold experiment."""
    frame = read_experiment(summary, cells, [*COLUMNS, METRIC])
    frame = frame[frame["algorithm"].isin([BASE, "sft"])]
    model = str(frame["model"].iloc[0])
    seeds = measured_seeds(frame, METRIC)
    boot = Bootstrap(len(seeds), resamples, interval)
    table, change, claims = analyze(frame, seeds, boot, model)
    write_parquet(table, out_statistic, {"interval": interval})
    write_parquet(pd.DataFrame([change], columns=CHANGE_COLUMNS), out_change,
                  {"interval": interval, "resamples": resamples})
    write_parquet(pd.DataFrame(claims, columns=CLAIMS_COLUMNS).assign(experiment="threshold"),
                  out_claims, {"interval": interval, "resamples": resamples})
    plot(table, change, out_figure, interval)
    log.info("change point of %s: %s tokens [%s, %s]; first significant budget %s", model,
             change["change_point"], change["change_point_lower"],
             change["change_point_upper"], change["first_significant"])
    return {k: change[k] for k in ("change_point", "change_point_lower", "change_point_upper",
                                   "first_significant")}


def plot(table: pd.DataFrame, change: dict[str, Any], out: str, interval: float) -> None:
    """The statistic against pretraining tokens (filled: significant), the change point and
    its interval."""
    sns = _setup()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    x = table["pretrain_tokens"].to_numpy(float)
    y = table["estimate"].to_numpy(float)
    err = np.vstack([y - table["lower"].to_numpy(float), table["upper"].to_numpy(float) - y])
    ax.errorbar(x, y, yerr=err, color="black", linestyle="-", linewidth=1, capsize=3,
                marker="none")
    significant = table["significant"].to_numpy(bool)
    ax.scatter(x[significant], y[significant], color="black", zorder=3,
               label=f"significant ({interval:g}% interval above 0)")
    ax.scatter(x[~significant], y[~significant], facecolor="white", edgecolor="black",
               zorder=3, label="not significant")
    ax.axhline(0, color="grey", linewidth=0.8)
    if not math.isnan(change["change_point"]):
        ax.axvline(change["change_point"], color=sns.color_palette()[3], linestyle="--",
                   label=f"change point {tokens_label(change['change_point'])}")
        ax.axvspan(change["change_point_lower"], change["change_point_upper"],
                   color=sns.color_palette()[3], alpha=0.15,
                   label=f"{interval:g}% interval")
    ax.set_xscale("log")
    ax.set_xlabel(f"pretraining tokens ({table['model'].iloc[0]})")
    ax.set_ylabel("resistance statistic\n(early − late decline of the margin, per example)")
    ax.legend(fontsize=7, loc="best")
    _save(fig, out, "When does resistance appear? (App. C.3)")
