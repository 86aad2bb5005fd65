"""Issue 7: every class of bad input stops the workflow with a message a user can act on.

Each test runs the real `snakemake` command on the smoke config with one thing wrong and checks
(a) a non-zero exit before any job ran (config classes: no results/ or logs/ at all; runtime
classes: the one failing job), (b) that the message names the key or file (and line) and what
would be valid, and (c) that nothing was written outside results/, logs/, downloads/ and
.snakemake/ of the working directory.

Config-time classes (1-8) run as dry runs in a fresh directory whose validation cache
(.snakemake/elasticity) is warm, as a user's second run would find it; the cache remembers only
passing checks, so a bad config is still checked afresh. Runtime classes (9-11) reuse one
finished smoke run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import pytest
import yaml

from elasticity import data, grid
from elasticity.configfile import load_yaml, merge
from elasticity.grid import Cell

from .conftest import SMOKE, SMOKE_CONFIG, SNAKEMAKE, SOURCE, snakemake

pytestmark = pytest.mark.workflow

ALLOWED = ("results", "logs", "downloads", ".snakemake")
SDIST_NAME = f"{SOURCE['package']}-{SOURCE['version']}.tar.gz"
SDIST_KEY = f"downloads/{SDIST_NAME}"
SMOKE_TEXT = SMOKE_CONFIG.read_text()
SMOKE_OVERRIDE = load_yaml(SMOKE_CONFIG)
# Tokens per pretraining optimizer step in the smoke config (gradient accumulation: 1).
STEP_TOKENS = (SMOKE["pretraining"]["seq_len"]
               * SMOKE["pretraining"]["trainer"]["per_device_train_batch_size"])
# Movie snippets the pinned sdist has for the positive pool (the shipped facts: known before
# any download).
POSITIVE_AVAILABLE = sum(
    n for rating, n in data.known_facts(SOURCE["sha256"])["movie_ratings"].items()
    if float(rating) >= SMOKE["data"]["polarity_threshold"])


class NoLocation(AssertionError):
    """The message lacks the file and line of the problem (see the YAML syntax error case)."""


@dataclass(frozen=True)
class Bad:
    """One bad input: an override merged into the smoke override (or the override file's text
    verbatim), what the message must contain, and how the working directory's downloads/
    differs from a fresh one."""

    override: dict = field(default_factory=dict)
    expect: tuple[str, ...] = ()
    text: str | None = None
    located: tuple[int, ...] = ()  # the line(s) of the problem in the override file
    downloads: str = "genuine"  # genuine | empty | tampered
    dry_run: bool = True


def renamed_model(name: str) -> Bad:
    """A model named `name` (an entry under `models:`), used on the size axis."""
    arch = SMOKE_OVERRIDE["models"]["tiny-b"]
    return Bad({"models": {name: arch}, "grid": {"size_axis": {"model": ["tiny-a", name]}}},
               ("models", "grid.size_axis.model", repr(name), "letters, digits"))


def path_string(key: str, value: str) -> Bad:
    """Config key `key` (dotted) set to `value`."""
    override: dict = {}
    *parents, last = key.split(".")
    node = override
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return Bad(override, (key, repr(value), "letters, digits"))


def line_of(text: str, prefix: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(prefix))


SMOKE_LINES = len(SMOKE_TEXT.splitlines())


def appended(extra: str, lines: int | tuple[int, ...], *expect: str) -> Bad:
    """The smoke override file with `extra` appended; the problem is on (one of) `lines`,
    numbered in the whole file."""
    return Bad(text=SMOKE_TEXT + extra, expect=expect,
               located=lines if isinstance(lines, tuple) else (lines,))


PATHS = {
    "name-dotdot": path_string("name", ".."),
    "model-dotdot": renamed_model("../x"),
    "model-slash": renamed_model("a/b"),
    "source-version": path_string("data.source.version", "../../x"),
    "algorithm": Bad({"grid": {"algorithm": ["../sft"]}},
                     ("grid.algorithm", "'../sft'", "letters, digits")),
}
DEVICES = {
    # Refused when a run starts here; a dry run (a plan) of a GPU config works anywhere.
    stage: Bad({stage: {"device": "cuda"}}, (f"{stage}.device", "'cuda'", "'cpu'"),
               dry_run=False)
    for stage in ("pretraining", "generation")
}
ARCHITECTURES = {
    # Transformers' own reasons: RoPE needs an even head dimension (30 / 2 heads = 15) ...
    "odd-head-dim": Bad({"models": {"tiny-b": {"hidden_size": 30, "num_attention_heads": 2}}},
                        ("models.tiny-b", "RoPE", "even")),
    # ... and the hidden size must split evenly over the heads.
    "indivisible": Bad({"models": {"tiny-b": {"hidden_size": 50, "num_attention_heads": 3}}},
                       ("models.tiny-b", "multiple", "attention heads")),
}
BUDGETS = {
    # 10000 and 10100 tokens are both ceil(x / 256) = 40 steps: one checkpoint, two names.
    "one-step-apart": Bad({"grid": {"pretraining_axis": {"pretrain_tokens": [10000, 10100]}}},
                          ("10000", "10100", "grid.pretraining_axis", str(STEP_TOKENS))),
}
POOLS = {
    # No sdist in downloads/: the shipped facts must decide, and no download may start.
    "positive": Bad({"data": {"pools": {"positive": 6000}}},
                    ("data.pools.positive", "6000", str(POSITIVE_AVAILABLE)),
                    downloads="empty", dry_run=False),
}
INTEGRITY = {
    "tampered-sdist": Bad({}, (SDIST_KEY, "data.source.sha256", SOURCE["sha256"]),
                          downloads="tampered"),
    "wrong-sha256": Bad({"data": {"source": {"sha256": "0" * 64}}},
                        (SDIST_KEY, "data.source.sha256", SOURCE["sha256"])),
}
SWITCHES = {
    "algorithm": Bad({"grid": {"algorithm": ["ppo"]}}, ("grid.algorithm", "'ppo'", "sft")),
    "scorer": Bad({"scoring": {"scorer": "roberta"}}, ("scoring.scorer", "'roberta'", "vader")),
    "task": Bad({"task": "summarization"}, ("task", "'summarization'", "sentiment")),
    "experiment": Bad({"experiments": ["rebond"]}, ("experiments", "'rebond'", "rebound")),
    "trainer-field": Bad({"align": {"sft": {"learning_rat": 0.001}}},
                         ("align.sft.learning_rat", "SFTConfig", "'learning_rate'")),
    "owned-seed": Bad({"invert": {"sft": {"seed": 3}}},
                      ("invert.sft.seed", "set by the workflow", "grid.seed")),
    "owned-output-dir": Bad({"align": {"sft": {"output_dir": "elsewhere"}}},
                            ("align.sft.output_dir", "set by the workflow")),
}
# Appended sections are ones the smoke file lacks: a second `generation:` would be a duplicate
# top-level key before anything inside it.
CONFIG_FILES = {
    "duplicate-key": appended(
        "name: other\n", SMOKE_LINES + 1,
        f"duplicate key 'name' (first defined on line {line_of(SMOKE_TEXT, 'name:')})"),
    "duplicate-nested-key": appended(
        "scoring:\n  threshold: 0.1\n  threshold: 0.2\n", SMOKE_LINES + 3,
        f"duplicate key 'threshold' (first defined on line {SMOKE_LINES + 2})"),
    # Noticed on the line after the unclosed bracket: either line will do.
    "syntax-error": appended(
        "scoring:\n  threshold: [1, 2\n  scorer: vader\n", (SMOKE_LINES + 2, SMOKE_LINES + 3),
        "expected ',' or ']'"),
}
# Class number -> (what it is, its cases); the benchmark takes each class's first case.
CLASSES = {
    1: ("strings that become paths", PATHS),
    2: ("devices the machine lacks", DEVICES),
    3: ("architectures the model class refuses", ARCHITECTURES),
    4: ("budgets of one optimizer step", BUDGETS),
    5: ("pools larger than the corpus", POOLS),
    6: ("integrity of the source", INTEGRITY),
    7: ("switches without implementation", SWITCHES),
    8: ("config files", CONFIG_FILES),
}


def cases(table: dict[str, Bad]):
    return pytest.mark.parametrize("case", list(table.values()), ids=list(table))


# ---------------------------------------------------------------------------------------------
# Helpers: working directories, override files, the tree snapshot.


def set_downloads(work: Path, sdist: Path, state: str) -> None:
    """downloads/ of `work` as `state` says: the genuine sdist, none, or the sdist with one
    byte flipped (same size: only the hash can tell)."""
    downloads = work / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / SDIST_NAME
    target.unlink(missing_ok=True)
    if state == "empty":
        return
    shutil.copy(sdist, target)
    if state == "tampered":
        content = bytearray(target.read_bytes())
        content[len(content) // 2] ^= 0xFF
        target.write_bytes(bytes(content))


def write_override(path: Path, case: Bad) -> Path:
    if case.text is not None:
        path.write_text(case.text)
    else:
        # merge() copies what it changes: align.sft and invert.sft, one YAML anchor in the
        # smoke file, stay apart when an override changes only one of them.
        path.write_text(yaml.safe_dump(merge(SMOKE_OVERRIDE, case.override), sort_keys=False))
    return path


def tree(root: Path) -> dict[str, tuple[int, int] | None]:
    """Every path below `root`: files with (size, mtime), directories with None (a directory's
    mtime changes with its entries; its entries are listed themselves)."""
    return {str(p.relative_to(root)): None if p.is_dir() and not p.is_symlink()
            else (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def written_outside(root: Path, before: dict, work: Path) -> list[str]:
    """Paths below `root` added, changed or removed since `before`, except in the allowed
    directories of the working directory `work` (itself below or equal to `root`)."""
    after = tree(root)
    allowed = [work.relative_to(root) / name for name in ALLOWED]
    changed = {p for p in before.keys() | after.keys() if before.get(p, 0) != after.get(p, 0)}
    return sorted(p for p in changed
                  if not any(Path(p) == a or a in Path(p).parents for a in allowed))


def tail(output: str) -> str:
    return output[-4000:]


def check_message(output: str, case: Bad, override: Path) -> None:
    if case.located:
        # `file:line` or `"file", line N`.
        lines = "|".join(map(str, case.located))
        where = rf"{re.escape(str(override))}\D{{1,12}}(?:{lines})\b"
        if not re.search(where, output):
            raise NoLocation(f"no file and line (/{where}/) in the message:\n{tail(output)}")
    for fragment in case.expect:
        assert fragment in output, f"{fragment!r} missing:\n{tail(output)}"


@pytest.fixture(scope="module")
def warm_cache(finished_smoke) -> Path:
    """The validation cache (trainer fields, sections, models) of a valid run, as a user's
    second run finds it."""
    return finished_smoke / ".snakemake" / "elasticity"


def reject(tmp_path: Path, sdist: Path, cache: Path, case: Bad) -> str:
    """Run `all` on the bad config in a fresh directory; check (a) and (c) of every class and
    the message (b). Returns the output."""
    work = tmp_path / "work"
    set_downloads(work, sdist, case.downloads)
    shutil.copytree(cache, work / ".snakemake" / "elasticity")
    override = write_override(tmp_path / "override.yaml", case)
    # The snapshot covers the working directory's parent: a path that climbs out by one `..`
    # lands there.
    before = tree(tmp_path)
    done = snakemake(work, *(["-n"] if case.dry_run else []), "all", config=override,
                     check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"the bad config was accepted:\n{tail(output)}"
    # Before any job: a job writes its log (and its outputs) first.
    assert not (work / "results").exists() and not (work / "logs").exists(), tail(output)
    assert written_outside(tmp_path, before, work) == []
    check_message(output, case, override)
    return output


# ---------------------------------------------------------------------------------------------
# Classes 1-8: the config is refused before any job.


@cases(PATHS)
def test_1_strings_that_become_paths_are_refused(tmp_path, sdist, warm_cache, case):
    reject(tmp_path, sdist, warm_cache, case)


@cases(DEVICES)
def test_2_devices_the_machine_lacks_are_refused(tmp_path, sdist, warm_cache, case):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    reject(tmp_path, sdist, warm_cache, case)


@cases(ARCHITECTURES)
def test_3_architectures_the_model_class_refuses_are_refused(tmp_path, sdist, warm_cache,
                                                             case):
    reject(tmp_path, sdist, warm_cache, case)


@cases(BUDGETS)
def test_4_budgets_within_one_optimizer_step_are_refused(tmp_path, sdist, warm_cache, case):
    reject(tmp_path, sdist, warm_cache, case)


@cases(POOLS)
def test_5_pools_the_corpus_cannot_fill_are_refused_before_download(tmp_path, sdist,
                                                                    warm_cache, case):
    # A real run (not -n): the download would be its first job.
    output = reject(tmp_path, sdist, warm_cache, case)
    assert list((tmp_path / "work" / "downloads").iterdir()) == []
    # Snakemake names every job it starts; the download is rule fetch_source.
    assert "fetch_source" not in output, tail(output)


@cases(INTEGRITY)
def test_6_a_source_that_is_not_the_pinned_file_is_refused(tmp_path, sdist, warm_cache, case):
    reject(tmp_path, sdist, warm_cache, case)


@cases(SWITCHES)
def test_7_switches_without_implementation_are_refused(tmp_path, sdist, warm_cache, case):
    reject(tmp_path, sdist, warm_cache, case)


SYNTAX_GAP = (
    "Snakemake parses --configfile files itself (snakemake.settings.types.ConfigSettings."
    "_get_overwrite_config) before any workflow code runs, and its WorkflowError 'Config file "
    "is not valid JSON or YAML...' names neither the file nor the line (only --verbose shows "
    "PyYAML's traceback); the workflow's strict loader never gets to read the file")


@pytest.mark.parametrize("case", [
    CONFIG_FILES["duplicate-key"],
    CONFIG_FILES["duplicate-nested-key"],
    pytest.param(CONFIG_FILES["syntax-error"],
                 marks=pytest.mark.xfail(raises=NoLocation, strict=True, reason=SYNTAX_GAP)),
], ids=list(CONFIG_FILES))
def test_8_config_file_errors_name_file_and_line(tmp_path, sdist, warm_cache, case):
    reject(tmp_path, sdist, warm_cache, case)


# ---------------------------------------------------------------------------------------------
# Classes 9-11: damage after a finished run, a killed controller.


@pytest.fixture(scope="module")
def finished(finished_smoke) -> Path:
    """A finished smoke run. Tests damage copies of it, never the run itself: Snakemake deletes
    the outputs of a failed job, which would leave the next test a different run."""
    return finished_smoke


def copy_of(run: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(run, work, symlinks=True)  # copy2: mtimes kept, so nothing looks stale
    return work


def out(cell_path: str) -> str:
    return f"results/{SMOKE['name']}/{cell_path}"


CELL = Cell(SMOKE["task"], "tiny-a", 10000, "sft", 40, 8, 1)
# (the cell whose scores are copied, the cell whose file they replace)
SWAPS = {
    "sibling-cell": (CELL, replace(CELL, negative=16)),
    "other-model": (Cell(SMOKE["task"], "tiny-b", 20000, grid.BASE, 0, 0, 0), CELL),
}


def slow_after_first(table: dict):
    """A runtime class's cases, all but the first marked slow: each costs a job (~15 s), and
    the fast part of this file should stay near 3 minutes."""
    return [pytest.param(value, id=key, marks=[pytest.mark.slow] if i else [])
            for i, (key, value) in enumerate(table.items())]


@pytest.mark.parametrize("swap", slow_after_first(SWAPS))
def test_9_aggregation_refuses_a_scores_file_of_another_cell(finished, tmp_path, swap):
    source, victim = swap
    assert {source, victim} <= set(grid.cells(SMOKE))
    work = copy_of(finished, tmp_path)
    replaced = out(f"{victim.directory()}/scores.parquet")
    shutil.copyfile(work / out(f"{source.directory()}/scores.parquet"), work / replaced)
    before = tree(tmp_path)

    done = snakemake(work, "--forcerun", "aggregate", "all", check=False)

    output = done.stdout + done.stderr
    assert done.returncode != 0, tail(output)
    assert "CellMismatchError" in output, tail(output)
    for fragment in (replaced, str(victim.row()), str(source.row()),
                     f"snakemake --force {replaced}"):
        assert fragment in output, f"{fragment!r} missing:\n{tail(output)}"
    assert written_outside(tmp_path, before, work) == []


# Ways a model file gets damaged (a full disk, a bad copy): a half file, same-size garbage.
DAMAGES = {
    "truncated": lambda path: os.truncate(path, path.stat().st_size // 2),
    "garbage": lambda path: path.write_bytes(os.urandom(path.stat().st_size)),
}


@pytest.mark.parametrize("damage", slow_after_first(DAMAGES))
def test_10_a_damaged_model_fails_its_job_naming_it(finished, tmp_path, damage):
    cell = replace(CELL, negative=0, seed=0)  # N = 0: generates from the aligned model itself
    work = copy_of(finished, tmp_path)
    model = out(cell.model_path())
    damage(work / model / "model.safetensors")
    generations = out(f"{cell.directory()}/generations.parquet")
    before = tree(tmp_path)

    done = snakemake(work, "--force", generations, check=False)

    output = done.stdout + done.stderr
    assert done.returncode != 0, tail(output)
    assert "DamagedOutputError" in output, tail(output)
    assert re.search(rf"snakemake --force '?{re.escape(model)}\b", output), tail(output)
    assert written_outside(tmp_path, before, work) == []


@pytest.fixture
def short_tmpdir():
    """The controllers' TMPDIR: private (the check below sees only their leftovers) and short
    (the forkserver's socket path must fit in 107 bytes, or it keeps multiprocessing's own)."""
    path = Path(tempfile.mkdtemp(prefix="kill-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def kill_during_training(cmd: list[str], work: Path, env: dict[str, str]) -> int:
    """Start `cmd` in its own session; once a base model is trained and Snakemake holds its
    locks, `kill -9` the whole group (controller, forkserver, jobs). Returns the pid."""
    controller = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, start_new_session=True, env=env)
    try:
        base = work / "results" / SMOKE["name"] / "models" / "base"
        locks = work / ".snakemake" / "locks"
        deadline = time.monotonic() + 600
        while not (any(base.glob("*/pt*")) and any(locks.glob("*"))):
            assert controller.poll() is None, controller.stdout.read()
            assert time.monotonic() < deadline, "no base model after 10 minutes"
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(controller.pid, signal.SIGKILL)
        controller.wait()
        controller.stdout.close()
    return controller.pid


@pytest.mark.slow
def test_11_the_same_command_finishes_after_the_controller_is_killed(
        finished, tmp_path, sdist, short_tmpdir):
    work = tmp_path / "work"
    set_downloads(work, sdist, "genuine")
    env = {**os.environ, "TMPDIR": str(short_tmpdir)}
    cmd = [*SNAKEMAKE, "--directory", str(work), f"--configfile={SMOKE_CONFIG}", "all"]
    before = tree(tmp_path)

    pid = kill_during_training(cmd, work, env)
    # What the kill left: Snakemake's locks and the forkserver's dir of a dead controller.
    assert any((work / ".snakemake" / "locks").glob("*.lock"))
    assert list(short_tmpdir.glob(f"elasticity-{pid}-*"))

    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)

    output = done.stdout + done.stderr
    assert done.returncode == 0, tail(output)
    assert "removed stale Snakemake locks of a killed run" in output, tail(output)
    rows = f"results/{SMOKE['name']}/responses.parquet"
    pd.testing.assert_frame_equal(pd.read_parquet(work / rows),
                                  pd.read_parquet(finished / rows))
    # Every controller has ended: none of their private dirs, no forkserver dir anywhere.
    assert list(short_tmpdir.glob("elasticity-*")) == []
    assert list(short_tmpdir.rglob("pymp-*")) == []
    assert written_outside(tmp_path, before, work) == []
