"""The mitigation experiment (App. C.2): replayed aligning examples in the inverse stage
(elasticity.finetuning.with_replay, cells with `replay`), and its analysis
(elasticity.mitigation) on synthetic summaries with a planted effect."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import pytest

from elasticity import chains, finetuning, grid, mitigation
from elasticity import config as cfg
from elasticity.finetuning import with_replay
from elasticity.grid import BASE, COLUMNS, Cell

from .conftest import DEFAULT_CONFIG, SMOKE
from .test_models import assert_same_weights

POSITIVE = [200, 2000]
NEGATIVE = [0, 40, 200, 600]


@pytest.mark.parametrize("replay", [0.0, 0.25, 0.5, 1.0, 2.0])
def test_replay_rows_are_nested_and_count_floor_r_n(replay):
    negatives = [f"n{i}" for i in range(60)]
    aligning = [f"a{i}" for i in range(7)]
    full = with_replay(negatives, aligning, replay)
    for n in (0, 1, 5, 20, 60):
        rows = with_replay(negatives[:n], aligning, replay)
        assert full[:len(rows)] == rows
        assert len(rows) - n == math.floor(replay * n) == grid.replayed_count(n, replay)
    # The aligning examples come in their training order and cycle when there are fewer.
    replayed = [r for r in full if r.startswith("a")]
    assert replayed == [aligning[i % 7] for i in range(len(replayed))]


def test_replay_needs_aligning_examples():
    with pytest.raises(ValueError, match="needs aligning examples"):
        with_replay(["x"], [], 0.5)


def test_a_replay_cell_has_its_own_path_chain_and_shares_the_aligned_model():
    cell = Cell("sentiment", "m", 1000, "sft", 200, 600, 0, replay=0.5)
    fields = cell.path_fields()
    assert fields["second"] == "neg600-replay0.5"
    assert Cell.from_wildcards(cell.wildcards()) == cell
    assert cell.aligned() == Cell("sentiment", "m", 1000, "sft", 200, 0, 0)
    plain = Cell("sentiment", "m", 1000, "sft", 200, 600, 0)
    assert plain.path_fields()["second"] == "neg600" and plain.model_path() != cell.model_path()
    whole = Cell.from_wildcards({**cell.wildcards(), "second": "neg600-replay1"})
    assert whole.replay == 1.0 and whole.replayed() == 600
    with pytest.raises(ValueError, match="only the second may replay"):
        Cell.from_wildcards({**cell.wildcards(), "first": "pos200-replay1"})


def test_the_default_replay_chains_are_exact_and_separate():
    config = DEFAULT_CONFIG
    cells = grid.experiment_cells(config, "mitigation")
    assert {c.replay for c in cells} == {0.0, 0.5, 1.0}
    for replay in (0.0, 0.5, 1.0):
        assert chains.chaining(config, "invert", "sft", replay)[0]
    cell = next(c for c in cells if c.replay == 1.0 and c.negative == 600)
    previous = chains.previous_link(config, cell, "invert")
    assert previous.replay == 1.0 and previous.negative == 200
    # Plain cells do not chain through replay cells.
    plain = next(c for c in cells if c.replay == 0.0 and c.negative == 600)
    assert chains.previous_link(config, plain, "invert").replay == 0.0


def test_uneven_replay_rows_stop_only_their_own_chain():
    config = copy.deepcopy(DEFAULT_CONFIG)
    config["mitigation"]["replay"] = [0, 0.25]  # 40 * 1.25 = 50 rows: not a batch multiple
    assert not chains.chaining(config, "invert", "sft", 0.25)[0]
    assert chains.chaining(config, "invert", "sft", 0.0)[0]


@pytest.mark.parametrize("change, key", [
    (lambda b: b.update(replay=[0, 1e-05]), r"mitigation.replay\[1\] is 1e-05"),
    (lambda b: b.update(replay=[0.5]), r"mitigation.replay is \[0.5\]"),
    (lambda b: b.update(replay=[0, -1]), r"mitigation.replay.*-1"),
    (lambda b: b.update(positive=[0, 200]), "mitigation.positive lists 0"),
    (lambda b: b.update(model="../x"), "mitigation.model"),
])
def test_a_bad_mitigation_block_is_named_before_any_job(change, key):
    config = copy.deepcopy(DEFAULT_CONFIG)
    change(config["mitigation"])
    with pytest.raises(cfg.ConfigError, match=key):
        cfg.validate(config, check_devices=False)


def summary(blunting: float, seeds: int = 5, noise: float = 0.002) -> pd.DataFrame:
    """One base's cells: the gain decays over N with decay time 100 * (1 + blunting * r)."""
    rng = np.random.default_rng(2)
    rows = []
    for seed in range(seeds):
        key = dict(task="sentiment", model="m", pretrain_tokens=1000, seed=seed,
                   order="forward", model_parameters=1)
        rows.append({**key, "algorithm": BASE, "positive": 0, "negative": 0, "replay": 0.0,
                     "margin": rng.normal(0, noise)})
        for p in POSITIVE:
            gain = math.log10(p)
            rows.append({**key, "algorithm": "sft", "positive": p, "negative": 0,
                         "replay": 0.0, "margin": gain + rng.normal(0, noise)})
            for replay in (0.0, 0.5, 1.0):
                tau = 100 * (1 + blunting * replay)
                for n in NEGATIVE[1:]:
                    rows.append({**key, "algorithm": "sft", "positive": p, "negative": n,
                                 "replay": replay,
                                 "margin": gain * math.exp(-n / tau) + rng.normal(0, noise)})
    return pd.DataFrame(rows)


def run(frame: pd.DataFrame, tmp_path) -> tuple[pd.DataFrame, pd.DataFrame]:
    path = tmp_path / "summary.parquet"
    frame.to_parquet(path)
    mitigation.mitigation(str(path), str(tmp_path / "scores.parquet"),
                          str(tmp_path / "claims.parquet"), str(tmp_path / "m.png"),
                          cells=frame[COLUMNS].to_dict("records"), interval=95, resamples=200)
    assert (tmp_path / "m.png").stat().st_size > 10_000
    return (pd.read_parquet(tmp_path / "scores.parquet"),
            pd.read_parquet(tmp_path / "claims.parquet"))


def test_planted_blunting_raises_n_half_and_supports_the_claim(tmp_path):
    scores, claims = run(summary(blunting=2.0), tmp_path)
    n_half = scores.set_index("replay")["n_half"]
    # Half of the gain is lost at N = tau * ln 2.
    for replay, value in n_half.items():
        assert value == pytest.approx(100 * (1 + 2 * replay) * math.log(2), rel=0.05)
    row = claims[claims["claim"] == mitigation.REPLAY_CLAIM].iloc[0]
    assert row["verdict"] == "supported" and row["upper"] < 0
    scopes = set(claims["scope"])
    assert {f"m @ 1,000 tokens, replay r={r:g}" for r in (0, 0.5, 1)} <= scopes


def test_no_effect_of_replay_is_not_called_a_mitigation(tmp_path):
    _, claims = run(summary(blunting=0.0), tmp_path)
    row = claims[claims["claim"] == mitigation.REPLAY_CLAIM].iloc[0]
    assert row["verdict"] == "not resolved"


def _replay_link(base_dir, small_splits, out, examples, previous=None, replay=1.0) -> dict:
    return finetuning.finetune(
        str(base_dir), str(small_splits / "negative.parquet"), str(out), examples=examples,
        previous=None if previous is None else str(previous), trainer=SMOKE["invert"]["sft"],
        device="cpu", seed=0, replay=replay, replay_pool=str(small_splits / "positive.parquet"),
        replay_examples=12)


def test_a_replay_link_equals_an_independent_run(base_dir, small_splits, tmp_path):
    """N = 16 with r = 1 continues N = 8 (16 rows) on negatives 9-16 and their 8 replays (16
    more rows) and ends exactly where one run over all 32 rows ends; the 12 aligning examples
    cycle."""
    direct = _replay_link(base_dir, small_splits, tmp_path / "direct", 16)
    _replay_link(base_dir, small_splits, tmp_path / "first", 8)
    link = _replay_link(base_dir, small_splits, tmp_path / "link", 16,
                        previous=tmp_path / "first")
    assert link["replayed"] == direct["replayed"] == 16
    assert link["steps"] == direct["steps"] == 4
    assert_same_weights(tmp_path / "direct", tmp_path / "link")
    plain = finetuning.finetune(
        str(base_dir), str(small_splits / "negative.parquet"), str(tmp_path / "plain"),
        examples=16, previous=None, trainer=SMOKE["invert"]["sft"], device="cpu", seed=0)
    assert plain["steps"] == 2 and plain["replayed"] == 0


@pytest.mark.parametrize("algorithm", ["dpo", "rloo"])
def test_replay_is_refused_outside_sft(algorithm, tmp_path):
    with pytest.raises(ValueError, match="implemented for sft only"):
        finetuning.finetune("m", "pool", str(tmp_path / "out"), examples=8, previous=None,
                            trainer={}, device="cpu", seed=0, algorithm=algorithm,
                            replay=0.5, replay_pool="pool")
