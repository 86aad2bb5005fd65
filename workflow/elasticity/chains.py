"""Training chains: which fine-tuning link continues which, and whether a stage chains at all.

Wherever a schedule makes one cell's model a prefix of another's run (one epoch, a constant
schedule, volumes on batch boundaries), the cells of a stage form a chain of file targets: the
P = 400 model continues the P = 200 one on examples 201-400 of the same seeded order.
"""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from typing import Any

from elasticity.grid import STAGES, Cell
from elasticity.trainer_config import effective_batch, with_class_defaults


def volume(cell: Cell, stage: str) -> int:
    return getattr(cell, STAGES[stage])


def previous_link(config: dict[str, Any], cell: Cell, stage: str) -> Cell | None:
    """The model a training link continues (weights, optimizer, data position), or None when
    the link starts the chain or the stage trains every cell on its own (see `chaining`)."""
    if not chaining(config, stage, cell.algorithm)[0]:
        return None
    axis = STAGES[stage]
    earlier = [v for v in config["grid"][axis] if 0 < v < volume(cell, stage)]
    if not earlier:
        return None
    return dataclasses.replace(cell, **{axis: max(earlier)})


def start_model(cell: Cell, stage: str) -> Cell:
    """The model a stage's first link starts from: the base for alignment, the aligned model
    for inverse fine-tuning."""
    return cell.base() if stage == "align" else cell.aligned()


CHAINABLE_SCHEDULES = ("constant", "constant_with_warmup")


def chaining(config: dict[str, Any], stage: str, algorithm: str) -> tuple[bool, str]:
    """Whether a stage's cells form training chains, and why (stated in the plan)."""
    # Asked once per training job while the DAG is built: decided once per distinct input.
    return _chaining(stage, algorithm, json.dumps(config[stage][algorithm], sort_keys=True),
                     tuple(config["grid"][STAGES[stage]]), config[stage]["gpus"])


@cache
def _chaining(stage: str, algorithm: str, section_json: str, volumes: tuple[int, ...],
              gpus: int) -> tuple[bool, str]:
    """A link continues the previous one exactly only for one epoch, a schedule that does not
    depend on the total number of steps, and volumes that end on a batch boundary; otherwise
    every cell trains on its own from the start model.
    """
    section = with_class_defaults(algorithm, json.loads(section_json))
    volumes = [v for v in volumes if v > 0]
    batch = effective_batch(section) * gpus  # each GPU takes its own batch every step
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
        reasons.append(f"grid.{STAGES[stage]} values {uneven} are not multiples of the batch "
                       f"({batch} examples a step)")
    if reasons:
        return False, "every cell trains on its own: " + "; ".join(reasons)
    return True, (f"chained over grid.{STAGES[stage]} (one epoch, {schedule} schedule, "
                  f"{batch} examples a step): each link continues the previous one")
