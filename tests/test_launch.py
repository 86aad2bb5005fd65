"""Multi-GPU fine-tuning: the `accelerate launch` command, the one-process path, the memory
check, the SLURM profile's GPU flags (through the SLURM plugin's own code) and the environments.

A tiny Llama (hidden 16, one layer, a 200-token BPE vocabulary) fine-tuned on 64 short texts
stands in for a model; everything runs on the CPU. The DeepSpeed checks run where deepspeed is
installed (the GPU environment) and skip elsewhere.
"""

from __future__ import annotations

import json
import math
import random
import re
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import yaml

from elasticity import finetuning, launch, models
from elasticity.io import write_json, write_parquet
from elasticity.launch import GIB, MIB
from elasticity.runner import METRICS_PREFIX, run_step
from elasticity.training import scratch_dir

from .test_models import assert_same_weights

ROOT = Path(__file__).resolve().parents[1]
PROFILE = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
WORDS = ("good bad movie film great awful plot actor scene story fun dull love hate best "
         "worst").split()
TRAINER = {"learning_rate": 0.001, "lr_scheduler_type": "constant", "num_train_epochs": 1,
           "per_device_train_batch_size": 2, "max_length": 32, "optim": "adamw_torch",
           "bf16": False, "activation_checkpointing": False, "save_steps": 4,
           "logging_steps": 50}
SEVEN_B = 7_000_000_000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A pool of 64 texts and a tiny Llama base model (weights + tokenizer) beside it."""
    root = tmp_path_factory.mktemp("tiny")
    rng = random.Random(0)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))) for _ in range(64)]
    write_parquet(pd.DataFrame({"text": texts}), root / "pool.parquet", {})
    models.train_tokenizer(str(root / "pool.parquet"), str(root / "tokenizer"), vocab_size=200,
                           min_frequency=1)
    tok = models.load_tokenizer(str(root / "tokenizer"))
    net = models.build_model({"hidden_size": 16, "intermediate_size": 32,
                              "num_hidden_layers": 1, "num_attention_heads": 2,
                              "num_key_value_heads": 2, "max_position_embeddings": 64}, tok, 0)
    net.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    return root


def job(tiny: Path, out: Path, **changes) -> dict:
    """The keyword arguments of a fine-tuning job, as a rule passes them."""
    return {"model": str(tiny / "base"), "pool": str(tiny / "pool.parquet"), "out": str(out),
            "examples": 16, "previous": None, "trainer": TRAINER, "device": "cpu", "seed": 0,
            "gpus": 1, "mem_mb": 4000, "stage": "align", **changes}


@pytest.fixture(scope="module")
def in_process(tiny, tmp_path_factory) -> Path:
    """A one-process job run as a rule runs it on one GPU or the CPU: `run_step`, here."""
    work = tmp_path_factory.mktemp("in_process")
    threads = torch.get_num_threads()
    try:
        run_step("finetune", job(tiny, work / "out"), log=str(work / "job.log"), threads=1,
                 fork=False, gpus=1)
    finally:
        torch.set_num_threads(threads)  # the step set the job's own thread count
    return work


def metrics_lines(log: Path) -> list[dict]:
    return [json.loads(line[len(METRICS_PREFIX):]) for line in log.read_text().splitlines()
            if line.startswith(METRICS_PREFIX)]


# --- the launch command ------------------------------------------------------------------


def test_a_four_gpu_job_runs_accelerate_launch_with_its_arguments_in_a_file():
    kwargs = {"device": "cuda", "gpus": 4, "examples": 1000}
    command = launch.launch_command("finetune", kwargs, gpus=4, threads=2,
                                    args_file="logs/align/seed0.args.json")
    assert command == [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
        "--num_processes", "4", "--num_machines", "1", "--mixed_precision", "no",
        "--dynamo_backend", "no", "--main_process_port", "0",
        "--num_cpu_threads_per_process", "2",
        "-m", "elasticity", "finetune", "--threads", "2", "--args", "@logs/align/seed0.args.json"]
    # accelerate's own parser reads it as four processes of the module `elasticity`.
    from accelerate.commands.launch import launch_command_parser

    parsed = launch_command_parser().parse_args(command[3:])
    assert parsed.multi_gpu and parsed.num_processes == 4 and parsed.module
    assert parsed.training_script == "elasticity"
    assert parsed.training_script_args == ["finetune", "--threads", "2", "--args",
                                           "@logs/align/seed0.args.json"]
    assert launch.args_file_for("logs/align/seed0.log") == "logs/align/seed0.args.json"


def test_only_a_multi_process_step_on_cuda_is_launched(tiny, tmp_path):
    with pytest.raises(ValueError, match="step generate runs in one process"):
        launch.launch_command("generate", {"device": "cuda"}, gpus=2, threads=1,
                              args_file="a.json")
    with pytest.raises(ValueError, match="device is 'cpu'"):
        launch.launch_command("finetune", {"device": "cpu"}, gpus=2, threads=1,
                              args_file="a.json")
    # run_step refuses before it writes anything.
    log = tmp_path / "job.log"
    with pytest.raises(ValueError, match="several GPUs need device 'cuda'"):
        run_step("finetune", job(tiny, tmp_path / "out", gpus=2), log=str(log), gpus=2)
    assert not log.exists() and not (tmp_path / "job.args.json").exists()


def test_one_gpu_or_the_cpu_runs_in_one_process_as_before(in_process):
    log = in_process / "job.log"
    assert log.read_text().startswith("# by hand: python -m elasticity finetune --threads 1 ")
    assert not (in_process / "job.args.json").exists()
    [metrics] = metrics_lines(log)
    assert metrics["steps"] == 8 and metrics["examples"] == 16
    assert (in_process / "out" / "model.safetensors").exists()
    assert json.loads((in_process / "out" / "train_metrics.json").read_text())["parameters"] \
        == models.parameter_count(models.load_model(str(in_process / "out")))


def test_the_launched_path_reproduces_the_in_process_job(tiny, in_process, tmp_path):
    """`accelerate launch` (one CPU process, no DeepSpeed) of `python -m elasticity finetune
    --args @file`: the subprocess path a multi-GPU job takes, its arguments round-tripped
    through the file, ends with the same model as the job run in one process."""
    log = tmp_path / "job.log"
    args_file = launch.args_file_for(str(log))
    write_json(job(tiny, tmp_path / "out"), args_file)
    log.write_text("# launched\n")
    launch.run_launched(
        [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
         "-m", "elasticity", "finetune", "--threads", "1", "--args", f"@{args_file}"],
        str(log))
    assert log.read_text().startswith("# launched\n")  # appended to the log
    [metrics] = metrics_lines(log)
    assert metrics["steps"] == 8
    assert_same_weights(in_process / "out", tmp_path / "out")


def test_a_failed_launch_fails_with_the_end_of_its_log(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("# by hand: ...\n")
    command = [sys.executable, "-c",
               "import sys; print('\\n'.join(f'line {i}' for i in range(100))); "
               "sys.exit('ValueError: the pool holds 64')"]
    with pytest.raises(RuntimeError) as failed:
        launch.run_launched(command, str(log))
    message = str(failed.value)
    assert "exited with status 1" in message and str(log) in message
    assert message.rstrip().endswith("ValueError: the pool holds 64")
    assert "line 99" in message and "line 50" not in message  # the tail, not the whole log


# --- DeepSpeed ZeRO-3 ----------------------------------------------------------------------


def test_the_zero3_config_leaves_the_trainers_fields_to_the_trainer():
    config = json.loads(launch.ZERO3_CONFIG.read_text())
    assert config["zero_optimization"]["stage"] == 3
    # The Trainer saves the gathered weights with every checkpoint (a job's output is a model).
    assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu",
                "gradient_accumulation_steps", "gradient_clipping"):
        assert config[key] == "auto", key
    assert config["bf16"] == {"enabled": "auto"}  # the stage's sft.bf16 decides
    assert "optimizer" not in config and "scheduler" not in config  # the Trainer's own AdamW
    assert launch.deepspeed_fields(4) == {"deepspeed": str(launch.ZERO3_CONFIG)}
    assert launch.deepspeed_fields(1) == {}


def test_the_trainer_fills_the_zero3_config_from_the_stage_section(tmp_path, request):
    pytest.importorskip("deepspeed")
    from transformers.integrations.deepspeed import (
        is_deepspeed_zero3_enabled,
        unset_hf_deepspeed_config,
    )

    from elasticity.trainer_config import build

    section = dict(TRAINER, bf16=True, gradient_accumulation_steps=3)
    config = build("sft", section, output_dir=str(tmp_path), seed=0, device="cpu",
                   **launch.deepspeed_fields(4))
    # Later tests must not load their models under ZeRO-3 (the setting is process-wide).
    request.addfinalizer(unset_hf_deepspeed_config)
    filled = config.hf_deepspeed_config.config
    assert filled["train_micro_batch_size_per_gpu"] == 2
    assert filled["gradient_accumulation_steps"] == 3 and filled["bf16"]["enabled"] is True
    # Left for the model's hidden size when DeepSpeed starts; nothing else stays "auto".
    autos = {key for key, value in filled["zero_optimization"].items() if value == "auto"}
    assert autos == {"reduce_bucket_size", "stage3_prefetch_bucket_size",
                     "stage3_param_persistence_threshold"}
    assert is_deepspeed_zero3_enabled()  # from_pretrained after this partitions the weights


# DeepSpeed on the CPU needs its own communication set up first; on cuda, the trainer's
# arguments do it (TrainingArguments starts the processes' group through DeepSpeed).
CPU_DEEPSPEED_MAIN = """
import sys
import deepspeed
deepspeed.init_distributed(dist_backend="gloo")
from elasticity.__main__ import main
sys.exit(main())
"""


def launch_on_cpu(kwargs: dict, work: Path, name: str) -> Path:
    """A real two-process ZeRO-3 job on the CPU: the launch command with the CPU harness."""
    main = work / "cpu_deepspeed_main.py"
    main.write_text(CPU_DEEPSPEED_MAIN)
    log = work / f"{name}.log"
    args_file = launch.args_file_for(str(log))
    write_json(kwargs, args_file)
    command = launch.launch_command("finetune", dict(kwargs, device="cuda"), gpus=2, threads=1,
                                    args_file=args_file)
    start = command.index("-m", 3)
    launch.run_launched(command[:start] + [str(main)] + command[start + 2:], str(log))
    assert len(metrics_lines(log)) == 1  # only the first process reports
    return log


@pytest.mark.slow
def test_a_zero3_chain_link_on_two_processes_equals_the_direct_run(tiny, tmp_path,
                                                                   monkeypatch):
    """Two processes under DeepSpeed ZeRO-3 (CPU, gloo): the first process alone writes the
    output, with the gathered weights; a chain link continues the sharded optimizer state and
    ends where one run over all examples ends; the shards cannot be continued by one process."""
    pytest.importorskip("deepspeed")
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    first, link, direct = tmp_path / "first", tmp_path / "link", tmp_path / "direct"
    launch_on_cpu(job(tiny, first, gpus=2), tmp_path, "first")
    launch_on_cpu(job(tiny, link, gpus=2, examples=32, previous=str(first)), tmp_path, "link")
    launch_on_cpu(job(tiny, direct, gpus=2, examples=32), tmp_path, "direct")
    assert launch.checkpoint_processes(str(first)) == 2
    assert json.loads((link / "train_metrics.json").read_text())["steps"] == 8
    assert_same_weights(direct, link)
    with pytest.raises(ValueError, match="trained in 2 process"):
        finetuning.finetune(**job(tiny, tmp_path / "one", examples=32, previous=str(first)))


def test_a_link_continues_only_a_checkpoint_of_as_many_processes(in_process, tmp_path):
    one_process = str(in_process / "out")
    assert launch.checkpoint_processes(one_process) == 1
    launch.check_continuable(one_process, 1, "align")
    with pytest.raises(ValueError, match="trained in 1 process.*asks for 4 GPU.*Keep "
                                         r"align\.gpus the same"):
        launch.check_continuable(one_process, 4, "align")
    # DeepSpeed's layout: one optimizer shard per process in global_step<N>/.
    zero3 = tmp_path / "checkpoint-8"
    (zero3 / "global_step8").mkdir(parents=True)
    for rank in range(4):
        (zero3 / "global_step8" / f"bf16_zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").touch()
        (zero3 / "global_step8" / f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt").touch()
    assert launch.checkpoint_processes(str(zero3)) == 4
    launch.check_continuable(str(zero3), 4, "invert")
    with pytest.raises(ValueError, match="trained in 4 process"):
        launch.check_continuable(str(zero3), 8, "invert")


# --- the memory check ----------------------------------------------------------------------


def test_seven_billion_parameters_need_more_than_one_80gb_gpu():
    [problem] = launch.memory_problems(SEVEN_B, stage="align", device="cuda", gpus=1,
                                       mem_mb=None, gpu_bytes=80 * GIB)
    assert "align: full fine-tuning of 7.00B parameters on 1 GPU(s)" in problem
    assert "set align.gpus to at least 2" in problem and "smaller model" in problem
    assert launch.memory_problems(SEVEN_B, stage="align", device="cuda", gpus=8, mem_mb=None,
                                  gpu_bytes=80 * GIB) == []


def test_the_gpu_check_turns_at_the_estimates_boundary():
    # One GPU: 16 + 2 bytes per parameter and 1 GiB for the process (memory_estimate).
    largest = (80 * GIB - 1 * GIB) // 18
    assert launch.memory_estimate(largest, device="cuda", gpus=1)[1] <= 80 * GIB
    for parameters, fits in ((largest - 1000, True), (largest + 1000, False)):
        problems = launch.memory_problems(parameters, stage="invert", device="cuda", gpus=1,
                                          mem_mb=None, gpu_bytes=80 * GIB)
        assert (problems == []) is fits
    # More than a GPU's worth of working memory alone: no number of GPUs helps.
    [problem] = launch.memory_problems(50 * SEVEN_B, stage="invert", device="cuda", gpus=8,
                                       mem_mb=None, gpu_bytes=80 * GIB)
    assert "no number of these GPUs holds it" in problem


def test_a_job_that_asks_for_too_little_host_memory_fails_naming_mem_mb():
    need = math.ceil((12 * SEVEN_B + 8 * 1.5 * GIB) / MIB)  # ZeRO-3 on 8 GPUs
    [problem] = launch.memory_problems(SEVEN_B, stage="align", device="cuda", gpus=8,
                                       mem_mb=64000, gpu_bytes=80 * GIB)
    assert f"mem_mb=64000 of host memory but full fine-tuning of 7.00B parameters on 8 GPU(s) " \
           f"needs about {need} MB" in problem
    assert f"set-resources: {{align_sft: {{mem_mb: {need}}}}}" in problem
    assert launch.memory_problems(SEVEN_B, stage="align", device="cuda", gpus=8, mem_mb=need,
                                  gpu_bytes=80 * GIB) == []
    # On the CPU the job trains on the host: 18 bytes per parameter and the process.
    cpu_need = math.ceil((18 * 10**8 + 1.5 * GIB) / MIB)
    assert launch.memory_problems(10**8, stage="invert", device="cpu", gpus=1,
                                  mem_mb=cpu_need, gpu_bytes=None) == []
    [problem] = launch.memory_problems(10**8, stage="invert", device="cpu", gpus=1,
                                       mem_mb=cpu_need - 1, gpu_bytes=None)
    assert f"needs about {cpu_need} MB" in problem and "on the CPU" in problem


def test_a_cuda_job_without_its_gpus_fails_before_training():
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match=f"asks for {visible + 1} GPU.*sees {visible}"):
        launch.check_memory(10_000, stage="align", device="cuda", gpus=visible + 1,
                            mem_mb=None)


def test_finetune_checks_memory_before_it_loads_the_model(tiny, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"align: the job asks for mem_mb=1 of host memory"):
        finetuning.finetune(**job(tiny, out, mem_mb=1))
    assert not out.exists() and not scratch_dir(str(out)).exists()


# --- SLURM: the profile's flags, through the plugin's own code -----------------------------


def sbatch_flags(rule: str, resources: dict, threads: int) -> list[str]:
    """The sbatch flags the SLURM plugin builds for a job of `rule` with these rule resources
    under the profile: its default-resources, then the rule's, then its set-resources."""
    from snakemake.iocontainers import ResourceList
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    merged = {**PROFILE["default-resources"], **resources,
              **(PROFILE["set-resources"] or {}).get(rule, {})}
    job = SimpleNamespace(resources=ResourceList(fromdict=merged), threads=threads)
    params = {"run_uuid": "run", "slurm_logfile": "slurm.log", "comment_str": f"rule_{rule}",
              "account": "", "partition": f"-p {merged['slurm_partition']}", "workdir": "/w"}
    return shlex.split(get_submit_command(job, params) + set_gres_string(job))


def test_the_profile_asks_for_gpus_and_cpus_per_gpu_never_tasks():
    flags = sbatch_flags("align_sft", {"gpu": 4, "mem_mb": 150000, "runtime": 600}, threads=1)
    assert "--gpus=4" in flags and "--cpus-per-gpu=8" in flags
    assert flags[flags.index("--mem") + 1] == "150000"
    assert not [f for f in flags if re.match(r"--ntasks|--cpus-per-task", f)], flags
    # A CPU job of the same rule: its threads, one task.
    flags = sbatch_flags("align_sft", {"gpu": 0, "mem_mb": 2000, "runtime": 30}, threads=2)
    assert "--cpus-per-task=2" in flags and "--ntasks=1" in flags
    assert not [f for f in flags if f.startswith(("--gpus", "--cpus-per-gpu"))], flags
    # Why the profile never sets `tasks` or cpus_per_task: the plugin would start the job once
    # per GPU, and cpus_per_task would replace cpus_per_gpu.
    assert not {"tasks", "cpus_per_task"} & set(PROFILE["default-resources"])
    flags = sbatch_flags("align_sft", {"gpu": 4, "tasks": 1, "cpus_per_task": 2}, threads=1)
    assert "--ntasks-per-gpu=1" in flags and "--cpus-per-task=2" in flags
    # A site's GPU model (set-resources) goes into --gpus.
    flags = sbatch_flags("align_sft", {"gpu": 4, "gpu_model": "a100"}, threads=1)
    assert "--gpus=a100:4" in flags


def test_inside_the_job_one_task_gets_every_gpu():
    """The plugin's job step runs the job with `srun -n1` and these settings: one process (the
    launcher), which starts one trainer per GPU."""
    from snakemake.iocontainers import ResourceList
    from snakemake_executor_plugin_slurm_jobstep import get_cpu_setting, get_gpu_setting

    merged = {**PROFILE["default-resources"], "gpu": 4}
    job = SimpleNamespace(resources=ResourceList(fromdict=merged), threads=1)
    assert get_cpu_setting(job, "4") == "--cpus-per-gpu=8"
    assert get_gpu_setting(job) == "--gpus=4"


# --- the environments ---------------------------------------------------------------------


def pip_pins(env_file: Path) -> dict[str, str]:
    env = yaml.safe_load(env_file.read_text())
    [pip] = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    return dict(line.split("==") for line in pip if not line.startswith("--"))


def test_the_environments_mirror_requirements_txt():
    wanted = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().split()
                  if not line.startswith(("pytest", "ruff")))
    cpu, gpu = pip_pins(ROOT / "envs" / "elasticity.yaml"), pip_pins(ROOT / "envs" / "gpu.yaml")
    assert cpu.pop("torch") == wanted["torch"] + "+cpu"
    assert gpu.pop("torch").startswith(wanted.pop("torch") + "+cu")
    assert gpu.pop("deepspeed") == "0.19.8"
    assert cpu == wanted and gpu == wanted
