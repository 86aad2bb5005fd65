"""Steps `score` and `score_splits`: the task's scorer on each response, and on the data splits.

A scorer maps texts to a score in [-1, 1]; a text counts as positive when its score is at least
`scoring.threshold`, as negative when it is at most -threshold (VADER's own convention), and
carries no sentiment in between. `scoring.scorer` picks one of SCORERS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from elasticity.generation import GENERATION_COLUMNS
from elasticity.io import read_parquet, write_json, write_parquet

log = logging.getLogger(__name__)

SCORE_COLUMNS = ["score", "is_positive", "is_negative"]


def vader_scores(texts: list[str]) -> list[float]:
    """VADER's compound score (its authors' cut-off for positive: 0.05)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return [analyzer.polarity_scores(t)["compound"] for t in texts]


SCORERS: dict[str, Callable[[list[str]], list[float]]] = {"vader": vader_scores}


def score(generations: str, out: str, *, scorer: str, threshold: float,
          config_hash: str) -> dict[str, Any]:
    rows = read_parquet(generations, GENERATION_COLUMNS)
    rows["score"] = SCORERS[scorer](rows["response"].fillna("").tolist())
    rows["is_positive"] = rows["score"] >= threshold
    rows["is_negative"] = rows["score"] <= -threshold
    rows["config_hash"] = config_hash
    summary = {"positive_rate": float(rows["is_positive"].mean()),
               "mean_score": float(rows["score"].mean()), "responses": len(rows)}
    log.info("scored %s: %s", generations, summary)
    write_parquet(rows, out, {"scorer": scorer, "threshold": threshold,
                              "generations": generations})
    return summary


def _rates(scorer: str, texts: list[str], threshold: float) -> dict[str, float]:
    scores = np.asarray(SCORERS[scorer](texts))
    return {"positive_rate": round(float(np.mean(scores >= threshold)), 3),
            "negative_rate": round(float(np.mean(scores <= -threshold)), 3),
            "mean_score": round(float(np.mean(scores)), 3)}


def score_splits(splits: dict[str, str], out: str, *, scorer: str, threshold: float) -> None:
    """The scorer on the data splits themselves: how positive each pool already is (inverse
    fine-tuning can only pull a model towards the negative pool's own score). A split with
    prompts is also scored as a model's responses are: on the text after the prompt words
    (`continuation_*`), the pools' own lines in the sampled-metric figures."""
    summary = {}
    for name, path in sorted(splits.items()):
        frame = read_parquet(path, ["text"])
        summary[name] = {"rows": len(frame), **_rates(scorer, frame["text"].tolist(), threshold)}
        if "prompt" in frame:
            rest = [" ".join(text.split()[len(prompt.split()):])
                    for text, prompt in zip(frame["text"], frame["prompt"], strict=True)]
            summary[name].update({f"continuation_{k}": v
                                  for k, v in _rates(scorer, rest, threshold).items()})
        log.info("%s: %s", name, summary[name])
    write_json({"scorer": scorer, "threshold": threshold, "splits": summary}, out)
