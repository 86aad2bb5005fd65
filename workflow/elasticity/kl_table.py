"""The paper's Table 3: how many negative examples bring an aligned model back within epsilon of
its base in KL divergence, after P positive ones; and (a) the aligned model's own KL to base.

Along each inverse chain (a base, P, a seed; SFT, forward order) the needed N is the first N on
the grid whose kl_to_base is below epsilon (0 when the aligned model already is). A chain that
never gets there is not reached by the grid's largest N: it is counted, never averaged in.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from elasticity.ablations import base_scope, read_cells
from elasticity.analysis import CLAIMS_COLUMNS, Bootstrap, claim_row, slope
from elasticity.grid import FIRST_STAGE_ALGORITHM, FORWARD
from elasticity.io import atomic_path, write_parquet
from elasticity.rebound import _base_label

log = logging.getLogger(__name__)

METRIC = "kl_to_base"
CHAIN = ["model", "pretrain_tokens", "positive", "seed"]
TABLE_COLUMNS = ["model", "pretrain_tokens", "positive", "seeds", "kl_aligned",
                 "kl_aligned_lower", "kl_aligned_upper", "needed", "needed_lower",
                 "needed_upper", "seeds_reached", "max_negative"]
CLAIM = "more positive data, fewer negatives needed"


def crossing(negative: np.ndarray, kl: np.ndarray, epsilon: float) -> float:
    """The smallest N of a chain whose KL to the base is below epsilon; NaN when none is."""
    order = np.argsort(negative)
    below = np.flatnonzero(kl[order] < epsilon)
    return float(negative[order][below[0]]) if len(below) else math.nan


def chain_table(frame: pd.DataFrame, epsilon: float) -> pd.DataFrame:
    """Per chain of the forward SFT cells: the needed N (NaN: not reached), the chain's
    largest N and the aligned model's KL (N = 0)."""
    sft = frame[(frame["order"] == FORWARD) & (frame["algorithm"] == FIRST_STAGE_ALGORITHM)]
    rows = []
    for key, chain in sft.groupby(CHAIN):
        negative, kl = chain["negative"].to_numpy(), chain[METRIC].to_numpy()
        rows.append({**dict(zip(CHAIN, key, strict=True)),
                     "needed": crossing(negative, kl, epsilon),
                     "max_negative": int(negative.max()),
                     "kl_aligned": float(kl[negative == 0][0]) if (negative == 0).any()
                     else math.nan})
    return pd.DataFrame(rows, columns=[*CHAIN, "needed", "max_negative", "kl_aligned"])


def _mean_interval(values: np.ndarray, interval: float,
                   resamples: int) -> tuple[float, float, float]:
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    return Bootstrap(len(values), resamples, interval).interval(lambda d: values[d].mean())


def table(chains: pd.DataFrame, interval: float, resamples: int) -> pd.DataFrame:
    """Per (base, P): the aligned model's KL and the needed N, seed means with bootstrap
    intervals; the needed N over the seeds that reached epsilon, with their count."""
    rows = []
    for (model, tokens, positive), cell in chains.groupby(CHAIN[:3]):
        kl = _mean_interval(cell["kl_aligned"].to_numpy(), interval, resamples)
        reached = cell["needed"].dropna().to_numpy()
        needed = _mean_interval(reached, interval, resamples)
        rows.append({"model": model, "pretrain_tokens": int(tokens), "positive": int(positive),
                     "seeds": len(cell), "kl_aligned": kl[0], "kl_aligned_lower": kl[1],
                     "kl_aligned_upper": kl[2], "needed": needed[0], "needed_lower": needed[1],
                     "needed_upper": needed[2], "seeds_reached": len(reached),
                     "max_negative": int(cell["max_negative"].max())})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _kl_text(row: pd.Series) -> str:
    return f"{row['kl_aligned']:.3g} [{row['kl_aligned_lower']:.3g}, {row['kl_aligned_upper']:.3g}]"


def _needed_text(row: pd.Series) -> str:
    never = row["seeds"] - row["seeds_reached"]
    if row["seeds_reached"] == 0:
        return f"not reached by N = {row['max_negative']} (0 of {row['seeds']} seeds)"
    text = f"{row['needed']:.5g} [{row['needed_lower']:.5g}, {row['needed_upper']:.5g}]"
    if never:
        text += (f" ({row['seeds_reached']} of {row['seeds']} seeds; {never} not reached by "
                 f"N = {row['max_negative']})")
    return text


def layout(numbers: pd.DataFrame, text) -> pd.DataFrame:
    """The paper's layout: a row per base (model @ tokens), a column per P; cells `text(row)`."""
    shown = numbers.assign(base=_base_label(numbers), text=numbers.apply(text, axis=1))
    grid = shown.pivot(index="base", columns="positive", values="text")
    grid.index.name, grid.columns.name = "base model", "positive examples (P)"
    return grid


def html(numbers: pd.DataFrame, epsilon: float, interval: float) -> str:
    """Table 3 (a) and (b) as an HTML fragment."""
    return (f"<h3>(a) KL divergence to the base of the model aligned on P positive examples "
            f"(seed mean, {interval:g}% interval over seeds)</h3>"
            + layout(numbers, _kl_text).to_html(na_rep="")
            + f"<h3>(b) Negative examples needed until the KL divergence to the base falls "
              f"below &epsilon; = {epsilon:g} (first N on the grid; mean and {interval:g}% "
              "interval over the seeds that reach it)</h3>"
            + layout(numbers, _needed_text).to_html(na_rep=""))


def _reached_mean(values: np.ndarray) -> np.ndarray:
    """Per column, the mean of the non-NaN values; NaN where there is none."""
    counts = (~np.isnan(values)).sum(axis=0)
    sums = np.nansum(values, axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _claim_reason(needed: pd.DataFrame, reached: np.ndarray, largest: int) -> str | None:
    if len(needed) < 2:
        return "needs at least 2 seeds for an interval (grid.seed)"
    if not reached.any():
        return f"no P reaches {METRIC} < epsilon by N = {largest}"
    if reached.sum() < 2:
        return (f"only P = {needed.columns[reached][0]} reaches {METRIC} < epsilon by "
                f"N = {largest}: needs at least 2 P values")
    return None


def _partial_note(needed: pd.DataFrame, largest: int) -> str:
    """Which P have seeds that never reach epsilon (left out of that P's mean)."""
    never = needed.isna().sum(axis=0)
    return "; ".join(f"P = {p}: {n} of {len(needed)} seeds not reached by N = {largest}, left "
                     "out of its mean" for p, n in never.items() if 0 < n < len(needed))


def base_claim(chains: pd.DataFrame, scope: str, epsilon: float, interval: float,
               resamples: int) -> dict[str, Any]:
    """One base's claim: the needed N (seed mean) falls with log10 P."""
    needed = chains.pivot(index="seed", columns="positive", values="needed")
    largest = int(chains["max_negative"].max())
    reached = needed.notna().any(axis=0).to_numpy()
    boot = Bootstrap(len(needed), resamples, interval)
    x = np.log10(needed.columns[reached].to_numpy(dtype=float))
    values = needed.to_numpy(dtype=float)[:, reached]

    def stat(draw):
        means = _reached_mean(values[draw])
        return math.nan if np.isnan(means).any() else slope(x, means)

    statistic = (f"slope of the first N with {METRIC} < {epsilon:g} (mean over the seeds that "
                 "reach it) against log10 P")
    row = claim_row(CLAIM, METRIC, scope, statistic, "< 0", boot, stat,
                    _claim_reason(needed, reached, largest))
    note = _partial_note(needed, largest)
    return {**row, "reason": "; ".join(r for r in (row["reason"], note) if r)}


def claims(chains: pd.DataFrame, epsilon: float, interval: float,
           resamples: int) -> pd.DataFrame:
    rows = [base_claim(chain, base_scope(model, tokens, FIRST_STAGE_ALGORITHM, FORWARD),
                       epsilon, interval, resamples)
            for (model, tokens), chain in chains.groupby(["model", "pretrain_tokens"])]
    return pd.DataFrame(rows, columns=CLAIMS_COLUMNS)


def figure(frame: pd.DataFrame, out: str, *, epsilon: float, interval: float) -> None:
    """KL to the base along the inverse chains: a line per P (seed mean, interval band), a
    panel per base, epsilon dashed: where a chain crosses it, Table 3 reads its N off."""
    from elasticity.rebound import _save, _setup

    sns = _setup()
    import matplotlib.pyplot as plt

    sft = frame[(frame["order"] == FORWARD) & (frame["algorithm"] == FIRST_STAGE_ALGORITHM)]
    sft = sft.assign(base=lambda f: _base_label(f))
    grid = sns.relplot(data=sft, x="negative", y=METRIC, hue="positive", col="base",
                       kind="line", marker="o", errorbar=("ci", interval), seed=0,
                       palette="viridis", height=3.2, aspect=1.2)
    for ax in grid.axes.flat:
        ax.axhline(epsilon, color="black", linestyle="--", linewidth=1)
        ax.set_xscale("symlog", linthresh=max(1, int(sft["negative"][sft["negative"] > 0].min())))
        ax.set_xlim(left=0)
    grid.set_axis_labels("negative examples (N)", "KL(model || base), nats/token")
    grid.legend.set_title("positive\nexamples (P)")
    _save(grid, out, f"Table 3: KL to the base along the inverse chains (dashed: epsilon = "
                     f"{epsilon:g}; bands: {interval:g}% interval over seeds)")
    plt.close(grid.figure)


def kl_table(summary: str, out_table: str, out_html: str, out_claims: str, out_figure: str, *,
             cells: list[dict[str, Any]], epsilon: float, interval: float,
             resamples: int) -> None:
    """Table 3 from the summary: its numbers (parquet), the two tables (HTML fragment), the
    claim that more positive data needs fewer negatives (claims parquet) and the KL along the
    chains it is read off (figure)."""
    frame = read_cells(summary, cells, [METRIC])
    figure(frame, out_figure, epsilon=epsilon, interval=interval)
    chains = chain_table(frame, epsilon)
    numbers = table(chains, interval, resamples)
    params = {"epsilon": epsilon, "interval": interval, "resamples": resamples}
    write_parquet(numbers, out_table, params)
    with atomic_path(out_html) as tmp:
        tmp.write_text(html(numbers, epsilon, interval))
    found = claims(chains, epsilon, interval, resamples)
    write_parquet(found.assign(experiment="kl_table"), out_claims, params)
    log.info("Table 3: %d chains, %d not reaching epsilon; claims %s", len(chains),
             int(chains["needed"].isna().sum()), found["verdict"].value_counts().to_dict())
