"""Benchmark: run the workflow on a config from scratch and print what the issue targets ask.

    python tests/benchmarks/bench_run.py [--config config.yaml] [--workdir DIR]

Prints wall time, the number of jobs (per rule), the training tokens processed (pretraining
plus fine-tuning), the largest peak RSS of any job, and the controller's own peak RSS.
Targets (issue 2): the default `all` in <= 15 min on 2 cores, the smoke config in <= 3 min,
every job <= 3 GB.
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METRICS = "METRICS "


def job_metrics(logs: Path) -> list[dict]:
    found = []
    for log in logs.rglob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(METRICS):
                found.append(json.loads(line[len(METRICS):]))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config.yaml"))
    parser.add_argument("--workdir", help="default: a fresh temporary directory")
    parser.add_argument("--sdist", help="a local copy of the vaderSentiment sdist, to skip the "
                                        "download")
    ns = parser.parse_args()
    workdir = Path(ns.workdir or tempfile.mkdtemp(prefix="elasticity-bench-"))
    if ns.sdist:
        (workdir / "downloads").mkdir(parents=True, exist_ok=True)
        shutil.copy(ns.sdist, workdir / "downloads")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--profile",
           str(ROOT / "profiles" / "local"), "--directory", str(workdir), "--configfile",
           ns.config, "--replace-workflow-config", "all"]
    print("running:", " ".join(cmd), flush=True)
    start = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - start
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:])
        return done.returncode
    jobs = job_metrics(workdir / "logs")
    per_step = collections.Counter(m["step"] for m in jobs)
    pretrain_tokens = sum(m.get("tokens_trained_here", 0) for m in jobs)
    finetune_tokens = sum(m.get("train_tokens", 0) for m in jobs)
    print(f"config: {ns.config}\nworkdir: {workdir}")
    print(f"wall time: {wall:.0f} s ({wall / 60:.1f} min)")
    print(f"jobs: {len(jobs)} ({', '.join(f'{k} {v}' for k, v in sorted(per_step.items()))})")
    print(f"training tokens processed: {pretrain_tokens + finetune_tokens:,} "
          f"(pretraining {pretrain_tokens:,}, fine-tuning {finetune_tokens:,})")
    print(f"job wall time summed: {sum(m['wall_seconds'] for m in jobs):.0f} s")
    print(f"largest peak RSS of a job: {max(m['peak_rss_mb'] for m in jobs):.0f} MB")
    controller = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"largest peak RSS of any process (controller included): {controller:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
