"""Exact invalidation: after a change, a dry run plans exactly the jobs that depend on it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from elasticity import config as cfg

from .conftest import ROOT

pytestmark = pytest.mark.workflow
LATER = {("aggregate", None), ("plot_rebound", None), ("plot_size", None),
         ("plot_pretraining", None), ("all", None)}


class Checkout:
    """A copy of the workflow's code and a finished smoke run made with it."""

    def __init__(self, root: Path, sdist: Path):
        self.code, self.work = root / "code", root / "work"
        shutil.copytree(ROOT, self.code, ignore=shutil.ignore_patterns(
            ".git", ".venv", "results", "logs", ".snakemake", "__pycache__", "*.egg-info"))
        self.config = self.code / "resources" / "configs" / "smoke.yaml"
        (self.work / "downloads").mkdir(parents=True)
        shutil.copy(sdist, self.work / "downloads" / sdist.name)
        self.snakemake("all")

    def snakemake(self, *args: str) -> str:
        # The copy's package comes first on the path, so jobs and fingerprints see its code.
        env = dict(os.environ, PYTHONPATH=str(self.code / "workflow"))
        cmd = [sys.executable, "-m", "snakemake", "-s", str(self.code / "Snakefile"),
               "--profile", str(self.code / "profiles" / "local"), "--directory",
               str(self.work), "--configfile", str(self.config), "--replace-workflow-config",
               *args]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout + done.stderr

    def planned(self) -> set[tuple[str, str | None]]:
        """(rule, wildcards) of every job a dry run plans; wildcards as a set of 'name=value'."""
        jobs = set()
        text = self.snakemake("-n", "all")
        for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
            head = re.match(r"(?:local)?rule (\w+):", block)
            if head:
                found = re.search(r"^\s+wildcards: (.*)$", block, re.M)
                jobs.add((head.group(1), frozenset(found.group(1).split(", ")) if found else None))
        return jobs

    def edit_config(self, change) -> None:
        config = yaml.safe_load(self.config.read_text())
        change(config)
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))


def wildcards(**values) -> frozenset[str]:
    return frozenset(f"{k}={v}" for k, v in values.items())


def cells(config, where=lambda c: True, rules=("generate", "score")):
    out = set()
    for c in cfg.cells(config):
        if where(c):
            out |= {(rule, wildcards(model=c["model"], tokens=c["tokens"],
                                    algorithm=c["algorithm"], positive=c["positive"],
                                    negative=c["negative"], seed=c["seed"])) for rule in rules}
    return out


@pytest.fixture(scope="module")
def checkout(tmp_path_factory, sdist):
    return Checkout(tmp_path_factory.mktemp("invalidation"), sdist)


@pytest.fixture
def smoke(checkout):
    """The checkout with its smoke config and code as they were, restored after each test."""
    config_text = checkout.config.read_text()
    generation = checkout.code / "workflow" / "elasticity" / "generation.py"
    code_text = generation.read_text()
    yield checkout
    checkout.config.write_text(config_text)
    generation.write_text(code_text)


def _invert_jobs(config, where=lambda c: True):
    jobs = set()
    for c in cfg.cells(config):
        if c["negative"] > 0 and where(c):
            jobs.add(("invert", wildcards(algorithm=c["algorithm"], model=c["model"],
                                          tokens=c["tokens"], positive=c["positive"],
                                          negative=c["negative"], seed=c["seed"])))
    return jobs


def test_an_unchanged_workflow_plans_nothing(smoke):
    assert smoke.planned() == set()


def test_negative_stage_learning_rate_reruns_inverse_cells_only(smoke):
    smoke.edit_config(lambda c: c["invert"].update(learning_rate=0.005))
    config = yaml.safe_load(smoke.config.read_text())
    expected = _invert_jobs(config) | cells(config, lambda c: c["negative"] > 0) | LATER
    assert smoke.planned() == expected


def test_a_new_negative_volume_adds_only_its_cells(smoke):
    smoke.edit_config(lambda c: c["grid"]["negative"].append(30))
    config = yaml.safe_load(smoke.config.read_text())
    new = lambda c: c["negative"] == 30  # noqa: E731
    assert smoke.planned() == _invert_jobs(config, new) | cells(config, new) | LATER


def test_one_models_architecture_reruns_only_that_models_cells(smoke):
    smoke.edit_config(lambda c: c["models"]["tiny-b"].update(intermediate_size=128))
    config = yaml.safe_load(smoke.config.read_text())
    planned = smoke.planned()
    ours = lambda c: c["model"] == "tiny-b"  # noqa: E731
    assert {job for job in planned if job[0] in ("generate", "score", "invert")} == (
        cells(config, ours) | _invert_jobs(config, ours))
    assert {job for job in planned if job[0] in ("pretrain", "align")} == {
        *{("pretrain", wildcards(model="tiny-b", tokens=t)) for t in (10000, 20000)},
        *{("align", wildcards(algorithm="sft", model="tiny-b", tokens=20000, positive=p, seed=s))
          for p in config["grid"]["positive"] for s in config["grid"]["seeds"]}}
    assert {job[0] for job in planned} == {"pretrain", "align", "invert", "generate", "score",
                                           *(rule for rule, _ in LATER)}


def test_the_scorer_threshold_reruns_scoring_and_later(smoke):
    smoke.edit_config(lambda c: c["scoring"].update(threshold=0.3))
    config = yaml.safe_load(smoke.config.read_text())
    assert smoke.planned() == cells(config, rules=("score",)) | LATER


def test_an_edit_to_generation_code_reruns_generation_and_later(smoke):
    generation = smoke.code / "workflow" / "elasticity" / "generation.py"
    generation.write_text(generation.read_text() + "\n# an edit\n")
    config = yaml.safe_load(smoke.config.read_text())
    assert smoke.planned() == cells(config) | LATER
