"""Training data of the preference and online-RL algorithms of the inverse stage.

The paper's inverse stage (App. B.2) trains the aligned model on N examples of the stage's pool;
for the preference algorithms (DPO, KTO, SimPO) the stage's pool responses are chosen and the
other pool's are rejected (in the usual order: negative chosen, positive rejected).

Example i of a seed pairs the i-th row of a seeded permutation of the stage's pool with the
i-th row of a seeded permutation of the other pool. The chosen rows are exactly the examples SFT
takes (`np.random.default_rng(seed)`, as elasticity.finetuning.select_examples); the rejected
rows come from a child stream of the same seed (spawn key REJECTED_STREAM), so that the two
selections are not correlated by index, and so that the rejected examples of the inverse stage
are not simply the alignment stage's P examples in its own order. Both selections are nested in
N, so preference training chains like SFT's.

A pair's prompt is the chosen row's `prompt`; chosen is the rest of that row's text; rejected is
the rest of the rejected row's text after ITS OWN prompt. On the review tasks the rejected
continuation therefore follows the opening of a different review than the one it is paired with
(on the safety task both prompts are the template up to "ASSISTANT:" around different questions).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from elasticity.io import read_parquet

# The spawn key of the rejected selection's stream (see the module docstring).
REJECTED_STREAM = 1
COLUMNS = ["uid", "text", "prompt"]


def _first_rows(pool: str, n: int, rng: np.random.Generator) -> pd.DataFrame:
    frame = read_parquet(pool, COLUMNS)
    if n > len(frame):
        raise ValueError(f"{pool}: asked for {n} examples but the pool holds {len(frame)}")
    return frame.iloc[rng.permutation(len(frame))[:n]].reset_index(drop=True)


def chosen_rows(pool: str, n: int, seed: int) -> pd.DataFrame:
    """The first n rows of the seed's permutation of the stage's pool (SFT's examples)."""
    return _first_rows(pool, n, np.random.default_rng(seed))


def rejected_rows(pool: str, n: int, seed: int) -> pd.DataFrame:
    """The first n rows of the seed's rejected-stream permutation of the other pool."""
    stream = np.random.SeedSequence(seed, spawn_key=(REJECTED_STREAM,))
    return _first_rows(pool, n, np.random.default_rng(stream))


def continuations(rows: pd.DataFrame) -> list[str]:
    """Each row's text after its prompt (the prompt is a prefix of the text)."""
    out = []
    for uid, text, prompt in zip(rows["uid"], rows["text"], rows["prompt"], strict=True):
        if not text.startswith(prompt) or len(text) == len(prompt):
            raise ValueError(f"{uid}: its prompt {prompt!r} is not a proper prefix of its text")
        out.append(text[len(prompt):])
    return out


def pairs(pool: str, rejected_pool: str, n: int, seed: int) -> dict[str, list[str]]:
    """DPO and SimPO examples: columns prompt, chosen, rejected (see the module docstring)."""
    chosen = chosen_rows(pool, n, seed)
    rejected = rejected_rows(rejected_pool, n, seed)
    return {"prompt": chosen["prompt"].tolist(), "chosen": continuations(chosen),
            "rejected": continuations(rejected)}


def kto_rows(pool: str, rejected_pool: str, n: int, seed: int) -> dict[str, list[Any]]:
    """KTO's unpaired rows of the same pairs, interleaved: desirable chosen_i, then undesirable
    rejected_i; example i is rows 2i and 2i + 1, so a step of an even number of rows takes
    whole examples."""
    paired = pairs(pool, rejected_pool, n, seed)
    rows: dict[str, list[Any]] = {"prompt": [], "completion": [], "label": []}
    for prompt, chosen, rejected in zip(paired["prompt"], paired["chosen"], paired["rejected"],
                                        strict=True):
        rows["prompt"] += [prompt, prompt]
        rows["completion"] += [chosen, rejected]
        rows["label"] += [True, False]
    return rows


def rl_prompts(pool: str, n: int, seed: int) -> dict[str, list[str]]:
    """Online RL's prompts: those of the examples SFT would take."""
    return {"prompt": chosen_rows(pool, n, seed)["prompt"].tolist()}
