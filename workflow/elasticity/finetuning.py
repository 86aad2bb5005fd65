"""Steps `align_<algorithm>` and `invert_<algorithm>`: TRL fine-tuning on the first examples of a
pool: SFT, or on the inverse stage DPO, KTO, SimPO (preference pairs, elasticity.preference) or
RLOO (online RL on the pool's prompts with the stage's scorer as reward).

For one seed the examples are the first n of a seeded permutation of the pool, in that order
(the trainer never reshuffles them), so volumes are nested: the 400-example run sees the
200-example run's examples first. That makes a training chain possible: a link continues the
previous link's final checkpoint (weights, optimizer, scheduler, RNG, step count) and the
trainer skips the batches that link already trained on, so the P = 400 model is the P = 200
model trained further on examples 201-400 (see elasticity.chains for when this is exact).
DPO, KTO and SimPO chain the same way (their pairs are nested in N too), and DPO's and KTO's
reference model is always the stage's start model, never the previous link. RLOO samples its own
completions, so every RLOO cell trains on its own.

On several GPUs (`gpus` > 1) every process runs `finetune` under `accelerate launch` with
DeepSpeed ZeRO-3 (elasticity.launch); the first process alone prepares the resumable scratch
directory and writes the job's output.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from elasticity import preference
from elasticity.grid import replayed_count
from elasticity.io import atomic_path, read_parquet, write_json
from elasticity.launch import check_continuable, check_memory, deepspeed_fields
from elasticity.models import load_model, load_tokenizer, parameters_from_config
from elasticity.trainer_config import ALGORITHMS, ONLINE, ROWS_PER_EXAMPLE, build
from elasticity.training import discard, final_checkpoint, resumable_checkpoint, scratch_dir

if TYPE_CHECKING:
    from datasets import Dataset

log = logging.getLogger(__name__)


def select_examples(pool: str, n: int, seed: int) -> list[str]:
    texts = read_parquet(pool, ["text"])["text"].tolist()
    if n > len(texts):
        raise ValueError(f"{pool}: asked for {n} examples but the pool holds {len(texts)}")
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order[:n]]


def with_replay(texts: list[str], aligning: list[str], replay: float) -> list[str]:
    """The second stage's training rows with a fraction `replay` of aligning examples mixed in
    (App. C.2's mitigation): after the i-th example, as many aligning examples as bring their
    count to floor(r * i), taken in their own training order and cycled when there are fewer.
    Rows of n examples are a prefix of the rows of more, so replay links chain too."""
    if replay and not aligning:
        raise ValueError("replay needs aligning examples: the first stage trained on none")
    rows, used = [], 0
    for i, text in enumerate(texts, start=1):
        rows.append(text)
        for _ in range(replayed_count(i, replay) - used):
            rows.append(aligning[used % len(aligning)])
            used += 1
    return rows


def tokenized(tokenizer, texts: list[str], eos_token: str | None) -> Dataset:
    """Plain-text examples tokenized as SFTTrainer's preparation tokenizes them: the text with
    the EOS token appended (the config's `eos_token`, else the tokenizer's), special tokens
    added, every token a label. One batched call: SFTTrainer's own passes run example by
    example and cost about a second per thousand examples, a quarter of a fine-tuning job
    (tested equal). SFTTrainer still truncates them to `max_length` as configured.
    """
    from datasets import Dataset

    eos = eos_token or tokenizer.eos_token
    ids = tokenizer([t if t.endswith(eos) else t + eos for t in texts])["input_ids"]
    return Dataset.from_dict({"input_ids": ids, "labels": [list(row) for row in ids]})


def sft_trainer_class() -> type:
    """TRL's SFTTrainer, with the model's own causal-LM loss for the plain `nll` loss type.

    SFTTrainer computes its loss through a fused LM head that also yields every token's entropy
    and top-1 hit for its logged metrics; on these tiny models that costs about 40 % of a
    training step. `Trainer.compute_loss` (the model's `ForCausalLMLoss` on the same labels,
    summed over the same `num_items_in_batch`) gives the same loss (tested) without them. Other
    loss types (`dft`) keep TRL's own path.
    """
    from transformers import Trainer
    from trl import SFTTrainer

    class CausalLMLossSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.args.loss_type != "nll":
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return CausalLMLossSFTTrainer


def _examples_of(link: str | None) -> int:
    if link is None:
        return 0
    return int(json.loads((Path(link) / "train_metrics.json").read_text())["examples"])


# The data order each trainer keeps: the seeded permutation, never reshuffled, in each config
# class's own fields (DPO, KTO and CPO have no `shuffle_dataset`; RLOO's own sampler reads only
# `shuffle_dataset`); SFT also reads the text column itself.
ORDER_FIELDS: dict[str, dict[str, Any]] = {
    "sft": {"train_sampling_strategy": "sequential", "shuffle_dataset": False,
            "dataset_text_field": "text", "packing": False},
    "dpo": {"train_sampling_strategy": "sequential"},
    "kto": {"train_sampling_strategy": "sequential"},
    "simpo": {"train_sampling_strategy": "sequential"},
    "rloo": {"shuffle_dataset": False},
}
# The trainers of the preference algorithms (module, class) and the token lists that make up a
# row's trained sequences after the trainer's own tokenization.
PREFERENCE_TRAINERS = {
    "dpo": ("trl", "DPOTrainer"),
    "kto": ("trl", "KTOTrainer"),
    "simpo": ("trl.experimental.cpo", "CPOTrainer"),
}
SEQUENCES = {
    "dpo": ("prompt_ids", "chosen_ids", "prompt_ids", "rejected_ids"),
    "kto": ("prompt_ids", "completion_ids"),
    "simpo": ("chosen_input_ids", "rejected_input_ids"),
}


@dataclass
class _Link:
    """What a trainer of one link is built from."""

    model: str
    pool: str
    rejected_pool: str | None
    reward: Callable[..., list[float]] | None
    examples: int
    done_before: int
    seed: int
    replay: float
    aligning: list[str]
    stage: str
    net: Any
    config: Any
    tok: Any


def _sft(link: _Link) -> tuple[Any, int | None]:
    texts = with_replay(select_examples(link.pool, link.examples, link.seed), link.aligning,
                        link.replay)
    sft = sft_trainer_class()(model=link.net, args=link.config, processing_class=link.tok,
                              train_dataset=tokenized(link.tok, texts, link.config.eos_token))
    lengths = [len(ids) for ids in sft.train_dataset["input_ids"]]
    rows_before = link.done_before + replayed_count(link.done_before, link.replay)
    return sft, int(sum(lengths[rows_before:]) * link.config.num_train_epochs)


def _preference(algorithm: str) -> Callable[[_Link], tuple[Any, int | None]]:
    def build_trainer(link: _Link) -> tuple[Any, int | None]:
        from datasets import Dataset

        module, name = PREFERENCE_TRAINERS[algorithm]
        cls = getattr(importlib.import_module(module), name)
        make = preference.kto_rows if algorithm == "kto" else preference.pairs
        rows = Dataset.from_dict(make(link.pool, link.rejected_pool, link.examples, link.seed))
        # The reference is the stage's start model: loaded from `model` itself, since TRL would
        # otherwise load the policy's own path, the previous link's checkpoint.
        ref = {} if algorithm == "simpo" else {"ref_model": load_model(link.model)}
        trainer = cls(model=link.net, args=link.config, processing_class=link.tok,
                      train_dataset=rows, **ref)
        _check_all_kept(trainer.train_dataset, len(rows), link, algorithm)
        first = link.done_before * ROWS_PER_EXAMPLE.get(algorithm, 1)
        tokens = sum(len(ids) for column in SEQUENCES[algorithm]
                     for ids in trainer.train_dataset[column][first:])
        return trainer, int(tokens * link.config.num_train_epochs)

    return build_trainer


def _check_all_kept(dataset, rows: int, link: _Link, algorithm: str) -> None:
    """DPO and KTO drop examples whose prompt alone fills max_length; a dropped example would
    shift every later one across batches, and chain links would no longer line up."""
    if len(dataset) != rows:
        raise ValueError(
            f"{link.stage}.{algorithm}: {rows - len(dataset)} of {rows} training rows have "
            f"prompts of max_length ({link.config.max_length}) tokens or more, which "
            f"{algorithm.upper()} drops; raise {link.stage}.{algorithm}.max_length")


def _rloo(link: _Link) -> tuple[Any, int | None]:
    from datasets import Dataset
    from trl import RLOOTrainer

    trainer = RLOOTrainer(
        model=link.net, reward_funcs=link.reward,
        args=link.config, processing_class=link.tok,
        train_dataset=Dataset.from_dict(preference.rl_prompts(link.pool, link.examples,
                                                              link.seed)))
    # The sampled completions are known only after training (None: read from the trainer).
    return trainer, None


TRAINERS: dict[str, Callable[[_Link], tuple[Any, int | None]]] = {
    "sft": _sft, "dpo": _preference("dpo"), "kto": _preference("kto"),
    "simpo": _preference("simpo"), "rloo": _rloo,
}


def _check_arguments(algorithm: str, previous: str | None, rejected_pool: str | None,
                     reward: dict[str, Any] | None, replay: float,
                     replay_pool: str | None) -> None:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; known: {', '.join(ALGORITHMS)}")
    if replay < 0:
        raise ValueError(f"replay is {replay}: a fraction of aligning examples, at least 0")
    if replay and algorithm != "sft":
        raise ValueError(f"{algorithm}: replaying aligning examples is implemented for sft "
                         "only (the mitigation experiment's second stage)")
    if bool(replay) != (replay_pool is not None):
        raise ValueError(f"replay {replay} and replay_pool {replay_pool!r} go together: the "
                         "pool holds the first stage's examples")
    if (algorithm in PREFERENCE_TRAINERS) != (rejected_pool is not None):
        raise ValueError(f"{algorithm}: a rejected_pool is needed by dpo, kto and simpo only, "
                         f"got {rejected_pool!r}")
    if (algorithm in ONLINE) != (reward is not None):
        raise ValueError(f"{algorithm}: a reward is needed by rloo only (step finetune_online), "
                         f"got {reward!r}")
    if algorithm in ONLINE and previous is not None:
        raise ValueError(f"{algorithm} samples its own completions: a cell cannot continue "
                         f"another ({previous}); it trains from the stage's start model")


def finetune(
    model: str,
    pool: str,
    out: str,
    *,
    examples: int,
    previous: str | None,
    trainer: dict[str, Any],
    device: str,
    seed: int,
    gpus: int = 1,
    mem_mb: int | None = None,
    stage: str | None = None,
    algorithm: str = "sft",
    rejected_pool: str | None = None,
    reward: dict[str, Any] | None = None,
    reward_function: Callable[..., list[float]] | None = None,
    replay: float = 0.0,
    replay_pool: str | None = None,
    replay_examples: int = 0,
) -> dict[str, Any]:
    """Fine-tune on the first `examples` examples of `pool`; save the final checkpoint at `out`.

    model: the model the stage starts from (a base or an aligned model), used when `previous`
    is None, and the reference model of DPO and KTO. previous: the chain link this one
    continues, whose examples it does not repeat. trainer: the algorithm's config-class fields
    of the config (elasticity.trainer_config adds the owned ones). gpus: the processes the job
    runs in, one per GPU (> 1: DeepSpeed ZeRO-3). mem_mb: the host memory the job asked for
    (None, as by hand: not checked). stage: the config section (align, invert) that error
    messages name. algorithm: one of trainer_config.ALGORITHMS. rejected_pool: the other pool,
    whose examples are the rejected responses (dpo, kto, simpo). reward: rloo's reward
    settings, {scorer, model, device, batch_size, cache, sign}, and reward_function the reward
    built from them (elasticity.online, which is how rloo links run). replay: the fraction r
    of aligning examples mixed into the rows (`with_replay`, sft only): the first
    `replay_examples` of `replay_pool` in the first stage's order (the same seed).
    """
    from accelerate.utils import broadcast_object_list

    _check_arguments(algorithm, previous, rejected_pool, reward, replay, replay_pool)
    if (reward is None) != (reward_function is None):
        raise ValueError("reward and reward_function go together (elasticity.online)")
    stage = stage or "<stage>"
    start_dir = previous or model
    parameters = parameters_from_config(start_dir)
    check_memory(parameters, stage=stage, device=device, gpus=gpus, mem_mb=mem_mb)
    if previous is not None:
        check_continuable(previous, gpus, stage)
    done_before = _examples_of(previous)
    tok = load_tokenizer(model)
    scratch = scratch_dir(out)
    # The trainer's arguments before the model: under ZeRO-3 they make from_pretrained
    # partition the weights over the GPUs as it reads them, instead of every process holding
    # the whole model.
    config = build(algorithm, trainer, output_dir=str(scratch), seed=seed, device=device,
                   save_strategy="steps", save_total_limit=1, **ORDER_FIELDS[algorithm],
                   **deepspeed_fields(gpus))
    processes = config.distributed_state
    net = load_model(start_dir)
    # A checkpoint of a run on another number of GPUs cannot be resumed (check_continuable).
    job = dict(model=model, pool=pool, examples=examples, previous=previous, trainer=trainer,
               device=device, seed=seed, gpus=gpus, algorithm=algorithm,
               rejected_pool=rejected_pool, reward=reward, replay=replay,
               replay_pool=replay_pool, replay_examples=replay_examples)
    # The first process alone inspects (and may clear) the scratch directory; the others
    # resume from what it found.
    found = [resumable_checkpoint(scratch, job) if processes.is_main_process else None]
    resume = broadcast_object_list(found)[0] or previous
    link = _Link(model=model, pool=pool, rejected_pool=rejected_pool, reward=reward_function,
                 examples=examples, done_before=done_before, seed=seed, stage=stage, net=net,
                 config=config, tok=tok, replay=replay,
                 aligning=(select_examples(replay_pool, replay_examples, seed)
                           if replay_pool else []))
    run, new_tokens = TRAINERS[algorithm](link)
    log.info("%s on examples %d-%d of %s (%s new tokens, %g epochs, %d process(es))%s",
             algorithm.upper(), done_before + 1, examples, pool,
             "sampled" if new_tokens is None else new_tokens, config.num_train_epochs,
             processes.num_processes,
             f", continuing {previous}" if previous else f", starting from {model}")
    start = time.time()
    result = run.train(resume_from_checkpoint=resume)
    metrics = {
        "algorithm": algorithm,
        "examples": examples,
        "examples_trained_here": examples - done_before,
        "replayed": replayed_count(examples, replay),
        "continued_from": previous,
        "parameters": parameters,
        # Online RL: the prompt and completion tokens it sampled, as its trainer counts them.
        "train_tokens": int(run.state.num_input_tokens_seen) if new_tokens is None
        else new_tokens,
        "train_loss": round(float(result.training_loss), 4),
        "steps": run.state.global_step,
        "wall_seconds": round(time.time() - start, 1),
    }
    # Every process has written its part of the final checkpoint (its ZeRO shard, RNG state).
    processes.wait_for_everyone()
    if processes.is_main_process:
        final = final_checkpoint(scratch, run.state.global_step)
        log.info("done: %s", metrics)
        with atomic_path(out) as tmp:
            shutil.copytree(final, tmp)
            tok.save_pretrained(tmp)
            write_json(metrics, Path(tmp) / "train_metrics.json")
        discard(scratch)
    return metrics
