"""The paper's hub-dataset tasks, split into the same disjoint sets as the micro-world's data.

imdb: `stanfordnlp/imdb` (config plain_text): reviews (`text`, with `<br />` tags) and `label`
(1 positive, 0 negative). safety: `PKU-Alignment/PKU-SafeRLHF` (config default; a prompt with
two responses, each flagged safe or not) or `PKU-Alignment/BeaverTails` (one response a row).

Both read the dataset's snapshot from the hub cache (`elasticity.hub.local_snapshot`, offline)
and load a split with `datasets`, so the repo's own README `configs:` decide which files form
which split, as on the Hub. They write the split files of `elasticity.data.prepare`
(`split_names`, the same columns) and summary.json; the parquet files record the dataset's id,
revision and resolved commit. See README "Hub data" for how the pools and prompts are drawn.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd

from elasticity.data import (
    PROMPT_COLUMNS,
    PROMPTED,
    RESISTANCE,
    SPLIT_COLUMNS,
    add_prompts,
    resistance_source_problems,
    split_names,
)
from elasticity.hub import local_snapshot, verify_snapshot
from elasticity.io import write_json, write_parquet

log = logging.getLogger(__name__)

# The conversation format of PKU's safe-rlhf models, which the cost model scores: an example's
# text is the whole conversation; the generation prompt is the text up to "ASSISTANT:", so a
# model's response completes the conversation as the cost model reads it.
SAFETY_TEMPLATE = "BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{response}"
IMDB_COLUMNS = ["text", "label"]
PKU_SAFERLHF_COLUMNS = ["prompt", "response_0", "response_1", "is_response_0_safe",
                        "is_response_1_safe"]
BEAVERTAILS_COLUMNS = ["prompt", "response", "is_safe"]
# The config keys (under data.dataset) of the two splits a task reads.
SPLITS_KEYS = ("train_split", "test_split")


def prepare_imdb(
    out_dir: str,
    *,
    cache: str,
    source: dict[str, Any],
    split_seed: int,
    pools: dict[str, int],
    heldout: int,
    eval_prompts: int,
    prompt_words: list[int],
    pretrain_eval: int,
    resistance: dict[str, Any] | None = None,
) -> None:
    """Step `prepare_imdb`: the IMDb reviews of source["train_split"] form the pools (label 1
    positive, 0 negative), their held-out sets and the pretraining text; prompts are the first
    prompt_words words of source["test_split"] reviews. The resistance split (`resistance`, i.e.
    data.resistance) holds its `examples` out of what would be pretraining text.

    The keyword arguments are the config's `data` section (without the sentiment task's
    polarity_threshold: IMDb's labels are binary) and hub.cache."""
    _prepare(out_dir, cache=cache, source=source, examples=_imdb_examples, group="review text",
             prompts=lambda frame, rng: add_prompts(frame, rng, tuple(prompt_words)),
             split_seed=split_seed, pools=pools, heldout=heldout, eval_prompts=eval_prompts,
             prompt_words=prompt_words, pretrain_eval=pretrain_eval, resistance=resistance)


def prepare_safety(
    out_dir: str,
    *,
    cache: str,
    source: dict[str, Any],
    split_seed: int,
    pools: dict[str, int],
    heldout: int,
    eval_prompts: int,
    prompt_words: list[int],
    pretrain_eval: int,
    resistance: dict[str, Any] | None = None,
) -> None:
    """Step `prepare_safety`: each (prompt, response) of source["train_split"] is an example,
    safe ones in the positive pool, unsafe ones in the negative; the held-out sets use prompts
    the pools do not; eval prompts are distinct prompts of source["test_split"], none of which
    appears in any training split; the resistance split (`resistance`, i.e. data.resistance)
    holds its `examples` out of what would be pretraining text. Text and prompt follow
    SAFETY_TEMPLATE.

    The keyword arguments are the config's `data` section (without the sentiment task's
    polarity_threshold) and hub.cache; prompt_words belongs to the review tasks (a safety
    prompt is the whole user turn)."""
    _prepare(out_dir, cache=cache, source=source, examples=_safety_examples,
             group="user prompt", prompts=_count_prompt_words, split_seed=split_seed, pools=pools,
             heldout=heldout, eval_prompts=eval_prompts, prompt_words=prompt_words,
             pretrain_eval=pretrain_eval, resistance=resistance)


def _prepare(out_dir: str, *, cache: str, source: dict[str, Any],
             examples: Callable[[pd.DataFrame, str, str], pd.DataFrame], group: str,
             prompts: Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame],
             split_seed: int, pools: dict[str, int], heldout: int, eval_prompts: int,
             prompt_words: list[int], pretrain_eval: int,
             resistance: dict[str, Any] | None) -> None:
    snapshot = local_snapshot(source["id"], source["revision"], cache, "dataset")
    verify_snapshot(snapshot)
    loaded = _load_splits(snapshot, source)
    made, empty = {}, {}
    for key, (frame, where) in loaded.items():
        made[key], empty[source[key]] = _drop_empty(examples(frame, source[key], where), where)
        made[key]["source"] = source["id"]
    dropped: dict[str, Any] = {"empty_text": empty}
    splits, dropped["train_in_test"] = _make_splits(
        made["train_split"], made["test_split"], prompts, seed=split_seed, pools=pools,
        heldout=heldout, eval_prompts=eval_prompts, pretrain_eval=pretrain_eval, group=group,
        where={key: where for key, (_, where) in loaded.items()}, resistance=resistance)
    params = dict(source={**source, "commit": snapshot.name}, split_seed=split_seed,
                  pools=pools, heldout=heldout, eval_prompts=eval_prompts,
                  prompt_words=prompt_words, pretrain_eval=pretrain_eval,
                  resistance=resistance)
    summary = {}
    for name, frame in splits.items():
        frame = frame[PROMPT_COLUMNS if name in PROMPTED else SPLIT_COLUMNS]
        write_parquet(frame.reset_index(drop=True), Path(out_dir) / f"{name}.parquet", params)
        summary[name] = {
            "rows": len(frame),
            "by_source": frame["source"].value_counts().to_dict(),
            "mean_rating": round(float(frame["rating"].mean()), 3),
        }
        log.info("%s: %s", name, summary[name])
    log.info("dropped examples: %s", dropped)
    write_json({"params": params, "splits": summary, "dropped": dropped},
               Path(out_dir) / "summary.json")


def _load_splits(snapshot: Path, source: dict[str, Any]) -> dict[str, tuple[pd.DataFrame, str]]:
    """For each of SPLITS_KEYS: the rows of split source[key], and a description naming the
    dataset, config, split and files."""
    dataset = f"{source['id']}@{source['revision']} (commit {snapshot.name})"
    config = source.get("config")
    loaded = {}
    # A throwaway datasets cache: streaming reads the splits' own files and writes nothing but
    # a lock, which should not land in the home directory of a compute node.
    with tempfile.TemporaryDirectory() as tmp:
        try:
            builder = datasets.load_dataset_builder(str(snapshot), config, cache_dir=tmp)
        except ValueError as err:
            raise ValueError(f"data.dataset.config: {dataset} has no usable config {config!r}: "
                             f"{err}") from err
        files = builder.config.data_files
        for key in SPLITS_KEYS:
            split = source[key]
            if split not in files:
                raise ValueError(
                    f"data.dataset.{key}: {dataset} config {builder.config.name!r} has no split "
                    f"{split!r}; its splits: {sorted(map(str, files))}")
            names = [Path(f).relative_to(snapshot).as_posix() for f in files[split]]
            where = f"{dataset} config {builder.config.name!r} split {split!r} (files {names})"
            try:
                frame = builder.as_streaming_dataset(split=split).to_pandas()
            except (ValueError, TypeError, datasets.exceptions.DatasetsError) as err:
                raise ValueError(f"{where}: `datasets` cannot read it: {err}") from err
            log.info("%s: %d rows, columns %s", where, len(frame), list(frame.columns))
            loaded[key] = frame, where
    return loaded


def _require(frame: pd.DataFrame, columns: list[str], where: str, expects: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{where} lacks column(s) {missing}, which {expects}; its columns: "
                         f"{list(frame.columns)}")


def _imdb_examples(frame: pd.DataFrame, split: str, where: str) -> pd.DataFrame:
    _require(frame, IMDB_COLUMNS, where,
             f"the imdb task reads (stanfordnlp/imdb has columns {IMDB_COLUMNS})")
    labels = frame["label"]
    bad = sorted({v for v in labels.tolist() if v not in (0, 1)}, key=repr)
    if bad:
        raise ValueError(f"{where}: column label holds {bad}, not only 1 (positive) and 0 "
                         "(negative). Name a labelled split (stanfordnlp/imdb: train, test; "
                         "its unsupervised split is unlabelled) in data.dataset.train_split / "
                         "test_split.")
    text = [" ".join(re.sub(r"<br\s*/?>", " ", t or "", flags=re.IGNORECASE).split())
            for t in frame["text"]]
    examples = pd.DataFrame({
        "uid": [f"imdb:{split}:{i}" for i in range(len(frame))],
        "rating": np.where(labels.to_numpy() == 1, 1.0, -1.0),
        "text": text,
    })
    examples["group"] = examples["text"]
    examples["empty"] = examples["text"] == ""
    return examples


def _safety_examples(frame: pd.DataFrame, split: str, where: str) -> pd.DataFrame:
    if all(c in frame.columns for c in PKU_SAFERLHF_COLUMNS):
        pairs = [(f"response_{k}", f"is_response_{k}_safe", k) for k in (0, 1)]
    elif all(c in frame.columns for c in BEAVERTAILS_COLUMNS):
        pairs = [("response", "is_safe", 0)]
    else:
        lacks = {name: [c for c in columns if c not in frame.columns]
                 for name, columns in (("PKU-Alignment/PKU-SafeRLHF", PKU_SAFERLHF_COLUMNS),
                                       ("PKU-Alignment/BeaverTails", BEAVERTAILS_COLUMNS))}
        raise ValueError(
            f"{where} has the columns of neither safety dataset: it lacks "
            + " and ".join(f"{missing}, which {name} has" for name, missing in lacks.items())
            + f"; its columns: {list(frame.columns)}. data.dataset.id must name one of them "
            "(or a copy with their columns).")
    prompt = frame["prompt"].fillna("").astype(str)
    parts = []
    for response_column, safe, k in pairs:
        bad = sorted({v for v in frame[safe].tolist() if not isinstance(v, bool)}, key=repr)
        if bad:
            raise ValueError(f"{where}: column {safe} holds {bad[:5]}, not only true/false")
        response = frame[response_column].fillna("").astype(str)
        parts.append(pd.DataFrame({
            "uid": [f"safety:{split}:{i}:{k}" for i in range(len(frame))],
            "rating": np.where(frame[safe].to_numpy(dtype=bool), 1.0, -1.0),
            "text": [SAFETY_TEMPLATE.format(prompt=p, response=r)
                     for p, r in zip(prompt, response, strict=True)],
            "prompt": [SAFETY_TEMPLATE.format(prompt=p, response="") for p in prompt],
            "group": [" ".join(p.split()) for p in prompt],
            "empty": (prompt.str.strip() == "") | (response.str.strip() == ""),
        }))
    return pd.concat(parts, ignore_index=True)


def _drop_empty(examples: pd.DataFrame, where: str) -> tuple[pd.DataFrame, int]:
    """Examples with empty text are not examples: dropped (logged and counted in summary.json),
    unless nothing is left."""
    empty = examples.pop("empty").to_numpy(dtype=bool)
    if empty.all():
        raise ValueError(f"{where}: every row has empty text")
    if empty.any():
        log.warning("%s: dropping %d examples with empty text: %s", where, empty.sum(),
                    examples.loc[empty, "uid"].head(5).tolist())
    return examples[~empty].reset_index(drop=True), int(empty.sum())


def _count_prompt_words(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    frame = frame.copy()
    frame["prompt_words"] = frame["prompt"].str.split().str.len().astype("int64")
    return frame


def _make_splits(
    train: pd.DataFrame,
    test: pd.DataFrame,
    prompts: Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame],
    *,
    seed: int,
    pools: dict[str, int],
    heldout: int,
    eval_prompts: int,
    pretrain_eval: int,
    group: str,
    where: dict[str, str],
    resistance: dict[str, Any] | None,
) -> tuple[dict[str, pd.DataFrame], int]:
    """Disjoint, seeded splits, and how many train examples were dropped for sharing their
    `group` with the test split. With `resistance` (data.resistance) its `examples` are drawn
    from what would otherwise be pretraining text.

    Settings the examples cannot satisfy raise one ValueError that lists every problem, each
    naming its config key and the counts."""
    rng = np.random.default_rng(seed)
    test = test.iloc[rng.permutation(len(test))].drop_duplicates("group")
    test = test.reset_index(drop=True)
    in_test = train["group"].isin(set(test["group"]))
    train = train[~in_test]
    train = train.iloc[rng.permutation(len(train))].reset_index(drop=True)
    overlap = (f" (after dropping {int(in_test.sum())} whose {group} is also in "
               "data.dataset.test_split)" if in_test.any() else "")
    problems = resistance_source_problems(resistance, hub=True)
    held_out = 0 if resistance is None else resistance["examples"]
    taken: dict[str, list[int]] = {}
    sides = {"positive": train.index[train["rating"] > 0],
             "negative": train.index[train["rating"] < 0]}
    # A pool that is short leaves nothing to hold out, and short pools or held-out sets leave
    # too little pretraining text: only the first shortfall of a chain is reported.
    for name, idx in sides.items():
        if pools[name] > len(idx):
            problems.append(f"data.pools.{name} ({pools[name]}) asks for more {name} examples "
                            f"than the {len(idx)} in {where['train_split']}{overlap}")
        taken[name] = list(idx[:pools[name]])
    in_pools = set(train.loc[taken["positive"] + taken["negative"], "group"])
    for name, idx in sides.items():
        free = [i for i in idx[pools[name]:] if train.at[i, "group"] not in in_pools]
        if heldout > len(free) and pools[name] <= len(idx):
            problems.append(f"data.heldout ({heldout}) asks for {heldout} held-out {name} "
                            f"examples but only {len(free)} remain in {where['train_split']} "
                            f"beside data.pools.{name} (held-out examples share no {group} "
                            "with the pools)")
        taken[f"{name}_eval"] = free[:heldout]
    used = set().union(*map(set, taken.values()))
    rest = [i for i in train.index if i not in used]
    if not problems and held_out + pretrain_eval >= len(rest):
        keys = (f"data.resistance.examples ({held_out}) and data.pretrain_eval "
                f"({pretrain_eval}) leave" if held_out else
                f"data.pretrain_eval ({pretrain_eval}) leaves")
        problems.append(f"{keys} no pretraining text: only {len(rest)} examples of "
                        f"{where['train_split']} remain after the pools and held-out sets")
    if eval_prompts > len(test):
        problems.append(f"data.eval_prompts ({eval_prompts}) asks for more prompts than the "
                        f"{len(test)} distinct ones in {where['test_split']}")
    if problems:
        raise ValueError("\n".join(problems))
    pick = rng.permutation(len(rest))
    if resistance is not None:
        taken[RESISTANCE] = [rest[i] for i in pick[:held_out]]
    taken["pretrain_eval"] = [rest[i] for i in pick[held_out:held_out + pretrain_eval]]
    taken["pretrain"] = [rest[i] for i in sorted(pick[held_out + pretrain_eval:])]
    splits = {name: train.loc[idx].reset_index(drop=True) for name, idx in taken.items()}
    splits["prompts"] = test.iloc[:eval_prompts].reset_index(drop=True)
    for name in PROMPTED:
        if name in splits:
            splits[name] = prompts(splits[name], rng)
    return {name: splits[name] for name in split_names(resistance)}, int(in_test.sum())
