"""The grid, defined once: what a cell is, where its files live, and which models it needs.

A cell's field names are at the same time the results' columns and the config's names
(`grid.positive`, `grid.seed`, ...), and, with one exception, the rules' wildcards: a path
names the two fine-tuning volumes in the order they were trained (`pos200/neg20`: 200 positive
examples, then 20 negative; `neg200/pos20`: the reverse order, Fig. 8), so the `order` field is
read off the path. A second stage that replays aligning examples (the `mitigation` experiment,
field `replay`) says so after its volume: `neg200-replay0.5`. This module is the only code that
knows the shape of the DAG: a base checkpoint, SFT on a first volume of one pool, a second stage
(any algorithm) on the other pool; which cells each experiment takes; and which links of a
training chain continue which.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import cache
from typing import Any

# The algorithm of a base-model cell, which is neither aligned nor inverted.
BASE = "none"
# The first stage (forward alignment) is SFT for every algorithm (App. B.2: reinforcement
# learning cannot start from a pretrained model); the algorithms differ in the second stage.
FIRST_STAGE_ALGORITHM = "sft"
FORWARD, REVERSE = "forward", "reverse"
ORDERS = (FORWARD, REVERSE)

# Path templates relative to results/<name>/; placeholders are Cell.path_fields().
SPLIT = "data/{split}.parquet"
BASE_MODEL = "models/base/{model}/pt{pretrain_tokens}"
ALIGNED_MODEL = "models/{task}/sft/{model}/pt{pretrain_tokens}/{first}/seed{seed}/aligned"
INVERTED_MODEL = ("models/{task}/{algorithm}/{model}/pt{pretrain_tokens}/{first}/{second}/"
                  "seed{seed}/inverted")
CELL_DIR = "cells/{task}/{model}/pt{pretrain_tokens}/{algorithm}/{first}/{second}/seed{seed}"

# The two fine-tuning stages (config sections `align`, `invert`) and the pool each trains on,
# by order; STAGES is the forward order, the paper's main setting.
ORDER_POOLS = {FORWARD: {"align": "positive", "invert": "negative"},
               REVERSE: {"align": "negative", "invert": "positive"}}
STAGES = ORDER_POOLS[FORWARD]
POOL_PREFIX = {"positive": "pos", "negative": "neg"}
_VOLUME = re.compile(r"(pos|neg)(\d+)(?:-replay(\d+(?:\.\d+)?))?")
# The experiments whose cells are grid cells (`resistance` trains on its own data, `theory`
# on none).
GRID_EXPERIMENTS = ("rebound", "algorithms", "reverse", "kl_table", "threshold", "mitigation")


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
    order: str = FORWARD
    # Aligning examples replayed during the second stage, per example of it (App. C.2).
    replay: float = 0.0

    @classmethod
    def from_wildcards(cls, wildcards: Any) -> Cell:
        """The cell of a job, from its wildcards: every field but `order` and `replay`, which
        the path's `{first}` / `{second}` volumes give (an aligned model's job has no
        `{second}`)."""
        values = dict(wildcards.items()) if hasattr(wildcards, "items") else dict(wildcards)
        if "first" in values:
            first = _VOLUME.fullmatch(values.pop("first"))
            second = _VOLUME.fullmatch(values.pop("second", "neg0" if first and first[1] == "pos"
                                                  else "pos0"))
            if (first is None or second is None or first[1] == second[1]
                    or first[3] is not None):
                raise ValueError(f"no cell has the volumes {wildcards!r}: a path names one "
                                 "pos<N> and one neg<N> (only the second may replay)")
            order = FORWARD if first[1] == "pos" else REVERSE
            values |= {"positive": (first if order == FORWARD else second)[2],
                       "negative": (second if order == FORWARD else first)[2], "order": order,
                       "replay": second[3] or 0.0}
        return cls(**{f.name: f.type_(values[f.name]) for f in _FIELDS})

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Cell:
        return cls(**{f.name: f.type_(row[f.name]) for f in _FIELDS})

    def row(self) -> dict[str, Any]:
        """The cell's coordinates, as every results row carries them."""
        return {name: getattr(self, name) for name in COLUMNS}

    def path_fields(self) -> dict[str, Any]:
        """The cell's fields as its paths name them (the volumes in training order)."""
        first, second = (ORDER_POOLS[self.order][stage] for stage in ("align", "invert"))
        replay = f"-replay{self.replay:g}" if self.replay else ""
        return {**self.row(),
                "first": f"{POOL_PREFIX[first]}{getattr(self, first)}",
                "second": f"{POOL_PREFIX[second]}{getattr(self, second)}{replay}"}

    def wildcards(self) -> dict[str, Any]:
        """The wildcards of the cell's per-cell jobs (generate, score, likelihood)."""
        fields = self.path_fields()
        return {k: fields[k] for k in ("task", "model", "pretrain_tokens", "algorithm",
                                       "first", "second", "seed")}

    def pool(self, stage: str) -> str:
        """The pool (split) a fine-tuning stage of this cell trains on."""
        return ORDER_POOLS[self.order][stage]

    def volume(self, stage: str) -> int:
        return getattr(self, self.pool(stage))

    @property
    def is_base(self) -> bool:
        return self.algorithm == BASE

    def directory(self) -> str:
        return CELL_DIR.format(**self.path_fields())

    def model_path(self) -> str:
        """The model this cell evaluates: the base, the aligned (second volume 0) or the
        inverted model."""
        if self.is_base:
            return BASE_MODEL.format(**self.row())
        if self.volume("invert") == 0:
            return ALIGNED_MODEL.format(**self.path_fields())
        return INVERTED_MODEL.format(**self.path_fields())

    def base(self) -> Cell:
        return dataclasses.replace(self, algorithm=BASE, positive=0, negative=0, order=FORWARD,
                                   replay=0.0)

    def aligned(self) -> Cell:
        """The cell of the model after the first stage (shared by every second-stage
        algorithm and replay fraction)."""
        return dataclasses.replace(self, algorithm=FIRST_STAGE_ALGORITHM, replay=0.0,
                                   **{self.pool("invert"): 0})

    def replayed(self) -> int:
        """How many aligning examples the second stage replays (`replayed_count`)."""
        return replayed_count(self.volume("invert"), self.replay)


def replayed_count(examples: int, replay: float) -> int:
    """Aligning examples replayed along the first `examples` of a second stage: floor(r * n),
    exactly (r as written in the config), so that a link's rows are a prefix of the next's."""
    return math.floor(Fraction(str(replay)) * examples)


@dataclass(frozen=True)
class _Field:
    name: str
    type_: type


_FIELDS = [_Field(f.name, {"str": str, "int": int, "float": float}[f.type])
           for f in dataclasses.fields(Cell)]
COLUMNS = [f.name for f in _FIELDS]
# Wildcards that are not cell fields: the volumes in training order (the second with its replay).
PATH_WILDCARDS = {"first": r"(pos|neg)\d+", "second": r"(pos|neg)\d+(-replay\d+(\.\d+)?)?"}


def wildcard_constraints(config: dict[str, Any]) -> dict[str, str]:
    """Every wildcard constrained: numbers are digits, names are the config's names."""
    return {
        "task": config["task"],
        "model": "|".join(sorted(config["models"])),
        "algorithm": "|".join(sorted({*algorithms(config), FIRST_STAGE_ALGORITHM, BASE})),
        "pretrain_tokens": r"\d+",
        "seed": r"\d+",
        **PATH_WILDCARDS,
    }


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


def size_base(config: dict[str, Any], model: str) -> tuple[str, int]:
    """A model's base on the size axis: a scratch model at `size_axis.pretrain_tokens`, a
    pretrained one at its only checkpoint (or, if it lists several, the one at that budget).
    The other experiments take their models at the same base."""
    tokens = config["grid"]["size_axis"]["pretrain_tokens"]
    if is_pretrained(config, model):
        released = [c["pretrain_tokens"] for c in config["models"][model]["checkpoints"]]
        tokens = released[0] if len(released) == 1 else tokens
    return model, tokens


def size_bases(config: dict[str, Any]) -> list[tuple[str, int]]:
    """The bases of the size axis (Fig. 5)."""
    return [size_base(config, model) for model in config["grid"]["size_axis"]["model"]]


def pretraining_bases(config: dict[str, Any]) -> list[tuple[str, int]]:
    """The bases of the pretraining axis (Fig. 6): one model at several budgets; none when the
    config has no pretraining axis (`grid.pretraining_axis: null`)."""
    axis = config["grid"]["pretraining_axis"]
    return [] if axis is None else [(axis["model"], t) for t in axis["pretrain_tokens"]]


def threshold_bases(config: dict[str, Any]) -> list[tuple[str, int]]:
    """The bases of the pretraining-threshold axis (App. C.3): one model at many budgets."""
    block = config["threshold"]
    return [(block["model"], t) for t in block["pretrain_tokens"]]


def experiment_bases(config: dict[str, Any], name: str) -> list[tuple[str, int]]:
    """The base checkpoints an experiment's cells start from (none for `theory`)."""
    if name == "rebound":
        return sorted(set(size_bases(config)) | set(pretraining_bases(config)))
    if name == "threshold":
        return threshold_bases(config)
    if name in ("resistance", "mitigation"):
        return [size_base(config, config[name]["model"])]
    if name == "theory":
        return []
    return [size_base(config, model) for model in config[name]["model"]]


def bases(config: dict[str, Any]) -> list[tuple[str, int]]:
    """The base checkpoints (model, pretrain_tokens) the experiments start from."""
    return sorted({b for name in config["experiments"] for b in experiment_bases(config, name)})


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
    # The threshold axis's budgets are its model's own (a fine axis on one model only).
    if "threshold" in config["experiments"]:
        scratch |= {b for b in threshold_bases(config) if not is_pretrained(config, b[0])}
    return sorted(scratch | released)


def hub_repositories(config: dict[str, Any]) -> list[dict[str, str]]:
    """Every hub repository a config reads: released checkpoints of the grid's pretrained bases,
    the task's dataset and, when an experiment scores anything, the scorer's model; each
    {repo_type, repo_id, revision}."""
    found = [{"repo_type": "model", "repo_id": entry["id"], "revision": entry["revision"]}
             for model, tokens in bases(config) if is_pretrained(config, model)
             for entry in [released_checkpoint(config, model, tokens)] if "id" in entry]
    dataset = config["data"]["dataset"]
    if dataset is not None:
        found.append({"repo_type": "dataset", "repo_id": dataset["id"],
                      "revision": dataset["revision"]})
    scorer = config["scoring"]["model"]
    if scorer is not None and uses_scorer(config):
        found.append({"repo_type": "model", "repo_id": scorer["id"],
                      "revision": scorer["revision"]})
    unique = {tuple(item.values()): item for item in found}
    return [unique[key] for key in sorted(unique)]


def previous_budget(config: dict[str, Any], model: str, tokens: int) -> int | None:
    """The budget a pretraining checkpoint continues: the model's next smaller one."""
    earlier = [t for m, t in checkpoints(config) if m == model and t < tokens]
    return max(earlier) if earlier else None


def experiment_grid(config: dict[str, Any], name: str) -> dict[str, Any]:
    """An experiment's axes: algorithm, positive, negative, seed, replay, and its order. The
    rebound grid is `grid`; the others have their own section (`algorithms`, `reverse`,
    `kl_table`, `threshold`, `mitigation`), whose volumes are in the order they are read:
    `reverse.negative` is the first stage's."""
    if name == "rebound":
        section = config["grid"]
    else:
        section = config[name]
    return {"algorithm": section.get("algorithm", [FIRST_STAGE_ALGORITHM]),
            "positive": section["positive"], "negative": section["negative"],
            "seed": section["seed"], "order": REVERSE if name == "reverse" else FORWARD,
            "replay": [float(r) for r in section.get("replay", [0.0])]}


def experiment_cells(config: dict[str, Any], name: str) -> list[Cell]:
    """An experiment's cells, base-model cells included. A cell whose second volume is 0 is the
    model after the first stage, which every algorithm shares: it is stored once, as `sft`."""
    axes = experiment_grid(config, name)
    out = set()
    for model, tokens in experiment_bases(config, name):
        for seed in axes["seed"]:
            base = Cell(config["task"], model, tokens, BASE, 0, 0, seed)
            out.add(base)
            for algorithm, p, n, replay in itertools.product(
                    axes["algorithm"], axes["positive"], axes["negative"], axes["replay"]):
                cell = Cell(config["task"], model, tokens, algorithm, p, n, seed,
                            axes["order"], replay)
                out.add(cell.aligned() if cell.volume("invert") == 0 else cell)
    return sorted(out)


# The config sections that decide the cells.
_CELL_KEYS = ("task", "experiments", "models", "grid", *GRID_EXPERIMENTS)


def cells(config: dict[str, Any]) -> list[Cell]:
    """Every cell of the experiments the config runs, each once."""
    return list(_cells(_cell_key(config)))


def _cell_key(config: dict[str, Any]) -> str:
    return json.dumps({k: config.get(k) for k in _CELL_KEYS}, sort_keys=True)


@cache
def _cells(key: str) -> tuple[Cell, ...]:
    # Asked once per job while the DAG is built (chains): computed once per distinct config.
    config = json.loads(key)
    names = [n for n in config["experiments"] if n in GRID_EXPERIMENTS]
    return tuple(sorted({c for n in names for c in experiment_cells(config, n)}))


def algorithms(config: dict[str, Any]) -> list[str]:
    """Every second-stage algorithm the experiments run."""
    return sorted({c.algorithm for c in cells(config) if not c.is_base})


# The experiments that read the sampled metric (Table 3 reads only the KL to the base).
SAMPLED_EXPERIMENTS = ("rebound", "algorithms", "reverse")


@cache
def _cells_of(key: str, names: tuple[str, ...]) -> frozenset[Cell]:
    config = json.loads(key)
    return frozenset(c for n in names if n in config["experiments"]
                     for c in experiment_cells(config, n))


def sampled(config: dict[str, Any], cell: Cell) -> bool:
    """Whether a cell gets the sampled metric: a cell of an experiment that reads it, whose
    fields have values `generation.cells` lists (base-model cells have no P or N, so only
    `seed` applies to them)."""
    if cell not in _cells_of(_cell_key(config), SAMPLED_EXPERIMENTS):
        return False
    for name, values in config["generation"]["cells"].items():
        if cell.is_base and name in STAGES.values():
            continue
        if getattr(cell, name) not in values:
            return False
    return True


def uses_scorer(config: dict[str, Any]) -> bool:
    """Whether the experiments score anything: sampled cells, or an online-RL reward (Table 3
    and resistance alone read no scores)."""
    return (any(name in SAMPLED_EXPERIMENTS for name in config["experiments"])
            or any(a in REWARDED for a in algorithms(config)))


def trained_models(config: dict[str, Any], stage: str) -> Iterator[Cell]:
    """The cells whose model a fine-tuning stage trains (first stage: second volume 0)."""
    for cell in cells(config):
        if not cell.is_base and (cell.volume("invert") == 0) == (stage == "align"):
            yield cell


def depends_on(config: dict[str, Any], cell: Cell, through: str) -> dict[str, Any]:
    """Every config section a cell's result depends on, up to and including stage `through`
    (`generate`, `score` or `likelihood`): the provenance hash of its rows."""
    part = {"task": config["task"], "data": config["data"], "model": config["models"][cell.model],
            "cell": cell.row()}
    if not is_pretrained(config, cell.model):
        part |= {"tokenizer": config["tokenizer"], "pretraining": config["pretraining"]}
    if not cell.is_base:
        part["align"] = stage_slice(config, "align", FIRST_STAGE_ALGORITHM)
        if cell.volume("invert") > 0:
            part["invert"] = stage_slice(config, "invert", cell.algorithm)
            if cell.algorithm in REWARDED:
                part["reward"] = {k: config["scoring"][k] for k in REWARD_FIELDS}
    if through == "likelihood":
        part["likelihood"] = config["likelihood"]
        return part
    # Which cells are sampled is no setting of the sampling itself.
    part["generation"] = {k: v for k, v in config["generation"].items() if k != "cells"}
    if through == "score":
        part["scoring"] = config["scoring"]
    return part


# Second-stage algorithms that train on pairs of the stage's pool (chosen) and the other pool
# (rejected), and those whose reward is the task's scorer (online RL).
PAIRED = ("dpo", "kto", "simpo")
REWARDED = ("rloo",)
# The scoring fields a reward reads (the threshold only classifies scored responses).
REWARD_FIELDS = ("scorer", "model", "device", "batch_size")


def stage_slice(config: dict[str, Any], stage: str, algorithm: str) -> dict[str, Any]:
    """The part of a stage's section one algorithm uses: its trainer fields, the device and the
    number of GPUs (several shard the model: ZeRO-3 changes the numerics)."""
    section = config[stage]
    return {"device": section["device"], "gpus": section["gpus"], algorithm: section[algorithm]}
