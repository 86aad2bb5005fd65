"""A training job killed mid-run (SIGKILL) leaves no finished-looking output and resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

from elasticity import finetuning, models
from elasticity.training import scratch_dir

from .conftest import SMOKE


def _args(base_dir, small_splits, out):
    # Many short epochs so the run lasts a few seconds and checkpoints often.
    hparams = dict(SMOKE["align"], epochs=12, checkpoint_every_steps=10)
    return dict(model=str(base_dir), pool=str(small_splits / "positive.parquet"), out=str(out),
                n=100, hparams=hparams, seed=0)


def test_a_killed_finetune_resumes_to_the_uninterrupted_result(base_dir, small_splits,
                                                               tmp_path):
    reference = tmp_path / "reference"
    finetuning.finetune(**_args(base_dir, small_splits, reference))

    out = tmp_path / "killed"
    args = _args(base_dir, small_splits, out)
    scratch = scratch_dir(str(out))
    job = subprocess.Popen([sys.executable, "-m", "elasticity", "finetune", "--args",
                            json.dumps(args)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not (scratch / "checkpoint-40").exists():
        assert job.poll() is None, "the job ended before it could be killed"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    # Killed as checkpoint-40 appears, most likely while it is being written.
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert not out.exists()
    assert list(scratch.glob("checkpoint-*"))

    metrics = finetuning.finetune(**args)
    assert metrics["steps"] == 12 * 13
    assert not scratch.exists()
    a, b = models.load_model(str(reference)), models.load_model(str(out))
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_checkpoints_of_a_job_with_other_arguments_are_not_resumed(base_dir, small_splits,
                                                                   tmp_path):
    out = tmp_path / "aligned"
    scratch = scratch_dir(str(out))
    stale = scratch / "checkpoint-5"
    stale.mkdir(parents=True)
    (scratch / "job.json").write_text(json.dumps({"other": "arguments"}))
    args = _args(base_dir, small_splits, out)
    args["hparams"] = dict(args["hparams"], epochs=1)
    metrics = finetuning.finetune(**args)
    assert metrics["steps"] == 13
    assert out.exists() and not scratch.exists()
