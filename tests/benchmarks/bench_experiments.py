"""Benchmark: the wall time of `all` with every experiment, and what each experiment adds.

    .venv/bin/python tests/benchmarks/bench_experiments.py [--config {default,smoke}|PATH]
        [--workdir DIR] [--sdist PATH]

Runs `all` from scratch in a fresh directory (its downloads/ already holding the
vaderSentiment sdist) once per experiment of the config, in the config's `experiments` order,
each run listing one experiment more: the first run builds the first experiment, the second
adds the second, and so on. An experiment's time is the wall time its run adds on top of the
experiments before it, so work that experiments share (pretraining, chains, the aligned models
every algorithm starts from) is counted once, where it is first needed. Per experiment it prints
the wall seconds, the jobs run and their summed job seconds by step (the METRICS lines of the
jobs' logs); then the total against the issue's target (default: 25 min, smoke: 4 min).
A missed target prints FAIL but does not change the exit status; a failed run does.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SDIST = ROOT / ".pytest_cache" / "d" / "downloads" / "vaderSentiment-3.3.2.tar.gz"
CONFIGS = {"default": None, "smoke": ROOT / "resources" / "configs" / "smoke.yaml"}
TARGET_SECONDS = {"default": 25 * 60, "smoke": 4 * 60}
METRICS = "METRICS "


def merged_config(override: Path | None) -> dict:
    from elasticity.configfile import load_yaml, merge

    config = load_yaml(ROOT / "config.yaml")
    return merge(config, load_yaml(override)) if override else config


def step_seconds(logs: Path, seen: set[Path]) -> tuple[int, Counter]:
    """Jobs and summed job seconds by step of the logs not in `seen` (this run's jobs)."""
    seconds: Counter = Counter()
    jobs = 0
    for log in sorted(logs.rglob("*.log")):
        if log in seen:
            continue
        seen.add(log)
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(METRICS):
                metrics = json.loads(line[len(METRICS):])
                seconds[metrics["step"]] += metrics["wall_seconds"]
                jobs += 1
    return jobs, seconds


def run(workdir: Path, override: Path) -> float:
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--profile",
               str(ROOT / "profiles" / "local"), "--directory", str(workdir),
               f"--configfile={override}", "all"]
    start = time.perf_counter()
    with (workdir / "snakemake.out").open("a") as out:
        done = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        tail = (workdir / "snakemake.out").read_text(errors="replace")[-4000:]
        raise SystemExit(f"{' '.join(command)} failed (exit {done.returncode}):\n{tail}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="default",
                        help="default, smoke, or a config file of overrides")
    parser.add_argument("--workdir", type=Path, help="kept afterwards (default: a temp dir)")
    parser.add_argument("--sdist", type=Path, default=DEFAULT_SDIST)
    args = parser.parse_args()
    override = CONFIGS.get(args.config, Path(args.config))
    config = merged_config(override)
    if not args.sdist.exists():
        raise SystemExit(f"{args.sdist}: no sdist; run the tests once (they cache it) or pass "
                         "--sdist")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-experiments-"))
    (workdir / "downloads").mkdir(parents=True, exist_ok=True)
    shutil.copy(args.sdist, workdir / "downloads" / args.sdist.name)
    print(f"workdir {workdir}; config {args.config}; experiments {config['experiments']}")
    seen: set[Path] = set()
    rows = []
    for i, name in enumerate(config["experiments"]):
        step_config = dict(config, experiments=config["experiments"][:i + 1])
        path = workdir / f"config-{i}-{name}.yaml"
        path.write_text(yaml.safe_dump(step_config, sort_keys=False))
        wall = run(workdir, path)
        jobs, seconds = step_seconds(workdir / "logs" / config["name"], seen)
        rows.append((name, wall, jobs, seconds))
        by_step = ", ".join(f"{step} {s:.0f}" for step, s in seconds.most_common())
        print(f"{name:>12}: {wall:7.1f} s wall, {jobs:5d} jobs, job seconds by step: {by_step}",
              flush=True)
    total = sum(wall for _, wall, _, _ in rows)
    print(f"{'total':>12}: {total:7.1f} s wall ({total / 60:.1f} min), "
          f"{sum(j for _, _, j, _ in rows)} jobs")
    target = TARGET_SECONDS.get(args.config)
    if target:
        verdict = "PASS" if total <= target else "FAIL"
        print(f"target: `all` with every experiment <= {target / 60:.0f} min: {verdict} "
              f"({total / 60:.1f} min)")


if __name__ == "__main__":
    main()
