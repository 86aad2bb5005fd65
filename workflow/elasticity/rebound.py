"""The rebound experiment (§5.2-5.3): the paper's Fig. 4-6 from the summary table, for the
sampled metric and for the preference margin, and the compression rates along the chains.

Bands are bootstrap intervals over seeds (`rebound.interval` %), never a single number.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from elasticity.aggregate import read_experiment
from elasticity.grid import BASE
from elasticity.io import atomic_path, read_json

log = logging.getLogger(__name__)

# What the figures can plot: a summary column and its axis label.
METRIC_LABELS = {
    "positive_rate": "fraction positive (sampled)",
    "margin": "preference margin (nats/token)",
}
COMPRESSION_LABELS = {f"bits_per_token_{s}": f"bits/token, held-out {s}"
                      for s in ("pretrain", "positive", "negative")}


def _setup():
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return sns


def tokens_label(tokens: float) -> str:
    """A pretraining volume as people write it (200k, 1.6M, 105B, 3T); 0, a released model whose
    volume is not published, as '?'."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if tokens >= scale:
            return f"{tokens / scale:.3g}{unit}"
    return f"{tokens:g}" if tokens else "?"


def _base_label(frame: pd.DataFrame) -> pd.Series:
    return frame["model"] + " @ " + frame["pretrain_tokens"].map(tokens_label) + " tok"


def _save(grid, out: str, title: str) -> None:
    grid.figure.suptitle(title, y=1.03)
    with atomic_path(out) as tmp:
        grid.figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    log.info("wrote %s", out)


def _dashed_base_lines(grid, base: pd.DataFrame, panel: str, metric: str) -> None:
    for name, ax in grid.axes_dict.items():
        rate = base.loc[base[panel] == name, metric].mean()
        ax.axhline(rate, color="black", linestyle="--", linewidth=1, label="base model")


# The held-out split that stands for each pool, and its line's colour.
POOL_LINES = {"positive_eval": ("positive pool", "tab:green"),
              "negative_eval": ("negative pool", "tab:red")}


def _pool_lines(grid, split_scores: str, metric: str) -> str:
    """The pools' own value of the sampled metric under the prompt protocol (their held-out
    snippets' continuations, scored as responses are), dotted; what the title should say."""
    if metric != "positive_rate":
        return ""
    splits = read_json(split_scores)["splits"]
    for split, (label, colour) in POOL_LINES.items():
        for ax in grid.axes.flat:
            ax.axhline(splits[split]["continuation_positive_rate"], color=colour,
                       linestyle=":", linewidth=1.2, label=label)
    return "; dotted: the pools' own continuations"


def rebound(summary: str, split_scores: str, out: str, *, task: str, metric: str,
            interval: float, experiment_cells: list[dict[str, Any]]) -> None:
    """Fig. 4 analog: the metric vs N, one line per P, a panel per base checkpoint."""
    sns = _setup()
    cells = read_experiment(summary, experiment_cells)
    cells = cells[cells["task"] == task].assign(base=lambda f: _base_label(f))
    aligned, base = cells[cells["algorithm"] != BASE], cells[cells["algorithm"] == BASE]
    grid = sns.relplot(data=aligned, x="negative", y=metric,
                       hue="positive", col="base",
                       col_wrap=min(3, aligned["base"].nunique()), kind="line", marker="o",
                       errorbar=("ci", interval), seed=0, palette="viridis", height=3, aspect=1.1,
                       facet_kws={"sharey": True})
    _dashed_base_lines(grid, base, "base", metric)
    pools = _pool_lines(grid, split_scores, metric)
    grid.set_axis_labels("negative examples (N)", METRIC_LABELS[metric])
    grid.legend.set_title("positive\nexamples (P)")
    _save(grid, out, "Rebound: aligned on P positive, then fine-tuned on N negative "
                     f"(dashed: base model{pools}; bands: {interval:g}% interval over seeds)")


def by_axis(summary: str, split_scores: str, out: str, *, task: str, metric: str, hue: str,
            bases: list[dict[str, Any]], title: str, interval: float,
            experiment_cells: list[dict[str, Any]]) -> None:
    """Fig. 5/6 analog: score vs N, one line per base of the axis, a panel per P."""
    sns = _setup()
    cells = read_experiment(summary, experiment_cells)
    wanted = pd.DataFrame(bases)
    cells = cells[cells["task"] == task].merge(wanted, on=["model", "pretrain_tokens"])
    if hue == "model":
        cells["line"] = cells["model"] + " (" + (cells["model_parameters"] / 1e6).map(
            "{:.2f}M params".format) + ")"
    else:
        cells["line"] = cells["pretrain_tokens"].map(tokens_label) + " tokens"
    aligned = cells[cells["algorithm"] != BASE]
    grid = sns.relplot(data=aligned, x="negative", y=metric, hue="line",
                       col="positive", kind="line", marker="o", errorbar=("ci", interval),
                       seed=0, height=3,
                       aspect=1.0, palette="rocket")
    grid.set_axis_labels("negative examples (N)", METRIC_LABELS[metric])
    grid.set_titles("P = {col_name}")
    grid.legend.set_title(None)
    pools = _pool_lines(grid, split_scores, metric)
    _save(grid, out, f"{title} (bands: {interval:g}% interval over seeds{pools})")


def compression(summary: str, out: str, *, task: str, interval: float,
                experiment_cells: list[dict[str, Any]]) -> None:
    """Bits per token on the three held-out sets along the inverse chains: a row per set, a
    panel per base, a line per P (the dashed line: the base model). Theorem 4.2 predicts the
    pretraining row falling and the alignment (positive) row rising as N grows."""
    sns = _setup()
    cells = read_experiment(summary, experiment_cells)
    cells = cells[cells["task"] == task].assign(base=lambda f: _base_label(f))
    long = cells.melt(id_vars=["base", "algorithm", "positive", "negative", "seed"],
                      value_vars=list(COMPRESSION_LABELS), var_name="held_out",
                      value_name="bits_per_token")
    long["held_out"] = long["held_out"].map(COMPRESSION_LABELS)
    aligned, base = long[long["algorithm"] != BASE], long[long["algorithm"] == BASE]
    grid = sns.relplot(data=aligned, x="negative", y="bits_per_token", hue="positive",
                       col="base", row="held_out", kind="line", marker="o",
                       errorbar=("ci", interval), seed=0, palette="viridis", height=2.6,
                       aspect=1.2, facet_kws={"sharey": "row"})
    for (row, col), ax in grid.axes_dict.items():
        level = base.loc[(base["held_out"] == row) & (base["base"] == col), "bits_per_token"]
        ax.axhline(level.mean(), color="black", linestyle="--", linewidth=1)
    grid.set_axis_labels("negative examples (N)", "bits per token")
    grid.set_titles("{row_name}\n{col_name}")
    grid.legend.set_title("positive\nexamples (P)")
    _save(grid, out, "Compression rates along the inverse chains "
                     f"(dashed: base model; bands: {interval:g}% interval over seeds)")
