"""The smoke config end to end through Snakemake, and bad input stopping it before any job."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from elasticity import grid
from elasticity.aggregate import SUMMARY_COLUMNS
from elasticity.grid import COLUMNS
from elasticity.io import parquet_params

from .conftest import SMOKE, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def smoke_run(finished_smoke):
    return finished_smoke / "results" / "smoke", finished_smoke


def test_every_cell_is_scored_with_its_coordinates_and_provenance(smoke_run):
    out, _ = smoke_run
    summary = pd.read_parquet(out / "summary.parquet")
    assert list(summary.columns) == SUMMARY_COLUMNS
    expected = set(grid.cells(SMOKE))
    got = {grid.Cell(*row) for row in summary[COLUMNS].itertuples(index=False, name=None)}
    assert got == expected
    assert (summary["task"] == "sentiment").all()
    # The sampled metric on the cells of the experiments that read it (Table 3 does not).
    sampled = summary.apply(lambda r: grid.sampled(SMOKE, grid.Cell.from_row(r)), axis=1)
    assert summary.loc[sampled, "positive_rate"].between(0, 1).all()
    assert summary.loc[~sampled, "positive_rate"].isna().all() and (~sampled).any()
    assert (summary.loc[sampled, "responses"] == SMOKE["data"]["eval_prompts"]).all()
    assert summary["margin"].notna().all()
    assert summary.loc[sampled, "config_hash"].is_unique
    assert summary["code_version"].str.startswith("0.1.0").all()
    # Each file also records the exact parameters of the job that wrote it.
    scores = out / "cells/sentiment/tiny-a/pt10000/sft/pos40/neg8/seed1/scores.parquet"
    assert parquet_params(scores)["threshold"] == SMOKE["scoring"]["threshold"]
    assert parquet_params(scores)["scorer"] == SMOKE["scoring"]["scorer"]
    # Each model's size is the real parameter count, larger for the wider model.
    sizes = summary.groupby("model")["model_parameters"].unique()
    assert sizes["tiny-a"][0] < sizes["tiny-b"][0]


def test_responses_answer_every_held_out_prompt(smoke_run):
    out, _ = smoke_run
    rows = pd.read_parquet(out / "responses.parquet")
    prompts = pd.read_parquet(out / "data" / "prompts.parquet")
    sampled = [c for c in grid.cells(SMOKE) if grid.sampled(SMOKE, c)]
    assert len(rows) == len(sampled) * len(prompts)
    for _, cell in rows.groupby(COLUMNS):
        assert sorted(cell["uid"]) == sorted(prompts["uid"])
    assert (rows["response"].str.len() > 0).mean() > 0.5
    assert rows["score"].between(-1, 1).all()


def test_base_models_report_their_loss_and_own_score(smoke_run):
    out, _ = smoke_run
    bases = pd.read_parquet(out / "base_models.parquet")
    assert sorted(zip(bases["model"], bases["pretrain_tokens"], strict=True)) == (
        grid.checkpoints(SMOKE))
    assert bases["eval_loss"].between(0, 10).all()
    # The bases the sampled experiments start from carry their own positive rate; the
    # threshold axis's other budgets are never sampled.
    sampled = grid.experiment_bases(SMOKE, "rebound")
    in_grid = bases.set_index(["model", "pretrain_tokens"])
    assert in_grid.loc[sampled, "base_positive_rate"].between(0, 1).all()
    unsampled = sorted(set(grid.bases(SMOKE)) - set(sampled))
    assert unsampled and in_grid.loc[unsampled, "base_positive_rate"].isna().all()
    chain = bases[bases["model"] == "tiny-a"].sort_values("pretrain_tokens")
    assert chain["eval_loss"].is_monotonic_decreasing


def test_figures_and_report_are_written(smoke_run):
    out, workdir = smoke_run
    for metric in ("positive_rate", "margin"):
        for name in ("fig4_rebound", "fig5_size", "fig6_pretraining"):
            png = out / "figures" / metric / f"{name}.png"
            assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
    assert (out / "figures" / "compression.png").stat().st_size > 10_000
    snakemake(workdir, "--report", str(workdir / "report.html"))
    html = (workdir / "report.html").read_text(errors="replace")
    assert "fig4_rebound.png" in html and "fig6_pretraining.png" in html
    assert "compression.png" in html and "claims.html" in html
    # The landing page is the analysis's: what was run and every claim's verdict.
    assert "What was run" in html and "faster than proportional" in html


def test_every_experiment_writes_its_figures_tables_and_claims(smoke_run):
    out, _ = smoke_run
    for metric in ("positive_rate", "margin"):
        for name in ("fig7_algorithms", "fig8_reverse", "fig9_algorithm_sizes"):
            png = out / "figures" / metric / f"{name}.png"
            assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 10_000
    claims = pd.read_parquet(out / "claims.parquet")
    assert set(claims["experiment"]) == set(SMOKE["experiments"])
    # Every inverse algorithm has its own claims, on both metrics.
    algorithms = claims[claims["experiment"] == "algorithms"]
    for name in SMOKE["algorithms"]["algorithm"]:
        assert algorithms["scope"].str.contains(f"({name}, forward order)", regex=False).any()
    assert "reverse order" in " ".join(claims.loc[claims["experiment"] == "reverse", "scope"])
    table = pd.read_parquet(out / "tables" / "kl_table.parquet")
    assert sorted(table["positive"]) == sorted(SMOKE["kl_table"]["positive"])
    assert "Negative examples needed until the KL divergence" in (
        out / "tables" / "kl_table.html").read_text()
    resistance = pd.read_parquet(out / "resistance" / "table.parquet")
    assert set(resistance["direction"]) == {"forward", "inverse"}
    assert set(zip(resistance["k"], resistance["l"], strict=True)) == {(1, 2)}
    # The reverse cells trained negative data first: their models live under neg<N>/pos<P>.
    assert (out / "models/sentiment/sft/tiny-a/pt20000/neg48/pos8/seed1/inverted").is_dir()
    # Each algorithm's link says which algorithm trained it.
    metrics = out / "models/sentiment/kto/tiny-b/pt20000/pos40/neg8/seed0/inverted"
    assert '"algorithm": "kto"' in (metrics / "train_metrics.json").read_text()


def test_the_theory_threshold_and_mitigation_experiments_write_their_outputs(smoke_run):
    out, _ = smoke_run
    for png in ("theory/ratio_vs_k.png", "theory/rates_vs_l.png", "threshold/threshold.png",
                "mitigation/mitigation.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG" and (out / png).stat().st_size > 10_000
    ratios = pd.read_parquet(out / "theory" / "ratios.parquet")
    assert set(ratios["method"]) == {"integral", "simulation"}
    assert set(ratios["distribution"]) == {"pareto", "lognormal"}
    # Theory next to measurement at the micro-world's own k and l, for every inverse chain.
    comparison = pd.read_parquet(out / "theory" / "comparison.parquet")
    measured = pd.read_parquet(out / "theory_check.parquet")
    assert len(comparison) == len(measured) * 2  # one row per mass law the smoke block lists
    assert comparison["integral_ratio"].notna().all()
    budgets = pd.read_parquet(out / "threshold" / "statistic.parquet")
    assert sorted(budgets["pretrain_tokens"]) == SMOKE["threshold"]["pretrain_tokens"]
    change = pd.read_parquet(out / "threshold" / "change_point.parquet").iloc[0]
    assert min(budgets["pretrain_tokens"]) < change["change_point"] < max(
        budgets["pretrain_tokens"])
    scores = pd.read_parquet(out / "mitigation" / "scores.parquet")
    assert sorted(scores["replay"]) == SMOKE["mitigation"]["replay"]
    # A replay link replays floor(r N) aligning examples and continues the previous replay link.
    link = out / "models/sentiment/sft/tiny-a/pt20000/pos40/neg16-replay1/seed0/inverted"
    metrics = json.loads((link / "train_metrics.json").read_text())
    assert metrics["replayed"] == 16
    assert metrics["continued_from"].endswith("pos40/neg8-replay1/seed0/inverted")


def test_nothing_half_written_and_nothing_left_to_do(smoke_run):
    out, workdir = smoke_run
    leftovers = [p for p in out.rglob("*") if ".tmp-" in p.name or p.name.endswith(".partial")]
    assert leftovers == []
    assert "Nothing to be done" in snakemake(workdir, "-n", "all").stdout


def test_a_log_reproduces_its_job_by_hand(smoke_run, tmp_path):
    out, workdir = smoke_run
    log = next((workdir / "logs" / "smoke" / "score").rglob("*.log"))
    command = log.read_text().splitlines()[0].removeprefix("# by hand: ")
    original = next(p for p in out.glob("cells/**/scores.parquet")
                    if f"'{p.relative_to(workdir)}'".replace("scores", "generations") in command
                    or str(p.relative_to(workdir)).replace("scores", "generations") in command)
    copy = tmp_path / "scores.parquet"
    command = command.replace(str(original.relative_to(workdir)), str(copy))
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "elasticity"]
    subprocess.run([sys.executable, *argv[1:]], cwd=workdir, check=True, capture_output=True)
    pd.testing.assert_frame_equal(pd.read_parquet(original), pd.read_parquet(copy))


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(invert={"sft": {"learning_rat": 0.1}}),
     "invert.sft.learning_rat is not a field of SFTConfig; did you mean 'learning_rate'?"),
    (lambda c: c.update(grid={"positive": [40, 5000]}),
     "grid.positive asks for 5000 examples but the positive pool"),
    (lambda c: c.update(generation={"top_k": "thirty"}),
     "'generation.top_k' must be of type integer"),
])
def test_bad_config_stops_before_any_job(tmp_path, change, message):
    config = {}
    change(config)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    done = snakemake(tmp_path, "-n", config=path, check=False)
    assert done.returncode != 0
    assert message in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()
