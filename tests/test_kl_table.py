"""Table 3 (elasticity.kl_table) on hand-made inverse chains whose crossings are known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from elasticity import kl_table
from elasticity.grid import BASE, COLUMNS

NEGATIVE = [0, 10, 20, 40, 80]
EPSILON = 0.01
# KL to base along a chain, and where it first falls below EPSILON.
CROSSES_AT_20 = [0.3, 0.05, 0.005, 0.001, 0.0005]
CROSSES_AT_10 = [0.3, 0.005, 0.002, 0.001, 0.0005]
BELOW_AT_0 = [0.005, 0.004, 0.003, 0.002, 0.001]
NEVER = [0.3, 0.2, 0.1, 0.05, 0.02]


def chain_rows(model: str, positive: int, seed: int, kl: list[float]) -> list[dict]:
    key = dict(task="sentiment", model=model, pretrain_tokens=600_000, algorithm="sft",
               positive=positive, seed=seed, order="forward", replay=0.0,
               model_parameters=1e6)
    return [{**key, "negative": n, "kl_to_base": v} for n, v in zip(NEGATIVE, kl, strict=True)]


def frame(chains: dict[tuple[str, int], list[list[float]]]) -> pd.DataFrame:
    """The cells of the given chains, (model, P) -> one KL list per seed, and the bases."""
    rows = []
    for (model, positive), per_seed in chains.items():
        for seed, kl in enumerate(per_seed):
            rows += chain_rows(model, positive, seed, kl)
    for model, seed in {(m, s) for (m, _), c in chains.items() for s in range(len(c))}:
        rows.append({**chain_rows(model, 0, seed, [0.0] * len(NEGATIVE))[0],
                     "algorithm": BASE})
    return pd.DataFrame(rows)


def run(data: pd.DataFrame, tmp_path) -> tuple[pd.DataFrame, str, pd.DataFrame]:
    summary = tmp_path / "summary.parquet"
    data.to_parquet(summary)
    out = {name: tmp_path / name
           for name in ("table.parquet", "table.html", "claims.parquet", "kl.png")}
    kl_table.kl_table(str(summary), *(str(p) for p in out.values()),
                      cells=data[COLUMNS].to_dict("records"), epsilon=EPSILON, interval=95,
                      resamples=200)
    assert out["kl.png"].read_bytes()[:4] == b"\x89PNG"
    return (pd.read_parquet(out["table.parquet"]), out["table.html"].read_text(),
            pd.read_parquet(out["claims.parquet"]))


@pytest.mark.parametrize(("kl", "expected"), [
    (CROSSES_AT_20, 20.0), (CROSSES_AT_10, 10.0), (BELOW_AT_0, 0.0), (NEVER, math.nan),
    # The first crossing counts, even where the KL rises again.
    ([0.3, 0.005, 0.02, 0.001, 0.0005], 10.0),
    # Exactly epsilon is not below it.
    ([0.3, EPSILON, 0.005, 0.001, 0.0005], 20.0),
])
def test_the_first_crossing(kl, expected):
    found = kl_table.crossing(np.array(NEGATIVE), np.array(kl), EPSILON)
    assert found == pytest.approx(expected, nan_ok=True)


def test_the_crossing_does_not_depend_on_row_order():
    order = np.array([3, 0, 4, 1, 2])
    found = kl_table.crossing(np.array(NEGATIVE)[order], np.array(CROSSES_AT_20)[order], EPSILON)
    assert found == 20.0


def test_the_table_counts_seeds_that_never_reach_epsilon(tmp_path):
    data = frame({("m-a", 100): [CROSSES_AT_20, CROSSES_AT_10, NEVER],
                  ("m-a", 400): [BELOW_AT_0, CROSSES_AT_10, CROSSES_AT_10],
                  ("m-b", 100): [NEVER, NEVER, NEVER]})
    numbers, html, _ = run(data, tmp_path)
    by = numbers.set_index(["model", "positive"])
    # Partially reached: the mean over the 2 seeds that got there, and the count.
    assert by.loc[("m-a", 100), "needed"] == 15.0
    assert by.loc[("m-a", 100), ["seeds_reached", "seeds"]].tolist() == [2, 3]
    assert by.loc[("m-a", 400), "needed"] == pytest.approx(20 / 3)
    assert by.loc[("m-a", 400), "seeds_reached"] == 3
    assert math.isnan(by.loc[("m-b", 100), "needed"])
    assert by.loc[("m-b", 100), ["seeds_reached", "max_negative"]].tolist() == [0, 80]
    # Table 3(a): the aligned model's KL, N = 0.
    assert by.loc[("m-a", 400), "kl_aligned"] == pytest.approx((0.005 + 0.3 + 0.3) / 3)
    assert "15 [10, 20] (2 of 3 seeds; 1 not reached by N = 80)" in html
    assert "not reached by N = 80 (0 of 3 seeds)" in html


def test_the_layout_is_the_papers(tmp_path):
    data = frame({("m-a", 100): [CROSSES_AT_20] * 2, ("m-a", 400): [CROSSES_AT_10] * 2,
                  ("m-b", 100): [CROSSES_AT_10] * 2, ("m-b", 400): [BELOW_AT_0] * 2})
    numbers, html, _ = run(data, tmp_path)
    shown = kl_table.layout(numbers, kl_table._needed_text)
    assert shown.index.tolist() == ["m-a @ 600k tok", "m-b @ 600k tok"]
    assert shown.columns.tolist() == [100, 400]
    assert shown.loc["m-b @ 600k tok", 400] == "0 [0, 0]"
    assert html.count("<table") == 2


def claim_of(chains, tmp_path) -> pd.Series:
    _, _, claims = run(frame(chains), tmp_path)
    assert len(claims) == 1
    return claims.iloc[0]


def test_fewer_negatives_after_more_positives_is_supported(tmp_path):
    row = claim_of({("m-a", 100): [CROSSES_AT_20] * 5, ("m-a", 400): [CROSSES_AT_10] * 5,
                    ("m-a", 1600): [BELOW_AT_0] * 5}, tmp_path)
    assert row["verdict"] == "supported"
    assert row["estimate"] == pytest.approx(-20 / math.log10(16))


def test_more_negatives_after_more_positives_is_contradicted(tmp_path):
    row = claim_of({("m-a", 100): [BELOW_AT_0] * 5, ("m-a", 400): [CROSSES_AT_10] * 5,
                    ("m-a", 1600): [CROSSES_AT_20] * 5}, tmp_path)
    assert row["verdict"] == "contradicted"


def test_partially_reached_seeds_are_named_in_the_reason(tmp_path):
    row = claim_of({("m-a", 100): [CROSSES_AT_20] * 4 + [NEVER],
                    ("m-a", 400): [CROSSES_AT_10] * 5}, tmp_path)
    assert row["verdict"] == "supported"
    assert "P = 100: 1 of 5 seeds not reached by N = 80" in row["reason"]


@pytest.mark.parametrize(("chains", "reason"), [
    ({("m-a", 100): [NEVER] * 5, ("m-a", 400): [NEVER] * 5}, "no P reaches"),
    ({("m-a", 100): [NEVER] * 5, ("m-a", 400): [CROSSES_AT_10] * 5},
     "only P = 400 reaches .* needs at least 2 P values"),
])
def test_too_few_p_reaching_epsilon_is_not_testable(chains, reason, tmp_path):
    row = claim_of(chains, tmp_path)
    assert row["verdict"] == "not testable"
    assert pd.Series([row["reason"]]).str.contains(reason).all()
