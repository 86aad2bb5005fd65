"""Experiment `mitigation` (App. C.2): does replaying aligning examples blunt the rebound?

The appendix suggests keeping "the training data volumes corresponding to different alignment
targets as similar as possible". Here the inverse stage of a cell with `replay` r trains on its N
negative examples with floor(r * N) of the examples it was aligned on mixed in
(elasticity.finetuning.with_replay): r = 0 is the rebound grid's inverse stage, r = 1 matches
the aligning volume to the perturbing one as the perturbation grows.

Per r, on the preference margin: the decay fit's elasticity score N½ of the largest P (the
negatives that undo half its gain; higher: the alignment lasts longer) and the rebound claims of
the claims step, scoped by r. Against r, one claim: the drop fraction at N* (1 - remainder,
mean over P) falls as r grows (slope against r, predicted < 0), with its seed-bootstrap
interval. Only the margin, for the reasons elasticity.threshold gives.
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
    ELASTICITY_COLUMNS,
    Bootstrap,
    Curves,
    base_claims,
    claim_row,
    curves,
    drop_fraction,
    elasticity_scores,
    fixed_negative,
    measured_seeds,
    slope,
    testability,
)
from elasticity.grid import BASE, COLUMNS
from elasticity.io import write_parquet
from elasticity.rebound import _save, _setup

log = logging.getLogger(__name__)

METRIC = "margin"
SCORE_COLUMNS = ["replay", *ELASTICITY_COLUMNS]
REPLAY_CLAIM = "mitigation: replaying aligning examples blunts the rebound"


def by_replay(cells: pd.DataFrame, seeds: list[int]) -> dict[float, Curves]:
    """One base's curves per replay fraction; every fraction shares the aligned models (N = 0)
    and the base model."""
    shared = cells[(cells["algorithm"] == BASE) | (cells["negative"] == 0)]
    out = {}
    for replay in sorted(cells.loc[cells["negative"] > 0, "replay"].unique()):
        own = cells[(cells["negative"] > 0) & (cells["replay"] == replay)]
        out[float(replay)] = curves(pd.concat([shared, own]), METRIC, seeds)
    return out


def analyze(cells: pd.DataFrame, seeds: list[int], boot: Bootstrap,
            model: str, tokens: int) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """N½ per r and the claims (per r, and against r) of one base's cells."""
    curves_by = by_replay(cells, seeds)
    key = {"model": model, "pretrain_tokens": tokens, "algorithm": "sft"}
    scores, claims = [], []
    for replay, c in curves_by.items():
        scope = f"{model} @ {tokens:,} tokens, replay r={replay:g}"
        scores.append({"replay": replay, **elasticity_scores(c, METRIC, key, boot)})
        claims += base_claims(c, METRIC, scope, boot, scores[-1])
    replays = np.array(list(curves_by))
    first = next(iter(curves_by.values()))
    why = (f"needs at least 2 replay fractions (mitigation.replay), has {len(replays)}"
           if len(replays) < 2 else testability(first, len(seeds), need_p=1, need_n=1))
    nstar = "" if why else f" at N={first.negative[fixed_negative(first.negative)]}"

    def stat(draw):
        drops = np.array([drop_fraction(c, draw) for c in curves_by.values()])
        return math.nan if np.isnan(drops).any() else slope(replays, drops)

    claims.append(claim_row(REPLAY_CLAIM, METRIC, f"{model} @ {tokens:,} tokens",
                            f"slope of the drop fraction{nstar} (mean over P) against r", "< 0",
                            boot, stat, why))
    return pd.DataFrame(scores, columns=SCORE_COLUMNS), claims


def mitigation(summary: str, out_scores: str, out_claims: str, out_figure: str, *,
               cells: list[dict[str, Any]], interval: float, resamples: int) -> dict[str, Any]:
    """Step `mitigation`: N½ against r, the claims and the figure."""
    frame = read_experiment(summary, cells, [*COLUMNS, METRIC])
    model, tokens = str(frame["model"].iloc[0]), int(frame["pretrain_tokens"].iloc[0])
    seeds = measured_seeds(frame, METRIC)
    boot = Bootstrap(len(seeds), resamples, interval)
    scores, claims = analyze(frame, seeds, boot, model, tokens)
    write_parquet(scores, out_scores, {"interval": interval})
    write_parquet(pd.DataFrame(claims, columns=CLAIMS_COLUMNS).assign(experiment="mitigation"),
                  out_claims, {"interval": interval, "resamples": resamples})
    plot(frame, scores, out_figure, interval)
    shown = {f"r={r:g}": round(n, 1) for r, n in zip(scores["replay"], scores["n_half"],
                                                     strict=True)}
    log.info("N_half by replay: %s", shown)
    return shown


def plot(cells: pd.DataFrame, scores: pd.DataFrame, out: str, interval: float) -> None:
    """Left: the margin against N at the largest P, one line per r (dashed: base model).
    Right: N½ against r with its interval."""
    sns = _setup()
    import matplotlib.pyplot as plt

    largest = cells["positive"].max()
    aligned = cells[(cells["algorithm"] != BASE) & (cells["positive"] == largest)]
    lines = pd.concat([aligned[aligned["negative"] > 0]]
                      + [aligned[aligned["negative"] == 0].assign(replay=r)
                         for r in scores["replay"]])
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    sns.lineplot(data=lines, x="negative", y=METRIC, hue="replay", marker="o",
                 errorbar=("ci", interval), seed=0, palette="crest", ax=left)
    left.axhline(cells.loc[cells["algorithm"] == BASE, METRIC].mean(), color="black",
                 linestyle="--", linewidth=1)
    left.set_xlabel("negative examples (N)")
    left.set_ylabel(f"preference margin (P = {largest})")
    left.legend(title="replay r", fontsize=7)
    finite = scores[np.isfinite(scores["n_half"])]
    # An interval open above (some resamples keep more than half the gain) is drawn to the
    # estimate and marked with an upward triangle.
    open_above = ~np.isfinite(finite["n_half_upper"]).to_numpy()
    err = np.vstack([finite["n_half"] - finite["n_half_lower"],
                     np.where(open_above, 0, finite["n_half_upper"] - finite["n_half"])])
    right.errorbar(finite["replay"], finite["n_half"], yerr=np.clip(err, 0, None), marker="o",
                   color="black", capsize=3)
    right.scatter(finite["replay"][open_above], finite["n_half"][open_above], marker="^",
                  s=80, color="black", label="interval open above")
    if open_above.any():
        right.legend(fontsize=7)
    if finite.empty:
        right.text(0.5, 0.5, "N½ not estimated\n(claims table: why)", ha="center",
                   va="center", transform=right.transAxes)
    right.set_xlabel("replay fraction r (1: volume-matched)")
    right.set_ylabel(f"N½ (P = {largest})")
    fig.subplots_adjust(wspace=0.35)
    _save(fig, out, f"Replaying aligning examples during inverse fine-tuning (App. C.2; "
                    f"{interval:g}% intervals over seeds)")
