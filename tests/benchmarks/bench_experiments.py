"""Benchmark: the wall time of `all` with every experiment, and what each experiment costs.

    .venv/bin/python tests/benchmarks/bench_experiments.py [--config {default,smoke}|PATH]
        [--workdir DIR] [--sdist PATH]

Runs `all` once from scratch in a fresh directory (its downloads/ already holding the
vaderSentiment sdist): its wall time is the figure checked against the issue's target
(default: 25 min, smoke: 4 min). Then, per experiment, a dry run of the same config listing that
experiment alone names the jobs it needs (by their log files), and the finished run's logs give
their seconds (each job's METRICS line): per experiment the jobs and job-seconds it needs, the
part no other experiment needs (its own), and its own share of the wall time. Experiments share
work (pretraining chains, the aligned models, cells of one grid), so the needed job-seconds add
up to more than the run's; the own ones to less.

(Running the experiments one after another, each run listing one more, would charge an
experiment for the links of earlier experiments' chains that its volumes or budgets insert
itself into: a from-scratch run never trains those twice.)
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


def job_seconds(workdir: Path) -> dict[str, float]:
    """Each job's seconds by its log file (relative to the workdir), from its METRICS line."""
    seconds = {}
    for log in sorted((workdir / "logs").rglob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(METRICS):
                metrics = json.loads(line[len(METRICS):])
                seconds[str(log.relative_to(workdir))] = metrics["wall_seconds"]
    return seconds


def snakemake(workdir: Path, config: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--profile",
               str(ROOT / "profiles" / "local"), "--directory", str(workdir),
               f"--configfile={config}", *args, "all"]
    with (workdir / "snakemake.out").open("a") as out:
        done = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        tail = (workdir / "snakemake.out").read_text(errors="replace")[-4000:]
        raise SystemExit(f"{' '.join(command)} failed (exit {done.returncode}):\n{tail}")
    return done


def planned_logs(config: dict, name: str) -> set[str]:
    """The log files of the jobs a from-scratch run of one experiment would run."""
    with tempfile.TemporaryDirectory(prefix=f"plan-{name}-") as tmp:
        work = Path(tmp)
        path = work / "config.yaml"
        path.write_text(yaml.safe_dump(dict(config, experiments=[name]), sort_keys=False))
        snakemake(work, path, "--dry-run")
        text = (work / "snakemake.out").read_text(errors="replace")
    return {line.split("log: ", 1)[1].strip() for line in text.splitlines()
            if line.startswith("    log: ")}


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
    print(f"workdir {workdir}; config {args.config}; experiments {config['experiments']}",
          flush=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    start = time.perf_counter()
    snakemake(workdir, path)
    wall = time.perf_counter() - start
    seconds = job_seconds(workdir)
    total = sum(seconds.values())
    print(f"all: {wall:.1f} s wall ({wall / 60:.1f} min), {len(seconds)} jobs, "
          f"{total:.0f} job-seconds", flush=True)
    needed = {name: planned_logs(config, name) & set(seconds) for name in config["experiments"]}
    for name, logs in needed.items():
        others = set().union(*(v for k, v in needed.items() if k != name))
        own = logs - others
        own_seconds = sum(seconds[log] for log in own)
        steps = Counter()
        for log in own:
            steps[log.split("/")[2].removesuffix(".log")] += seconds[log]
        by_step = ", ".join(f"{step} {s:.0f}" for step, s in steps.most_common(4))
        print(f"{name:>12}: needs {len(logs):5d} jobs, "
              f"{sum(seconds[log] for log in logs):6.0f} job-s; its own {len(own):5d} jobs, "
              f"{own_seconds:6.0f} job-s (~{wall * own_seconds / total:5.0f} s of the wall; "
              f"{by_step})", flush=True)
    target = TARGET_SECONDS.get(args.config)
    if target:
        verdict = "PASS" if wall <= target else "FAIL"
        print(f"target: `all` with every experiment <= {target / 60:.0f} min: {verdict} "
              f"({wall / 60:.1f} min)")


if __name__ == "__main__":
    main()
