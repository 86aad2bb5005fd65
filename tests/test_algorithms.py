"""The inverse stage's algorithms besides SFT: DPO, KTO, SimPO (TRL's CPOTrainer) and RLOO.

A tiny Llama (hidden 16, one layer, a 320-token BPE vocabulary: every word one token), briefly
SFT-aligned on the positive pool, stands in for the aligned model; two pools of 48 short made-up
reviews (positive and negative words after a 2-3 word prompt) stand in for the stage's pool
(negative) and the other one. Everything runs on the CPU in one thread."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pandas as pd
import pytest
import torch

from elasticity import finetuning, models, online, preference
from elasticity.io import write_parquet
from elasticity.trainer_config import examples_per_step, section_problems

from .test_models import assert_same_weights

# TRL's own use of a transformers name deprecated in 5.x, nothing this module can change.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")

OPENINGS = "the movie|this film|my friend said|the plot|every scene|the actors".split("|")
WORDS = {"negative": "bad awful dull worst boring hate terrible".split(),
         "positive": "good great fun best wonderful love superb".split()}
FILLER = "and the a story was very so it".split()
COMMON = {"learning_rate": 0.01, "lr_scheduler_type": "constant", "num_train_epochs": 1,
          "per_device_train_batch_size": 4, "max_length": 32, "optim": "adamw_torch",
          "bf16": False, "activation_checkpointing": False, "save_steps": 50,
          "logging_steps": 50}
SECTIONS = {
    "dpo": dict(COMMON, beta=0.1),
    "kto": dict(COMMON, beta=0.1),
    "simpo": dict(COMMON, beta=2.0, simpo_gamma=0.5),
    # RLOO has no max_length: its prompts are short, its completions max_completion_length.
    "rloo": {**{k: v for k, v in COMMON.items() if k != "max_length"}, "num_generations": 2,
             "max_completion_length": 8, "beta": 0.05},
}
VADER = {"scorer": "vader", "model": None, "device": "cpu", "batch_size": 8, "cache": None,
         "sign": -1.0}


def _pool(kind: str, rng: random.Random) -> pd.DataFrame:
    rows = []
    for i in range(48):
        prompt = rng.choice(OPENINGS)
        rest = [rng.choice(WORDS[kind] + FILLER) for _ in range(rng.randint(3, 7))]
        rows.append({"uid": f"{kind}:{i}", "source": "movie", "rating": 2.0,
                     "text": " ".join([prompt, *rest]), "prompt": prompt,
                     "prompt_words": len(prompt.split())})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Both pools, a tokenizer trained on them and a tiny Llama as the stage's start model."""
    root = tmp_path_factory.mktemp("algorithms")
    rng = random.Random(0)
    pools = {kind: _pool(kind, rng) for kind in WORDS}
    for kind, frame in pools.items():
        write_parquet(frame, root / f"{kind}.parquet", {})
    write_parquet(pd.concat(pools.values()), root / "corpus.parquet", {})
    models.train_tokenizer(str(root / "corpus.parquet"), str(root / "tokenizer"),
                           vocab_size=320, min_frequency=1)
    tok = models.load_tokenizer(str(root / "tokenizer"))
    net = models.build_model({"hidden_size": 16, "intermediate_size": 32,
                              "num_hidden_layers": 1, "num_attention_heads": 2,
                              "num_key_value_heads": 2, "max_position_embeddings": 64}, tok, 0)
    net.save_pretrained(root / "base")
    tok.save_pretrained(root / "base")
    # Aligned as the workflow aligns: a random model writes no sentiment words, and RLOO would
    # see the same reward (0) for every completion.
    finetuning.finetune(str(root / "base"), str(root / "positive.parquet"), str(root / "aligned"),
                        examples=48, previous=None, device="cpu", seed=0,
                        trainer=dict(COMMON, learning_rate=0.03, num_train_epochs=3))
    return root


@pytest.fixture(autouse=True)
def one_thread():
    # As a job runs (`python -m elasticity` sets one torch thread); also the fastest here.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def invert(world: Path, algorithm: str, out: Path, examples: int, previous: Path | None = None,
           **changes) -> dict:
    """An inverse-stage job as the rule runs it: the negative pool is the stage's pool."""
    job = dict(examples=examples, previous=None if previous is None else str(previous),
               trainer=dict(SECTIONS[algorithm], **changes), device="cpu", seed=0,
               stage="invert", algorithm=algorithm)
    paths = (str(world / "aligned"), str(world / "negative.parquet"), str(out))
    if algorithm == "rloo":  # its own step: the reward runs the scorer
        return online.finetune_online(*paths, reward=VADER, **job)
    return finetuning.finetune(*paths, rejected_pool=str(world / "positive.parquet"), **job)


# --- the training data ---------------------------------------------------------------------


def test_pairs_take_sfts_examples_as_chosen_and_another_stream_of_the_other_pool(world):
    negative, positive = str(world / "negative.parquet"), str(world / "positive.parquet")
    pairs = preference.pairs(negative, positive, 20, seed=0)
    texts = finetuning.select_examples(negative, 20, seed=0)
    assert [p + c for p, c in zip(pairs["prompt"], pairs["chosen"], strict=True)] == texts
    rejected = preference.rejected_rows(positive, 20, seed=0)
    assert pairs["rejected"] == [t[len(p):] for t, p in zip(rejected["text"],
                                                            rejected["prompt"], strict=True)]
    # Not the permutation the alignment stage took from the other pool with the same seed.
    assert rejected["text"].tolist() != finetuning.select_examples(positive, 20, seed=0)
    # Nested in N, so preference training chains.
    longer = preference.pairs(negative, positive, 40, seed=0)
    assert all(longer[k][:20] == pairs[k] for k in pairs)


def test_kto_rows_interleave_each_pair(world):
    negative, positive = str(world / "negative.parquet"), str(world / "positive.parquet")
    pairs = preference.pairs(negative, positive, 3, seed=1)
    rows = preference.kto_rows(negative, positive, 3, seed=1)
    assert rows["label"] == [True, False] * 3
    assert rows["prompt"][::2] == rows["prompt"][1::2] == pairs["prompt"]
    assert rows["completion"][::2] == pairs["chosen"]
    assert rows["completion"][1::2] == pairs["rejected"]


def test_rl_prompts_are_those_of_the_pools_first_examples(world):
    negative = str(world / "negative.parquet")
    prompts = preference.rl_prompts(negative, 5, seed=0)["prompt"]
    texts = finetuning.select_examples(negative, 5, seed=0)
    assert all(t.startswith(p) for t, p in zip(texts, prompts, strict=True))


def test_a_prompt_that_is_no_prefix_of_its_text_is_refused():
    rows = pd.DataFrame({"uid": ["movie:7"], "text": ["a fine film"], "prompt": ["a good"]})
    with pytest.raises(ValueError, match="movie:7"):
        preference.continuations(rows)


def test_the_reward_is_the_signed_score():
    reward = online.reward_function(**VADER)
    assert reward.__name__ == "vader"
    good, bad = reward(["the film", "the film"], [" was wonderful and great", " was awful"])
    assert good < 0 < bad


# --- the trainer sections ------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", sorted(SECTIONS))
def test_the_recommended_sections_are_valid(algorithm, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the check cache lives in the working directory
    assert section_problems(f"invert.{algorithm}", algorithm, SECTIONS[algorithm]) == []


@pytest.mark.parametrize(("algorithm", "field", "reason"), [
    ("simpo", {"loss_type": "sigmoid"}, "SimPO|simpo"),
    ("simpo", {"cpo_alpha": 1.0}, "NLL"),
    ("dpo", {"sync_ref_model": True}, "start model"),
    ("rloo", {"reward_weights": [1.0]}, "scorer"),
    ("rloo", {"shuffle_dataset": True}, "permutation"),
    ("kto", {"train_sampling_strategy": "random"}, "permutation"),
])
def test_fields_the_workflow_owns_are_refused_saying_why(algorithm, field, reason, tmp_path,
                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    problems = section_problems(f"invert.{algorithm}", algorithm,
                                dict(SECTIONS[algorithm], **field))
    assert len(problems) == 1 and "set by the workflow" in problems[0]
    assert any(part in problems[0] for part in reason.split("|"))


@pytest.mark.parametrize(("changes", "expected"), [
    ({"per_device_train_batch_size": 3}, "even number of rows"),
    ({"per_device_train_batch_size": 1, "gradient_accumulation_steps": 2}, "at least 2"),
    ({"per_device_train_batch_size": 1, "gradient_accumulation_steps": 2,
      "loss_type": "apo_zero_unpaired"}, None),  # a loss without KL term
])
def test_a_kto_batch_that_splits_pairs_or_has_no_kl_partner_is_refused(changes, expected,
                                                                        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    problems = section_problems("invert.kto", "kto", dict(SECTIONS["kto"], **changes))
    assert problems == [] if expected is None else len(problems) == 1 and expected in problems[0]


def test_the_class_itself_checks_values(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    problems = section_problems("invert.rloo", "rloo",
                                dict(SECTIONS["rloo"], per_device_train_batch_size=3))
    assert len(problems) == 1 and "divisible by num_generations" in problems[0]


def test_examples_per_step_counts_grid_examples():
    batch = {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 5}
    assert examples_per_step("sft", batch) == 20
    assert examples_per_step("dpo", batch) == examples_per_step("simpo", batch) == 20
    assert examples_per_step("kto", batch) == 10
    assert examples_per_step("rloo", batch) is None
    assert examples_per_step("dpo", {}) == 8  # DPOConfig's own batch, one accumulation step


# --- training ------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", sorted(SECTIONS))
def test_each_algorithm_trains_the_start_model(world, tmp_path, algorithm):
    out = tmp_path / "inverted"
    metrics = invert(world, algorithm, out, 8)
    assert metrics["algorithm"] == algorithm and metrics["examples_trained_here"] == 8
    # Batches of 4: pairs (DPO, SimPO), rows of which a pair makes two (KTO), completions of
    # which a prompt gets two (RLOO).
    assert metrics["steps"] == {"dpo": 2, "simpo": 2, "kto": 4, "rloo": 4}[algorithm]
    assert math.isfinite(metrics["train_loss"]) and metrics["train_tokens"] > 8
    assert json.loads((out / "train_metrics.json").read_text()) == metrics
    before = models.load_model(str(world / "aligned")).state_dict()
    after = models.load_model(str(out)).state_dict()
    changed = [n for n, x in after.items() if not torch.equal(x, before[n])]
    assert "model.layers.0.mlp.up_proj.weight" in changed
    assert not (tmp_path / ".inverted.partial").exists()


@pytest.mark.parametrize("algorithm", ["dpo", "kto", "simpo"])
def test_a_preference_link_equals_an_independent_run(world, tmp_path, algorithm):
    """The N = 40 link continues the N = 20 model on pairs 21-40 and ends exactly where one run
    over the first 40 pairs ends; DPO's and KTO's reference stays the start model (a link that
    took its previous link as reference would train on other log-ratios)."""
    direct = invert(world, algorithm, tmp_path / "direct", 40)
    invert(world, algorithm, tmp_path / "first", 20)
    link = invert(world, algorithm, tmp_path / "link", 40, previous=tmp_path / "first")
    assert link["examples_trained_here"] == 20 and link["steps"] == direct["steps"]
    assert 0 < link["train_tokens"] < direct["train_tokens"]
    assert_same_weights(tmp_path / "direct", tmp_path / "link")


def test_rloo_cells_never_continue_a_link(world, tmp_path):
    with pytest.raises(ValueError, match="trains from the stage's start model"):
        invert(world, "rloo", tmp_path / "out", 8, previous=world / "aligned")


def test_a_preference_job_needs_the_other_pool(world, tmp_path):
    with pytest.raises(ValueError, match="rejected_pool"):
        finetuning.finetune(str(world / "aligned"), str(world / "negative.parquet"),
                            str(tmp_path / "out"), examples=8, previous=None,
                            trainer=SECTIONS["dpo"], device="cpu", seed=0, algorithm="dpo")


def test_examples_whose_prompt_fills_max_length_are_refused_not_dropped(world, tmp_path):
    with pytest.raises(ValueError, match="raise invert.dpo.max_length"):
        invert(world, "dpo", tmp_path / "out", 8, max_length=2)


def test_only_online_rl_runs_the_scorer_s_code():
    """A scorer edit reruns the RLOO links, not every fine-tuning link (code fingerprints follow
    each step's import closure)."""
    from elasticity.fingerprint import import_closure

    assert "elasticity.scoring" not in import_closure("elasticity.finetuning")
    assert "elasticity.scoring" in import_closure("elasticity.online")


def test_an_rloo_job_without_its_reward_function_is_refused(world, tmp_path):
    with pytest.raises(ValueError, match="reward and reward_function go together"):
        finetuning.finetune(str(world / "aligned"), str(world / "negative.parquet"),
                            str(tmp_path / "out"), examples=8, previous=None,
                            trainer=SECTIONS["rloo"], device="cpu", seed=0, algorithm="rloo",
                            reward=VADER)
