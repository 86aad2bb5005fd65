"""Benchmark: how long `snakemake -n` takes to plan a grid of more than 2,000 jobs.

    python tests/benchmarks/bench_dryrun.py

Builds the grid from the default config with 5 models on the size axis, 3 pretraining budgets,
4 P x 6 N and 4 seeds (every stage), dry-runs it in an empty directory and prints the wall
time and the job counts (2,096 jobs before the likelihood metrics, 2,801 with them: a
likelihood job per cell). Targets: <= 10 s (issue 3), <= 5 s (issue 6). The first dry run in a
fresh directory also fills the validation cache (.snakemake/elasticity: trainer fields and
model architectures, checked by importing TRL and transformers once); both runs are printed.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def big_config() -> dict:
    """An override of the default config (what differs only)."""
    base = yaml.safe_load((ROOT / "config.yaml").read_text())["models"]["micro-m"]
    models = {f"size-{i}": dict(base, hidden_size=32 * (i + 1), num_attention_heads=2)
              for i in range(5)}
    return {"models": models,
            "grid": {"size_axis": {"model": list(models), "pretrain_tokens": 600000},
                     "pretraining_axis": {"model": "size-1",
                                          "pretrain_tokens": [150000, 300000, 600000]},
                     "positive": [200, 400, 1000, 2000],
                     "negative": [0, 20, 40, 100, 200, 400],
                     "seed": [0, 1, 2, 3]},
            "generation": {"cells": {}}}


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="elasticity-dryrun-"))
    (work / "big.yaml").write_text(yaml.safe_dump(big_config()))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
           str(work), "--configfile", str(work / "big.yaml"), "--cores", "2", "-n", "--quiet",
           "rules", "all"]
    for run in ("first (cold validation cache)", "second"):
        start = time.time()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.time() - start
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:])
            return done.returncode
        table = done.stdout + done.stderr
        total = int(re.search(r"^total\s+(\d+)", table, re.M).group(1))
        print(f"{run} dry run of {total} jobs: {wall:.1f} s (target <= 5 s)")
    print(table[table.index("job "):].split("\n\n")[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
