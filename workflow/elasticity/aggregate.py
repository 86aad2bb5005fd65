"""Step `aggregate`: every scored cell of an experiment in one table, and one row per cell."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from elasticity.io import read_parquet, write_parquet

log = logging.getLogger(__name__)

# The coordinates of a cell; every row of every results table carries them.
CELL_COLUMNS = ["task", "model", "pretrain_tokens", "algorithm", "positive_examples",
                "negative_examples", "seed"]
SUMMARY_COLUMNS = CELL_COLUMNS + ["model_parameters", "positive_rate", "mean_compound",
                                  "responses", "config_hash", "code_version"]


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the fraction of positive responses (the paper's metric) and more."""
    keys = CELL_COLUMNS + ["model_parameters", "config_hash", "code_version"]
    return (rows.groupby(keys, dropna=False)
            .agg(positive_rate=("is_positive", "mean"), mean_compound=("compound", "mean"),
                 responses=("response", "size"))
            .reset_index()[SUMMARY_COLUMNS]
            .sort_values(CELL_COLUMNS, ignore_index=True))


def aggregate(scores: list[str], bases: list[str], out_rows: str, out_summary: str,
              out_bases: str) -> None:
    rows = pd.concat([read_parquet(p, CELL_COLUMNS + ["response", "compound", "is_positive"])
                      for p in scores], ignore_index=True)
    summary = summarize(rows)
    log.info("%d responses in %d cells", len(rows), len(summary))
    write_parquet(rows, out_rows, {"cells": len(summary)})
    write_parquet(summary, out_summary, {"cells": len(summary)})
    write_parquet(base_table(bases, summary), out_bases, {"bases": len(bases)})


def base_table(bases: list[str], summary: pd.DataFrame) -> pd.DataFrame:
    """Each checkpoint pretraining saved: size, tokens, held-out loss and, for those in the
    grid, the base model's own positive rate."""
    records = []
    for base in bases:
        meta = json.loads((Path(base) / "base_metrics.json").read_text())
        records.append({k: meta[k] for k in ("model", "parameters", "pretrain_tokens",
                                             "eval_loss")})
    table = pd.DataFrame(records)
    own = (summary[summary["algorithm"] == "none"]
           .groupby(["model", "pretrain_tokens"])["positive_rate"]
           .agg(base_positive_rate="mean", base_positive_rate_sd="std").reset_index())
    return table.merge(own, on=["model", "pretrain_tokens"], how="left")
