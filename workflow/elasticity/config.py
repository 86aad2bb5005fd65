"""The workflow config, checked before any job runs: every problem names its key.

Three layers, cheapest first: the JSON schema (types, names that become paths), the names the
package implements (tasks, algorithms, scorers, experiments, trainer fields), then what the data
and the machine can honour (pool sizes, budgets, devices, model architectures).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from elasticity import data, grid, scoring
from elasticity.checkcache import cached_problems, library_version
from elasticity.resistance import resistance_problems
from elasticity.theory import theory_problems
from elasticity.trainer_config import (
    ALGORITHMS,
    effective_batch,
    section_problems,
    with_class_defaults,
)

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
# What each name can be: the implementations that exist.
TASKS = ("sentiment", "imdb", "safety")
# Tasks whose data is a hub dataset (`data.dataset`); `sentiment` reads VADER's sdist.
HUB_TASKS = ("imdb", "safety")
# Scorers that run without a model of their own; the others read `scoring.model` from the hub.
SELF_CONTAINED_SCORERS = ("vader",)
EXPERIMENTS = ("rebound", "algorithms", "reverse", "kl_table", "resistance", "theory",
               "threshold", "mitigation")
# Fewer pretraining budgets than this leave a change point nothing to be estimated from.
MIN_THRESHOLD_BUDGETS = 4
STAGE_DEVICES = ("pretraining", "align", "invert", "generation", "likelihood", "scoring")
# Stages that may train on several GPUs (`gpus`); pretraining runs on one device.
MULTI_GPU_STAGES = ("align", "invert")


class ConfigError(ValueError):
    """A config that cannot run; the message names the offending key."""


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(error) -> str:
    key = _key(error.absolute_path)
    if "propertyNames" in error.relative_schema_path:
        return (f"config key '{key}' has an entry named {error.instance!r}, which cannot be "
                f"part of a path: {_NAME_RULE}")
    if error.validator == "pattern" and error.schema.get("pattern") == _NAME_PATTERN:
        return f"config key '{key}' is {error.instance!r}, which cannot be part of a path: " \
               f"{_NAME_RULE}"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = f" under '{key}'" if error.absolute_path else ""
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return f"unknown config key(s) {extra}{where}{hint}"
    if error.validator == "type":
        return (f"config key '{key}' must be of type {error.validator_value}, "
                f"got {type(error.instance).__name__} {error.instance!r}")
    if error.validator == "required":
        return f"config key '{key}' is missing: {error.message}"
    return f"config key '{key}': {error.message}"


_SCHEMA = yaml.safe_load(SCHEMA.read_text())
_NAME_PATTERN = _SCHEMA["$defs"]["name"]["pattern"]
_NAME_RULE = ("letters, digits, '_', '.' and '-', starting with a letter or digit, at most 64 "
              "characters")


def validate(config: dict[str, Any], *, check_devices: bool = True) -> None:
    """Raise ConfigError listing every problem, each naming its key and what would be valid.

    check_devices: whether this machine runs the jobs (locally), so a `cuda` device must be
    present here; on a cluster the GPU request goes with each job instead.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(_SCHEMA)
    problems = [_describe(e) for e in sorted(validator.iter_errors(config),
                                             key=lambda e: list(map(str, e.absolute_path)))]
    if not problems:
        problems = _implemented(config)
    if not problems:
        problems = _consistency(config)
    if not problems:
        problems = _capacity(config) + _budgets(config)
    if not problems and check_devices:
        problems = _devices(config)
    if not problems:
        problems = [p for name, arch in config["models"].items()
                    if name in {m for m, _ in grid.bases(config)}
                    and not grid.is_pretrained(config, name)
                    for p in _architecture(config, name, arch)]
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


def _unknown(key: str, value: str, known) -> str:
    return f"{key} is {value!r}, which has no implementation; known: {', '.join(known)}"


def _implemented(config: dict[str, Any]) -> list[str]:
    """Every name that selects code selects code that exists; trainer fields are the class's."""
    problems = []
    if config["task"] not in TASKS:
        problems.append(_unknown("task", config["task"], TASKS))
    if config["scoring"]["scorer"] not in scoring.SCORERS:
        problems.append(_unknown("scoring.scorer", config["scoring"]["scorer"], scoring.SCORERS))
    for i, name in enumerate(config["experiments"]):
        if name not in EXPERIMENTS:
            problems.append(_unknown(f"experiments[{i}]", name, EXPERIMENTS))
    used = {}
    for key in ("grid.algorithm", "algorithms.algorithm"):
        section, field = key.split(".")
        for i, name in enumerate(config[section][field]):
            if name not in ALGORITHMS:
                problems.append(_unknown(f"{key}[{i}]", name, ALGORITHMS))
            elif {"grid": "rebound"}.get(section, section) in config["experiments"]:
                used.setdefault(name, f"{key} runs {name!r}")
    if "reverse" in config["experiments"]:
        used.setdefault(grid.FIRST_STAGE_ALGORITHM, "the reverse experiment's second stage is SFT")
    for stage in grid.STAGES:
        for name, section in config[stage].items():
            if name in ("device", "gpus"):
                continue
            if stage == "align" and name != grid.FIRST_STAGE_ALGORITHM:
                problems.append(f"align.{name}: the first stage is SFT for every algorithm (the "
                                f"paper's App. B.2: the algorithms differ in the second stage, "
                                f"`invert.{name}`); align holds `device`, `gpus` and `sft`")
            elif name not in ALGORITHMS or not isinstance(section, dict):
                problems.append(f"{stage}.{name}: a stage section holds `device`, `gpus` and one "
                                f"trainer section per algorithm ({', '.join(ALGORITHMS)}), "
                                f"whose keys are the trainer's own fields")
            else:
                problems += section_problems(f"{stage}.{name}", name, section)
    if grid.FIRST_STAGE_ALGORITHM not in config["align"]:
        problems.append("align.sft is missing: the first stage is SFT")
    for name, why in used.items():
        if name not in config["invert"]:
            problems.append(f"invert.{name} is missing: {why}")
    problems += section_problems("pretraining.trainer", "trainer",
                                 config["pretraining"]["trainer"])
    return problems


def _consistency(config: dict[str, Any]) -> list[str]:
    problems = []
    g, models = config["grid"], config["models"]
    named = [(f"grid.size_axis.model[{i}]", m) for i, m in enumerate(g["size_axis"]["model"])]
    if g["pretraining_axis"] is not None:
        named.append(("grid.pretraining_axis.model", g["pretraining_axis"]["model"]))
    for name in ("algorithms", "reverse", "kl_table"):
        if name in config["experiments"]:
            named += [(f"{name}.model[{i}]", m) for i, m in enumerate(config[name]["model"])]
    for name in ("resistance", "threshold", "mitigation"):
        if name in config["experiments"]:
            named.append((f"{name}.model", config[name]["model"]))
    for key, model in named:
        if model not in models:
            problems.append(f"{key} names '{model}' but 'models' has no such entry "
                            f"(known: {', '.join(sorted(models))})")
    if not problems:
        problems += _released(config) + _sources(config) + resistance_problems(config)
    problems += _volumes(config) + _open_questions(config)
    if "theory" in config["experiments"]:
        problems += theory_problems(config["theory"])
    # Values the grid lacks are ignored, so the default's seed subset survives a smaller grid;
    # a field left with none of its values would sample nothing.
    for name, values in config["generation"]["cells"].items():
        if not set(values) & set(g[name]):
            problems.append(f"generation.cells.{name} lists {sorted(values)}, none of which "
                            f"grid.{name} has (grid.{name}: {g[name]}): no cell would be "
                            f"sampled; list values of grid.{name}")
    low, high = config["data"]["prompt_words"]
    if low > high:
        problems.append(f"data.prompt_words must be [low, high] with low <= high, "
                        f"got {[low, high]}")
    return problems


def _volumes(config: dict[str, Any]) -> list[str]:
    """Every volume a pool can fill: the examples themselves and, for preference algorithms,
    as many rejected examples from the other pool (one pair per example)."""
    problems = []
    pools = config["data"]["pools"]
    other = {"positive": "negative", "negative": "positive"}
    for name in grid.GRID_EXPERIMENTS:
        if name not in config["experiments"]:
            continue
        section = "grid" if name == "rebound" else name
        axes = grid.experiment_grid(config, name)
        for axis in ("positive", "negative"):
            largest = max(axes[axis])
            if largest > pools[axis]:
                problems.append(f"{section}.{axis} asks for {largest} examples but the {axis} "
                                f"pool (data.pools.{axis}) holds {pools[axis]}")
        second = grid.ORDER_POOLS[axes["order"]]["invert"]
        paired = [a for a in axes["algorithm"] if a in grid.PAIRED]
        largest = max(axes[second])
        if paired and largest > pools[other[second]]:
            problems.append(f"{section}.{second} asks for {largest} preference pairs for "
                            f"{', '.join(paired)}, whose rejected responses come from the "
                            f"{other[second]} pool (data.pools.{other[second]}), which holds "
                            f"{pools[other[second]]}")
    if "kl_table" in config["experiments"] and not any(config["kl_table"]["negative"]):
        problems.append("kl_table.negative lists no volume above 0: no inverse fine-tuning to "
                        "read the table off")
    return problems


def _open_questions(config: dict[str, Any]) -> list[str]:
    """The threshold axis can place a change point; the mitigation axis names replay
    fractions a path can carry and has aligning examples to replay."""
    problems = []
    if "threshold" in config["experiments"]:
        block = config["threshold"]
        if len(block["pretrain_tokens"]) < MIN_THRESHOLD_BUDGETS:
            problems.append(f"threshold.pretrain_tokens lists {len(block['pretrain_tokens'])} "
                            f"budgets: a change point needs at least {MIN_THRESHOLD_BUDGETS} "
                            f"(the issue's axis: 8 or more, from barely trained to several "
                            f"epochs)")
        if 0 not in block["negative"] or sum(n > 0 for n in block["negative"]) < 2:
            problems.append(f"threshold.negative is {block['negative']}: the resistance "
                            f"statistic (early minus late rate of decline) needs N = 0 and at "
                            f"least 2 volumes above 0")
    if "mitigation" in config["experiments"]:
        block = config["mitigation"]
        for i, replay in enumerate(block["replay"]):
            if not re.fullmatch(r"\d+(\.\d+)?", f"{float(replay):g}"):
                problems.append(f"mitigation.replay[{i}] is {replay}: write a plain decimal "
                                f"fraction such as 0.5 (it becomes part of the cell's path)")
        if len(block["replay"]) < 2:
            problems.append(f"mitigation.replay is {block['replay']}: the claims against r need "
                            f"at least 2 fractions (e.g. [0, 0.5, 1])")
        if any(block["replay"]) and 0 in block["positive"]:
            problems.append("mitigation.positive lists 0: a cell aligned on no examples has "
                            "none to replay; list volumes above 0")
    return problems


def _released(config: dict[str, Any]) -> list[str]:
    """Each pretrained model's checkpoints name one source each and distinct budgets, and the
    axes take budgets a model has."""
    problems = []
    for name, model in config["models"].items():
        if model["source"] != "pretrained":
            continue
        seen = set()
        for i, entry in enumerate(model["checkpoints"]):
            key = f"models.{name}.checkpoints[{i}]"
            given = [k for k in ("id", "path", "gguf") if k in entry]
            if len(given) != 1:
                problems.append(f"{key} must name exactly one source: `id` (a hub repository, "
                                f"with `revision`), `path` (a local model directory) or `gguf` "
                                f"(a wheel's GGUF file); it has {given or 'none'}")
            elif ("revision" in entry) != (given == ["id"]):
                problems.append(f"{key}: `revision` goes with `id`, and `id` needs one (a "
                                f"commit, branch or tag of the hub repository)")
            elif given == ["path"] and not (Path(entry["path"]) / "config.json").is_file():
                problems.append(f"{key}.path is {entry['path']!r}, which is not a model "
                                f"directory (no config.json there)")
            if entry["pretrain_tokens"] in seen:
                problems.append(f"{key}.pretrain_tokens {entry['pretrain_tokens']} is listed "
                                f"twice for models.{name}")
            seen.add(entry["pretrain_tokens"])
    g = config["grid"]
    sized = [("grid.size_axis.model", m) for m in g["size_axis"]["model"]]
    for name in ("algorithms", "reverse", "kl_table"):
        if name in config["experiments"]:
            sized += [(f"{name}.model", m) for m in config[name]["model"]]
    if "resistance" in config["experiments"]:
        sized.append(("resistance.model", config["resistance"]["model"]))
    if "mitigation" in config["experiments"]:
        sized.append(("mitigation.model", config["mitigation"]["model"]))
    for key, model in dict.fromkeys(sized):
        tokens = grid.size_base(config, model)[1]
        if grid.is_pretrained(config, model) and not _has_release(config, model, tokens):
            problems.append(f"{key} lists the pretrained model '{model}', whose "
                            f"several checkpoints leave its place on the size axis open: set "
                            f"grid.size_axis.pretrain_tokens to one of "
                            f"{_released_tokens(config, model)}")
    axes = [("grid.pretraining_axis", g["pretraining_axis"])]
    if "threshold" in config["experiments"]:
        axes.append(("threshold", config["threshold"]))
    for key, axis in axes:
        if axis is None or not grid.is_pretrained(config, axis["model"]):
            continue
        missing = [t for t in axis["pretrain_tokens"]
                   if not _has_release(config, axis["model"], t)]
        if missing:
            problems.append(f"{key}.pretrain_tokens {missing} are not "
                            f"checkpoints of the pretrained model '{axis['model']}' "
                            f"(models.{axis['model']}.checkpoints has "
                            f"{_released_tokens(config, axis['model'])})")
    return problems


def _released_tokens(config: dict[str, Any], model: str) -> list[int]:
    return [c["pretrain_tokens"] for c in config["models"][model]["checkpoints"]]


def _has_release(config: dict[str, Any], model: str, tokens: int) -> bool:
    return tokens in _released_tokens(config, model)


def _sources(config: dict[str, Any]) -> list[str]:
    """The task's data source, the scorer's model and the GPU counts fit together."""
    problems = []
    task, dataset = config["task"], config["data"]["dataset"]
    if task in HUB_TASKS and dataset is None:
        problems.append(f"task {task!r} reads a hub dataset: set data.dataset to its {{id, "
                        f"revision, config, train_split, test_split}} (README \"Tasks\")")
    if task not in HUB_TASKS and dataset is not None:
        problems.append(f"data.dataset is set but task {task!r} reads data.source (VADER's "
                        f"sdist): set data.dataset to null, or the task to one of "
                        f"{', '.join(HUB_TASKS)}")
    scoring = config["scoring"]
    if scoring["scorer"] in SELF_CONTAINED_SCORERS and scoring["model"] is not None:
        problems.append(f"scoring.model is set but scorer {scoring['scorer']!r} has no model: "
                        f"set scoring.model to null")
    if scoring["scorer"] not in SELF_CONTAINED_SCORERS and scoring["model"] is None:
        problems.append(f"scorer {scoring['scorer']!r} needs scoring.model: {{id, revision}} of "
                        f"its hub repository (README \"Scorers\")")
    for stage in MULTI_GPU_STAGES:
        if config[stage]["gpus"] > 1 and config[stage]["device"] != "cuda":
            problems.append(f"{stage}.gpus is {config[stage]['gpus']} but {stage}.device is "
                            f"{config[stage]['device']!r}: several GPUs need device 'cuda'")
    return problems


def _capacity(config: dict[str, Any]) -> list[str]:
    """Pools and held-out sets the pinned source can fill, known before the download; and a
    cached download that is not the pinned file. (A hub dataset's counts are checked by its
    preparation step, the first job, before any training.)"""
    if config["task"] in HUB_TASKS:
        return data.resistance_source_problems(config["data"]["resistance"], hub=True)
    d, source = config["data"], config["data"]["source"]
    problems = []
    cached = Path(sdist_path(config))
    if cached.exists():
        try:
            data.verify_source(cached, source["sha256"])
        except ValueError as err:
            problems.append(str(err))
    facts = data.known_facts(source["sha256"])
    if facts is not None:
        problems += data.data_problems(facts, polarity_threshold=d["polarity_threshold"],
                                       pools=d["pools"], eval_prompts=d["eval_prompts"],
                                       pretrain_eval=d["pretrain_eval"],
                                       heldout=d["heldout"], resistance=d["resistance"])
    return problems


def _budgets(config: dict[str, Any]) -> list[str]:
    """Pretraining budgets of one model that round to the same optimizer step would be the
    same checkpoint under two names."""
    section = with_class_defaults("trainer", config["pretraining"]["trainer"])
    per_step = effective_batch(section) * config["pretraining"]["seq_len"]
    problems = []
    by_model: dict[str, dict[int, int]] = {}
    for model, tokens in grid.checkpoints(config):
        if grid.is_pretrained(config, model):
            continue
        steps = math.ceil(tokens / per_step)
        other = by_model.setdefault(model, {}).setdefault(steps, tokens)
        if other != tokens:
            problems.append(f"pretraining budgets {other} and {tokens} of model '{model}' "
                            f"(grid.size_axis / grid.pretraining_axis / threshold) are "
                            f"both {steps} "
                            f"optimizer steps of {per_step} tokens: use budgets at least one "
                            f"step apart")
    return problems


def check_devices(config: dict[str, Any], stages: Iterable[str] = STAGE_DEVICES) -> None:
    """Raise ConfigError unless this machine has every device the config's `stages` ask for
    (the stages of a run whose jobs run here)."""
    problems = _devices(config, stages)
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


def _devices(config: dict[str, Any], stages: Iterable[str] = STAGE_DEVICES) -> list[str]:
    wanted = [s for s in STAGE_DEVICES if s in stages and config[s]["device"] == "cuda"]
    why = _no_cuda_reason() if wanted else None
    return [f"{s}.device is 'cuda' but {why} on this machine, which runs the jobs (set it to "
            f"'cpu', or run on a cluster profile whose jobs get a GPU)" for s in wanted if why]


def _no_cuda_reason() -> str | None:
    """Why torch cannot use a GPU here, or None. The clear cases are read without importing
    torch (seconds): the build torch records in its version file, and CUDA_VISIBLE_DEVICES
    hiding every device; otherwise torch itself is asked."""
    import ast
    import importlib.util
    import os

    spec = importlib.util.find_spec("torch")
    if spec is None or spec.origin is None:
        return "torch is not installed"
    version_file = Path(spec.origin).parent / "version.py"
    built = {t.target.id: t.value for t in ast.parse(version_file.read_text()).body
             if isinstance(t, ast.AnnAssign) and isinstance(t.target, ast.Name)}
    cuda = built.get("cuda")
    if isinstance(cuda, ast.Constant) and cuda.value is None:
        return "this torch was built without CUDA"
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return "CUDA_VISIBLE_DEVICES hides every GPU"
    import torch

    return None if torch.cuda.is_available() else "torch sees no usable GPU"


def _architecture(config: dict[str, Any], name: str, arch: dict[str, Any]) -> list[str]:
    """Ask the model class itself whether it can be built and run (e.g. RoPE needs an even head
    dimension); remembered per architecture and transformers version."""
    from elasticity.models import architecture_error

    full = model_architecture(config, name)

    def check() -> list[str]:
        error = architecture_error(full, config["tokenizer"]["vocab_size"])
        return [] if error is None else [f"models.{name} {arch} cannot be built: {error}"]

    return cached_problems("architectures.json", [full, config["tokenizer"]["vocab_size"],
                                                  library_version("transformers")], check)


def model_architecture(config: dict[str, Any], name: str) -> dict[str, Any]:
    """The LlamaConfig fields of a model: the config's, plus a context of twice the
    pretraining sequence length and tied embeddings."""
    fields = {k: v for k, v in config["models"][name].items() if k != "source"}
    return dict(fields, max_position_embeddings=2 * config["pretraining"]["seq_len"],
                tie_word_embeddings=True)


def sdist_path(config: dict[str, Any]) -> str:
    source = config["data"]["source"]
    return f"downloads/{source['package']}-{source['version']}.tar.gz"
