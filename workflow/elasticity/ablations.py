"""The rebound ablations (paper App. B.2-B.3): the inverse stage run with other alignment
algorithms (Fig. 7 heatmaps, Fig. 9 by model size), and the reverse order, SFT on negative data
first and on positive data second (Fig. 8); with their claims, tested by the rule of
`elasticity.analysis`.

The forward stage is always SFT, so the aligned models (N = 0) are stored once, under
`grid.FIRST_STAGE_ALGORITHM`, and start the curve of every inverse algorithm (`forward_view`).
In the reverse order `negative` is the first stage's volume and `positive` the second's;
positive = 0 is the model after the first stage.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from elasticity.aggregate import read_experiment
from elasticity.analysis import (
    ANALYZED,
    CLAIMS_COLUMNS,
    Bootstrap,
    Curves,
    _base_cells,
    _first_positive,
    axis_claim,
    claim_row,
    curves,
    measured_seeds,
    slope,
    testability,
)
from elasticity.grid import BASE, COLUMNS, FIRST_STAGE_ALGORITHM, FORWARD, REVERSE
from elasticity.io import write_parquet
from elasticity.rebound import METRIC_LABELS, _base_label, _save, _setup, tokens_label

log = logging.getLogger(__name__)

# Seed resamples behind the heatmaps' intervals: seaborn's default, as behind the bands.
PLOT_RESAMPLES = 1000

REBOUND = "rebound: the initial drop grows with P"
SIZE = "size: larger models lose more"
REVERSE_REBOUND = ("reverse rebound: the initial rise under positive data grows with the "
                   "first-stage negative volume")
REVERSE_SIZE = "reverse size: larger models lose more of their negative alignment"


def read_cells(summary: str, cells: list[dict[str, Any]], metrics: list[str]) -> pd.DataFrame:
    """The experiment's rows of the summary, with their parameters and the given metrics."""
    return read_experiment(summary, cells, [*COLUMNS, "model_parameters", *metrics])


def forward_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The base cells and the forward chains, each inverse algorithm starting from a copy of
    the shared aligned (N = 0, `FIRST_STAGE_ALGORITHM`) cells."""
    forward = frame[(frame["order"] == FORWARD) & (frame["algorithm"] != BASE)]
    start, inverse = forward[forward["negative"] == 0], forward[forward["negative"] > 0]
    stray = sorted(set(start["algorithm"]) - {FIRST_STAGE_ALGORITHM})
    if stray:
        raise ValueError(f"aligned (N = 0) cells under algorithm(s) {stray}: the aligned model "
                         f"is one SFT model, stored once under {FIRST_STAGE_ALGORITHM!r}")
    copies = [start.assign(algorithm=a) for a in inverse["algorithm"].unique()]
    return pd.concat([frame[frame["algorithm"] == BASE], inverse, *copies], ignore_index=True)


def reverse_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The base cells and the reverse chains."""
    reverse = frame[(frame["order"] == REVERSE) & (frame["algorithm"] != BASE)]
    return pd.concat([frame[frame["algorithm"] == BASE], reverse], ignore_index=True)


def bases(frame: pd.DataFrame) -> list[tuple[str, int, float]]:
    """The (model, pretrain_tokens, parameters) of the bases with aligned cells, smallest first."""
    aligned = frame[frame["algorithm"] != BASE]
    found = aligned.groupby(["model", "pretrain_tokens"])["model_parameters"].first()
    return sorted(((m, int(t), float(p)) for (m, t), p in found.items()),
                  key=lambda b: (b[2], b[0], b[1]))


def size_label(frame: pd.DataFrame) -> pd.Series:
    return (_base_label(frame) + ", " + frame["model_parameters"].map(tokens_label)
            + " params")


def _curves(cells: pd.DataFrame, metric: str, seeds: list[int]) -> Curves:
    """`analysis.curves`, also when no seed carries the metric: then an empty array over
    seeds, whose claims say why they cannot be tested."""
    if seeds:
        return curves(cells, metric, seeds)
    aligned = cells[cells["algorithm"] != BASE]
    positive = np.sort(aligned["positive"].unique())
    negative = np.sort(aligned["negative"].unique())
    return Curves(positive, negative, np.empty((0, len(positive), len(negative))), np.empty(0))


def square_intervals(c: Curves, boot: Bootstrap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each (P, N) square's seed mean and its percentile interval over the seed resamples."""
    means = c.values[boot.draws].mean(axis=1)
    low, high = np.nanpercentile(means, [boot.tail, 100 - boot.tail], axis=0)
    return c.values.mean(axis=0), low, high


def _annotations(mean: np.ndarray, low: np.ndarray, high: np.ndarray,
                 span: float) -> np.ndarray:
    """Mean over interval, to a hundredth of the colour scale's span (the squares
    are compared against each other, not read to a precision the seeds do not carry)."""
    decimals = max(0, 2 - math.floor(math.log10(span))) if span > 0 else 2
    return np.vectorize(lambda m, lo, hi: f"{m:.{decimals}f}\n[{lo:.{decimals}f}, "
                        f"{hi:.{decimals}f}]")(mean, low, high)


def _measured(frame: pd.DataFrame, metric: str) -> list[int]:
    seeds = measured_seeds(frame, metric)
    if not seeds:
        raise ValueError(f"no cell of the experiment carries {metric} (for the sampled metric: "
                         "generation.cells)")
    return seeds


def plot_algorithms(summary: str, out: str, *, task: str, metric: str,
                    cells: list[dict[str, Any]], interval: float) -> None:
    """Fig. 7 analog: a P x N heatmap of the seed means per inverse algorithm (columns), a row
    per base; darker squares are more aligned, each annotated with its mean and interval."""
    sns = _setup()
    import matplotlib.pyplot as plt

    frame = forward_view(read_cells(summary, cells, [metric]))
    frame = frame[frame["task"] == task]
    seeds = _measured(frame, metric)
    boot = Bootstrap(len(seeds), PLOT_RESAMPLES, interval)
    algorithms = list(frame.loc[frame["algorithm"] != BASE, "algorithm"].unique())
    found = bases(frame)
    fig, axes = plt.subplots(len(found), len(algorithms), squeeze=False,
                             figsize=(4.2 * len(algorithms), 3.2 * len(found)))
    for i, (model, tokens, _) in enumerate(found):
        chains = [curves(_base_cells(frame, model, tokens, a), metric, seeds)
                  for a in algorithms]
        panels = [square_intervals(c, boot) for c in chains]
        # One colour scale per base: the algorithms are compared on the same model.
        vmin = min(np.nanmin(m) for m, _, _ in panels)
        vmax = max(np.nanmax(m) for m, _, _ in panels)
        label = _base_label(pd.DataFrame({"model": [model], "pretrain_tokens": [tokens]})).iloc[0]
        for j, (algorithm, c, (mean, low, high)) in enumerate(zip(algorithms, chains, panels,
                                                                   strict=True)):
            ax = axes[i, j]
            # Largest P on top, as on a y axis.
            squares = pd.DataFrame(mean[::-1], index=c.positive[::-1], columns=c.negative)
            sns.heatmap(squares, ax=ax, cmap="Blues", vmin=vmin, vmax=vmax,
                        annot=_annotations(mean, low, high, vmax - vmin)[::-1], fmt="",
                        annot_kws={"fontsize": 6}, cbar=j == len(algorithms) - 1,
                        cbar_kws={"label": METRIC_LABELS[metric]})
            ax.set_title(f"{algorithm}\n{label}", fontsize=8)
            ax.set_xlabel("negative examples (N)")
            ax.set_ylabel("positive examples (P)")
    fig.tight_layout()
    _save(fig, out, f"Rebound by inverse algorithm: SFT on P positive, then N negative with the "
                    f"algorithm (darker: more aligned; squares: seed mean and {interval:g}% "
                    "interval over seeds)")
    plt.close(fig)


def _symlog(grid, x: pd.Series) -> None:
    """A log axis that keeps 0: linear up to the smallest positive value; nothing below 0."""
    for ax in grid.axes.flat:
        ax.set_xscale("symlog", linthresh=float(x[x > 0].min()))
        ax.set_xlim(left=0)


def _palette(sns, name: str, values: pd.Series) -> list:
    """One distinct colour per volume: the volumes are spaced by factors, and a colour scale
    linear in them would merge the small ones."""
    return sns.color_palette(name, values.nunique())


def _base_lines(grid, base: pd.DataFrame, metric: str) -> None:
    for key, ax in grid.axes_dict.items():
        column = key[-1] if isinstance(key, tuple) else key
        level = base.loc[base["size"] == column, metric].mean()
        ax.axhline(level, color="black", linestyle="--", linewidth=1, label="base model")


def _by_size(frame: pd.DataFrame, out: str, *, metric: str, x: str, hue: str, palette: str,
             xlabel: str, legend: str, title: str, interval: float,
             row: str | None = None) -> None:
    """Curves of the metric against `x`, a line per `hue` value with its interval band, a
    column per model (by parameters) and optionally a row per `row` value; dashed: the base."""
    sns = _setup()
    import matplotlib.pyplot as plt

    frame = frame.assign(size=lambda f: size_label(f))
    _measured(frame, metric)
    aligned, base = frame[frame["algorithm"] != BASE], frame[frame["algorithm"] == BASE]
    columns = list(aligned.sort_values("model_parameters", kind="stable")["size"].unique())
    grid = sns.relplot(data=aligned, x=x, y=metric, hue=hue, row=row, col="size",
                       col_order=columns, kind="line", marker="o", errorbar=("ci", interval),
                       seed=0, palette=_palette(sns, palette, aligned[hue]), height=3,
                       aspect=1.1, facet_kws={"sharey": True})
    _base_lines(grid, base, metric)
    _symlog(grid, aligned[x])
    grid.set_axis_labels(xlabel, METRIC_LABELS[metric])
    grid.set_titles("{row_name}\n{col_name}" if row else "{col_name}", size=8)
    grid.legend.set_title(legend)
    _save(grid, out, title)
    plt.close(grid.figure)


def plot_algorithm_sizes(summary: str, out: str, *, task: str, metric: str,
                         cells: list[dict[str, Any]], interval: float) -> None:
    """Fig. 9 analog: the metric against N, a line per P; a row per inverse algorithm, a column
    per model (by parameters); dashed: the base model."""
    frame = forward_view(read_cells(summary, cells, [metric]))
    _by_size(frame[frame["task"] == task], out, metric=metric, x="negative", hue="positive",
             row="algorithm", palette="viridis", interval=interval,
             xlabel="negative examples (N)",
             legend="positive\nexamples (P)",
             title="Rebound by model size per inverse algorithm: SFT on P positive, then N "
                   f"negative (dashed: base model; bands: {interval:g}% interval over seeds)")


def plot_reverse(summary: str, out: str, *, task: str, metric: str,
                 cells: list[dict[str, Any]], interval: float) -> None:
    """Fig. 8 analog: the metric against the second stage's positive volume, a line per first
    stage's negative volume, a column per model (by parameters); dashed: the base model."""
    frame = reverse_view(read_cells(summary, cells, [metric]))
    _by_size(frame[frame["task"] == task], out, metric=metric, x="positive", hue="negative",
             palette="rocket", interval=interval, xlabel="positive examples, second stage (P)",
             legend="negative\nexamples,\nfirst stage (N)",
             title="Reverse order: SFT on N negative, then on P positive (dashed: base model; "
                   f"bands: {interval:g}% interval over seeds)")


def rebound_claim(c: Curves, metric: str, scope: str, boot: Bootstrap, claim: str = REBOUND,
                  statistic: str = "slope of y(N=0) - y(smallest N>0) against log10 P"
                  ) -> dict[str, Any]:
    """`analysis.base_claims`'s rebound claim alone: the initial drop's slope against log10 P."""
    logp = np.log10(c.positive.astype(float))

    def drop(draw):
        mean, _ = c.mean(draw)
        return slope(logp, mean[:, 0] - mean[:, _first_positive(c.negative)])

    return claim_row(claim, metric, scope, statistic, "> 0", boot, drop,
                     testability(c, len(boot.full), need_n=1))


def base_scope(model: str, tokens: int, algorithm: str, order: str) -> str:
    """A claim's scope: the base, the second stage's algorithm and the order."""
    return f"{model} @ {tokens:,} tokens ({algorithm}, {order} order)"


def _scoped(row: dict[str, Any], scope: str) -> dict[str, Any]:
    return {**row, "scope": scope}


def forward_claims(view: pd.DataFrame, metric: str, boot: Bootstrap,
                   seeds: list[int]) -> list[dict[str, Any]]:
    """Per inverse algorithm: rebound per base, and size across the bases."""
    rows = []
    for algorithm in view.loc[view["algorithm"] != BASE, "algorithm"].unique():
        named = []
        for model, tokens, parameters in bases(view[view["algorithm"].isin([algorithm, BASE])]):
            c = _curves(_base_cells(view, model, tokens, algorithm), metric, seeds)
            rows.append(rebound_claim(c, metric, base_scope(model, tokens, algorithm, FORWARD),
                                      boot))
            named.append((parameters, c))
        rows.append(_scoped(axis_claim(named, metric, SIZE, "parameters", boot),
                            f"parameters ({algorithm}, {FORWARD} order)"))
    return rows


def mirrored(c: Curves) -> Curves:
    """A reverse chain as a forward one: its first stage's volume as P, its second's as N, and
    the metric negated, so that the rise under positive data is a drop."""
    return Curves(c.positive, c.negative, -c.values, -c.base)


def reverse_claims(view: pd.DataFrame, metric: str, boot: Bootstrap,
                   seeds: list[int]) -> list[dict[str, Any]]:
    """Per base: the reverse rebound; across the bases: the reverse size claim. Chains without
    a first stage (negative = 0) have no log10 of their volume and stay out."""
    swapped = view.rename(columns={"positive": "negative", "negative": "positive"})
    swapped = swapped[(swapped["algorithm"] == BASE) | (swapped["positive"] > 0)]
    if (swapped["algorithm"] == BASE).all():
        return []
    rows, named = [], []
    for model, tokens, parameters in bases(swapped):
        cells = _base_cells(swapped, model, tokens, FIRST_STAGE_ALGORITHM)
        c = mirrored(_curves(cells, metric, seeds))
        rows.append(rebound_claim(c, metric, base_scope(model, tokens, FIRST_STAGE_ALGORITHM,
                                                        REVERSE), boot, REVERSE_REBOUND,
                                  "slope of y(smallest P>0) - y(P=0) against log10 N (first "
                                  "stage)"))
        named.append((parameters, c))
    rows.append(_scoped(axis_claim(named, metric, REVERSE_SIZE, "parameters", boot),
                        f"parameters ({FIRST_STAGE_ALGORITHM}, {REVERSE} order)"))
    return rows


def claims(summary: str, out: str, *, experiment: str, cells: list[dict[str, Any]],
           interval: float, resamples: int) -> None:
    """The claims of an experiment's cells (CLAIMS_COLUMNS and `experiment`, one verdict rule
    with `analysis`) for every analyzed metric, as parquet: forward chains per inverse
    algorithm, reverse chains."""
    frame = read_cells(summary, cells, list(ANALYZED))
    forward, reverse = forward_view(frame), reverse_view(frame)
    rows = []
    for metric in ANALYZED:
        seeds = measured_seeds(frame, metric)
        boot = Bootstrap(len(seeds), resamples, interval)
        rows += forward_claims(forward, metric, boot, seeds)
        rows += reverse_claims(reverse, metric, boot, seeds)
    table = pd.DataFrame(rows, columns=CLAIMS_COLUMNS).assign(experiment=experiment)
    write_parquet(table, out, {"interval": interval, "resamples": resamples})
    log.info("ablation claims: %s", table["verdict"].value_counts().to_dict())
