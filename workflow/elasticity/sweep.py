"""`python -m elasticity sweep`: which fine-tuning hyperparameters align a model without
collapsing it, tried on a small grid before the experiment runs.

Hyperparameters do not transfer between model sizes: the paper fine-tunes 7B models at a
learning rate of 1e-5, the micro-world's models needed 1e-3. A sweep takes one stage's trainer
section from the config (`align.sft` or `invert.sft`), varies the fields given with `--set`
over every combination and seed, and fine-tunes the stage's start model (the base model, or for
`invert` the aligned model of the grid's largest P at seed 0) on `--volume` examples of the
stage's pool at each point. Each point is one submitit job: a SLURM job array on a cluster, the
local executor elsewhere. A job measures what tells "aligns without collapsing", with the
likelihood step's own code: the preference margin on the held-out pools (does it move towards
the stage's pool?) and bits per token on held-out pretraining text (a large rise is a
collapse), each against the start model, evaluated as one more job of the array.

Sweeps run outside the Snakemake DAG, by design: their models are no cells of the grid and no
result depends on them; they answer a question about the config before the grid runs. They
read the workflow's data splits and start model, which Snakemake builds first.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from elasticity import grid
from elasticity.config import ConfigError, validate
from elasticity.configfile import ConfigFileError, load_yaml, merge
from elasticity.io import atomic_path, read_json, write_parquet
from elasticity.likelihood import COMPRESSION_SETS
from elasticity.provenance import code_version, config_hash
from elasticity.trainer_config import section_problems

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"
# The trainer the sweep runs: elasticity.finetuning's SFT, configured by `<stage>.sft`.
ALGORITHM = "sft"
# The way each stage moves the preference margin: alignment towards positive text, inverse
# fine-tuning towards negative text.
DIRECTION = {"align": 1, "invert": -1}
# What one job asks a cluster for: a fine-tuning job plus a likelihood job of the workflow
# (STEP_COST in workflow/rules/resources.smk): base MB, bytes per parameter, base minutes,
# minutes per 10^8 parameters.
JOB_COST = (2000, 20, 40, 40)
# Seconds between looks at the jobs' states (SLURM's accounting is asked at most this often).
POLL_SECONDS = {"local": 1, "slurm": 15}
START = "start"


class SweepError(ValueError):
    """A sweep that cannot run; the message says what to change."""


@dataclass(frozen=True)
class Task:
    """One job of the array: a point of the sweep at one seed, or (trainer None) the start
    model itself, evaluated as the points are."""

    name: str
    fields: dict[str, Any]
    seed: int
    trainer: dict[str, Any] | None
    start: str
    pool: str
    volume: int
    device: str
    threads: int
    model_dir: str
    likelihood_out: str
    sets: dict[str, str]
    prompts: str
    max_tokens: int
    batch_size: int
    config_hash: str


@dataclass(frozen=True)
class Sweep:
    stage: str
    model: str
    pretrain_tokens: int
    volume: int
    start: str
    tasks: list[Task]
    resources: dict[str, Any]


# --- the command line -----------------------------------------------------------------------


def parse_set(text: str) -> tuple[str, list[Any]]:
    """`field=v1,v2,...` -> (field, values). A value is read as JSON (numbers such as 1e-4,
    true/false), else kept as a string (e.g. `lr_scheduler_type=constant,cosine`)."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name or not values.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not FIELD=VALUE[,VALUE...] (e.g. learning_rate=1e-4,1e-3)")
    parsed = []
    for raw in values.split(","):
        raw = raw.strip()
        if not raw:
            raise argparse.ArgumentTypeError(f"{text!r} has an empty value: separate values "
                                             f"with single commas")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if value in parsed:
            raise argparse.ArgumentTypeError(f"{text!r} lists {raw} twice")
        parsed.append(value)
    return name, parsed


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of seeds (e.g. 0,1,2)") from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: seeds must be distinct and >= 0")
    return seeds


def choose_executor(kind: str) -> str:
    """`auto`: a SLURM job array where `sbatch` exists, else jobs on this machine."""
    if kind == "auto":
        return "slurm" if shutil.which("sbatch") else "local"
    return kind


def load_config(configfile: str | None, *, check_devices: bool) -> dict[str, Any]:
    """The config as the workflow reads it: the default, overridden by `configfile`."""
    config = load_yaml(DEFAULT_CONFIG)
    if configfile is not None:
        config = merge(config, load_yaml(configfile))
    validate(config, check_devices=check_devices)
    return config


# --- the plan -------------------------------------------------------------------------------


def points(sets: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the swept values, in the order given."""
    return [dict(zip(sets, values, strict=True)) for values in itertools.product(*sets.values())]


def point_name(fields: dict[str, Any]) -> str:
    return "__".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in fields.items())


def _start_cell(config: dict[str, Any], stage: str, model: str, tokens: int) -> grid.Cell:
    base = grid.Cell(config["task"], model, tokens, grid.BASE, 0, 0, 0)
    if stage == "align":
        return base
    return grid.Cell(config["task"], model, tokens, ALGORITHM, max(config["grid"]["positive"]),
                     0, 0)


def _pretrain_tokens(config: dict[str, Any], model: str, tokens: int | None) -> int:
    if model not in config["models"]:
        raise SweepError(f"--model {model!r} is not in the config's models (known: "
                         f"{', '.join(sorted(config['models']))})")
    saved = sorted(t for m, t in grid.checkpoints(config) if m == model)
    if not saved:
        raise SweepError(f"--model {model!r} is on no axis of the grid (grid.size_axis, "
                         f"grid.pretraining_axis), so the workflow builds no base model of it: "
                         f"add it to an axis")
    if tokens is None:
        return max(t for m, t in grid.bases(config) if m == model)
    if tokens not in saved:
        raise SweepError(f"--pretrain-tokens {tokens}: the workflow saves models/base/{model} "
                         f"at {', '.join(map(str, saved))} tokens only")
    return tokens


def missing_inputs(root: Path, needed: list[str], configfile: str | None) -> str | None:
    """None when every input exists under `root` (results/<name>), else what to run first."""
    missing = [path for path in needed if not (root / path).exists()]
    if not missing:
        return None
    flag = f" --configfile {configfile}" if configfile else ""
    return (f"missing under {root}/: {', '.join(missing)} (the sweep's inputs, which the "
            f"workflow builds). Build them first, from the workflow's directory:\n"
            f"  snakemake --profile profiles/local{flag} "
            f"{' '.join(str(root / path) for path in missing)}\n"
            f"(on a cluster: --profile slurm)")


def job_resources(parameters: int, device: str, threads: int) -> dict[str, Any]:
    """What each job of the array asks for, scaled by the model's parameter count."""
    base_mb, per_parameter, base_minutes, per_1e8 = JOB_COST
    asked = {"mem_gb": math.ceil((base_mb + per_parameter * parameters / 1e6) / 1024),
             "timeout_min": int(base_minutes + per_1e8 * parameters / 1e8),
             "cpus_per_task": threads}
    # A CPU job asks for no GPU at all: some sites refuse an explicit zero.
    return {**asked, "gpus_per_node": 1} if device == "cuda" else asked


def _parameters(model_dir: Path) -> int:
    """The parameter count a base (base_metrics.json) or an aligned model
    (train_metrics.json) records."""
    for name in ("base_metrics.json", "train_metrics.json"):
        if (model_dir / name).exists():
            return int(read_json(model_dir / name)["parameters"])
    raise SweepError(f"{model_dir} holds neither base_metrics.json nor train_metrics.json: "
                     f"rebuild it with snakemake")


def plan(config: dict[str, Any], *, stage: str, model: str, pretrain_tokens: int | None,
         volume: int | None, sets: dict[str, list[Any]], seeds: list[int], out: Path,
         configfile: str | None = None) -> Sweep:
    """Check the sweep against the config and the workflow's files (results/<name>/ of the
    working directory); its jobs."""
    section = config[stage][ALGORITHM]
    problems = [p for fields in points(sets)
                for p in section_problems(f"{stage}.{ALGORITHM}", ALGORITHM,
                                          {**section, **fields})]
    if problems:
        raise SweepError("invalid --set:\n  - " + "\n  - ".join(dict.fromkeys(problems)))
    if config[stage]["gpus"] != 1:
        raise SweepError(f"{stage}.gpus is {config[stage]['gpus']}: a sweep trains each point "
                         f"in one process on at most one GPU; sweep with {stage}.gpus: 1")
    tokens = _pretrain_tokens(config, model, pretrain_tokens)
    axis = grid.STAGES[stage]
    if volume is None:
        volume = max(config["grid"][axis])
    root = Path("results") / config["name"]
    start = _start_cell(config, stage, model, tokens)
    split_files = {split: grid.SPLIT.format(split=split)
                   for split in (axis, "prompts", *COMPRESSION_SETS.values())}
    needed = [*split_files.values(), start.model_path()]
    problem = missing_inputs(root, needed, configfile)
    if problem:
        raise SweepError(problem)
    import pyarrow.parquet as pq

    root = root.resolve()
    pool = root / split_files[axis]
    held = pq.ParquetFile(pool).metadata.num_rows
    if not 0 < volume <= held:
        raise SweepError(f"--volume {volume}: the {axis} pool ({pool}) holds {held} examples; "
                         f"give 1 to {held}")
    start_dir = root / start.model_path()
    device = config[stage]["device"]
    threads = config["compute"]["threads"]
    upstream = grid.depends_on(config, start, "likelihood")
    shared = dict(start=str(start_dir), pool=str(pool), volume=volume, device=device,
                  threads=threads,
                  sets={name: str(root / split_files[split])
                        for name, split in COMPRESSION_SETS.items()},
                  prompts=str(root / split_files["prompts"]),
                  max_tokens=config["pretraining"]["seq_len"],
                  batch_size=config["likelihood"]["batch_size"])
    out = out.resolve()

    def task(name: str, fields: dict[str, Any], seed: int, trainer: dict[str, Any] | None):
        run = {"stage": stage, "trainer": trainer, "volume": volume, "seed": seed,
               "device": device}
        return Task(name=name, fields=fields, seed=seed, trainer=trainer,
                    model_dir=str(out / "models" / f"{name}__seed={seed}"),
                    likelihood_out=str(out / "likelihood" / f"{name}__seed={seed}.parquet"),
                    config_hash=config_hash({"start": upstream, "sweep": run}), **shared)

    tasks = [task(START, {}, seeds[0], None)]
    tasks += [task(point_name(fields), fields, seed, {**section, **fields})
              for fields in points(sets) for seed in seeds]
    return Sweep(stage=stage, model=model, pretrain_tokens=tokens, volume=volume,
                 start=str(start_dir), tasks=tasks,
                 resources=job_resources(_parameters(start_dir), device, threads))


# --- a job ----------------------------------------------------------------------------------


def run_task(task: Task) -> dict[str, Any]:
    """One job: fine-tune the start model with the point's trainer fields (the start model's
    own job trains nothing), then the likelihood step's metrics against the start model."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # everything is read from local directories
    import torch

    from elasticity.finetuning import finetune
    from elasticity.likelihood import likelihood

    torch.set_num_threads(task.threads)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    row: dict[str, Any] = {}
    model = task.start
    if task.trainer is not None:
        trained = finetune(task.start, task.pool, task.model_dir, examples=task.volume,
                           previous=None, trainer=task.trainer, device=task.device,
                           seed=task.seed)
        model = task.model_dir
        row = {"train_loss": trained["train_loss"], "train_steps": trained["steps"],
               "train_tokens": trained["train_tokens"],
               "train_seconds": trained["wall_seconds"]}
    metrics = likelihood(model, task.start, task.likelihood_out, sets=task.sets,
                         prompts=task.prompts, cell={"point": task.name, "seed": task.seed},
                         max_tokens=task.max_tokens, batch_size=task.batch_size,
                         device=task.device, config_hash=task.config_hash)
    return {**row, **metrics}


# --- submission -----------------------------------------------------------------------------


def submit(sweep: Sweep, executor: str, folder: Path, partition: str | None) -> list:
    """One job per task: a SLURM job array, or processes on this machine."""
    import submitit

    ex = submitit.AutoExecutor(folder=str(folder), cluster=executor)
    params: dict[str, Any] = {"name": f"sweep-{sweep.stage}-{sweep.model}", **sweep.resources}
    if partition:
        params["slurm_partition"] = partition
    ex.update_parameters(**params)
    jobs = ex.map_array(run_task, sweep.tasks)
    log.info("submitted %d jobs (%s executor; %s each); logs in %s", len(jobs), executor,
             ", ".join(f"{k} {v}" for k, v in sweep.resources.items()), folder)
    return jobs


def wait(jobs: list, poll_seconds: float) -> None:
    """Until every job is done, log their states whenever they change."""
    last = None
    try:
        while True:
            done = [job.done() for job in jobs]
            states = Counter(job.state for job in jobs)
            line = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
            if line != last:
                log.info("jobs: %s (%d of %d done)", line, sum(done), len(jobs))
                last = line
            if all(done):
                return
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        for job in jobs:
            job.cancel(check=False)
        raise


def outcome(job) -> tuple[dict[str, Any] | None, str | None]:
    """A finished job's row, or why it has none (naming its log)."""
    from submitit.core.utils import FailedJobError

    error = job.exception()
    if error is None:
        return job.result(), None
    if isinstance(error, FailedJobError):
        # The message holds the job's traceback between dashed lines; its last line is the error.
        why = str(error).split("-" * 22 + "\n")[1].strip().splitlines()[-1]
    else:
        why = f"no result (state {job.state}: killed, out of memory or out of time?)"
    return None, f"job {job.job_id} failed: {why}; its log: {job.paths.stderr}"


# --- the table and the plot ------------------------------------------------------------------


def verdict(margin_change: float, pretrain_rise: float, *, direction: int,
            min_margin_change: float, max_pretrain_rise: float) -> str:
    """`collapses`: held-out pretraining text's bits per token rose by more than the fraction
    `max_pretrain_rise` (or became undefined); `aligns`: otherwise, if the margin moved the
    stage's way by at least `min_margin_change` nats per token; else `no effect`."""
    if not math.isfinite(pretrain_rise) or pretrain_rise > max_pretrain_rise:
        return "collapses"
    if direction * margin_change >= min_margin_change:
        return "aligns"
    return "no effect"


def table(sweep: Sweep, start: dict[str, Any], rows: list[tuple[Task, dict[str, Any]]], *,
          min_margin_change: float, max_pretrain_rise: float) -> pd.DataFrame:
    """One row per point and seed: its trainer fields, metrics, changes against the start
    model and verdict."""
    out = []
    for task, result in rows:
        metrics = {("kl_to_start" if k == "kl_to_base" else k): v for k, v in result.items()}
        margin_change = metrics["margin"] - start["margin"]
        bits_change = metrics["bits_per_token_pretrain"] - start["bits_per_token_pretrain"]
        rise = bits_change / start["bits_per_token_pretrain"]
        out.append({
            "point": task.name, **task.fields, "seed": task.seed, "stage": sweep.stage,
            "model": sweep.model, "pretrain_tokens": sweep.pretrain_tokens,
            "volume": sweep.volume, **metrics,
            "start_margin": start["margin"],
            "start_bits_per_token_pretrain": start["bits_per_token_pretrain"],
            "margin_change": margin_change, "bits_per_token_pretrain_change": bits_change,
            "pretrain_rise": rise,
            "verdict": verdict(margin_change, rise, direction=DIRECTION[sweep.stage],
                               min_margin_change=min_margin_change,
                               max_pretrain_rise=max_pretrain_rise),
            "config_hash": task.config_hash, "code_version": code_version(),
            "model_dir": task.model_dir,
        })
    return pd.DataFrame(out)


def summary(frame: pd.DataFrame) -> str:
    """The table printed at the end: a line per point, means over seeds."""
    by = frame.groupby("point", sort=False)
    short = pd.DataFrame({
        "seeds": by["seed"].count(),
        "margin change": by["margin_change"].mean().map("{:+.4f}".format),
        "pretrain bits/token change": by["pretrain_rise"].mean().map("{:+.1%}".format),
        "train loss": by["train_loss"].mean().map("{:.3f}".format),
        "verdicts": by["verdict"].agg(lambda v: ", ".join(f"{n} {k}" for k, n in
                                                          Counter(v).most_common())),
    })
    return short.to_string()


VERDICT_COLOURS = {"aligns": "tab:green", "collapses": "tab:red", "no effect": "tab:gray"}


def plot(frame: pd.DataFrame, fields: list[str], out: Path, *, stage: str,
         min_margin_change: float, max_pretrain_rise: float) -> None:
    """Margin change against the rise of pretraining bits per token: a dot per seed coloured
    by its verdict, a labelled circle per point at its mean over seeds with bars from its
    lowest to its highest seed; dashed: the verdicts' thresholds. Both axes are linear up to
    their threshold and logarithmic beyond, so that a collapse does not flatten the rest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for _, rows in frame.groupby("point", sort=False):
        x, y = rows["margin_change"], 100 * rows["pretrain_rise"]
        ax.scatter(x, y, s=22, zorder=3, c=[VERDICT_COLOURS[v] for v in rows["verdict"]])
        mx, my = x.mean(), y.mean()
        ax.errorbar(mx, my, xerr=[[mx - x.min()], [x.max() - mx]],
                    yerr=[[my - y.min()], [y.max() - my]], fmt="o", color="black",
                    markerfacecolor="none", markersize=8, linewidth=0.8, capsize=2, zorder=4)
        label = " / ".join(f"{v:g}" if isinstance(v, float) else str(v)
                           for v in rows.iloc[0][fields])
        ax.annotate(label, (mx, my), xytext=(6, 5), textcoords="offset points", fontsize=7)
    ax.scatter([0], [0], marker="x", color="black", s=40, zorder=4)
    ax.set_xscale("symlog", linthresh=min_margin_change, linscale=2)
    ax.set_yscale("symlog", linthresh=100 * max_pretrain_rise, linscale=2)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.axvline(DIRECTION[stage] * min_margin_change, color="tab:green", linestyle="--",
               linewidth=1)
    ax.axhline(100 * max_pretrain_rise, color="tab:red", linestyle="--", linewidth=1)
    low, high = ax.get_ylim()
    ax.set_ylim(min(low, -100 * max_pretrain_rise), max(high, 200 * max_pretrain_rise))
    ax.axhspan(100 * max_pretrain_rise, ax.get_ylim()[1], color="tab:red", alpha=0.07)
    goal = "rise" if DIRECTION[stage] > 0 else "fall"
    ax.set_xlabel(f"preference margin change vs the start model (nats/token; {stage} should "
                  f"make it {goal})")
    ax.set_ylabel("held-out pretraining bits/token\nvs the start model (%)")
    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=v)
               for v, c in VERDICT_COLOURS.items()]
    handles.append(Line2D([], [], marker="x", linestyle="", color="black", label="start model"))
    ax.legend(handles=handles, fontsize=7, loc="best")
    ax.set_title(f"{stage} sweep of {frame['model'].iloc[0]} @ {frame['pretrain_tokens'].iloc[0]}"
                 f" tokens, {frame['volume'].iloc[0]} examples\nlabels: {' / '.join(fields)}; "
                 f"bars: range over {frame['seed'].nunique()} seed(s)", fontsize=9)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


# --- main -----------------------------------------------------------------------------------


def run(sweep: Sweep, *, executor: str, out: Path, partition: str | None,
        min_margin_change: float, max_pretrain_rise: float,
        params: dict[str, Any]) -> list[str]:
    """Submit, wait, write sweep.parquet and sweep.png; return the failed jobs' messages."""
    jobs = submit(sweep, executor, out / "jobs", partition)
    wait(jobs, POLL_SECONDS[executor])
    rows, failures = [], []
    for task, job in zip(sweep.tasks, jobs, strict=True):
        result, problem = outcome(job)
        if problem:
            failures.append(f"{task.name} (seed {task.seed}): {problem}")
        else:
            rows.append((task, result))
    if not rows or rows[0][0].name != START:
        raise SweepError("the start model's evaluation failed, so no point can be compared "
                         "with it:\n  " + "\n  ".join(failures))
    (_, start), points_done = rows[0], rows[1:]
    if points_done:
        frame = table(sweep, start, points_done, min_margin_change=min_margin_change,
                      max_pretrain_rise=max_pretrain_rise)
        write_parquet(frame, out / "sweep.parquet",
                      {**params, "start": sweep.start, "start_metrics": start})
        fields = list(sweep.tasks[1].fields)
        plot(frame, fields, out / "sweep.png", stage=sweep.stage,
             min_margin_change=min_margin_change, max_pretrain_rise=max_pretrain_rise)
        print(f"\n{sweep.stage} sweep of {sweep.model} @ {sweep.pretrain_tokens} tokens, "
              f"{sweep.volume} examples; start model: margin {start['margin']:+.4f}, "
              f"pretrain bits/token {start['bits_per_token_pretrain']:.3f}\n")
        print(summary(frame))
        print(f"\nwrote {out / 'sweep.parquet'} and {out / 'sweep.png'}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m elasticity sweep", description=__doc__.split("\n\n")[0],
        epilog="Writes OUT/sweep.parquet, OUT/sweep.png, the models (OUT/models/) and the "
               "jobs' logs (OUT/jobs/). Reads results/<name>/ of the current directory.")
    parser.add_argument("--configfile", help="your config (overrides config.yaml, as with "
                                             "snakemake --configfile)")
    parser.add_argument("--stage", required=True, choices=sorted(grid.STAGES))
    parser.add_argument("--model", required=True, help="a model of the config's grid")
    parser.add_argument("--pretrain-tokens", type=int,
                        help="its checkpoint (default: the largest of the grid's bases)")
    parser.add_argument("--volume", type=int, help="examples of the stage's pool to train on "
                                                   "(default: the grid's largest P or N)")
    parser.add_argument("--set", dest="sets", metavar="FIELD=V1,V2", action="append",
                        type=parse_set, required=True,
                        help="a trainer field of the stage and its values; repeat for more "
                             "fields (every combination runs)")
    parser.add_argument("--seeds", type=parse_seeds, default=[0], help="e.g. 0,1,2 (default 0)")
    parser.add_argument("--executor", choices=("auto", "local", "slurm"), default="auto",
                        help="auto: slurm where sbatch exists, else local")
    parser.add_argument("--slurm-partition", help="the SLURM partition (slurm only)")
    parser.add_argument("--min-margin-change", type=float, default=0.02,
                        help="`aligns` needs the margin to move the stage's way by at least "
                             "this many nats/token (default 0.02)")
    parser.add_argument("--max-pretrain-rise", type=float, default=0.05,
                        help="`collapses` when held-out pretraining bits/token rise by more "
                             "than this fraction (default 0.05, i.e. 5%%)")
    parser.add_argument("--out", required=True, type=Path, help="e.g. sweeps/lr-micro-m")
    ns = parser.parse_args(argv)
    sets: dict[str, list[Any]] = {}
    for name, values in ns.sets:
        if name in sets:
            parser.error(f"argument --set: {name} is given twice; list its values once "
                         f"({name}=V1,V2)")
        sets[name] = values
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("submitit").propagate = False  # it prints its warnings itself
    executor = choose_executor(ns.executor)
    try:
        config = load_config(ns.configfile, check_devices=executor == "local")
        sweep = plan(config, stage=ns.stage, model=ns.model, pretrain_tokens=ns.pretrain_tokens,
                     volume=ns.volume, sets=sets, seeds=ns.seeds, out=ns.out,
                     configfile=ns.configfile)
        params = {"configfile": ns.configfile, "stage": ns.stage, "model": ns.model,
                  "pretrain_tokens": sweep.pretrain_tokens, "volume": sweep.volume,
                  "sets": sets, "seeds": ns.seeds, "executor": executor,
                  "min_margin_change": ns.min_margin_change,
                  "max_pretrain_rise": ns.max_pretrain_rise}
        failures = run(sweep, executor=executor, out=ns.out.resolve(),
                       partition=ns.slurm_partition, min_margin_change=ns.min_margin_change,
                       max_pretrain_rise=ns.max_pretrain_rise, params=params)
    except (SweepError, ConfigError, ConfigFileError, OSError) as err:
        print(f"sweep: {err}", file=sys.stderr)
        return 2
    for failure in failures:
        print(f"sweep: point {failure}", file=sys.stderr)
    return 1 if failures else 0
