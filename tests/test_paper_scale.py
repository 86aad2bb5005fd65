"""Issue 9 end to end: a hub dataset task, a released checkpoint and a hub scorer run through
the real workflow, offline, on files in the hubs' exact formats (the same fixtures the unit
tests of elasticity.tasks, elasticity.pretrained and elasticity.scoring use); and every paper
config plans without the hub.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from elasticity import grid
from elasticity.configfile import load_yaml, merge
from elasticity.io import parquet_params, read_parquet

from .conftest import DEFAULT_CONFIG, ROOT, SMOKE_CONFIG, SNAKEMAKE, snakemake
from .hubcache import put_in_cache
from .test_pretrained import tiny_llama, tiny_tokenizer
from .test_scorers import save_classifier
from .test_tasks import imdb_files

pytestmark = pytest.mark.workflow

PAPER_CONFIGS = sorted((ROOT / "resources" / "configs" / "paper").glob("*.yaml"))
MODEL, DATASET, SCORER = "org/tiny-llama", "stanfordnlp/imdb", "org/tiny-sentiment"
# Over the smoke config: the IMDb task (40 train and 20 test reviews), one released model, the
# classifier scorer.
OVERRIDE = {
    "name": "hubworld",
    "experiments": ["rebound"],
    "task": "imdb",
    "data": {"resistance": None,
             "dataset": {"id": DATASET, "config": "plain_text", "revision": "main",
                         "train_split": "train", "test_split": "test"},
             "pools": {"positive": 8, "negative": 6}, "heldout": 3, "eval_prompts": 5,
             "pretrain_eval": 2},
    "models": {"released": {"source": "pretrained", "checkpoints": [
        {"pretrain_tokens": 5000, "id": MODEL, "revision": "main"}]}},
    "grid": {"size_axis": {"model": ["released"]}, "pretraining_axis": None,
             "positive": [4, 8], "negative": [0, 2, 6], "seed": [0]},
    "align": {"sft": {"per_device_train_batch_size": 2}},
    "invert": {"sft": {"per_device_train_batch_size": 2}},
    "scoring": {"scorer": "sentiment-classifier", "threshold": 0.0,
                "model": {"id": SCORER, "revision": "main"}, "batch_size": 8},
    "rebound": {"resamples": 20},
}


@pytest.fixture(scope="module")
def hubworld(tmp_path_factory) -> tuple[Path, Path]:
    """A working directory whose hub cache holds the dataset, the model and the scorer (as a
    prefetch on a login node leaves it), and the config that reads them."""
    work = tmp_path_factory.mktemp("hubworld")
    cache = work / "downloads" / "hub"
    put_in_cache(cache, DATASET, imdb_files(), repo_type="dataset")
    tok = tiny_tokenizer()
    model_dir = work / "src" / "model"
    tiny_llama(tok).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    put_in_cache(cache, MODEL, model_dir)
    put_in_cache(cache, SCORER, save_classifier(work / "src" / "scorer",
                                                {0: "NEGATIVE", 1: "POSITIVE"}))
    config = work / "hubworld.yaml"
    config.write_text(yaml.safe_dump(merge(load_yaml(SMOKE_CONFIG), OVERRIDE)))
    return work, config


def test_a_hub_task_with_a_released_model_and_a_hub_scorer_runs_offline(hubworld, monkeypatch):
    work, config = hubworld
    # No hub is reachable from here anyway; offline mode makes any attempt fail at once.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snakemake(work, "all", config=config)
    out = work / "results" / "hubworld"
    manifest = json.loads((out / "hub" / "model" / MODEL / "main.json").read_text())
    assert len(manifest["commit"]) == 40 and manifest["id"] == MODEL
    base = json.loads((out / "models/base/released/pt5000/base_metrics.json").read_text())
    assert base["source"] == "hub" and base["commit"] == manifest["commit"]
    summary = read_parquet(out / "summary.parquet", ["model", "positive", "negative", "margin"])
    merged = merge(DEFAULT_CONFIG, merge(load_yaml(SMOKE_CONFIG), OVERRIDE))
    assert len(summary) == len(grid.cells(merged))
    assert set(summary["model"]) == {"released"}
    scores = pd.read_parquet(out / "cells/imdb/released/pt5000/sft/pos8/neg6/seed0/"
                             "scores.parquet")
    assert len(scores) == 5 and scores["positive_probability"].between(0, 1).all()
    assert (scores["is_positive"] == (scores["score"] >= 0)).all()
    scorer = parquet_params(out / "cells/imdb/released/pt5000/sft/pos8/neg6/seed0/"
                            "scores.parquet")["model"]
    assert scorer["id"] == SCORER and len(scorer["commit"]) == 40
    prompts = read_parquet(out / "data/prompts.parquet", ["source", "prompt"])
    assert (prompts["source"] == DATASET).all()


def test_a_model_missing_from_the_cache_names_id_revision_and_the_fetch_command(hubworld,
                                                                             tmp_path):
    """A compute job never downloads: with the manifest there but the snapshot gone (a cache
    that was cleaned), fetch_base fails naming what to fetch."""
    work, config = hubworld
    other = tmp_path / "work"
    (other / "results/hubworld/hub/model" / MODEL).mkdir(parents=True)
    manifest = {"repo_type": "model", "id": MODEL, "revision": "main", "commit": "0" * 40,
                "path": str(other / "nowhere")}
    (other / "results/hubworld/hub/model" / MODEL / "main.json").write_text(
        json.dumps(manifest))
    done = snakemake(other, "results/hubworld/models/base/released/pt5000", config=config,
                     check=False)
    said = done.stdout + done.stderr
    assert done.returncode != 0
    assert MODEL in said and "main" in said and "prefetch" in said


@pytest.fixture(scope="module")
def plans(tmp_path_factory) -> dict[Path, tuple[subprocess.Popen, Path]]:
    """A dry run of every paper config (`make plan` without the pictures), all started at once:
    each is mostly Snakemake building a DAG of about 2,000 jobs on one core."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    started = {}
    for path in PAPER_CONFIGS:
        work = tmp_path_factory.mktemp(path.stem)
        cmd = SNAKEMAKE + ["--directory", str(work), f"--configfile={path}", "-n", "all"]
        started[path] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True, env=env), work)
    return started


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=lambda p: p.stem)
def test_every_paper_config_plans_here_without_the_hub(path, plans):
    """`make plan` of each paper config: a dry run on this CPU machine, nothing downloaded;
    resources that need the model's config.json are <TBD> until it exists."""
    process, work = plans[path]
    plan, _ = process.communicate(timeout=900)
    assert process.returncode == 0, plan[-3000:]
    config = merge(DEFAULT_CONFIG, load_yaml(path))
    for repo in grid.hub_repositories(config):
        assert f"{repo['repo_type']}/{repo['repo_id']}/{repo['revision']}.json" in plan
    assert "<TBD>" in plan
    assert not (work / "results").exists()


def test_prefetch_of_a_gpu_config_runs_on_a_machine_without_one(hubworld, tmp_path):
    """A login node has no GPU: `snakemake prefetch` of a config whose stages run on cuda checks
    no device (only the stages a run runs here are checked), records every repository, and a run
    of a GPU stage here is still refused before any job."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    work, config = hubworld
    gpu = tmp_path / "gpu.yaml"
    cuda = {"device": "cuda"}
    gpu.write_text(yaml.safe_dump(merge(load_yaml(config), {
        "align": cuda, "invert": cuda, "generation": cuda, "likelihood": cuda,
        "scoring": cuda})))
    other = tmp_path / "login"
    shutil.copytree(work / "downloads", other / "downloads")
    snakemake(other, "prefetch", config=gpu)
    merged = merge(DEFAULT_CONFIG, load_yaml(gpu))
    for repo in grid.hub_repositories(merged):
        assert (other / "results/hubworld/hub" / repo["repo_type"] / repo["repo_id"]
                / f"{repo['revision']}.json").exists()
    done = snakemake(other, "all", config=gpu, check=False)
    assert done.returncode != 0 and "align.device is 'cuda'" in done.stdout + done.stderr
    assert not (other / "results/hubworld/models/base").exists()
