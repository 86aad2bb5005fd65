"""The ablations (elasticity.ablations: Fig. 7-9 and their claims) on synthetic summaries whose
effects are planted."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from elasticity import ablations
from elasticity.grid import BASE, COLUMNS

POSITIVE = [100, 400, 1600]
NEGATIVE = [0, 25, 50, 100, 200]
FIRST_STAGE = [100, 400, 1600]  # reverse order: negative examples of the first stage
SECOND_STAGE = [0, 25, 50, 100, 200]  # reverse order: positive examples of the second stage
# (model, parameters, pretraining tokens), smallest first.
BASES = (("m-s", 1_000_000, 600_000), ("m-l", 4_000_000, 600_000))


def level(volume: float, steps: float, effect: float, speed: float) -> float:
    """A gain of 1 over the base decaying over `steps` with decay time 50 (volume / 100)^-effect:
    effect > 0 makes the first steps take more of a larger volume's gain (rebound), < 0 less;
    `speed` scales the steps (a model that loses more)."""
    return float(np.exp(-steps * speed / (50 * (volume / 100) ** -effect)))


def summary(effect: float = 1.0, size_effect: float = 1.0, seeds: int = 5,
            algorithms=("sft", "dpo"), reverse: bool = True, noise: float = 0.002,
            bases=BASES, first_stage=FIRST_STAGE) -> pd.DataFrame:
    """Cells of the forward chains (each algorithm; N = 0 stored once under sft), the reverse
    chains and the bases; margin = positive_rate = kl_to_base = the planted level."""
    rng = np.random.default_rng(0)
    rows = []

    def add(key, algorithm, order, positive, negative, value):
        rows.append({**key, "algorithm": algorithm, "order": order, "replay": 0.0,
                     "positive": positive, "negative": negative,
                     "value": value + rng.normal(0, noise)})

    for i, (model, params, tokens) in enumerate(bases):
        speed = (1 + i) ** size_effect
        for seed in range(seeds):
            key = dict(task="sentiment", model=model, pretrain_tokens=tokens, seed=seed,
                       model_parameters=params)
            add(key, BASE, "forward", 0, 0, 0.0)
            for p in POSITIVE:
                add(key, "sft", "forward", p, 0, 1.0)
                for algorithm in algorithms:
                    for n in NEGATIVE[1:]:
                        add(key, algorithm, "forward", p, n, level(p, n, effect, speed))
            for n in first_stage if reverse else []:
                for p in SECOND_STAGE:
                    # No first stage (n = 0): the base model, then positive examples.
                    value = 1 - np.exp(-p / 50) if n == 0 else -level(n, p, effect, speed)
                    add(key, "sft", "reverse", p, n, value)
    frame = pd.DataFrame(rows)
    frame["margin"] = frame["positive_rate"] = frame["kl_to_base"] = frame.pop("value")
    return frame


def cells_of(frame: pd.DataFrame) -> list[dict]:
    return frame[COLUMNS].to_dict("records")


def written(frame: pd.DataFrame, tmp_path) -> str:
    path = tmp_path / "summary.parquet"
    frame.to_parquet(path)
    return str(path)


def run_claims(frame: pd.DataFrame, tmp_path, cells=None) -> pd.DataFrame:
    out = tmp_path / "claims.parquet"
    ablations.claims(written(frame, tmp_path), str(out), experiment="algorithms",
                     cells=cells or cells_of(frame),
                     interval=95, resamples=200)
    return pd.read_parquet(out)


def test_the_experiments_cells_are_read_and_a_missing_one_named(tmp_path):
    frame = summary(seeds=2)
    wanted = frame[frame["model"] == "m-s"]
    got = ablations.read_cells(written(frame, tmp_path), cells_of(wanted), ["margin"])
    assert len(got) == len(wanted) and set(got["model"]) == {"m-s"}
    cells = [*cells_of(wanted), {**cells_of(wanted)[-1], "seed": 99}]
    with pytest.raises(ValueError, match="lacks 1 of .*'seed': 99"):
        ablations.read_cells(written(frame, tmp_path), cells, ["margin"])


def test_the_aligned_cells_start_every_algorithms_curve():
    view = ablations.forward_view(summary(seeds=1, reverse=False, algorithms=("dpo", "kto")))
    start = view[(view["negative"] == 0) & (view["algorithm"] != BASE)]
    # Stored once under sft; shared by dpo and kto; sft itself has no inverse cells here.
    assert sorted(start["algorithm"].unique()) == ["dpo", "kto"]
    assert len(start) == 2 * len(BASES) * len(POSITIVE)
    assert (start["margin"].round(1) == 1.0).all()


def test_an_aligned_cell_under_another_algorithm_is_refused():
    frame = summary(seeds=1, reverse=False)
    frame.loc[(frame["algorithm"] == "sft") & (frame["negative"] == 0), "algorithm"] = "dpo"
    with pytest.raises(ValueError, match=r"stored once under 'sft'"):
        ablations.forward_view(frame)


@pytest.mark.parametrize("plot", [ablations.plot_algorithms, ablations.plot_algorithm_sizes,
                                  ablations.plot_reverse])
def test_the_figures_are_written(plot, tmp_path):
    frame = summary(seeds=2)
    out = tmp_path / "figure.png"
    plot(written(frame, tmp_path), str(out), task="sentiment", metric="margin",
         cells=cells_of(frame), interval=95)
    assert out.stat().st_size > 10_000


def test_a_heatmap_squares_interval_brackets_its_mean():
    frame = ablations.forward_view(summary(seeds=5, noise=0.05))
    c = ablations.curves(frame[frame["model"] == "m-s"][lambda f: f["algorithm"] != "sft"],
                         "margin", list(range(5)))
    mean, low, high = ablations.square_intervals(c, ablations.Bootstrap(5, 500, 95))
    assert mean.shape == low.shape == (len(POSITIVE), len(NEGATIVE))
    assert (low < mean).all() and (mean < high).all()


def verdicts(table: pd.DataFrame, claim: str) -> set[str]:
    return set(table.loc[table["claim"] == claim, "verdict"])


def test_planted_effects_are_supported(tmp_path):
    table = run_claims(summary(), tmp_path)
    # Per metric: rebound per algorithm and base, size per algorithm; reverse per base, size.
    assert len(table) == 2 * (2 * 2 + 2 + 2 + 1)
    assert not table.duplicated(["claim", "metric", "scope"]).any()
    for claim in (ablations.REBOUND, ablations.SIZE, ablations.REVERSE_REBOUND,
                  ablations.REVERSE_SIZE):
        assert verdicts(table, claim) == {"supported"}, claim
    assert "m-l @ 600,000 tokens (dpo, forward order)" in set(table["scope"])


def test_reverse_chains_without_a_first_stage_stay_out_of_the_claims(tmp_path):
    table = run_claims(summary(first_stage=[0, *FIRST_STAGE]), tmp_path)
    assert verdicts(table, ablations.REVERSE_REBOUND) == {"supported"}
    assert verdicts(table, ablations.REVERSE_SIZE) == {"supported"}


def test_reversed_effects_are_contradicted(tmp_path):
    table = run_claims(summary(effect=-1.0, size_effect=-1.0), tmp_path)
    for claim in (ablations.REBOUND, ablations.SIZE, ablations.REVERSE_REBOUND,
                  ablations.REVERSE_SIZE):
        assert verdicts(table, claim) == {"contradicted"}, claim


def test_too_few_seeds_leave_the_verdict_open(tmp_path):
    table = run_claims(summary(seeds=3), tmp_path)
    assert set(table["verdict"]) == {"not resolved"}
    assert table["reason"].str.contains("3 seeds").all()


def test_a_metric_no_cell_carries_is_not_testable(tmp_path):
    frame = summary(reverse=False)
    frame["positive_rate"] = np.nan
    table = run_claims(frame, tmp_path)
    unsampled = table[table["metric"] == "positive_rate"]
    assert len(unsampled) == 2 * 2 + 2
    assert set(unsampled["verdict"]) == {"not testable"}
    assert set(table.loc[table["metric"] == "margin", "verdict"]) == {"supported"}


def test_only_the_given_cells_enter_the_claims(tmp_path):
    frame = summary()
    # Another experiment's cells (a third base) in the same summary stay out.
    other = summary(bases=(("m-xl", 9_000_000, 600_000),), effect=-1.0)
    table = run_claims(pd.concat([frame, other]), tmp_path, cells=cells_of(frame))
    assert not table["scope"].str.contains("m-xl").any()
    assert verdicts(table, ablations.REBOUND) == {"supported"}
