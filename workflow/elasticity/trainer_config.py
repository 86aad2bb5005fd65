"""Trainer sections of the config: the trainers' own field names, passed straight through.

A stage section (`align.sft`, `invert.dpo`, `pretraining.trainer`, ...) holds fields of the
trainer's config class (TRL's `SFTConfig`, `DPOConfig`, `KTOConfig`, `CPOConfig` for SimPO,
`RLOOConfig`; transformers' `TrainingArguments`). Validation checks every name against the class
itself; the workflow adds the fields it must own (where checkpoints go, the seed, the data order,
what makes an algorithm the one it is named after) and refuses them in the config.

Importing TRL costs seconds, and the config is validated at every workflow start: each class's
field names and defaults are read once per installed library version and kept in
`.snakemake/elasticity/` (see elasticity.checkcache), as is the outcome of constructing a section.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import importlib
import tempfile
import warnings
from functools import cache
from typing import Any

from elasticity.checkcache import cached_problems, cached_value, library_version

# Config key of a trainer section -> its config class (module, class, the library it ships in).
CLASSES = {
    "sft": ("trl", "SFTConfig", "trl"),
    "dpo": ("trl", "DPOConfig", "trl"),
    "kto": ("trl", "KTOConfig", "trl"),
    # SimPO is CPOTrainer's `simpo` loss without CPO's NLL term (FIXED); TRL keeps CPO among its
    # experimental trainers.
    "simpo": ("trl.experimental.cpo", "CPOConfig", "trl"),
    # TRL 1.16 has no PPO trainer; RLOO is its online RL with a reward function.
    "rloo": ("trl", "RLOOConfig", "trl"),
    "trainer": ("transformers", "TrainingArguments", "transformers"),
}
# The fine-tuning algorithms with an implementation (one rule per algorithm and stage).
ALGORITHMS = ("sft", "dpo", "kto", "simpo", "rloo")
# Fields the workflow sets itself: where resumable checkpoints go, the seed of the cell, the
# device of the stage, the data order (the seeded permutation, never reshuffled), the length of
# training (token budgets, example volumes), and how saving works (a link's output is its
# final checkpoint).
OWNED = {
    "output_dir": "the workflow keeps checkpoints next to each job's output",
    "overwrite_output_dir": "the workflow keeps checkpoints next to each job's output",
    "resume_from_checkpoint": "the workflow resumes killed jobs and continues chain links itself",
    "seed": "seeds come from grid.seed (fine-tuning) and pretraining.seed",
    "data_seed": "the data order is the seeded permutation of grid.seed",
    "use_cpu": "set the stage's `device` instead",
    "no_cuda": "set the stage's `device` instead",
    "train_sampling_strategy": "the data order is the seeded permutation, never reshuffled",
    "shuffle_dataset": "the data order is the seeded permutation, never reshuffled",
    "max_steps": "training length comes from the grid (token budgets, example volumes)",
    "save_strategy": "a job's output is its final checkpoint; set save_steps for resume points",
    "save_total_limit": "the workflow keeps only the newest resumable checkpoint",
    "save_only_model": "chain links continue the previous link's optimizer state",
    "dataset_text_field": "the pools' text column is the workflow's",
    "packing": "a chain link is a run of whole examples; packing would cut across links",
    "deepspeed": "set by the stage's gpus (> 1: resources/deepspeed/zero3.json)",
    "push_to_hub": "results stay on disk; nothing is uploaded",
    "hub_model_id": "results stay on disk; nothing is uploaded",
    "hub_strategy": "results stay on disk; nothing is uploaded",
}
OWNED_BY_PRETRAINING = {
    "num_train_epochs": "pretraining length comes from the token budgets",
}
_REFERENCE = ("the reference model is the stage's start model (the aligned model) for every "
              "chain link; a synced reference would differ between a link and a direct run")
# Fields owned for one kind of section only, on top of OWNED.
OWNED_BY_KIND = {
    "trainer": OWNED_BY_PRETRAINING,
    "dpo": {"sync_ref_model": _REFERENCE},
    "kto": {"sync_ref_model": _REFERENCE},
    "simpo": {
        "loss_type": "the simpo algorithm is CPOTrainer's `simpo` loss",
        "cpo_alpha": "SimPO has no NLL term; cpo_alpha > 0 would add CPO's NLL on the chosen "
                     "responses",
    },
    "rloo": {
        "reward_weights": "the reward is the workflow's one function: the stage's scorer, signed "
                          "by the stage's pool",
    },
}
# Values that make an algorithm the one it is named after.
FIXED = {"simpo": {"loss_type": "simpo", "cpo_alpha": 0.0}}
# Config rows (trainer examples) per grid example: KTO trains each pair as two unpaired rows.
ROWS_PER_EXAMPLE = {"kto": 2}
# Algorithms that sample their own completions: a cell is no prefix of a larger one's run.
ONLINE = ("rloo",)
# Values the workflow supplies unless a section sets them: quiet logs, no trackers.
DEFAULTS = {"report_to": "none", "disable_tqdm": True, "dataloader_num_workers": 0}


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def _config_class(kind: str):
    module, name, _ = CLASSES[kind]
    with warnings.catch_warnings():
        # CPO's place among TRL's experimental trainers is a known choice, not news for every job.
        warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
        return getattr(importlib.import_module(module), name)


@cache
def class_fields(kind: str) -> dict[str, Any]:
    """Field name -> default of a trainer config class, read once per library version."""
    module, name, library = CLASSES[kind]

    def read() -> dict[str, Any]:
        return {f.name: _jsonable(f.default) if f.default is not dataclasses.MISSING else None
                for f in dataclasses.fields(_config_class(kind)) if f.init}

    return cached_value("trainer-fields.json", [module, name, library_version(library)], read)


def with_class_defaults(kind: str, section: dict[str, Any]) -> dict[str, Any]:
    """A section completed with the class's own defaults (what the trainer will use)."""
    return {**class_fields(kind), **DEFAULTS, **section, **FIXED.get(kind, {})}


def effective_batch(section: dict[str, Any]) -> int:
    """Trainer examples (rows) per optimizer step on one device."""
    return int(section["per_device_train_batch_size"]) * int(
        section["gradient_accumulation_steps"])


def examples_per_step(algorithm: str, section: dict[str, Any]) -> int | None:
    """Grid examples (units of P and N) one optimizer step consumes on one device; None for an
    online algorithm, which samples its own completions, so every cell trains on its own."""
    if algorithm in ONLINE:
        return None
    rows = effective_batch(with_class_defaults(algorithm, section))
    return rows // ROWS_PER_EXAMPLE.get(algorithm, 1)


def section_problems(key: str, kind: str, section: dict[str, Any]) -> list[str]:
    """What is wrong with a trainer section, each naming its key: unknown fields (with the
    closest valid one), fields the workflow owns, values the class itself refuses."""
    known = class_fields(kind)
    owned = {**OWNED, **OWNED_BY_KIND.get(kind, {})}
    problems = []
    for name in section:
        if name in owned:
            problems.append(f"{key}.{name} is set by the workflow and cannot be configured "
                            f"({owned[name]})")
        elif name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(f"{key}.{name} is not a field of {CLASSES[kind][1]}{hint}")
    if kind == "kto" and not problems:
        problems = _kto_batch_problems(key, with_class_defaults(kind, section))
    return problems or _construct_problems(key, kind, section)


def _kto_batch_problems(key: str, section: dict[str, Any]) -> list[str]:
    """KTO trains a pair as two consecutive rows (desirable, undesirable): a step must take whole
    pairs, or a chain link would end inside one. KTOTrainer estimates the KL term of its losses
    (all but `apo_zero_unpaired`) from the other rows of a device batch: two at least."""
    problems = []
    rows = effective_batch(section)
    if rows % 2:
        problems.append(f"{key}: per_device_train_batch_size x gradient_accumulation_steps is "
                        f"{rows}; KTO trains each example as two rows (desirable, undesirable), "
                        "so a step must take an even number of rows")
    if (int(section["per_device_train_batch_size"]) < 2
            and section["loss_type"] != "apo_zero_unpaired"):
        problems.append(f"{key}.per_device_train_batch_size must be at least 2: KTOTrainer "
                        "estimates its KL term from the other rows of a batch")
    return problems


def _construct_problems(key: str, kind: str, section: dict[str, Any]) -> list[str]:
    """Let the class itself check the values (types, choices)."""
    module, name, library = CLASSES[kind]

    def construct() -> list[str]:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                build(kind, section, output_dir=tmp, seed=0, device="cpu")
            except Exception as err:  # the class's own message is the useful part
                return [f"{key}: {name} refuses these values: {type(err).__name__}: {err}"]
        return []

    return cached_problems("trainer-sections.json",
                           [module, name, library_version(library), section], construct)


def build(kind: str, section: dict[str, Any], *, output_dir: str, seed: int, device: str,
          **owned: Any):
    """The trainer's config object: workflow defaults, then the section, then owned fields."""
    cls = _config_class(kind)
    return cls(**{**DEFAULTS, **section, **FIXED.get(kind, {}), "output_dir": output_dir,
                  "seed": seed, "use_cpu": device == "cpu", **owned})
