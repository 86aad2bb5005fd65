"""Benchmark: the default run against issue 8's targets, with time per stage.

    .venv/bin/python tests/benchmarks/bench_claims.py [--config PATH] [--workdir DIR]
        [--sdist PATH] [--existing DIR]

Runs `all` of the working tree from scratch (the default config, or an override given with
--config) in a fresh directory whose downloads/ holds the vaderSentiment sdist, or, with
--existing, reads a directory where such a run has finished (then no wall time is measured).
It prints, per stage, the jobs and their summed
wall seconds (from the METRICS line of every job log), the run's wall time, and the targets:

- `all` (every metric and the analysis included) <= 15 min on this machine;
- per base, the 95 % interval of alpha (decay-time exponent, preference margin) has
  half-width <= 0.15;
- held-out loss steps >= 0.15 nats between adjacent sizes of the size axis and adjacent budgets
  of the pretraining axis.

A missed target prints FAIL; the exit status is non-zero only when the run fails.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SDIST = ROOT / ".pytest_cache" / "d" / "downloads" / "vaderSentiment-3.3.2.tar.gz"
METRICS = "METRICS "
WALL_TARGET = 15 * 60
ALPHA_TARGET = 0.15
LOSS_STEP_TARGET = 0.15
STAGE_OF_STEP = {"pretrain": "pretraining", "generate": "generation", "score": "scoring",
                 "likelihood": "likelihood metrics", "analyze": "analysis"}


def stage_of(step: str, log: Path) -> str:
    if step == "finetune":
        return {"align": "alignment", "invert": "inverse fine-tuning"}[log.parts[0]]
    return STAGE_OF_STEP.get(step, "other")


def run_all(directory: Path, config: str | None, sdist: Path) -> float:
    (directory / "downloads").mkdir(parents=True)
    (directory / "downloads" / sdist.name).write_bytes(sdist.read_bytes())
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--profile",
               str(ROOT / "profiles" / "local"), "--directory", str(directory),
               *([f"--configfile={config}"] if config else []), "all"]
    print(" ".join(command), flush=True)
    start = time.perf_counter()
    with (directory / "snakemake.out").open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        print((directory / "snakemake.out").read_text(errors="replace")[-5000:])
        raise SystemExit(done.returncode)
    return wall


def stage_table(directory: Path) -> pd.DataFrame:
    logs = next((directory / "logs").iterdir())
    seconds: dict[str, float] = defaultdict(float)
    jobs: dict[str, int] = defaultdict(int)
    for log in logs.rglob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(METRICS):
                metrics = json.loads(line[len(METRICS):])
                stage = stage_of(metrics["step"], log.relative_to(logs))
                seconds[stage] += metrics["wall_seconds"]
                jobs[stage] += 1
    table = pd.DataFrame({"jobs": jobs, "job_seconds": seconds}).sort_values("job_seconds",
                                                                           ascending=False)
    table.loc["total"] = table.sum()
    return table


def loss_steps(bases: pd.DataFrame, config: dict) -> list[tuple[str, float]]:
    """Held-out loss differences between adjacent bases of each axis (the smaller model or
    budget minus the larger one), adjacent by parameters and by tokens."""
    table = bases.set_index(["model", "pretrain_tokens"])
    size, budget = config["grid"]["size_axis"], config["grid"]["pretraining_axis"]
    at = size["pretrain_tokens"]
    by_size = sorted(size["model"], key=lambda m: table.loc[(m, at), "parameters"])
    steps = [(f"{a} -> {b} @ {at:,}",
              table.loc[(a, at), "eval_loss"] - table.loc[(b, at), "eval_loss"])
             for a, b in pairwise(by_size)]
    steps += [(f"{budget['model']} {a:,} -> {b:,}",
               table.loc[(budget["model"], a), "eval_loss"]
               - table.loc[(budget["model"], b), "eval_loss"])
              for a, b in pairwise(sorted(budget["pretrain_tokens"]))]
    return steps


def verdict(ok: bool) -> str:
    return "ok" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="an override of config.yaml (default: none)")
    parser.add_argument("--workdir", help="default: a fresh temporary directory")
    parser.add_argument("--sdist", default=str(DEFAULT_SDIST))
    parser.add_argument("--existing", help="read this finished run instead of running")
    args = parser.parse_args()
    if args.existing:
        directory = Path(args.existing)
        wall = None
    else:
        directory = Path(args.workdir or tempfile.mkdtemp(prefix="elasticity-claims-"))
        wall = run_all(directory, args.config, Path(args.sdist))
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    if args.config:
        from elasticity.configfile import load_yaml, merge

        config = merge(config, load_yaml(args.config))
    results = next((directory / "results").iterdir())
    print(f"\nrun: {directory}\n")
    print(stage_table(directory).to_string(float_format="{:.0f}".format))
    if wall is None:
        print("\nwall time of `all`: not measured (--existing)")
    else:
        print(f"\nwall time of `all`: {wall:.0f} s (target <= {WALL_TARGET} s): "
              f"{verdict(wall <= WALL_TARGET)}")
    scores = pd.read_parquet(results / "elasticity_scores.parquet")
    margin = scores[scores["metric"] == "margin"]
    print("\nalpha (margin), 95 % interval half-width per base "
          f"(target <= {ALPHA_TARGET}):")
    for _, row in margin.iterrows():
        half = (row["alpha_upper"] - row["alpha_lower"]) / 2
        print(f"  {row['model']} @ {row['pretrain_tokens']:,}: alpha {row['alpha']:.3f} "
              f"[{row['alpha_lower']:.3f}, {row['alpha_upper']:.3f}], half-width {half:.3f}: "
              f"{verdict(half <= ALPHA_TARGET)}")
    print(f"\nheld-out loss steps (target >= {LOSS_STEP_TARGET} nats):")
    for name, step in loss_steps(pd.read_parquet(results / "base_models.parquet"), config):
        print(f"  {name}: {step:.3f}: {verdict(step >= LOSS_STEP_TARGET)}")
    claims = pd.read_parquet(results / "claims.parquet")
    print("\nclaims:", claims["verdict"].value_counts().to_dict())
    return 0


if __name__ == "__main__":
    sys.exit(main())
