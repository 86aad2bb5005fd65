"""A training job killed mid-run (SIGKILL) leaves no finished-looking output and resumes exactly,
within a chain link as well as from one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch

from elasticity import finetuning
from elasticity.training import scratch_dir

from .conftest import SMOKE
from .test_models import assert_same_weights


def _args(base_dir, small_splits, out, previous=None):
    # One example a step, so the link lasts a few seconds and checkpoints often.
    trainer = dict(SMOKE["align"]["sft"], per_device_train_batch_size=1, save_steps=10)
    return dict(model=str(base_dir), pool=str(small_splits / "positive.parquet"), out=str(out),
                examples=100, previous=None if previous is None else str(previous),
                trainer=trainer, device="cpu", seed=0)


def test_a_killed_link_resumes_to_the_uninterrupted_result(base_dir, small_splits, tmp_path):
    # As a job runs (`python -m elasticity` sets one torch thread): float sums depend on the
    # thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _kill_and_resume(base_dir, small_splits, tmp_path)
    finally:
        torch.set_num_threads(threads)


def _kill_and_resume(base_dir, small_splits, tmp_path):
    first = tmp_path / "first"
    finetuning.finetune(**dict(_args(base_dir, small_splits, first), examples=20))
    reference = tmp_path / "reference"
    finetuning.finetune(**_args(base_dir, small_splits, reference, previous=first))

    out = tmp_path / "killed"
    args = _args(base_dir, small_splits, out, previous=first)
    scratch = scratch_dir(str(out))
    job = subprocess.Popen([sys.executable, "-m", "elasticity", "finetune", "--args",
                            json.dumps(args)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while not (scratch / "checkpoint-60").exists():
        assert job.poll() is None, "the job ended before it could be killed"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    # Killed as checkpoint-60 appears (the link started at step 20), most likely while it is
    # being written.
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert not out.exists()
    assert list(scratch.glob("checkpoint-*"))

    metrics = finetuning.finetune(**args)
    assert metrics["steps"] == 100
    assert not scratch.exists()
    assert_same_weights(reference, out)


def test_checkpoints_of_a_job_with_other_arguments_are_not_resumed(base_dir, small_splits,
                                                                   tmp_path):
    out = tmp_path / "aligned"
    scratch = scratch_dir(str(out))
    stale = scratch / "checkpoint-5"
    stale.mkdir(parents=True)
    (scratch / "job.json").write_text(json.dumps({"other": "arguments"}))
    args = dict(_args(base_dir, small_splits, out), examples=13)
    metrics = finetuning.finetune(**args)
    assert metrics["steps"] == 13
    assert out.exists() and not scratch.exists()
