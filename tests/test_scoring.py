from __future__ import annotations

import pandas as pd
import pytest

from elasticity import scoring
from elasticity.io import read_json, read_parquet, write_parquet


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


def test_vader_with_a_model_or_a_hub_scorer_without_one_names_scoring_model():
    with pytest.raises(ValueError, match="scoring.model .* vader scorer uses no model"):
        scoring.load_scorer("vader", model={"id": "a/b", "revision": "main"}, device="cpu",
                            batch_size=1, cache="downloads/hub")
    for scorer in ("sentiment-classifier", "cost-model"):
        with pytest.raises(ValueError, match=f"scoring.model is null.*{scorer}"):
            scoring.load_scorer(scorer, model=None, device="cpu", batch_size=1,
                                cache="downloads/hub")
    with pytest.raises(ValueError, match="hub.cache"):
        scoring.load_scorer("cost-model", model={"id": "a/b", "revision": "main"},
                            device="cpu", batch_size=1, cache=None)


def test_a_continuation_is_the_text_after_its_prompt():
    assert scoring.continuation("A fine film, truly.", "A fine") == "film, truly."
    # The safety template's prompt ends in "ASSISTANT:" with the response right after it.
    assert scoring.continuation("USER: hi ASSISTANT:Hello there", "USER: hi ASSISTANT:") == (
        "Hello there")
    # A prompt of the text's words re-joined by single spaces: cut by its word count.
    assert scoring.continuation("A  fine\nfilm, truly.", "A fine") == "film, truly."


def test_score_splits_scores_texts_and_continuations(tmp_path):
    prompted = pd.DataFrame({"text": ["Awful and boring. What a great, lovely story."],
                             "prompt": ["Awful and boring."], "prompt_words": [3]})
    write_parquet(prompted, tmp_path / "prompts.parquet", {})
    write_parquet(pd.DataFrame({"text": ["Awful and boring."]}), tmp_path / "negative.parquet",
                  {})
    scoring.score_splits({"prompts": str(tmp_path / "prompts.parquet"),
                          "negative": str(tmp_path / "negative.parquet")},
                         str(tmp_path / "split_scores.json"), scorer="vader", threshold=0.05)
    splits = read_json(tmp_path / "split_scores.json")["splits"]
    assert splits["negative"] == {"rows": 1, "positive_rate": 0.0, "negative_rate": 1.0,
                                  "mean_score": round(scoring.vader_scores(
                                      ["Awful and boring."])[0], 3)}
    assert splits["prompts"]["continuation_positive_rate"] == 1.0
    assert "continuation_mean_cost" not in splits["prompts"]
