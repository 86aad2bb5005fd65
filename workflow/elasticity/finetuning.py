"""Steps `align_sft` and `invert_sft`: TRL supervised fine-tuning on the first examples of a pool.

For one seed the examples are the first n of a seeded permutation of the pool, in that order
(the trainer never reshuffles them), so volumes are nested: the 400-example run sees the
200-example run's examples first. That makes a training chain possible: a link continues the
previous link's final checkpoint (weights, optimizer, scheduler, RNG, step count) and the
trainer skips the batches that link already trained on, so the P = 400 model is the P = 200
model trained further on examples 201-400 (see elasticity.chains for when this is exact).

On several GPUs (`gpus` > 1) every process runs `finetune` under `accelerate launch` with
DeepSpeed ZeRO-3 (elasticity.launch); the first process alone prepares the resumable scratch
directory and writes the job's output.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from elasticity.io import atomic_path, read_parquet, write_json
from elasticity.launch import check_continuable, check_memory, deepspeed_fields
from elasticity.models import load_model, load_tokenizer, parameters_from_config
from elasticity.trainer_config import build
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
) -> dict[str, Any]:
    """SFT on the first `examples` examples of `pool`; save the final checkpoint at `out`.

    model: the model the stage starts from (a base or an aligned model), used when `previous`
    is None. previous: the chain link this one continues, whose examples it does not repeat.
    trainer: SFTConfig fields of the config (elasticity.trainer_config adds the owned ones).
    gpus: the processes the job runs in, one per GPU (> 1: DeepSpeed ZeRO-3). mem_mb: the host
    memory the job asked for (None, as by hand: not checked). stage: the config section
    (align, invert) that error messages name.
    """
    from accelerate.utils import broadcast_object_list

    stage = stage or "<stage>"
    start_dir = previous or model
    parameters = parameters_from_config(start_dir)
    check_memory(parameters, stage=stage, device=device, gpus=gpus, mem_mb=mem_mb)
    if previous is not None:
        check_continuable(previous, gpus, stage)
    texts = select_examples(pool, examples, seed)
    done_before = _examples_of(previous)
    tok = load_tokenizer(model)
    scratch = scratch_dir(out)
    # The trainer's arguments before the model: under ZeRO-3 they make from_pretrained
    # partition the weights over the GPUs as it reads them, instead of every process holding
    # the whole model.
    config = build("sft", trainer, output_dir=str(scratch), seed=seed, device=device,
                   train_sampling_strategy="sequential", shuffle_dataset=False,
                   save_strategy="steps", save_total_limit=1, dataset_text_field="text",
                   packing=False, **deepspeed_fields(gpus))
    processes = config.distributed_state
    net = load_model(start_dir)
    # A checkpoint of a run on another number of GPUs cannot be resumed (check_continuable).
    job = dict(model=model, pool=pool, examples=examples, previous=previous, trainer=trainer,
               device=device, seed=seed, gpus=gpus)
    # The first process alone inspects (and may clear) the scratch directory; the others
    # resume from what it found.
    found = [resumable_checkpoint(scratch, job) if processes.is_main_process else None]
    resume = broadcast_object_list(found)[0] or previous
    sft = sft_trainer_class()(model=net, args=config, processing_class=tok,
                              train_dataset=tokenized(tok, texts, config.eos_token))
    lengths = [len(ids) for ids in sft.train_dataset["input_ids"]]
    new_tokens = int(sum(lengths[done_before:]) * config.num_train_epochs)
    log.info("SFT on examples %d-%d of %s (%d new tokens, %g epochs, %d process(es))%s",
             done_before + 1, examples, pool, new_tokens, config.num_train_epochs,
             processes.num_processes,
             f", continuing {previous}" if previous else f", starting from {model}")
    start = time.time()
    result = sft.train(resume_from_checkpoint=resume)
    metrics = {
        "examples": examples,
        "examples_trained_here": examples - done_before,
        "continued_from": previous,
        "parameters": parameters,
        "train_tokens": new_tokens,
        "train_loss": round(float(result.training_loss), 4),
        "steps": sft.state.global_step,
        "wall_seconds": round(time.time() - start, 1),
    }
    # Every process has written its part of the final checkpoint (its ZeRO shard, RNG state).
    processes.wait_for_everyone()
    if processes.is_main_process:
        final = final_checkpoint(scratch, sft.state.global_step)
        log.info("done: %s", metrics)
        with atomic_path(out) as tmp:
            shutil.copytree(final, tmp)
            tok.save_pretrained(tmp)
            write_json(metrics, Path(tmp) / "train_metrics.json")
        discard(scratch)
    return metrics
