"""Fine-tuning on several GPUs, and the memory check every fine-tuning job passes first.

A fine-tuning job whose stage asks for `gpus: N > 1` (device cuda) runs its step in N
processes, one per GPU, started by `accelerate launch` (`launch_command`); the trainer shards
weights, gradients and AdamW states across them with DeepSpeed ZeRO-3 (`ZERO3_CONFIG`). On one
GPU or the CPU a job runs in one process, as it always has (elasticity.runner).

DeepSpeed comes in through the trainer's own `deepspeed` argument (`deepspeed_fields`), not
through `accelerate launch --use_deepspeed --deepspeed_config_file`. Both end in the same
Accelerator, and TRL's SFTTrainer reads either from `args.deepspeed_plugin`; but with the
argument the job's own arguments say it is a ZeRO-3 job, the Trainer fills the file's "auto"
values from the stage's section (batch size, accumulation, clipping, bf16) when the arguments
are built, before the model is loaded (so `from_pretrained` partitions the weights as it reads
them), and nothing depends on launcher environment variables or on a machine's own
`accelerate config` file (whose DeepSpeed fields make accelerate refuse a config file). The
launcher then only starts the processes (`--multi_gpu`).

ZERO3_CONFIG sets only what is DeepSpeed's: stage 3 and saving the gathered 16-bit weights
with every checkpoint (so a job's output is a loadable model directory). Everything else is
"auto", taken from the stage's section: `bf16: true` for bf16 mixed precision (the section's
field decides, so a config cannot say two things), `activation_checkpointing: true` for
gradient checkpointing (the current name of transformers' `gradient_checkpointing`), and the
optimizer and schedule (no optimizer or scheduler entry: the Trainer builds its own AdamW).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

# Next to the package in the repository (workflow/elasticity/ -> resources/deepspeed/).
ZERO3_CONFIG = Path(__file__).resolve().parents[2] / "resources" / "deepspeed" / "zero3.json"
# Steps that run correctly as several processes (only rank 0 writes the job's output).
MULTI_PROCESS_STEPS = ("finetune",)
LOG_TAIL_LINES = 30


def launch_command(step: str, kwargs: dict, *, gpus: int, threads: int,
                   args_file: str) -> list[str]:
    """The command a job of `step` on `gpus` GPUs runs: `accelerate launch` starting one
    `python -m elasticity STEP` per GPU, which reads its arguments from `args_file` (SLURM
    limits command lines; a model's trainer section alone can be long).

    The launcher settings the job depends on are given on the command line, where they override
    a machine's default `accelerate config` file; port 0 picks a free port, so that two jobs on
    one node do not collide.
    """
    if step not in MULTI_PROCESS_STEPS:
        raise ValueError(f"step {step} runs in one process: set its stage's `gpus` to 1 "
                         f"(several GPUs: {', '.join(MULTI_PROCESS_STEPS)})")
    if gpus < 2:
        raise ValueError(f"gpus is {gpus}: one GPU or the CPU runs in one process, unlaunched")
    if kwargs.get("device") != "cuda":
        raise ValueError(f"gpus is {gpus} but device is {kwargs.get('device')!r}: several GPUs "
                         f"need device 'cuda'")
    return [
        sys.executable, "-m", "accelerate.commands.launch",  # the `accelerate launch` command
        "--multi_gpu", "--num_processes", str(gpus), "--num_machines", "1",
        # The trainer sets the precision (bf16 through the DeepSpeed config's "auto").
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", "0", "--num_cpu_threads_per_process", str(threads),
        "-m", "elasticity", step, "--threads", str(threads), "--args", f"@{args_file}",
    ]


def args_file_for(log: str) -> str:
    """Where a launched job's arguments go: next to its log, kept for the by-hand command."""
    return str(Path(log).with_suffix(".args.json"))


def run_launched(command: list[str], log: str) -> None:
    """Run a launch command with its output appended to `log`; fail with the log's last lines."""
    with open(log, "a") as sink:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=sink,
                              stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = "".join(Path(log).read_text(errors="replace").splitlines(True)[-LOG_TAIL_LINES:])
        raise RuntimeError(f"the launched processes (`accelerate launch`, command on the first "
                           f"line of {log}) exited with status {done.returncode}; the log "
                           f"ends:\n{tail}")


def process_rank() -> int:
    """This process's rank among a launched job's processes (set by the launcher); 0 alone."""
    return int(os.environ.get("RANK", "0"))


def deepspeed_fields(gpus: int) -> dict[str, str]:
    """Trainer arguments of a job on `gpus` GPUs: ZeRO-3 for several, none for one."""
    return {"deepspeed": str(ZERO3_CONFIG)} if gpus > 1 else {}


def checkpoint_processes(checkpoint: str) -> int:
    """How many processes trained a checkpoint: one ZeRO shard of optimizer state each (the
    files are `[bf16_]zero_pp_rank_R_mp_rank_00_optim_states.pt`), or a single optimizer.pt."""
    shards = list(Path(checkpoint).glob("global_step*/*zero_pp_rank_*_optim_states.pt"))
    return len(shards) or 1


def check_continuable(previous: str, gpus: int, stage: str) -> None:
    """A chain link continues its predecessor's optimizer state, which only the same number of
    processes can read: DeepSpeed refuses ZeRO shards of another world size, and a one-process
    Trainer finds no optimizer.pt in a ZeRO checkpoint and would silently start AdamW afresh."""
    trained_on = checkpoint_processes(previous)
    if trained_on != gpus:
        raise ValueError(
            f"{previous} was trained in {trained_on} process(es) but this link of {stage} asks "
            f"for {gpus} GPU(s): a chain link continues the optimizer state of the link before "
            f"it, which needs the same number. Keep {stage}.gpus the same for the whole chain "
            f"and rebuild the earlier links with it (snakemake --forcerun {stage}_sft)")


GIB = 2**30
MIB = 2**20
# Full fine-tuning with AdamW keeps 16 bytes per parameter, with or without bf16: fp32
# weights, gradients and AdamW's two moments (4 + 4 + 8), or under bf16 mixed precision bf16
# weights and gradients, fp32 master weights and the moments (2 + 2 + 4 + 8). ZeRO-3 divides
# all of them over the GPUs.
STATE_BYTES = 16
# Working memory of every process, per parameter: activations, logits, buffers and the layers
# ZeRO-3 gathers, allowed as much as a 16-bit copy of the weights. A stated allowance, not
# computed from batch size and sequence length; it does not shrink with more GPUs.
WORKING_BYTES = 2
# One GPU process's own use besides the model: CUDA context and kernels.
GPU_PROCESS_BYTES = 1 * GIB
# One process's own host memory besides the model: Python, torch, transformers, TRL (and, on
# a GPU, the CUDA libraries, mostly shared file-backed pages).
HOST_PROCESS_BYTES = int(1.5 * GIB)
# Host bytes per parameter of a job that trains on GPUs, at its peak: on one GPU, the AdamW
# moments a resumed job or chain link reads from optimizer.pt onto the host (8; more than the
# fp32 weights loaded before they move to the GPU, 4); under ZeRO-3 every process reads its
# shard of the fp32 master weights and moments (12 in all).
HOST_BYTES_ONE_GPU = 8
HOST_BYTES_ZERO3 = 12


def memory_estimate(parameters: int, *, device: str, gpus: int) -> tuple[int, int]:
    """(host bytes of the whole job, bytes on each GPU) to fully fine-tune `parameters`
    parameters with AdamW. An estimate from bytes per parameter, not a bound:

        cpu:  host = (16 + 2) * parameters + 1.5 GiB
              gpu  = 0
        cuda: gpu  = 16 * parameters / gpus + 2 * parameters + 1 GiB
              host = b * parameters + gpus * 1.5 GiB        (b = 8 on one GPU, 12 under ZeRO-3)

    16: weights, gradients and AdamW states (STATE_BYTES; sharded over the GPUs by ZeRO-3);
    2: working memory, activations included (WORKING_BYTES); the constants: each process's
    own footprint (GPU_PROCESS_BYTES, HOST_PROCESS_BYTES); b: what a resumed job or chain link
    reads onto the host (HOST_BYTES_ONE_GPU, HOST_BYTES_ZERO3).
    """
    if device == "cpu":
        return (STATE_BYTES + WORKING_BYTES) * parameters + HOST_PROCESS_BYTES, 0
    per_gpu = math.ceil(STATE_BYTES * parameters / gpus) + WORKING_BYTES * parameters
    host_bytes = HOST_BYTES_ONE_GPU if gpus == 1 else HOST_BYTES_ZERO3
    return host_bytes * parameters + gpus * HOST_PROCESS_BYTES, per_gpu + GPU_PROCESS_BYTES


def memory_problems(parameters: int, *, stage: str, device: str, gpus: int, mem_mb: int | None,
                    gpu_bytes: int | None) -> list[str]:
    """What the job's memory cannot hold: host memory `mem_mb` (None: not checked) and, on
    cuda, GPUs of `gpu_bytes` bytes each. Each problem says what to change."""
    host, per_gpu = memory_estimate(parameters, device=device, gpus=gpus)
    size = f"full fine-tuning of {parameters / 1e9:.2f}B parameters"
    problems = []
    if mem_mb is not None and host > mem_mb * MIB:
        need = math.ceil(host / MIB)
        where = f"on {gpus} GPU(s)" if device == "cuda" else "on the CPU"
        problems.append(
            f"{stage}: the job asks for mem_mb={mem_mb} of host memory but {size} {where} needs "
            f"about {need} MB (elasticity.launch.memory_estimate): raise the job's mem_mb "
            f"(STEP_COST['finetune'] in workflow/rules/resources.smk, or in the profile "
            f"set-resources: {{{stage}_sft: {{mem_mb: {need}}}}}), or fine-tune a smaller model")
    if device == "cuda" and gpu_bytes is not None and per_gpu > gpu_bytes:
        fits = _gpus_that_fit(parameters, gpu_bytes)
        change = (f"set {stage}.gpus to at least {fits} (ZeRO-3 shards weights, gradients and "
                  f"AdamW states across them)" if fits else
                  "no number of these GPUs holds it by this estimate")
        problems.append(
            f"{stage}: {size} on {gpus} GPU(s) needs about {per_gpu / GIB:.1f} GiB on each GPU "
            f"(elasticity.launch.memory_estimate: 16 bytes per parameter for weights, "
            f"gradients and AdamW states, divided over the GPUs, plus 2 for activations), but "
            f"each has {gpu_bytes / GIB:.1f} GiB: {change}; or fine-tune a smaller model "
            f"({stage}.sft bf16 and activation_checkpointing shrink activations, not the 16 "
            f"bytes per parameter)")
    return problems


def _gpus_that_fit(parameters: int, gpu_bytes: int) -> int | None:
    room = gpu_bytes - GPU_PROCESS_BYTES - WORKING_BYTES * parameters
    if room <= 0:
        return None
    return max(2, math.ceil(STATE_BYTES * parameters / room))


def check_memory(parameters: int, *, stage: str, device: str, gpus: int,
                 mem_mb: int | None) -> None:
    """Fail before training when the job's host memory (`mem_mb`, the job's resource; None: not
    checked) or, on cuda, its GPUs cannot hold full fine-tuning by `memory_estimate`; the
    message says what to change (the stage's gpus, the job's mem_mb, a smaller model)."""
    gpu_bytes = _smallest_gpu(gpus, stage) if device == "cuda" else None
    problems = memory_problems(parameters, stage=stage, device=device, gpus=gpus, mem_mb=mem_mb,
                               gpu_bytes=gpu_bytes)
    if problems:
        raise ValueError("; ".join(problems))


def _smallest_gpu(gpus: int, stage: str) -> int:
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if visible < gpus:
        raise ValueError(f"{stage}: the job asks for {gpus} GPU(s) with device 'cuda' but this "
                         f"process sees {visible}: run it on a GPU node (the SLURM profile asks "
                         f"for `gpu`), or set {stage}.device to 'cpu' and {stage}.gpus to 1")
    return min(torch.cuda.get_device_properties(i).total_memory for i in range(gpus))
