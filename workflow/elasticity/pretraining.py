"""Step `pretrain`: a micro-world base model trained from scratch to a token budget.

Budgets of one model form a chain: the checkpoint at budget T_k continues the one at
T_{k-1} (weights, optimizer, scheduler, data order), so intermediate checkpoints are the
analog of TinyLlama's released slices and cost nothing extra.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

from elasticity.io import atomic_path, write_json
from elasticity.models import build_model, load_tokenizer, parameter_count, texts_of
from elasticity.trainer_config import build, effective_batch, with_class_defaults
from elasticity.training import discard, final_checkpoint, resumable_checkpoint, scratch_dir

log = logging.getLogger(__name__)


def token_blocks(texts: list[str], tokenizer, seq_len: int) -> list[list[int]]:
    """Concatenate the tokenized texts (each opens with BOS) and cut into equal blocks."""
    stream: list[int] = []
    for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]:
        stream.extend(ids)
    return [stream[i:i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)]


def _dataset(blocks: list[list[int]]):
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": blocks, "labels": blocks})


def pretrain(
    corpus: str,
    eval_corpus: str,
    tokenizer: str,
    out: str,
    *,
    model_name: str,
    architecture: dict[str, Any],
    tokens: int,
    previous: str | None,
    seq_len: int,
    trainer: dict[str, Any],
    device: str,
    seed: int,
) -> dict[str, Any]:
    """Train to `tokens` tokens, continuing the checkpoint of the previous budget if any.

    trainer: TrainingArguments fields of the config (elasticity.trainer_config adds the owned
    ones)."""
    from transformers import Trainer

    tok = load_tokenizer(tokenizer)
    train_blocks = token_blocks(texts_of(corpus), tok, seq_len)
    eval_blocks = token_blocks(texts_of(eval_corpus), tok, seq_len)
    tokens_per_step = effective_batch(with_class_defaults("trainer", trainer)) * seq_len
    max_steps = math.ceil(tokens / tokens_per_step)
    log.info("corpus: %d blocks of %d tokens (%.2fM tokens); budget %d tokens = %d steps "
             "(%.1f epochs)", len(train_blocks), seq_len, len(train_blocks) * seq_len / 1e6,
             tokens, max_steps, max_steps * tokens_per_step / seq_len / len(train_blocks))

    scratch = scratch_dir(out)
    job = dict(corpus=corpus, tokenizer=tokenizer, architecture=architecture, tokens=tokens,
               previous=previous, seq_len=seq_len, trainer=trainer, device=device, seed=seed)
    resume = resumable_checkpoint(scratch, job) or previous
    model = build_model(architecture, tok, seed)
    n_params = parameter_count(model)
    args = build("trainer", trainer, output_dir=str(scratch), seed=seed, device=device,
                 max_steps=max_steps, save_strategy="steps", save_total_limit=1)
    trainer = Trainer(model=model, args=args, train_dataset=_dataset(train_blocks),
                      eval_dataset=_dataset(eval_blocks))
    start = time.time()
    trainer.train(resume_from_checkpoint=resume)
    wall = time.time() - start
    eval_loss = trainer.evaluate()["eval_loss"]
    final = final_checkpoint(scratch, max_steps)
    metrics = {
        "model": model_name,
        "parameters": n_params,
        "pretrain_tokens": tokens,
        "steps": max_steps,
        "tokens_trained_here": (max_steps - _start_step(previous)) * tokens_per_step,
        "eval_loss": round(float(eval_loss), 4),
        "eval_tokens": len(eval_blocks) * seq_len,
        "wall_seconds": round(wall, 1),
        "continued_from": previous,
    }
    log.info("done: %s", metrics)
    with atomic_path(out) as tmp:
        shutil.copytree(final, tmp)
        tok.save_pretrained(tmp)
        write_json(metrics, Path(tmp) / "base_metrics.json")
    discard(scratch)
    return metrics


def _start_step(previous: str | None) -> int:
    if previous is None:
        return 0
    return int(json.loads((Path(previous) / "trainer_state.json").read_text())["global_step"])
