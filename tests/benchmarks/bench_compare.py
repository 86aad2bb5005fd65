"""Benchmark: the previous commit and the current working tree, side by side, in one run.

    .venv/bin/python tests/benchmarks/bench_compare.py [--base REV] [--config {default,smoke}]
        [--current-config PATH] [--workdir DIR] [--sdist PATH]

Checks REV (default 252a27a, the commit the grid-core work started from) out in a temporary
git worktree and runs `all` of it, then of the working tree (HEAD plus uncommitted edits), one
after the other, each from scratch in a fresh directory whose downloads/ already holds the
vaderSentiment sdist. Both use this Python; each side's jobs import that side's own package
(PYTHONPATH=<side>/workflow) and each side uses its own profiles/local.

From the METRICS lines of every job log it prints, per common stage (pretraining, alignment,
inverse fine-tuning, generation, scoring, the rest), the number of jobs, the training tokens and
the summed job wall seconds of both runs, then the wall time of each whole run, its number of
jobs and its largest job peak RSS, and the issue's targets with their measured ratios:

- fine-tuning tokens (alignment + inverse fine-tuning) of the default grid >= 1.8x fewer than
  the previous commit's, with the same cells (both summary.parquet have as many rows);
- the default `all` wall time <= 70 % of the previous commit's, measured in the same run.

The defaults of the two commits are different grids now (this one has 10 seeds and the
likelihood metrics); `--current-config tests/benchmarks/previous_default.yaml` runs the
previous commit's default grid on the current side (the previous side runs its own default), so
that both run the same cells. The current side then also computes its likelihood metrics, which
the previous commit did not have (stage "likelihood").

Exits non-zero when a run fails (after printing the tail of its output); a missed target is
printed as FAIL but does not change the exit status. The default config takes about 27 min
on 2 cores (both sides); `--config smoke` about 2-3 min.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BASE = "252a27a"
DEFAULT_SDIST = ROOT / ".pytest_cache" / "d" / "downloads" / "vaderSentiment-3.3.2.tar.gz"
METRICS = "METRICS "
STAGES = ["pretraining", "alignment", "inverse fine-tuning", "generation", "scoring",
          "likelihood", "other"]
FINETUNING = ("alignment", "inverse fine-tuning")
TOKENS_TARGET = 1.8   # base fine-tuning tokens / current ones, at least
WALL_TARGET = 0.70    # current wall time / base one, at most
# Summary columns that place a cell in the grid, by either version's name -> common name.
COORDINATES = {"task": "task", "model": "model", "tokens": "pretrain_tokens",
               "pretrain_tokens": "pretrain_tokens", "algorithm": "algorithm",
               "positive": "positive", "positive_examples": "positive",
               "negative": "negative", "negative_examples": "negative", "seed": "seed"}


@dataclass
class Run:
    """One side of the comparison: what was run and what its job logs say."""

    label: str
    root: Path
    directory: Path
    command: list[str] = field(default_factory=list)
    wall: float = 0.0
    jobs: list[tuple[str, dict]] = field(default_factory=list)   # (stage, METRICS)
    cells: int = 0
    coordinates: list[str] = field(default_factory=list)
    cell_set: set[tuple] = field(default_factory=set)   # by common coordinate names, sorted


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default=DEFAULT_BASE,
                        help=f"the previous commit (any git rev; default {DEFAULT_BASE})")
    parser.add_argument("--config", choices=["default", "smoke"], default="default")
    parser.add_argument("--current-config",
                        help="an override of config.yaml for the current side only (instead of "
                             "--config), e.g. tests/benchmarks/previous_default.yaml")
    parser.add_argument("--workdir", help="default: a fresh temporary directory")
    parser.add_argument("--sdist", help="a local copy of the vaderSentiment sdist (default: "
                                        f"{DEFAULT_SDIST.relative_to(ROOT)} if present)")
    return parser.parse_args()


def add_worktree(rev: str, path: Path) -> None:
    done = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), rev],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"git worktree add {path} {rev} failed:\n{done.stderr}")


def describe(root: Path) -> str:
    """The commit a tree is at, and whether it has uncommitted edits."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], check=True,
                              capture_output=True, text=True).stdout.strip()
    edits = git("status", "--porcelain", "--untracked-files=no")
    return git("log", "-1", "--format=%h %s") + (" (+ uncommitted edits)" if edits else "")


def remove_worktree(path: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                   check=False, capture_output=True, text=True)


def fresh_directory(path: Path, sdist: Path | None) -> None:
    """An empty run directory, its downloads/ holding the sdist (when one is given)."""
    if path.exists() and any(path.iterdir()):
        raise SystemExit(f"{path} is not empty: every run starts from scratch")
    (path / "downloads").mkdir(parents=True, exist_ok=True)
    if sdist:
        shutil.copy(sdist, path / "downloads")


def config_args(root: Path, config: str) -> list[str]:
    """The config options of a side's command line. A Snakefile with a `configfile:`
    directive (252a27a) needs --replace-workflow-config; the later one reads its embedded
    config.yaml itself and merges an override given as one token (`--configfile=PATH`)."""
    old_style = any(line.startswith("configfile:")
                    for line in (root / "Snakefile").read_text().splitlines())
    if old_style:
        path = root / ("config.yaml" if config == "default" else "resources/configs/smoke.yaml")
        return ["--configfile", str(path), "--replace-workflow-config"]
    return [] if config == "default" else [f"--configfile={root}/resources/configs/smoke.yaml"]


def snakemake_command(root: Path, directory: Path, config: str,
                      override: str | None = None) -> list[str]:
    configs = ([f"--configfile={Path(override).resolve()}"] if override
               else config_args(root, config))
    return [sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"),
            "--profile", str(root / "profiles" / "local"), "--directory", str(directory),
            *configs, "all"]


def side_env(root: Path) -> dict[str, str]:
    """This environment, with the side's own package first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "workflow"),
                                                      env.get("PYTHONPATH")]))
    return env


def check_package(root: Path, env: dict[str, str]) -> None:
    """Fail early unless the side's jobs would import the side's own `elasticity`."""
    found = subprocess.run([sys.executable, "-c", "import elasticity; print(elasticity.__file__)"],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    if not Path(found).resolve().is_relative_to((root / "workflow").resolve()):
        raise SystemExit(f"{root}: `import elasticity` gives {found}, not this side's package")


def run_workflow(run: Run, config: str, override: str | None = None) -> bool:
    """Run `all` of one side; its output goes to <directory>/snakemake.out."""
    env = side_env(run.root)
    check_package(run.root, env)
    run.command = snakemake_command(run.root, run.directory, config, override)
    print(f"[{run.label}] PYTHONPATH={env['PYTHONPATH']} " + " ".join(run.command), flush=True)
    output = run.directory / "snakemake.out"
    start = time.perf_counter()
    with output.open("w") as out:
        done = subprocess.run(run.command, cwd=run.root, env=env, stdout=out,
                              stderr=subprocess.STDOUT)
    run.wall = time.perf_counter() - start
    print(f"[{run.label}] exit {done.returncode} after {run.wall:.0f} s", flush=True)
    if done.returncode != 0:
        print(f"--- tail of {output} ---\n{output.read_text(errors='replace')[-5000:]}")
    return done.returncode == 0


def only_subdirectory(path: Path) -> Path:
    """logs/ and results/ of a run hold one directory, named after the config (`name` now,
    `experiment` in 252a27a)."""
    found = [p for p in path.iterdir() if p.is_dir()]
    if len(found) != 1:
        raise SystemExit(f"expected one directory in {path}, found {found}")
    return found[0]


def stage_of(step: str, log: Path) -> str:
    """The common stage of a job: fine-tuning is `finetune` in both versions, alignment or
    inverse fine-tuning by where its log is (logs/<name>/align/... or .../invert/...)."""
    if step == "finetune":
        return {"align": "alignment", "invert": "inverse fine-tuning"}[log.parts[0]]
    return {"pretrain": "pretraining", "generate": "generation", "score": "scoring",
            "likelihood": "likelihood"}.get(step, "other")


def read_jobs(run: Run) -> None:
    logs = only_subdirectory(run.directory / "logs")
    for log in sorted(logs.rglob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(METRICS):
                metrics = json.loads(line[len(METRICS):])
                run.jobs.append((stage_of(metrics["step"], log.relative_to(logs)), metrics))


def read_cells(run: Run) -> None:
    summary = pd.read_parquet(only_subdirectory(run.directory / "results") / "summary.parquet")
    run.cells = len(summary)
    run.coordinates = [c for c in summary.columns if c in COORDINATES]
    common = summary[run.coordinates].rename(columns=COORDINATES)
    common = common[sorted(common.columns)]
    run.cell_set = set(common.itertuples(index=False, name=None))


def tokens(metrics: dict) -> int:
    return metrics.get("train_tokens", 0) + metrics.get("tokens_trained_here", 0)


def stage_figures(run: Run, stage: str) -> tuple[int, int, float]:
    """Jobs, training tokens and summed job wall seconds of one stage."""
    jobs = [m for s, m in run.jobs if s == stage]
    return len(jobs), sum(map(tokens, jobs)), sum(m["wall_seconds"] for m in jobs)


def figures(run: Run, stage: str) -> tuple[int, int, float]:
    """stage_figures, or their sums over the stages for "total"."""
    if stage != "total":
        return stage_figures(run, stage)
    jobs, tokens_, seconds = zip(*(stage_figures(run, s) for s in STAGES), strict=True)
    return sum(jobs), sum(tokens_), sum(seconds)


def finetuning_tokens(run: Run) -> int:
    return sum(stage_figures(run, stage)[1] for stage in FINETUNING)


def print_table(base: Run, current: Run) -> None:
    header = (f"{'stage':<20} | {'base jobs':>9} | {'base tokens':>13} | {'base job-s':>10} | "
              f"{'cur jobs':>8} | {'cur tokens':>13} | {'cur job-s':>10}")
    print(header + "\n" + "-" * len(header))
    for stage in [*STAGES, "total"]:
        (bj, bt, bs), (cj, ct, cs) = figures(base, stage), figures(current, stage)
        print(f"{stage:<20} | {bj:>9} | {bt:>13,} | {bs:>10.0f} | {cj:>8} | {ct:>13,} | "
              f"{cs:>10.0f}")


def print_runs(base: Run, current: Run) -> None:
    for run in (base, current):
        rss = max(m["peak_rss_mb"] for _, m in run.jobs)
        print(f"{run.label:<8} wall {run.wall:7.1f} s ({run.wall / 60:.1f} min), "
              f"{len(run.jobs)} jobs, largest job peak RSS {rss:.0f} MB, {run.cells} cells "
              f"(coordinates: {', '.join(run.coordinates)})")


def print_targets(base: Run, current: Run) -> None:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    same_count = base.cells == current.cells
    same_set = base.cell_set == current.cell_set
    same_cells = same_count and same_set
    print(f"same cells: base {base.cells}, current {current.cells} rows of summary.parquet "
          f"({'same' if same_set else 'different'} cell coordinates; "
          f"{len(base.cell_set - current.cell_set)} only in base, "
          f"{len(current.cell_set - base.cell_set)} only in current): {verdict(same_cells)}")
    base_ft, current_ft = finetuning_tokens(base), finetuning_tokens(current)
    ratio = base_ft / current_ft if current_ft else float("inf")
    tokens_ok = ratio >= TOKENS_TARGET and same_cells
    print(f"fine-tuning tokens: base {base_ft:,} / current {current_ft:,} = {ratio:.2f}x fewer "
          f"(target >= {TOKENS_TARGET}x, same cells): {verdict(tokens_ok)}")
    wall = current.wall / base.wall
    print(f"all wall time: current {current.wall:.0f} s / base {base.wall:.0f} s = {wall:.2f} "
          f"(target <= {WALL_TARGET:.2f}): {verdict(wall <= WALL_TARGET)}")


def main() -> int:
    ns = parse_args()
    sdist = Path(ns.sdist) if ns.sdist else (DEFAULT_SDIST if DEFAULT_SDIST.exists() else None)
    workdir = Path(ns.workdir or tempfile.mkdtemp(prefix="elasticity-compare-")).resolve()
    worktree = workdir / "base"
    base = Run(f"base {ns.base}", worktree, workdir / "run-base")
    current = Run("current", ROOT, workdir / "run-current")
    print(f"config: {ns.config}, current side: {ns.current_config or ns.config}\n"
          f"workdir: {workdir}\nsdist: {sdist or 'downloaded'}")
    add_worktree(ns.base, worktree)
    try:
        for run in (base, current):
            print(f"{run.label}: {describe(run.root)}")
        for run in (base, current):
            fresh_directory(run.directory, sdist)
            override = ns.current_config if run is current else None
            if not run_workflow(run, ns.config, override):
                return 1
    finally:
        remove_worktree(worktree)
    for run in (base, current):
        read_jobs(run)
        read_cells(run)
    print()
    print_table(base, current)
    print()
    print_runs(base, current)
    print()
    print_targets(base, current)
    return 0


if __name__ == "__main__":
    sys.exit(main())
