"""The grid, defined once: what a cell is, where its files live, and which models it needs.

A cell's field names are at the same time the rules' wildcards, the results' columns and the
config's names (`grid.positive`, `grid.seed`, ...). This module is the only code that knows the
shape of the DAG: a base checkpoint, aligned on P positive examples, inverse-fine-tuned on N
negative examples; and which links of a training chain continue which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# The algorithm of a base-model cell, which is neither aligned nor inverted.
BASE = "none"

# Path templates relative to results/<name>/; placeholders are Cell fields (and the split).
SPLIT = "data/{split}.parquet"
BASE_MODEL = "models/base/{model}/pt{pretrain_tokens}"
ALIGNED_MODEL = ("models/{task}/{algorithm}/{model}/pt{pretrain_tokens}/pos{positive}/"
                 "seed{seed}/aligned")
INVERTED_MODEL = ("models/{task}/{algorithm}/{model}/pt{pretrain_tokens}/pos{positive}/"
                  "neg{negative}/seed{seed}/inverted")
CELL_DIR = ("cells/{task}/{model}/pt{pretrain_tokens}/{algorithm}/pos{positive}/neg{negative}/"
            "seed{seed}")

# The two fine-tuning stages: the grid axis each trains along, and the pool it draws from.
STAGES = {"align": "positive", "invert": "negative"}


@dataclass(frozen=True, order=True)
class Cell:
    """One point of the grid: a model to evaluate, and how it was made."""

    task: str
    model: str
    pretrain_tokens: int
    algorithm: str
    positive: int
    negative: int
    seed: int

    @classmethod
    def from_wildcards(cls, wildcards: Any) -> Cell:
        """The cell of a job, from its wildcards (every field, as strings)."""
        return cls(**{f.name: f.type_(wildcards[f.name]) for f in _FIELDS})

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Cell:
        return cls(**{f.name: f.type_(row[f.name]) for f in _FIELDS})

    def row(self) -> dict[str, Any]:
        """The cell's coordinates, as every results row carries them."""
        return {name: getattr(self, name) for name in COLUMNS}

    @property
    def is_base(self) -> bool:
        return self.algorithm == BASE

    def directory(self) -> str:
        return CELL_DIR.format(**self.row())

    def model_path(self) -> str:
        """The model this cell evaluates: the base, the aligned (N = 0) or the inverted model."""
        if self.is_base:
            return BASE_MODEL.format(**self.row())
        if self.negative == 0:
            return ALIGNED_MODEL.format(**self.row())
        return INVERTED_MODEL.format(**self.row())

    def base(self) -> Cell:
        return dataclasses.replace(self, algorithm=BASE, positive=0, negative=0)

    def aligned(self) -> Cell:
        return dataclasses.replace(self, negative=0)


@dataclass(frozen=True)
class _Field:
    name: str
    type_: type


_FIELDS = [_Field(f.name, {"str": str, "int": int}[f.type]) for f in dataclasses.fields(Cell)]
COLUMNS = [f.name for f in _FIELDS]
WILDCARD_PATTERNS = {f.name: (r"\d+" if f.type_ is int else None) for f in _FIELDS}


def wildcard_constraints(config: dict[str, Any]) -> dict[str, str]:
    """Every wildcard constrained: numbers are digits, names are the config's names."""
    names = {
        "task": [config["task"]],
        "model": sorted(config["models"]),
        "algorithm": sorted({*config["grid"]["algorithm"], BASE}),
    }
    return {k: (v if v is not None else "|".join(names[k])) for k, v in WILDCARD_PATTERNS.items()}


def is_pretrained(config: dict[str, Any], model: str) -> bool:
    """Whether a model comes as released checkpoints (`source: pretrained`), not from the
    workflow's own pretraining."""
    return config["models"][model]["source"] == "pretrained"


def released_checkpoint(config: dict[str, Any], model: str, tokens: int) -> dict[str, Any]:
    """The config entry of a pretrained model's checkpoint at `tokens` pretraining tokens."""
    for entry in config["models"][model]["checkpoints"]:
        if entry["pretrain_tokens"] == tokens:
            return entry
    raise KeyError(f"models.{model} has no checkpoint with pretrain_tokens {tokens}")


def size_bases(config: dict[str, Any]) -> list[tuple[str, int]]:
    """The bases of the size axis (Fig. 5): a scratch model at `size_axis.pretrain_tokens`, a
    pretrained one at its only checkpoint (or, if it lists several, the one at that budget)."""
    axis = config["grid"]["size_axis"]
    found = []
    for model in axis["model"]:
        tokens = axis["pretrain_tokens"]
        if is_pretrained(config, model):
            released = [c["pretrain_tokens"] for c in config["models"][model]["checkpoints"]]
            tokens = released[0] if len(released) == 1 else tokens
        found.append((model, tokens))
    return found


def pretraining_bases(config: dict[str, Any]) -> list[tuple[str, int]]:
    """The bases of the pretraining axis (Fig. 6): one model at several budgets; none when the
    config has no pretraining axis (`grid.pretraining_axis: null`)."""
    axis = config["grid"]["pretraining_axis"]
    return [] if axis is None else [(axis["model"], t) for t in axis["pretrain_tokens"]]


def bases(config: dict[str, Any]) -> list[tuple[str, int]]:
    """The base checkpoints (model, pretrain_tokens) that enter the grid."""
    return sorted(set(size_bases(config)) | set(pretraining_bases(config)))


def checkpoints(config: dict[str, Any]) -> list[tuple[str, int]]:
    """Every base checkpoint the workflow writes: each scratch model of the grid at every budget
    either axis names, up to the largest the grid takes from that model (a model's budgets form
    one chain, so the intermediate checkpoints cost no extra training), and each released
    checkpoint the grid takes."""
    every = {config["grid"]["size_axis"]["pretrain_tokens"],
             *(t for _, t in pretraining_bases(config))}
    top: dict[str, int] = {}
    released = set()
    for model, tokens in bases(config):
        if is_pretrained(config, model):
            released.add((model, tokens))
        else:
            top[model] = max(tokens, top.get(model, 0))
    scratch = {(m, t) for m, largest in top.items() for t in every if t <= largest}
    return sorted(scratch | released)


def hub_repositories(config: dict[str, Any]) -> list[dict[str, str]]:
    """Every hub repository a config reads: released checkpoints of the grid's pretrained bases,
    the task's dataset and the scorer's model; each {repo_type, repo_id, revision}."""
    found = [{"repo_type": "model", "repo_id": entry["id"], "revision": entry["revision"]}
             for model, tokens in bases(config) if is_pretrained(config, model)
             for entry in [released_checkpoint(config, model, tokens)] if "id" in entry]
    dataset = config["data"]["dataset"]
    if dataset is not None:
        found.append({"repo_type": "dataset", "repo_id": dataset["id"],
                      "revision": dataset["revision"]})
    scorer = config["scoring"]["model"]
    if scorer is not None:
        found.append({"repo_type": "model", "repo_id": scorer["id"],
                      "revision": scorer["revision"]})
    unique = {tuple(item.values()): item for item in found}
    return [unique[key] for key in sorted(unique)]


def previous_budget(config: dict[str, Any], model: str, tokens: int) -> int | None:
    """The budget a pretraining checkpoint continues: the model's next smaller one."""
    earlier = [t for m, t in checkpoints(config) if m == model and t < tokens]
    return max(earlier) if earlier else None


def cells(config: dict[str, Any]) -> list[Cell]:
    """Every cell of the grid, base-model cells included."""
    grid = config["grid"]
    out = []
    for model, tokens in bases(config):
        for seed in grid["seed"]:
            base = Cell(config["task"], model, tokens, BASE, 0, 0, seed)
            out.append(base)
            out += [dataclasses.replace(base, algorithm=a, positive=p, negative=n)
                    for a in grid["algorithm"] for p in grid["positive"]
                    for n in grid["negative"]]
    return out


def sampled(config: dict[str, Any], cell: Cell) -> bool:
    """Whether a cell gets the sampled metric: `generation.cells` lists, per grid field, the
    values that do (base-model cells have no P or N, so only `seed` applies to them)."""
    for name, values in config["generation"]["cells"].items():
        if cell.is_base and name in STAGES.values():
            continue
        if getattr(cell, name) not in values:
            return False
    return True


def trained_models(config: dict[str, Any], stage: str) -> Iterator[Cell]:
    """The cells whose model a fine-tuning stage trains (aligned: N = 0; inverted: N > 0)."""
    for cell in cells(config):
        if not cell.is_base and (cell.negative == 0) == (stage == "align"):
            yield cell


def depends_on(config: dict[str, Any], cell: Cell, through: str) -> dict[str, Any]:
    """Every config section a cell's result depends on, up to and including stage `through`
    (`generate`, `score` or `likelihood`): the provenance hash of its rows."""
    part = {"task": config["task"], "data": config["data"], "model": config["models"][cell.model],
            "cell": cell.row()}
    if not is_pretrained(config, cell.model):
        part |= {"tokenizer": config["tokenizer"], "pretraining": config["pretraining"]}
    if not cell.is_base:
        part["align"] = stage_slice(config, "align", cell.algorithm)
        if cell.negative > 0:
            part["invert"] = stage_slice(config, "invert", cell.algorithm)
    if through == "likelihood":
        part["likelihood"] = config["likelihood"]
        return part
    # Which cells are sampled is no setting of the sampling itself.
    part["generation"] = {k: v for k, v in config["generation"].items() if k != "cells"}
    if through == "score":
        part["scoring"] = config["scoring"]
    return part


def stage_slice(config: dict[str, Any], stage: str, algorithm: str) -> dict[str, Any]:
    """The part of a stage's section one algorithm uses: its trainer fields, the device and the
    number of GPUs (several shard the model: ZeRO-3 changes the numerics)."""
    section = config[stage]
    return {"device": section["device"], "gpus": section["gpus"], algorithm: section[algorithm]}
