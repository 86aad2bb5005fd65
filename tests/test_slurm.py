"""The smoke config through `--profile profiles/slurm` on a real single-node SLURM cluster.

The cluster (Debian's slurm-wlm and munge, one node, two fake GPUs) is brought up by
resources/slurm-testcluster/up.sh and torn down by down.sh. Needs root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from elasticity import grid
from elasticity.configfile import merge

from .conftest import ROOT, SMOKE, SMOKE_CONFIG

CLUSTER = ROOT / "resources" / "slurm-testcluster"
pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(os.geteuid() != 0, reason="starting SLURM daemons needs root"),
]


@pytest.fixture(scope="module")
def cluster():
    up = subprocess.run(["bash", str(CLUSTER / "up.sh")], capture_output=True, text=True,
                        timeout=600)
    assert up.returncode == 0, up.stdout + up.stderr
    yield
    subprocess.run(["bash", str(CLUSTER / "down.sh")], capture_output=True, text=True,
                   timeout=120)


def test_the_smoke_config_runs_through_the_slurm_profile(cluster, tmp_path, sdist):
    (tmp_path / "downloads").mkdir()
    shutil.copy(sdist, tmp_path / "downloads" / sdist.name)
    # One cell of each kind from the smoke grid (base, aligned, inverted): every rule and both
    # fine-tuning chains in ten submissions, each of which starts Snakemake and torch inside its
    # job; CI's machine is over twice as slow as this one's 2 cores.
    # Of the other experiments, one preference and the online-RL link, and one resistance job.
    one_seed = {"grid": {"seed": [0], "size_axis": {"model": ["tiny-a"]},
                         "pretraining_axis": {"pretrain_tokens": [20000]},
                         "positive": [40], "negative": [0, 8]},
                "experiments": ["rebound", "algorithms", "resistance"],
                "algorithms": {"algorithm": ["dpo", "rloo"], "model": ["tiny-a"],
                               "positive": [40], "negative": [0, 8], "seed": [0]},
                "resistance": {"seed": [0]}}
    (tmp_path / "one_seed.yaml").write_text(yaml.safe_dump(one_seed))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--profile",
           str(ROOT / "profiles" / "slurm"), "--directory", str(tmp_path),
           "--configfile", str(SMOKE_CONFIG), str(tmp_path / "one_seed.yaml"),
           # The cluster is idle: poll it early rather than after the profile's 20 s.
           "--slurm-init-seconds-before-status-checks", "2", "all"]
    log = tmp_path / "snakemake.log"
    start = time.time()
    with log.open("w") as sink:
        try:
            done = subprocess.run(cmd, stdout=sink, stderr=subprocess.STDOUT, timeout=1500)
        except subprocess.TimeoutExpired:
            pytest.fail("the SLURM run took over 1500 s; its log ends:\n"
                        + log.read_text()[-6000:])
    wall = time.time() - start
    output = log.read_text()
    assert done.returncode == 0, output[-6000:]
    submissions = set(re.findall(r"SLURM jobid (\d+)", output))
    print(f"\nsmoke config under SLURM: {wall:.0f} s, {len(submissions)} sbatch submissions")

    smoke = merge(SMOKE, one_seed)
    summary = pd.read_parquet(tmp_path / "results" / "smoke" / "summary.parquet")
    assert len(summary) == len(grid.cells(smoke))
    assert {"dpo", "rloo"} <= set(summary["algorithm"])
    assert summary["positive_rate"].between(0, 1).all()
    assert (summary["responses"] == smoke["data"]["eval_prompts"]).all()
    assert (tmp_path / "results" / "smoke" / "resistance" / "table.html").exists()
    for name in ("fig4_rebound", "fig5_size", "fig6_pretraining"):
        figure = tmp_path / "results" / "smoke" / "figures" / "margin" / f"{name}.png"
        assert figure.stat().st_size > 0
    # One submission per training, generation, likelihood or resistance job and one for data
    # preparation with the tokenizer; the download, scoring, aggregation, analysis and plots
    # run locally.
    cells = grid.cells(smoke)
    expected = (len(grid.checkpoints(smoke)) + sum(not c.is_base and c.negative == 0
                                                   for c in cells)
                + sum(c.negative > 0 for c in cells) + len(cells)
                + sum(grid.sampled(smoke, c) for c in cells) + 1
                + len(smoke["resistance"]["seed"]))
    assert len(submissions) == expected
