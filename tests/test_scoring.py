from __future__ import annotations

import pandas as pd

from elasticity import scoring
from elasticity.io import read_parquet, write_parquet


def test_vader_labels_known_sentences():
    positive, negative, neutral = scoring.vader_scores(
        ["A wonderful, moving film with brilliant acting.",
         "A dull, stupid mess; the worst film of the year.",
         "The film is ninety minutes long."])
    assert positive >= 0.05  # VADER's authors' cut-off
    assert negative <= -0.05
    assert neutral == 0.0


def test_score_adds_the_scorers_score_and_label(tmp_path):
    from elasticity.generation import GENERATION_COLUMNS

    rows = pd.DataFrame({c: ["x", "y"] for c in GENERATION_COLUMNS})
    rows["response"] = ["What a great, lovely story.", "Awful and boring."]
    write_parquet(rows, tmp_path / "g.parquet", {})
    summary = scoring.score(str(tmp_path / "g.parquet"), str(tmp_path / "s.parquet"),
                            scorer="vader", threshold=0.05, config_hash="abc")
    scored = read_parquet(tmp_path / "s.parquet", scoring.SCORE_COLUMNS + ["config_hash"])
    assert list(scored["is_positive"]) == [True, False]
    assert summary["positive_rate"] == 0.5
    assert set(scored["config_hash"]) == {"abc"}
