"""Calibration sweeps (elasticity.sweep): the command line's checks, the verdicts, and a whole
sweep through submitit's local executor on a tiny world built by the package's own steps."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from elasticity import grid, sweep
from elasticity.__main__ import main as cli
from elasticity.configfile import load_yaml, merge
from elasticity.likelihood import COMPRESSION_SETS

from .conftest import SMOKE_CONFIG
from .test_slurm import cluster  # noqa: F401  (the SLURM test cluster, up for this module)

TOKENS = 4096  # the conftest's base_dir: tiny-a after 4096 pretraining tokens
# The smoke config's rebound grid with tiny-a at that budget as its only base.
CONFIG = merge(load_yaml(SMOKE_CONFIG), {
    "name": "sweeptest",
    "experiments": ["rebound"],
    "grid": {"size_axis": {"model": ["tiny-a"], "pretrain_tokens": TOKENS},
             "pretraining_axis": {"model": "tiny-a", "pretrain_tokens": [TOKENS]}},
})
RESULTS = Path("results") / CONFIG["name"]
SPLITS = ("positive", "prompts", *COMPRESSION_SETS.values())


@pytest.fixture
def world(tmp_path, monkeypatch) -> Path:
    """A working directory holding the config; no results yet."""
    (tmp_path / "my.yaml").write_text(yaml.safe_dump(CONFIG))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def built(world, small_splits, base_dir) -> Path:
    """The world with what an `align` sweep reads: the splits and the base model."""
    for split in SPLITS:
        target = world / RESULTS / grid.SPLIT.format(split=split)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(small_splits / f"{split}.parquet", target)
    base = grid.Cell("sentiment", "tiny-a", TOKENS, grid.BASE, 0, 0, 0).model_path()
    shutil.copytree(base_dir, world / RESULTS / base)
    return world


def run(*args: str) -> int:
    return cli(["sweep", "--configfile", "my.yaml", "--model", "tiny-a", "--out", "sweeps/s",
                *args])


@pytest.mark.parametrize("value, message", [
    ("learning_rate", "is not FIELD=VALUE"),
    ("=1e-4", "is not FIELD=VALUE"),
    ("learning_rate=", "is not FIELD=VALUE"),
    ("learning_rate=1e-4,,1e-3", "has an empty value"),
    ("learning_rate=1e-4,0.0001", "lists 0.0001 twice"),
])
def test_bad_set_syntax_is_refused_by_the_parser(world, capsys, value, message):
    with pytest.raises(SystemExit) as exit_:
        run("--stage", "align", "--set", value)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_field_given_twice_and_bad_seeds_are_refused(world, capsys):
    with pytest.raises(SystemExit):
        run("--stage", "align", "--set", "learning_rate=1e-4", "--set", "learning_rate=1e-3")
    assert "learning_rate is given twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run("--stage", "align", "--set", "learning_rate=1e-4", "--seeds", "0,x")
    assert "is not a comma-separated list of seeds" in capsys.readouterr().err


def test_values_are_read_as_json_else_kept_as_strings():
    assert sweep.parse_set("learning_rate=1e-4,0.001") == ("learning_rate", [1e-4, 0.001])
    assert sweep.parse_set("num_train_epochs=1,2") == ("num_train_epochs", [1, 2])
    assert sweep.parse_set("lr_scheduler_type=constant,cosine") == (
        "lr_scheduler_type", ["constant", "cosine"])


def test_an_unknown_or_owned_field_gets_the_config_validations_message(world, capsys):
    assert run("--stage", "align", "--set", "learnin_rate=1e-4") == 2
    assert ("align.sft.learnin_rate is not a field of SFTConfig; did you mean "
            "'learning_rate'?") in capsys.readouterr().err
    assert run("--stage", "invert", "--set", "max_steps=5") == 2
    assert "invert.sft.max_steps is set by the workflow" in capsys.readouterr().err


def test_missing_results_name_the_snakemake_targets(world, capsys):
    assert run("--stage", "invert", "--set", "learning_rate=1e-4") == 2
    err = capsys.readouterr().err
    aligned = grid.Cell("sentiment", "tiny-a", TOKENS, "sft", max(CONFIG["grid"]["positive"]),
                        0, 0).model_path()
    command = next(line.strip() for line in err.splitlines()
                   if line.strip().startswith("snakemake"))
    assert command.startswith("snakemake --profile profiles/local --configfile my.yaml ")
    targets = command.split()[5:]
    assert str(RESULTS / aligned) in targets
    assert str(RESULTS / grid.SPLIT.format(split="negative")) in targets
    assert len(targets) == 1 + len({"negative", "prompts", *COMPRESSION_SETS.values()})


def test_a_volume_larger_than_the_pool_is_refused(built, capsys):
    assert run("--stage", "align", "--set", "learning_rate=1e-4", "--volume", "101") == 2
    err = capsys.readouterr().err
    assert "--volume 101: the positive pool" in err and "holds 100 examples" in err


@pytest.mark.parametrize("margin, rise, expected", [
    (0.05, 0.01, "aligns"), (0.05, 0.2, "collapses"), (0.001, 0.0, "no effect"),
    (-0.05, 0.0, "no effect"), (0.05, math.nan, "collapses"),
])
def test_verdicts_by_threshold(margin, rise, expected):
    assert sweep.verdict(margin, rise, direction=1, min_margin_change=0.02,
                         max_pretrain_rise=0.05) == expected
    # Inverse fine-tuning should lower the margin.
    flipped = sweep.verdict(-margin, rise, direction=-1, min_margin_change=0.02,
                            max_pretrain_rise=0.05)
    assert flipped == expected


def test_a_sweep_runs_through_the_local_executor(built, capsys):
    """Two learning rates, one seed, 16 examples: one too small to move anything and one
    large enough to wreck the model; each is a job of the array, as is the start model."""
    code = run("--stage", "align", "--set", "learning_rate=1e-7,1.0", "--volume", "16",
               "--executor", "local")
    out = capsys.readouterr().out
    assert code == 0, out
    frame = pd.read_parquet(built / "sweeps/s/sweep.parquet")
    assert list(frame["point"]) == ["learning_rate=1e-07", "learning_rate=1"]
    assert list(frame["learning_rate"]) == [1e-7, 1.0]
    assert list(frame["verdict"]) == ["no effect", "collapses"]
    small, large = frame.iloc[0], frame.iloc[1]
    assert abs(small["margin_change"]) < 1e-3 and abs(small["pretrain_rise"]) < 1e-3
    assert large["pretrain_rise"] > 0.05
    assert large["bits_per_token_pretrain"] == pytest.approx(
        large["start_bits_per_token_pretrain"] * (1 + large["pretrain_rise"]))
    assert (frame["train_steps"] == 2).all() and (frame["seed"] == 0).all()
    assert frame["kl_to_start"].iloc[1] > frame["kl_to_start"].iloc[0] >= 0
    assert frame["config_hash"].nunique() == 2 and frame["code_version"].notna().all()
    for row in frame.itertuples():
        assert (Path(row.model_dir) / "config.json").exists()
    png = built / "sweeps/s/sweep.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "learning_rate=1e-07" in out and str(png) in out


def test_a_failed_job_is_reported_with_its_error_and_log(tmp_path):
    import submitit

    executor = submitit.AutoExecutor(folder=tmp_path, cluster="local")
    executor.update_parameters(timeout_min=1)
    job = executor.submit(int, "not a number")
    sweep.wait([job], poll_seconds=0.2)
    result, problem = sweep.outcome(job)
    assert result is None
    assert "ValueError: invalid literal for int() with base 10: 'not a number'" in problem
    assert f"its log: {job.paths.stderr}" in problem and job.paths.stderr.exists()


# Slow: it brings the test cluster up and down once more (about 50 s in all).
@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.skipif(os.geteuid() != 0, reason="starting SLURM daemons needs root")
@pytest.mark.usefixtures("cluster")
def test_a_sweep_runs_as_a_slurm_job_array(built):
    assert run("--stage", "align", "--set", "learning_rate=1e-7,1.0", "--volume", "16") == 0
    frame = pd.read_parquet(built / "sweeps/s/sweep.parquet")
    assert list(frame["verdict"]) == ["no effect", "collapses"]
    [script] = (built / "sweeps/s/jobs").glob("*_submission.sh")
    assert "#SBATCH --array=0-2" in script.read_text()
