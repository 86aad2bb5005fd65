from __future__ import annotations

import pandas as pd
import pytest

from elasticity import data
from elasticity.io import read_parquet


def test_snippet_counts_match_the_published_dataset(snippets):
    movie = snippets[snippets["source"] == "movie"]
    assert len(movie) == 10605
    assert (movie["rating"] > 0).sum() == 5242
    assert (movie["rating"] < 0).sum() == 5326
    assert set(snippets["source"]) == {"movie", "amazon", "tweet", "nyt"}
    assert not snippets["text"].str.contains("''").any()


def _splits(snippets, seed=0, **overrides):
    args = dict(seed=seed, polarity_threshold=1.5, positive_pool=2000, negative_pool=1000,
                eval_prompts=200, prompt_words=(2, 8), pretrain_eval=500)
    args.update(overrides)
    return data.make_splits(snippets, **args)


def test_splits_are_disjoint_and_cover_the_corpus(snippets):
    splits = _splits(snippets)
    uids = [set(frame["uid"]) for frame in splits.values()]
    assert sum(len(u) for u in uids) == len(set().union(*uids)) == len(snippets)
    assert len(splits["positive"]) == 2000 and len(splits["negative"]) == 1000
    assert (splits["positive"]["rating"] >= 1.5).all()
    assert (splits["negative"]["rating"] <= -1.5).all()
    assert (splits["prompts"]["source"] == "movie").all()
    # The pretraining text holds reviews of both polarities, as the paper assumes.
    pretrain_movie = splits["pretrain"][splits["pretrain"]["source"] == "movie"]
    assert (pretrain_movie["rating"] >= 1.5).sum() > 500
    assert (pretrain_movie["rating"] <= -1.5).sum() > 500
    assert (splits["pretrain_eval"]["source"] == "movie").any()


def test_splits_are_deterministic_per_seed(snippets):
    first, again, other = _splits(snippets), _splits(snippets), _splits(snippets, seed=1)
    for name in data.SPLITS:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert list(first["positive"]["uid"]) != list(other["positive"]["uid"])


def test_prompts_are_the_first_words_of_their_review(snippets):
    prompts = _splits(snippets)["prompts"]
    for _, row in prompts.iterrows():
        words = row["text"].split()
        assert 1 <= row["prompt_words"] <= 8
        assert row["prompt"] == " ".join(words[:row["prompt_words"]])
        assert len(words) > row["prompt_words"]
    assert prompts["prompt_words"].between(2, 8).mean() > 0.95


def test_a_pool_larger_than_its_source_names_the_pool_and_its_size(snippets):
    with pytest.raises(ValueError, match=r"data\.pools\.positive asks for 5000 .* only 3628"):
        _splits(snippets, positive_pool=5000)


def test_written_splits_carry_their_schema(small_splits):
    for name in data.SPLITS:
        columns = data.PROMPT_COLUMNS if name == "prompts" else data.SPLIT_COLUMNS
        frame = read_parquet(small_splits / f"{name}.parquet", columns)
        assert list(frame.columns) == columns
        assert len(frame) > 0


def test_a_checksum_mismatch_says_what_to_do(sdist):
    with pytest.raises(ValueError, match="sha256 is .* expected 0{64}.*delete it and rerun"):
        data.check_sha256(sdist, "0" * 64)


def test_a_failed_download_says_what_to_fetch_and_how(tmp_path):
    with pytest.raises(RuntimeError, match=r"pip download --no-deps --no-binary :all: "
                                           r"vaderSentiment==0\.0\.0"):
        data.fetch_source("vaderSentiment", "0.0.0", "0" * 64, str(tmp_path / "x.tar.gz"))
    assert not (tmp_path / "x.tar.gz").exists()
