"""The resistance experiment: one seed's step on a tiny model, the table on synthetic seeds."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from elasticity import resistance
from elasticity.io import read_parquet, write_parquet

from .conftest import DEFAULT_CONFIG, SMOKE


@pytest.fixture(scope="module")
def resistance_split(small_splits, tmp_path_factory) -> Path:
    """24 prompted examples (3 parts of 8 for 2 slices): a slice of a pool stands in."""
    frame = read_parquet(small_splits / "positive.parquet", ["text", "prompt"]).head(24)
    path = tmp_path_factory.mktemp("resistance") / "resistance.parquet"
    write_parquet(frame, path, {})
    return path


def _run(base_dir, split, out, seed):
    generation = SMOKE["generation"]
    return resistance.resistance(
        str(base_dir), str(split), str(out), slices=2, seed=seed, trainer=SMOKE["align"]["sft"],
        sampling={k: generation[k] for k in ("max_new_tokens", "temperature", "top_p",
                                              "top_k")},
        generation_batch_size=generation["batch_size"], likelihood_batch_size=16,
        max_tokens=SMOKE["pretraining"]["seq_len"], device="cpu")


def test_one_seed_trains_both_directions_of_every_pair(base_dir, resistance_split, tmp_path):
    out = tmp_path / "resistance" / "seed0.parquet"
    result = _run(base_dir, resistance_split, out, 0)
    written = read_parquet(out, resistance.RESULT_COLUMNS)
    pd.testing.assert_frame_equal(result, written)
    assert list(zip(written["k"], written["l"], written["direction"], strict=True)) == [
        (1, 2, "forward"), (1, 2, "inverse")]
    assert (written["examples"] == 8).all() and (written["answers"] > 0).all()
    for measure in resistance.MEASURES:
        assert np.isfinite(written[measure]).all() and (written[measure] >= 0).all()
    # Nothing else is left behind: no scratch directory, no temporary file.
    assert sorted(p.name for p in out.parent.iterdir()) == ["seed0.parquet"]


def test_the_step_is_deterministic_per_seed(base_dir, resistance_split, tmp_path):
    first = _run(base_dir, resistance_split, tmp_path / "a.parquet", 1)
    again = _run(base_dir, resistance_split, tmp_path / "b.parquet", 1)
    pd.testing.assert_frame_equal(first, again)


def test_parts_are_equal_disjoint_and_seeded():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(14)], "prompt": ["p"] * 14})
    training, held = resistance.cut(frame, 3, 0)
    assert len(training) == 9 and len(held) == 3
    assert not set(training["text"]) & set(held["text"])
    assert list(resistance.cut(frame, 3, 1)[1]["text"]) != list(held["text"])
    assert resistance.pairs(3) == [(1, 2), (1, 3), (2, 3)]
    assert resistance.answer_texts(["a b", "c"], ["d e", ""]) == ["a b d e", "c"]


def _config(**resistance_block):
    config = copy.deepcopy(DEFAULT_CONFIG)
    config["experiments"] = ["rebound", "resistance"]
    config["data"]["resistance"] = {"source": "nyt", "examples": 800}
    config["resistance"] = {"model": "micro-m", "slices": 3, "seed": [0, 1, 2, 3, 4]}
    config["resistance"].update(resistance_block)
    return config


def test_resistance_problems_name_their_key():
    assert resistance.resistance_problems(_config()) == []
    problems = resistance.resistance_problems(_config(slices=0, model="micro-x"))
    assert [p.split()[0] for p in problems] == ["resistance.model", "resistance.slices"]
    assert "known: micro-l, micro-m, micro-s" in problems[0]
    few = _config(slices=3)
    few["data"]["resistance"]["examples"] = 3
    assert resistance.resistance_problems(few)[0].startswith(
        "data.resistance.examples (3) is fewer than the 4 parts")
    uneven = _config(slices=3)
    uneven["data"]["resistance"]["examples"] = 120  # parts of 30, batches of 20
    assert "volumes [30, 90] are not multiples of the batch (20" in (
        resistance.resistance_problems(uneven)[0])
    null = _config()
    null["data"]["resistance"] = None
    assert "data.resistance is null" in resistance.resistance_problems(null)[0]
    off = _config()
    off["experiments"] = ["rebound"]
    off["data"]["resistance"] = None
    assert resistance.resistance_problems(off) == []


def _synthetic(seeds: int, inverse_lower: bool, rng_seed: int = 0) -> pd.DataFrame:
    """Per-seed results of 3 slices; the inverse direction is lower by 0.1 (or higher)."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for seed in range(seeds):
        for k, hi in resistance.pairs(3):
            for direction in resistance.DIRECTIONS:
                shift = 0.1 if (direction == "forward") == inverse_lower else 0.0
                rows.append({"seed": 10 + seed, "k": k, "l": hi, "direction": direction,
                             "examples": 200, "answers": 200,
                             **{m: 1.0 + shift + rng.normal(0, 0.01)
                                for m in resistance.MEASURES}})
    return pd.DataFrame(rows, columns=resistance.RESULT_COLUMNS)


def _table(tmp_path: Path, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    paths = []
    for seed, part in frame.groupby("seed"):
        paths.append(str(tmp_path / f"seed{seed}.parquet"))
        write_parquet(part, paths[-1], {})
    outs = {name: str(tmp_path / name) for name in ("table.parquet", "table.html",
                                                    "claims.parquet", "figure.png")}
    resistance.table(paths, *outs.values(), model="micro-m", interval=95, resamples=200)
    assert Path(outs["figure.png"]).stat().st_size > 0
    return (read_parquet(outs["table.parquet"], resistance.TABLE_COLUMNS),
            read_parquet(outs["claims.parquet"], resistance.CLAIMS_COLUMNS),
            Path(outs["table.html"]).read_text())


@pytest.mark.parametrize("inverse_lower,verdict", [(True, "supported"),
                                                   (False, "contradicted")])
def test_the_table_tests_inverse_below_forward(tmp_path, inverse_lower, verdict):
    summary, claims, page = _table(tmp_path, _synthetic(5, inverse_lower))
    assert len(summary) == 3 * 2 * len(resistance.MEASURES)
    assert (summary["seeds"] == 5).all()
    assert (summary["lower"] <= summary["value"]).all()
    assert (summary["value"] <= summary["upper"]).all()
    # Per pair and over all pairs, for loss and KL.
    assert len(claims) == 2 * 4 and set(claims["metric"]) == {"train_loss", "kl"}
    assert (claims["verdict"] == verdict).all() and (claims["seeds"] == 5).all()
    assert ((claims["estimate"] < 0) == inverse_lower).all()
    lower = 3 if inverse_lower else 0
    assert page.count(f"inverse &lt; forward in {lower} of 3 pairs") == 3
    assert "θ2 → θ1 vs. θ1 → θ2" in page and "Forward Alignment" in page
    assert page.count("↓") == page.count("↑") == 3 * 3  # a mark a cell, 3 tables


def test_few_seeds_leave_the_claims_open(tmp_path):
    _, claims, _ = _table(tmp_path, _synthetic(2, True))
    assert (claims["verdict"] == "not resolved").all()
    assert claims["reason"].str.contains("2 seeds").all()
