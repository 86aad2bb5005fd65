"""Training chains: which fine-tuning link continues which, and whether a stage chains at all.

Wherever a schedule makes one cell's model a prefix of another's run (one epoch, a constant
schedule, volumes on batch boundaries), the cells of a stage form a chain of file targets: the
P = 400 model continues the P = 200 one on examples 201-400 of the same seeded order. A chain
runs through the volumes the experiments actually ask for, whichever experiment asks: the
Table 3 grid's fine N values and the rebound grid's coarse ones share one chain per aligned
model.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from functools import cache
from typing import Any

from elasticity import grid
from elasticity.grid import Cell
from elasticity.trainer_config import examples_per_step, with_class_defaults


def previous_link(config: dict[str, Any], cell: Cell, stage: str) -> Cell | None:
    """The model a training link continues (weights, optimizer, data position), or None when
    the link starts the chain or the stage trains every cell on its own (see `chaining`)."""
    algorithm = cell.algorithm if stage == "invert" else grid.FIRST_STAGE_ALGORITHM
    if not chaining(config, stage, algorithm, cell.replay if stage == "invert" else 0.0)[0]:
        return None
    volume = cell.volume(stage)
    earlier = [v for v in _chain_volumes(config, stage).get(_chain_key(cell, stage), ())
               if 0 < v < volume]
    if not earlier:
        return None
    return dataclasses.replace(cell, **{cell.pool(stage): max(earlier)})


def start_model(cell: Cell, stage: str) -> Cell:
    """The model a stage's first link starts from: the base for the first stage, the model
    after the first stage for the second."""
    return cell.base() if stage == "align" else cell.aligned()


def _chain_key(cell: Cell, stage: str) -> Cell:
    """What the links of one chain share: the cell with the stage's volume left out."""
    if stage == "align":
        cell = cell.aligned()
    return dataclasses.replace(cell, **{cell.pool(stage): 0})


def _chain_volumes(config: dict[str, Any], stage: str) -> dict[Cell, list[int]]:
    return _volumes_by_chain(grid._cell_key(config), stage)


@cache
def _volumes_by_chain(key: str, stage: str) -> dict[Cell, list[int]]:
    found: dict[Cell, set[int]] = defaultdict(set)
    for cell in grid.cells(json.loads(key)):
        if not cell.is_base and cell.volume(stage) > 0:
            found[_chain_key(cell, stage)].add(cell.volume(stage))
    return {k: sorted(v) for k, v in found.items()}


def stage_volumes(config: dict[str, Any], stage: str, algorithm: str,
                  replay: float = 0.0) -> list[int]:
    """Every volume > 0 a stage trains with an algorithm (and, in the second stage, a replay
    fraction), across the experiments, counted in training rows: the stage's examples plus
    the aligning examples it replays."""
    return sorted({c.volume(stage) + (c.replayed() if stage == "invert" else 0)
                   for c in grid.trained_models(config, stage)
                   if stage == "align" or (c.algorithm, c.replay) == (algorithm, replay)} - {0})


def replays(config: dict[str, Any]) -> list[float]:
    """Every replay fraction of the second stage's cells (0: no replay)."""
    return sorted({0.0} | {c.replay for c in grid.trained_models(config, "invert")})


CHAINABLE_SCHEDULES = ("constant", "constant_with_warmup")


def chaining(config: dict[str, Any], stage: str, algorithm: str,
             replay: float = 0.0) -> tuple[bool, str]:
    """Whether a stage's cells (of one replay fraction) form training chains, and why (stated
    in the plan)."""
    # Asked once per training job while the DAG is built: decided once per distinct input.
    return chains_over(algorithm, json.dumps(config[stage][algorithm], sort_keys=True),
                       tuple(stage_volumes(config, stage, algorithm, replay)),
                       config[stage]["gpus"])


@cache
def chains_over(algorithm: str, section_json: str, volumes: tuple[int, ...],
                gpus: int) -> tuple[bool, str]:
    """A link continues the previous one exactly only for one epoch, a schedule that does not
    depend on the total number of steps, and volumes that end on a batch boundary; otherwise
    every cell trains on its own from the start model. Online RL samples its own completions
    and never chains.
    """
    section = with_class_defaults(algorithm, json.loads(section_json))
    per_step = examples_per_step(algorithm, section)
    if per_step is None:
        return False, (f"every cell trains on its own: {algorithm} samples its own completions, "
                       "so a link cannot continue another")
    batch = per_step * gpus  # each GPU takes its own batch every step
    reasons = []
    if float(section.get("num_train_epochs", 0)) != 1:
        reasons.append(f"num_train_epochs is {section.get('num_train_epochs')}, not 1")
    schedule = section.get("lr_scheduler_type")
    if schedule not in CHAINABLE_SCHEDULES:
        reasons.append(f"lr_scheduler_type {schedule!r} depends on the total number of steps")
    if section.get("warmup_ratio"):
        reasons.append("warmup_ratio depends on the total number of steps")
    uneven = [v for v in volumes if v % batch]
    if uneven:
        reasons.append(f"volumes {uneven} are not multiples of the batch ({batch} examples a "
                       f"step)")
    if reasons:
        return False, "every cell trains on its own: " + "; ".join(reasons)
    return True, (f"chained over the volumes (one epoch, {schedule} schedule, {batch} examples "
                  f"a step): each link continues the previous one")
