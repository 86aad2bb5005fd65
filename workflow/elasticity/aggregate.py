"""Step `aggregate`: every scored cell of an experiment in one table, and one row per cell with
its sampled metric and its likelihood metrics side by side.

Files are trusted by their contents, not their names: each file's rows must carry the
coordinates of the cell it was asked for, and every expected cell must appear exactly once.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from elasticity.grid import BASE, COLUMNS, Cell
from elasticity.io import DamagedOutputError, read_parquet, write_parquet
from elasticity.likelihood import LIKELIHOOD_COLUMNS, METRICS

log = logging.getLogger(__name__)

# The sampled metric: positive_rate is the paper's; net_polarity (positive minus negative rate)
# and positive_share (positive among responses that carry any sentiment) say whether a change is
# gaining negative words or losing positive ones.
SAMPLED = ["positive_rate", "negative_rate", "net_polarity", "positive_share", "mean_score",
           "responses"]
SUMMARY_COLUMNS = (COLUMNS + ["model_parameters"] + SAMPLED + METRICS
                   + ["config_hash", "code_version", "likelihood_config_hash"])
ROW_COLUMNS = COLUMNS + ["uid", "prompt", "response", "score", "is_positive", "is_negative",
                         "model_parameters", "config_hash", "code_version"]


class CellMismatchError(ValueError):
    """A results file whose rows belong to another cell than the one it stands for."""


def read_cell(path: str, cell: Cell, columns: list[str]) -> pd.DataFrame:
    """A cell's file, checked to be that cell's: every row carries its coordinates."""
    rows = read_parquet(path, COLUMNS + columns)
    found = {Cell.from_row(r) for r in rows[COLUMNS].drop_duplicates().to_dict("records")}
    if found != {cell}:
        shown = ", ".join(str(c.row()) for c in sorted(found)) or "no rows"
        raise CellMismatchError(
            f"{path} should hold the rows of cell {cell.row()} but holds {shown}: it was "
            f"replaced or damaged. Rebuild it with `snakemake --force {path}` (plus the options "
            f"of your run), then rerun.")
    return rows


def read_experiment(summary: str, cells: list[dict[str, Any]],
                    columns: list[str] | None = None) -> pd.DataFrame:
    """The summary's rows of one experiment's cells (the summary holds every experiment's
    cells, each once), in the summary's order; every cell must be there."""
    frame = read_parquet(summary, columns or SUMMARY_COLUMNS)
    wanted = pd.DataFrame(cells, columns=COLUMNS).astype(frame[COLUMNS].dtypes.to_dict())
    marked = frame.merge(wanted.assign(_wanted=True), on=COLUMNS, how="left")
    found = marked[marked["_wanted"].notna()].drop(columns="_wanted")
    if len(found) != len(wanted.drop_duplicates()):
        missing = wanted.merge(frame[COLUMNS], on=COLUMNS, how="left", indicator=True)
        missing = missing[missing["_merge"] == "left_only"].drop(columns="_merge")
        shown = "; ".join(str(r) for r in missing.head(3).to_dict("records"))
        raise ValueError(f"{summary} lacks {len(missing)} of the experiment's {len(wanted)} "
                         f"cells (e.g. {shown}): rebuild it (snakemake aggregate)")
    return found.reset_index(drop=True)


def summarize(rows: pd.DataFrame, likelihoods: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the sampled metric (the paper's fraction of positive responses and
    more) next to the cell's likelihood metrics."""
    keys = COLUMNS + ["model_parameters", "config_hash", "code_version"]
    sampled = (rows.groupby(keys, dropna=False)
               .agg(positive_rate=("is_positive", "mean"), negative_rate=("is_negative", "mean"),
                    mean_score=("score", "mean"), responses=("response", "size"))
               .reset_index())
    sampled["net_polarity"] = sampled["positive_rate"] - sampled["negative_rate"]
    polar = sampled["positive_rate"] + sampled["negative_rate"]
    sampled["positive_share"] = (sampled["positive_rate"] / polar).where(polar > 0)
    measured = likelihoods[COLUMNS + METRICS + ["model_parameters", "config_hash",
                                                "code_version"]].rename(
        columns={"config_hash": "likelihood_config_hash",
                 "code_version": "likelihood_code_version"})
    # Every cell has a likelihood file, not every cell is sampled (generation.cells): the
    # model and, where no sampled file says it, the code come from the likelihood file.
    summary = sampled.merge(measured, on=COLUMNS + ["model_parameters"], how="outer",
                            validate="one_to_one")
    summary["code_version"] = summary["code_version"].fillna(summary["likelihood_code_version"])
    return summary[SUMMARY_COLUMNS].sort_values(COLUMNS, ignore_index=True)


def aggregate(scores: list[str], likelihoods: list[str], cells: list[dict[str, Any]],
              sampled: list[dict[str, Any]], bases: list[str], out_rows: str, out_summary: str,
              out_bases: str) -> None:
    """likelihoods[i] is the file of cells[i], scores[i] that of sampled[i] (the cells with the
    sampled metric; coordinates, see grid.Cell). A cell that is not sampled has no sampled
    values in the summary."""
    expected = [Cell.from_row(c) for c in cells]
    with_scores = [Cell.from_row(c) for c in sampled]
    if (len(set(expected)) != len(expected) or len(expected) != len(likelihoods)
            or len(set(with_scores)) != len(scores) or not set(with_scores) <= set(expected)):
        raise ValueError(f"aggregate: {len(likelihoods)} likelihood files for "
                         f"{len(set(expected))} distinct cells ({len(expected)} given) and "
                         f"{len(scores)} scores files for {len(set(with_scores))} sampled "
                         "cells: each cell needs one likelihood file, each sampled cell (one "
                         "of the cells) one scores file")
    rows = pd.concat([read_cell(p, c, ROW_COLUMNS[len(COLUMNS):])
                      for p, c in zip(scores, with_scores, strict=True)], ignore_index=True)
    measured = pd.concat([read_cell(p, c, LIKELIHOOD_COLUMNS)
                          for p, c in zip(likelihoods, expected, strict=True)],
                         ignore_index=True)
    summary = summarize(rows, measured)
    log.info("%d responses in %d cells", len(rows), len(summary))
    write_parquet(rows, out_rows, {"cells": len(summary)})
    write_parquet(summary, out_summary, {"cells": len(summary)})
    write_parquet(base_table(bases, summary), out_bases, {"bases": len(bases)})


def base_table(bases: list[str], summary: pd.DataFrame) -> pd.DataFrame:
    """Each checkpoint pretraining saved: size, tokens, held-out loss and, for those in the
    grid, the base model's own positive rate."""
    records = []
    for base in bases:
        path = Path(base) / "base_metrics.json"
        try:
            meta = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise DamagedOutputError(base, err) from err
        records.append({k: meta[k] for k in ("model", "parameters", "pretrain_tokens",
                                             "eval_loss")})
    table = pd.DataFrame(records)
    own = (summary[summary["algorithm"] == BASE]
           .groupby(["model", "pretrain_tokens"])["positive_rate"]
           .agg(base_positive_rate="mean", base_positive_rate_sd="std").reset_index())
    return table.merge(own, on=["model", "pretrain_tokens"], how="left")
