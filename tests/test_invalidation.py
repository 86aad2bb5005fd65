"""Exact invalidation: after a change, a dry run plans exactly the jobs that depend on it.

One smoke run is made with a copy of the code; each test then changes the config (an override
file, as a user would write one) or the copy's code, and compares a dry run's plan, job by job,
with the set expected from the grid (elasticity.grid, elasticity.chains).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from elasticity import chains, grid
from elasticity.configfile import load_yaml, merge

from .conftest import ROOT, SMOKE

pytestmark = pytest.mark.workflow

Job = tuple[str, frozenset[str] | None]
# The jobs that every changed cell reruns: they read all cells (or the summary of all cells).
LATER: set[Job] = ({(rule, None) for rule in ("aggregate", "plot_compression", "analyze", "all",
                                                "kl_table", "threshold", "mitigation",
                                                "theory_table")}
                   | {(rule, frozenset({f"metric={metric}"}))
                      for rule in ("plot_rebound", "plot_size", "plot_pretraining",
                                   "plot_algorithms", "plot_algorithm_sizes", "plot_reverse")
                      for metric in ("positive_rate", "margin")}
                   | {("ablation_claims", frozenset({f"experiment={name}"}))
                      for name in ("algorithms", "reverse")})
# The step (elasticity.runner.STEPS) whose code fingerprint each rule carries in `params.code`.
RULE_STEP = {
    "fetch_source": "fetch_source", "prepare_data": "prepare_sentiment",
    "tokenizer": "tokenizer", "pretrain": "pretrain", "align_sft": "finetune",
    "invert_sft": "finetune", "generate": "generate", "score": "score",
    "score_splits": "score_splits", "likelihood": "likelihood", "aggregate": "aggregate",
    "plot_rebound": "plot_rebound", "plot_size": "plot_axis", "plot_pretraining": "plot_axis",
    "plot_compression": "plot_compression", "analyze": "analyze",
    "invert_dpo": "finetune", "invert_kto": "finetune", "invert_simpo": "finetune",
    "invert_rloo": "finetune_online", "plot_algorithms": "plot_algorithms",
    "plot_algorithm_sizes": "plot_algorithm_sizes", "plot_reverse": "plot_reverse",
    "ablation_claims": "ablation_claims", "kl_table": "kl_table",
    "resistance": "resistance", "resistance_table": "resistance_table",
    "theory": "theory", "theory_table": "theory_table", "threshold": "threshold",
    "mitigation": "mitigation",
}
# The sdist is copied into the run rather than downloaded by it, so Snakemake has no record of
# fetch_source's params to compare: a change to its code cannot rerun it here.
UNRECORDED = {"fetch_source"}


class Checkout:
    """A copy of the workflow's code and a finished smoke run made with it."""

    def __init__(self, root: Path, sdist: Path):
        self.root, self.code, self.work = root, root / "code", root / "work"
        shutil.copytree(ROOT, self.code, ignore=shutil.ignore_patterns(
            ".git", ".venv", "results", "logs", ".snakemake", "__pycache__", "*.egg-info",
            ".pytest_cache", ".ruff_cache"))
        self.package = self.code / "workflow" / "elasticity"
        self.smoke = self.code / "resources" / "configs" / "smoke.yaml"
        self.config = self.smoke  # the override file the next run is given
        self.output = ""  # the last dry run's output
        # The copy's package comes first on the path, so jobs and fingerprints see its code.
        self.env = dict(os.environ, PYTHONPATH=str(self.code / "workflow"))
        (self.work / "downloads").mkdir(parents=True)
        shutil.copy(sdist, self.work / "downloads" / sdist.name)
        self.snakemake("all")

    def snakemake(self, *args: str) -> str:
        cmd = [sys.executable, "-m", "snakemake", "-s", str(self.code / "Snakefile"),
               "--profile", str(self.code / "profiles" / "local"), "--directory",
               str(self.work), f"--configfile={self.config}", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout + done.stderr

    def planned(self, *args: str) -> set[Job]:
        """(rule, wildcards) of every job a dry run plans; wildcards as a set of 'name=value'."""
        self.output = self.snakemake("-n", "all", *args)
        jobs = set()
        for block in re.split(r"\n(?=(?:local)?rule \w+:)", self.output):
            head = re.match(r"(?:local)?rule (\w+):", block)
            if head:
                found = re.search(r"^\s+wildcards: (.*)$", block, re.M)
                jobs.add((head.group(1), frozenset(found.group(1).split(", ")) if found else None))
        return jobs

    def forced(self, rules: set[str]) -> set[Job]:
        """What a dry run plans when `rules` are forced: their jobs and every job downstream.
        On an unchanged checkout, exactly what a change to those rules alone must rerun."""
        return self.planned("--forcerun", *sorted(rules)) if rules else set()

    def override(self, change: Callable[[dict], object]) -> dict:
        """Run with the smoke overrides changed by `change`; returns the config the workflow
        sees (the default merged with them: mappings key by key, lists replace)."""
        # JSON breaks the smoke file's YAML aliases (invert.sft is align.sft's anchor), so a
        # change to one section stays in that section.
        overrides = json.loads(json.dumps(load_yaml(self.smoke)))
        change(overrides)
        self.config = self.root / "override.yaml"
        self.config.write_text(yaml.safe_dump(overrides, sort_keys=False))
        return merge(load_yaml(self.code / "config.yaml"), overrides)

    def closures(self) -> dict[str, list[str]]:
        """Each step's import closure, read from the copy's code."""
        script = ("import json, elasticity\n"
                  "from elasticity.fingerprint import import_closure\n"
                  "from elasticity.runner import STEPS\n"
                  "print(json.dumps({'file': elasticity.__file__, 'closures': {\n"
                  "    s: import_closure(spec.split(':')[0]) for s, spec in STEPS.items()}}))")
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=self.env, check=True)
        found = json.loads(done.stdout)
        assert Path(found["file"]).is_relative_to(self.package)
        return found["closures"]

    def edit(self, module: str, change: Callable[[str], str]) -> None:
        path = self.package / f"{module}.py"
        path.write_text(change(path.read_text()))


def wildcards(**values) -> frozenset[str]:
    return frozenset(f"{k}={v}" for k, v in values.items())


def cell_jobs(config, where=lambda c: True,
              rules=("generate", "score", "likelihood")) -> set[Job]:
    """Jobs of the cells (base-model cells included): every cell's likelihood, the sampled
    cells' generations and scores."""
    return {(rule, wildcards(**c.wildcards())) for c in grid.cells(config) if where(c)
            for rule in rules if rule == "likelihood" or grid.sampled(config, c)}


def link_jobs(config, stage: str, where=lambda c: True) -> set[Job]:
    """A fine-tuning stage's training jobs: one rule per algorithm, so no {algorithm}
    wildcard; an aligned model has no {negative} either."""
    jobs = set()
    for c in grid.trained_models(config, stage):
        if where(c):
            row = c.wildcards()
            del row["algorithm"]
            if stage == "align":
                del row["second"]
            jobs.add((f"{stage}_{c.algorithm}", wildcards(**row)))
    return jobs


def pretrain_jobs(config, where=lambda model, tokens: True) -> set[Job]:
    return {("pretrain", wildcards(model=m, pretrain_tokens=t))
            for m, t in grid.checkpoints(config) if where(m, t)}


def rules_running(closures: dict[str, list[str]], module: str) -> set[str]:
    """The rules whose step's import closure contains `module`."""
    return {rule for rule, step in RULE_STEP.items() if module in closures[step]}


@pytest.fixture(scope="module")
def checkout(tmp_path_factory, sdist):
    return Checkout(tmp_path_factory.mktemp("invalidation"), sdist)


@pytest.fixture
def smoke(checkout):
    """The checkout with its smoke config and code as they were, restored after each test."""
    files = {p: p.read_bytes() for p in checkout.package.rglob("*") if p.is_file()}
    yield checkout
    checkout.config = checkout.smoke
    for path in checkout.package.rglob("*.py"):
        if path not in files:
            path.unlink()
    for path, content in files.items():
        if path.read_bytes() != content:
            path.write_bytes(content)


def test_an_unchanged_workflow_plans_nothing(smoke):
    assert smoke.planned() == set()


def test_the_rule_table_names_every_rule(smoke):
    """RULE_STEP drives the code cases below: it must name the workflow's rules, no more."""
    every = {rule for rule, _ in smoke.planned("--forceall")}
    assert every - {"all"} == set(RULE_STEP)
    assert set(RULE_STEP.values()) <= set(smoke.closures())


def test_the_inverse_learning_rate_reruns_inverted_cells_only(smoke):
    """invert.sft trains the SFT links of the second stage, in both orders; the other
    algorithms' links and every aligned model stay."""
    config = smoke.override(lambda c: c["invert"]["sft"].update(learning_rate=0.005))
    inverted = lambda c: c.algorithm == "sft" and c.volume("invert") > 0  # noqa: E731
    assert smoke.planned() == (link_jobs(config, "invert", inverted)
                               | cell_jobs(config, inverted) | LATER)


def test_one_algorithm_s_trainer_reruns_only_that_algorithm_s_links_and_cells(smoke):
    """The aligned models every algorithm starts from stay; so do the other algorithms."""
    config = smoke.override(lambda c: c["invert"].setdefault("dpo", {}).update(beta=0.2))
    dpo = lambda c: c.algorithm == "dpo"  # noqa: E731
    assert smoke.planned() == link_jobs(config, "invert", dpo) | cell_jobs(config, dpo) | LATER


def test_an_appended_volume_adds_only_its_link(smoke):
    """N = 24 continues the N = 16 model: one new link per chain, nothing before it reruns."""
    config = smoke.override(lambda c: c["grid"]["negative"].append(24))
    # Table 3's grid has N = 24 on tiny-a @ 20k already: those cells exist, once; as rebound
    # cells they are now sampled too.
    before = set(grid.cells(SMOKE))
    new = lambda c: c.negative == 24 and c not in before  # noqa: E731
    sampled_now = lambda c: c in before and not grid.sampled(SMOKE, c)  # noqa: E731
    assert smoke.planned() == (link_jobs(config, "invert", new) | cell_jobs(config, new)
                               | cell_jobs(config, sampled_now, rules=("generate", "score"))
                               | LATER)


def test_a_new_volume_inserts_a_link_and_reruns_only_the_links_after_it(smoke):
    """P = 56 between 40 and 80: P = 56 is new, P = 80 now continues it instead of P = 40,
    and everything trained from either reruns; P = 40's chain prefix stays."""
    config = smoke.override(lambda c: c["grid"].update(positive=[40, 56, 80]))
    after = lambda c: c.positive in (56, 80)  # noqa: E731
    assert smoke.planned() == (link_jobs(config, "align", after)
                               | link_jobs(config, "invert", after)
                               | cell_jobs(config, after) | LATER)


def test_one_models_architecture_reruns_only_that_models_cells(smoke):
    config = smoke.override(lambda c: c["models"]["tiny-b"].update(intermediate_size=128))
    ours = lambda c: c.model == "tiny-b"  # noqa: E731
    assert smoke.planned() == (pretrain_jobs(config, lambda m, t: m == "tiny-b")
                               | link_jobs(config, "align", ours)
                               | link_jobs(config, "invert", ours)
                               | cell_jobs(config, ours) | LATER)


def test_the_scorer_threshold_reruns_scoring_and_later(smoke):
    """Both scoring rules take the scoring section: every cell's scores and the splits'."""
    config = smoke.override(lambda c: c.setdefault("scoring", {}).update(threshold=0.3))
    assert smoke.planned() == (cell_jobs(config, rules=("score",)) | {("score_splits", None)}
                               | LATER)


def test_sampling_fewer_seeds_reruns_only_what_reads_all_cells(smoke):
    """`generation.cells` picks the sampled cells: seed 1's generations are no longer read,
    nothing is generated or scored again, and the likelihood metrics still cover every cell."""
    smoke.override(lambda c: c["generation"].update(cells={"seed": [0]}))
    assert smoke.planned() == LATER


def test_switching_a_stage_off_chaining_retrains_every_link_and_says_why(smoke):
    """A linear schedule depends on the total number of steps: P = 80 no longer continues
    P = 40, and every aligned model (its trainer changed) and all after it retrain."""
    def linear(c: dict) -> None:
        c["align"]["sft"].update(lr_scheduler_type="linear")
        # The resistance slices are snapshots of one chain: they need a chaining schedule.
        c["experiments"] = [e for e in SMOKE["experiments"] if e != "resistance"]

    config = smoke.override(linear)
    trained = lambda c: not c.is_base  # noqa: E731
    assert smoke.planned() == (link_jobs(config, "align") | link_jobs(config, "invert")
                               | cell_jobs(config, trained) | LATER)
    assert "align (sft): every cell trains on its own: lr_scheduler_type 'linear'" in (
        smoke.output)
    assert "invert (sft): chained over the volumes" in smoke.output


def test_a_volume_off_the_batch_grid_unchains_only_the_links_that_continued(smoke):
    """N = 12 is no multiple of the batch (8): each SFT-inverted model trains on its own. N = 8
    started the chain from the aligned model and still does: it stays; so do the links of the
    other algorithms. Every SFT link that continued another (N = 16, and Table 3's 24 and 32)
    now trains from the aligned model."""
    config = smoke.override(lambda c: c["grid"].update(negative=[0, 8, 12, 16]))
    before = set(grid.cells(SMOKE))

    def moved(c: grid.Cell) -> bool:
        # The replay chains decide for themselves (their rows are 2N): they stay chained.
        return c not in before or (c.algorithm == "sft" and chains.previous_link(
            SMOKE, c, "invert") != chains.previous_link(config, c, "invert"))

    assert smoke.planned() == (link_jobs(config, "invert", moved) | cell_jobs(config, moved)
                               | LATER)
    assert "invert (sft): every cell trains on its own: volumes [12]" in (
        smoke.output)


def test_registering_a_new_step_plans_nothing(smoke):
    """A new step module and its runner entry are in no existing step's closure."""
    (smoke.package / "newstep.py").write_text(
        '"""A step no rule runs yet."""\n\n\ndef run(out: str) -> None:\n'
        '    open(out, "w").close()\n')
    smoke.edit("runner", lambda text: text.replace(
        "STEPS = {\n", 'STEPS = {\n    "newstep": "elasticity.newstep:run",\n', 1))
    assert "newstep" in smoke.closures()
    assert smoke.planned() == set()


def test_comment_and_docstring_edits_plan_nothing(smoke):
    def reword(text: str) -> str:
        text = text.replace('"""', '"""Reworded: ', 1)  # the module's docstring
        text = text.replace('    """The prompt set', '    """Reworded: the prompt set', 1)
        return text.replace("\nlog = ", "\n# A new comment.\n\n\nlog = ", 1) + "# The end.\n"

    smoke.edit("generation", reword)
    assert (smoke.package / "generation.py").read_text().count("Reworded") == 2
    assert smoke.planned() == set()


def test_a_generation_code_edit_reruns_the_steps_that_run_it_and_later(smoke):
    """Generation's closure reaches generate, scoring (which imports its columns), online RL
    (rewarded by the scorer) and resistance (its slices answer prompts)."""
    rules = rules_running(smoke.closures(), "elasticity.generation")
    assert rules == {"generate", "score", "score_splits", "invert_rloo", "resistance",
                     "resistance_table"}
    expected = smoke.forced(rules - UNRECORDED)
    # The same set, from the grid: every sampled cell's generations and scores, the splits'
    # scores, the RLOO links and everything after them, the resistance jobs.
    rloo = lambda c: c.algorithm == "rloo"  # noqa: E731
    resistance = {("resistance", wildcards(seed=s)) for s in SMOKE["resistance"]["seed"]}
    assert expected == (cell_jobs(SMOKE, rules=("generate", "score")) | {("score_splits", None)}
                        | link_jobs(SMOKE, "invert", rloo) | cell_jobs(SMOKE, rloo)
                        | resistance | {("resistance_table", None)} | LATER)
    smoke.edit("generation", lambda text: text + "\n\ndef added() -> int:\n    return 1\n")
    assert smoke.planned() == expected


@pytest.mark.parametrize("module", ["io", "training"])
def test_a_shared_module_edit_reruns_exactly_the_steps_that_import_it(smoke, module):
    """io is in nearly every closure; training only in pretraining's and fine-tuning's. The
    expectation is forcing those rules on the unchanged checkout: their jobs and all after."""
    rules = rules_running(smoke.closures(), f"elasticity.{module}")
    expected = smoke.forced(rules - UNRECORDED)
    assert expected
    smoke.edit(module, lambda text: text + "\n\nADDED = 1\n")
    assert smoke.planned() == expected
