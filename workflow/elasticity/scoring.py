"""Step `score`: VADER sentiment of each response; the cell's score is the fraction positive."""

from __future__ import annotations

import logging
from typing import Any

from elasticity.io import read_parquet, write_parquet

log = logging.getLogger(__name__)

# VADER's authors' cut-off for a positive compound score.
VADER_POSITIVE = 0.05
SCORE_COLUMNS = ["compound", "is_positive"]


def vader_scores(texts: list[str]) -> list[float]:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return [analyzer.polarity_scores(t)["compound"] for t in texts]


def score(generations: str, out: str, *, threshold: float, config_hash: str) -> dict[str, Any]:
    from elasticity.generation import GENERATION_COLUMNS

    rows = read_parquet(generations, GENERATION_COLUMNS)
    rows["compound"] = vader_scores(rows["response"].fillna("").tolist())
    rows["is_positive"] = rows["compound"] >= threshold
    rows["config_hash"] = config_hash
    summary = {"positive_rate": float(rows["is_positive"].mean()),
               "mean_compound": float(rows["compound"].mean()), "responses": len(rows)}
    log.info("scored %s: %s", generations, summary)
    write_parquet(rows, out, {"scorer": "vader", "threshold": threshold,
                              "generations": generations})
    return summary
